"""output facts: whether the audio was encoded, and the output's measured loudness

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 16:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("output_encoded", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("output_loudness_lufs", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("output_true_peak_db", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_column("output_true_peak_db")
        batch_op.drop_column("output_loudness_lufs")
        batch_op.drop_column("output_encoded")
