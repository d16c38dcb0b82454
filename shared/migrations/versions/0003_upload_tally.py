"""upload tally: per-user upload counts in time buckets, for the upload limits

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SPANS = (1, 60)


def upgrade() -> None:
    tally = op.create_table(
        "upload_tally",
        sa.Column("owner_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("span_s", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.BigInteger(), nullable=False),
        sa.Column("uploads", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("last_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("owner_id", "span_s", "start_s"),
    )
    # The limits look back one day: tally the uploads of the last day, so that nobody's
    # quota starts from zero when this migration runs.
    upload = sa.table(
        "upload",
        sa.column("owner_id", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("size_bytes", sa.BigInteger()),
    )
    since = datetime.now(UTC) - timedelta(days=1)
    rows = op.get_bind().execute(
        sa.select(upload.c.owner_id, upload.c.created_at, upload.c.size_bytes).where(
            upload.c.created_at > since
        )
    )
    buckets: dict[tuple[str, int, int], dict[str, float]] = {}
    for owner_id, created_at, size_bytes in rows:
        at = (created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)).timestamp()
        for span in SPANS:
            bucket = buckets.setdefault(
                (owner_id, span, int(at // span) * span), {"uploads": 0, "bytes": 0, "last_at": 0.0}
            )
            bucket["uploads"] += 1
            bucket["bytes"] += size_bytes
            bucket["last_at"] = max(bucket["last_at"], at)
    if buckets:
        op.bulk_insert(
            tally,
            [
                {"owner_id": owner, "span_s": span, "start_s": start, **values}
                for (owner, span, start), values in buckets.items()
            ],
        )


def downgrade() -> None:
    op.drop_table("upload_tally")
