"""Per-user limits, counted in the database so every API process sees the same numbers.

- uploads per minute (a sliding window over the user's uploads, counted in 1 s buckets),
- bytes per day (the sizes of the user's uploads in the last 24 hours, in 60 s buckets),
- jobs queued or processing at once.

Upload limits are checked and the upload recorded in one write transaction
(api/upload_writer.py), so two API processes cannot both let the last allowed upload in.

A user row may override each default from settings. Exceeding one answers 429
`rate_limited` with a Retry-After header saying when to try again.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlmodel import Session

from shared import jobs, users
from shared.config import Settings
from shared.errors import RateLimitError
from shared.jobs import UploadUsage
from shared.models import utcnow
from shared.users import AuthUser

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


def check_upload(
    *, usage: UploadUsage, user: AuthUser, settings: Settings, size_bytes: int, now: datetime
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


def check_login(*, session: Session, email: str, settings: Settings) -> None:
    window = timedelta(seconds=settings.login_failure_window_s)
    now = utcnow()
    failures, oldest = users.login_failures_since(session=session, email=email, since=now - window)
    if failures >= settings.login_failures_allowed:
        wait = (oldest + window - now).total_seconds() if oldest else window.total_seconds()
        raise RateLimitError(
            "Too many failed sign-ins for this account; try again later.",
            retry_after_s=math.ceil(wait),
        )


def check_job(*, session: Session, user: AuthUser, settings: Settings) -> None:
    limit = user.max_active_jobs if user.max_active_jobs is not None else settings.max_active_jobs
    if jobs.active_jobs(session=session, owner_id=user.id) >= limit:
        raise RateLimitError(
            f"You already have {limit} jobs queued or converting; wait for some to finish.",
            retry_after_s=5,
        )
