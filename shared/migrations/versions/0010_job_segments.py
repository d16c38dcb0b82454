"""split jobs: a job's segments, and its segment counts

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("segments_total", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("segments_done", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "job_segment",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("start_sample", sa.BigInteger(), nullable=False),
        sa.Column("end_sample", sa.BigInteger(), nullable=True),
        sa.Column("part_key", sa.String(length=512), nullable=True),
        sa.Column("padding", sa.Integer(), nullable=True),
        sa.Column("loudness_blocks", sa.JSON(), nullable=True),
        sa.Column("true_peak", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "idx"),
    )


def downgrade() -> None:
    op.drop_table("job_segment")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("segments_done")
        batch_op.drop_column("segments_total")
