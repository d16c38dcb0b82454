"""Sign-in attempts, counted in the database so every API process agrees.

A login records its attempt (a `login_failure` row) before the password is checked, and
a successful login deletes that row again. Attempts in flight therefore count as
failures, and the check and the record are one write transaction serialised per email
and per client address (PostgreSQL advisory locks; on SQLite the write transaction
already serialises every writer): a burst of parallel guesses cannot all pass the check
before any is recorded.

- Per email: past `login_failures_allowed` failures within `login_failure_window_s`, a
  try must wait `login_backoff_base_s` after the last one, doubled for each further
  failure, at most `login_backoff_max_s`. Guessing slows to one try a minute; the
  account's owner, with the right password, is delayed by at most that, never locked out.
- Per client address: `login_failures_per_ip` failures within the window, then 429 until
  the oldest leaves it, whatever the emails.
- Rows older than the window are deleted whenever an attempt is recorded.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import delete, func, text
from sqlmodel import Session, col, select

from shared.config import Settings
from shared.db import write_transaction
from shared.errors import RateLimitError
from shared.models import LoginFailure, as_utc, utcnow
from shared.users import normalise_email


def backoff_s(failures: int, settings: Settings) -> float:
    """How long after the last failure the next try must wait (0: no wait)."""
    extra = failures - settings.login_failures_allowed
    if extra < 0:
        return 0.0
    return float(
        min(settings.login_backoff_base_s * 2 ** min(extra, 30), settings.login_backoff_max_s)
    )


def _lock(session: Session, key: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
        )


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def record_attempt(*, session: Session, email: str, client_ip: str, settings: Settings) -> int:
    """Record a sign-in attempt and return its id; RateLimitError (with Retry-After) when
    the email must wait or the address has failed too often."""
    email = normalise_email(email)
    window = timedelta(seconds=settings.login_failure_window_s)
    with write_transaction(session):
        _lock(session, f"login-ip:{client_ip}")
        _lock(session, f"login-email:{email}")
        now = utcnow()
        session.execute(delete(LoginFailure).where(col(LoginFailure.at) <= now - window))
        from_ip, oldest = session.exec(
            select(func.count(), func.min(LoginFailure.at)).where(
                LoginFailure.client_ip == client_ip, col(LoginFailure.at) > now - window
            )
        ).one()
        if from_ip >= settings.login_failures_per_ip:
            raise RateLimitError(
                "Too many failed sign-ins from this address; try again later.",
                retry_after_s=_seconds_until((as_utc(oldest) or now) + window, now),
            )
        for_email, last = session.exec(
            select(func.count(), func.max(LoginFailure.at)).where(
                LoginFailure.email == email, col(LoginFailure.at) > now - window
            )
        ).one()
        wait = timedelta(seconds=backoff_s(int(for_email), settings))
        last_at = as_utc(last)
        if wait and last_at is not None and last_at + wait > now:
            raise RateLimitError(
                "Too many failed sign-ins for this account; try again shortly.",
                retry_after_s=_seconds_until(last_at + wait, now),
            )
        attempt = LoginFailure(email=email, client_ip=client_ip, at=now)
        session.add(attempt)
        session.flush()
        assert attempt.id is not None
        attempt_id: int = attempt.id
    return attempt_id


def forget_attempt(*, session: Session, attempt_id: int) -> None:
    """A recorded attempt that succeeded, or that was never judged: not a failure."""
    session.execute(delete(LoginFailure).where(col(LoginFailure.id) == attempt_id))
    session.commit()
