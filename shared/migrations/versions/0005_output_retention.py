"""output retention: when a job's MP3 expires, when it was found gone, when its input
was removed

Revision ID: 0005_output_retention
Revises: 0004
Create Date: 2026-12-07 16:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, timedelta

import sqlalchemy as sa
from alembic import op

from shared.config import get_settings

revision: str = "0005_output_retention"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("output_expires_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("output_expired_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("input_removed_at", sa.DateTime(timezone=True)))
        batch_op.create_index(
            "ix_job_output_retention", ["output_expired_at", "output_expires_at"], unique=False
        )
        batch_op.create_index(
            "ix_job_input_retention", ["input_removed_at", "status"], unique=False
        )
    # MP3s made before this revision expire as new ones do: retention after completion.
    job = sa.table(
        "job",
        sa.column("id", sa.String()),
        sa.column("status", sa.String()),
        sa.column("finished_at", sa.DateTime(timezone=True)),
        sa.column("output_key", sa.String()),
        sa.column("output_expires_at", sa.DateTime(timezone=True)),
    )
    keep = timedelta(days=get_settings().output_retention_days)
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(job.c.id, job.c.finished_at).where(
            job.c.status == "completed",
            job.c.output_key.is_not(None),
            job.c.finished_at.is_not(None),
        )
    ).all()
    if rows:
        bind.execute(
            job.update()
            .where(job.c.id == sa.bindparam("job_id"))
            .values(output_expires_at=sa.bindparam("expires_at")),
            [
                {
                    "job_id": job_id,
                    "expires_at": (at if at.tzinfo else at.replace(tzinfo=UTC)) + keep,
                }
                for job_id, at in rows
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index("ix_job_input_retention")
        batch_op.drop_index("ix_job_output_retention")
        batch_op.drop_column("input_removed_at")
        batch_op.drop_column("output_expired_at")
        batch_op.drop_column("output_expires_at")
