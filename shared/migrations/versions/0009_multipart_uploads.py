"""multipart uploads: the storage upload id, the part size, when the parts were joined

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 18:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upload", schema=None) as batch_op:
        batch_op.add_column(sa.Column("multipart_id", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("part_size", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upload", schema=None) as batch_op:
        batch_op.drop_column("completed_at")
        batch_op.drop_column("part_size")
        batch_op.drop_column("multipart_id")
