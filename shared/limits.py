"""Per-user limits, counted in the database so every API process sees the same numbers.

- uploads per minute (a sliding window over the user's uploads, counted in 1 s buckets),
- bytes per day (the sizes of the user's uploads in the last 24 hours, in 60 s buckets),
- jobs queued or processing at once.

Failed sign-ins are counted in `shared/logins.py`.

Uploads are counted in a tally (`UploadTally`) rather than from the upload rows, because
unused uploads are deleted once their URL expires and must still count for the day. The
upload limits are checked and the upload recorded in one write transaction that holds the
owner's account row (`lock_owner`), so two API processes cannot both let the last allowed
upload in. A user row may override each default from settings; exceeding one raises
RateLimitError (429 with Retry-After).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, or_
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from shared.config import Settings
from shared.errors import RateLimitError
from shared.jobs import ACTIVE
from shared.models import Job, UploadTally, User

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
RECENT_SPAN_S = 1  # tally buckets for the per-minute limit
WINDOW_SPAN_S = 60  # tally buckets for the daily volume


@dataclass(frozen=True)
class UploadUsage:
    recent_count: int  # uploads of the last minute
    recent_oldest: datetime | None  # when the oldest of them was made
    window_bytes: int  # bytes of the last day's uploads
    window_oldest: datetime | None  # when the oldest of them was made


def lock_owner(*, session: Session, owner_id: str) -> None:
    """Hold the owner's account row until the transaction ends, so that two API processes
    checking one user's limits take turns (PostgreSQL; on SQLite the write transaction's
    BEGIN IMMEDIATE already serialises every writer)."""
    if session.get_bind().dialect.name == "sqlite":
        return
    session.exec(select(User.id).where(User.id == owner_id).with_for_update()).first()


def upload_usage(*, session: Session, owner_id: str, now: datetime) -> UploadUsage:
    """An owner's uploads of the last minute and bytes of the last day, from the tally
    (at most 61 + 1441 rows however many uploads there were), in one query."""
    now_s = now.timestamp()
    recent_since, window_since = now_s - MINUTE.total_seconds(), now_s - DAY.total_seconds()
    span, last_at, start = (
        col(UploadTally.span_s),
        col(UploadTally.last_at),
        col(UploadTally.start_s),
    )
    recent = and_(span == RECENT_SPAN_S, start > recent_since - RECENT_SPAN_S)
    window = and_(span == WINDOW_SPAN_S, start > window_since - WINDOW_SPAN_S)
    row = session.exec(
        select(
            func.coalesce(func.sum(case((span == RECENT_SPAN_S, UploadTally.uploads))), 0),
            func.min(case((span == RECENT_SPAN_S, last_at))),
            func.coalesce(func.sum(case((span == WINDOW_SPAN_S, UploadTally.bytes))), 0),
            func.min(case((span == WINDOW_SPAN_S, last_at))),
        ).where(
            UploadTally.owner_id == owner_id,
            or_(
                and_(recent, last_at > recent_since),
                and_(window, last_at > window_since),
            ),
        )
    ).one()
    return UploadUsage(int(row[0]), _from_unix(row[1]), int(row[2]), _from_unix(row[3]))


def _from_unix(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def check_upload(
    *, usage: UploadUsage, user: User, settings: Settings, size_bytes: int, now: datetime
) -> None:
    """Raise RateLimitError if one more upload of `size_bytes` would pass a limit."""
    per_minute = (
        user.uploads_per_minute
        if user.uploads_per_minute is not None
        else settings.uploads_per_minute
    )
    if usage.recent_count >= per_minute:
        oldest = usage.recent_oldest
        wait = max(1.0, (oldest + MINUTE - now).total_seconds() if oldest else 60)
        raise RateLimitError(
            f"You can start {per_minute} uploads a minute; try again in {math.ceil(wait)} s.",
            retry_after_s=math.ceil(wait),
        )
    per_day = user.bytes_per_day if user.bytes_per_day is not None else settings.bytes_per_day
    if usage.window_bytes + size_bytes > per_day:
        oldest_today = usage.window_oldest
        wait = max(
            1.0,
            (oldest_today + DAY - now).total_seconds() if oldest_today else DAY.total_seconds(),
        )
        raise RateLimitError(
            "This upload would pass your daily volume; try again later.",
            retry_after_s=math.ceil(wait),
        )


def count_upload(*, session: Session, owner_id: str, size_bytes: int, now: datetime) -> None:
    """Count one upload made at `now` in its owner's tally, and drop the owner's buckets
    that no window reaches any more."""
    now_s = now.timestamp()
    dialect = session.get_bind().dialect.name
    for span in (RECENT_SPAN_S, WINDOW_SPAN_S):
        upsert = (
            sqlite_insert(UploadTally) if dialect == "sqlite" else postgresql_insert(UploadTally)
        )
        session.execute(
            upsert.values(
                owner_id=owner_id,
                span_s=span,
                start_s=int(now_s // span) * span,
                uploads=1,
                bytes=size_bytes,
                last_at=now_s,
            ).on_conflict_do_update(
                index_elements=["owner_id", "span_s", "start_s"],
                set_=_tally_increment(upsert),
            )
        )
    session.execute(
        delete(UploadTally).where(
            col(UploadTally.owner_id) == owner_id,
            or_(
                and_(
                    col(UploadTally.span_s) == RECENT_SPAN_S,
                    col(UploadTally.start_s) < now_s - MINUTE.total_seconds() - 2 * RECENT_SPAN_S,
                ),
                and_(
                    col(UploadTally.span_s) == WINDOW_SPAN_S,
                    col(UploadTally.start_s) < now_s - DAY.total_seconds() - 2 * WINDOW_SPAN_S,
                ),
            ),
        )
    )


def _tally_increment(upsert: Any) -> dict[str, Any]:
    tally = UploadTally.__table__  # type: ignore[attr-defined]
    return {
        "uploads": tally.c.uploads + upsert.excluded.uploads,
        "bytes": tally.c.bytes + upsert.excluded.bytes,
        "last_at": case(
            (upsert.excluded.last_at > tally.c.last_at, upsert.excluded.last_at),
            else_=tally.c.last_at,
        ),
    }


def check_job(*, session: Session, user: User, settings: Settings) -> None:
    """Raise RateLimitError if the user already has their maximum of active jobs."""
    limit = user.max_active_jobs if user.max_active_jobs is not None else settings.max_active_jobs
    active = session.exec(
        select(func.count()).where(Job.owner_id == user.id, col(Job.status).in_(ACTIVE))
    ).one()
    if active >= limit:
        raise RateLimitError(
            f"You already have {limit} jobs queued or converting; wait for some to finish.",
            retry_after_s=5,
        )
