"""upload probe: ffprobe's description of an uploaded file, stored once

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 18:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("upload", schema=None) as batch_op:
        batch_op.add_column(sa.Column("probe", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("probe_error", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("probed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upload", schema=None) as batch_op:
        batch_op.drop_column("probed_at")
        batch_op.drop_column("probe_error")
        batch_op.drop_column("probe")
