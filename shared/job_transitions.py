"""The guarded state transitions of a dispatched job: published, started, progress, lease
renewal, outcome.

Keyword-only functions taking a Session. Transitions are guarded in SQL so that a late or
duplicate worker can never move a finished job backwards.

Every job has a dispatch token, carried by its queue message. Only a message with the
job's current token may run it: when a job is re-dispatched (a stale "processing" put
back, an unpublished job published by the reaper, a dead letter replayed) the token
changes, so any older copy of its message still in flight is recognised and dropped.
Writes by a worker are guarded by the token too, so a worker that lost its lease can
never overwrite the outcome of the one that took over.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col

from shared.jobs import ACTIVE
from shared.models import Job, JobStatus, utcnow


def update_job() -> Any:
    """UPDATE job, without the ORM re-evaluating the WHERE on loaded objects in Python
    (SQLite hands back naive datetimes, which cannot be compared with aware ones)."""
    return update(Job).execution_options(synchronize_session=False)


def _owned(job_id: str, token: str | None) -> list[Any]:
    clauses: list[Any] = [col(Job.id) == job_id]
    if token is not None:
        clauses.append(col(Job.dispatch_token) == token)
    return clauses


def start_attempt(
    *,
    session: Session,
    job_id: str,
    token: str | None = None,
    lease_cutoff: datetime | None = None,
    max_runs: int | None = None,
) -> Job | None:
    """Mark a queued job processing and count the attempt; None if it is finished, not
    ours, or already running.

    A job already processing is taken over only when its lease was last renewed before
    `lease_cutoff` (its worker died or hung), and had been started fewer than `max_runs`
    times: two copies of one message, or a redelivery while the first worker still
    converts, never run the job twice at once. One statement
    (UPDATE … RETURNING) on the path of every job: the row comes back with the update,
    instead of being read again after it."""
    now = utcnow()
    claimable: Any = col(Job.status) == JobStatus.queued
    if lease_cutoff is not None:
        takeover: list[Any] = [
            col(Job.status) == JobStatus.processing,
            col(Job.updated_at) < lease_cutoff,
        ]
        if max_runs is not None:
            takeover.append(col(Job.attempts) < max_runs)
        claimable = or_(claimable, and_(*takeover))
    job = session.scalars(
        update_job()
        .where(*_owned(job_id, token), claimable)
        .values(
            status=JobStatus.processing,
            attempts=Job.attempts + 1,
            progress=0,
            started_at=now,
            updated_at=now,
            error_code=None,
            error_message=None,
        )
        .returning(Job)
        .execution_options(populate_existing=True)
    ).first()
    session.commit()
    return job


def set_progress(*, session: Session, job_id: str, progress: int, token: str | None = None) -> None:
    session.execute(
        update_job()
        .where(*_owned(job_id, token), col(Job.status) == JobStatus.processing)
        .values(progress=max(0, min(99, progress)), updated_at=utcnow())
    )
    session.commit()


def heartbeat(*, session: Session, job_id: str, token: str | None = None) -> bool:
    """Renew the lease of a running job; False if it is no longer ours."""
    result = session.execute(
        update_job()
        .where(*_owned(job_id, token), col(Job.status) == JobStatus.processing)
        .values(updated_at=utcnow())
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _finish(*, session: Session, job_id: str, token: str | None, **values: Any) -> bool:
    """Move a queued or processing job to its outcome; False if it had one already or is
    no longer ours."""
    now = utcnow()
    result = session.execute(
        update_job()
        .where(*_owned(job_id, token), col(Job.status).in_(ACTIVE))
        .values(finished_at=now, updated_at=now, **values)
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def complete(
    *,
    session: Session,
    job_id: str,
    output_key: str,
    size_bytes: int,
    duration_s: float,
    bitrate_kbps: int | None,
    expires_at: datetime | None = None,
    token: str | None = None,
    encoded: bool | None = None,
    loudness_lufs: float | None = None,
    true_peak_db: float | None = None,
) -> bool:
    """Record the MP3; ``expires_at``: when retention deletes it (shared/retention.py)."""
    return _finish(
        session=session,
        job_id=job_id,
        token=token,
        status=JobStatus.completed,
        progress=100,
        output_key=output_key,
        output_size_bytes=size_bytes,
        output_duration_s=duration_s,
        output_bitrate_kbps=bitrate_kbps,
        output_expires_at=expires_at,
        output_expired_at=None,
        output_encoded=encoded,
        output_loudness_lufs=loudness_lufs,
        output_true_peak_db=true_peak_db,
        error_code=None,
        error_message=None,
    )


def fail(
    *, session: Session, job_id: str, code: str, message: str, token: str | None = None
) -> bool:
    return _finish(
        session=session,
        job_id=job_id,
        token=token,
        status=JobStatus.failed,
        error_code=code,
        error_message=message[:1024],
    )


def requeue_for_retry(
    *, session: Session, job_id: str, code: str, message: str, token: str | None = None
) -> bool:
    """Back to queued between attempts; the last error is kept for operators."""
    result = session.execute(
        update_job()
        .where(*_owned(job_id, token), col(Job.status) == JobStatus.processing)
        .values(
            status=JobStatus.queued,
            progress=0,
            updated_at=utcnow(),
            error_code=code,
            error_message=message[:1024],
        )
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_published(*, session: Session, job_id: str, token: str) -> None:
    session.execute(
        update_job()
        .where(col(Job.id) == job_id, col(Job.dispatch_token) == token)
        .values(published_at=utcnow())
    )
    session.commit()
