"""Recovery of jobs whose worker or message was lost: the reaper's queries, a new
dispatch token for a job sent again, and the end of a job that crashes every worker.

Keyword-only functions taking a Session; every write is guarded in SQL, so two reapers
never take the same job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from shared.job_transitions import update_job
from shared.models import Job, JobStatus, new_id, utcnow


def redispatch(
    *,
    session: Session,
    job_id: str,
    expect_status: JobStatus,
    older_than: datetime,
    reset_attempts: bool = False,
) -> str | None:
    """Give a job a new dispatch token and mark it queued; None if someone else did first.

    The caller publishes a message with the returned token and then `mark_published`.
    """
    token = new_id()
    values: dict[str, Any] = {
        "status": JobStatus.queued,
        "dispatch_token": token,
        "progress": 0,
        "published_at": None,
        "updated_at": utcnow(),
        "finished_at": None,
        "segments_total": None,  # a split job is split again under the new token
        "segments_done": 0,
    }
    if reset_attempts:
        values.update(attempts=0, error_code=None, error_message=None)
    result = session.execute(
        update_job()
        .where(
            col(Job.id) == job_id,
            col(Job.status) == expect_status,
            col(Job.updated_at) < older_than,
        )
        .values(**values)
    )
    session.commit()
    return token if result.rowcount else None  # type: ignore[attr-defined]


def crashed_message(runs: int) -> str:
    return f"The worker running this job stopped {runs} times."


def fail_crashed(*, session: Session, job_id: str, older_than: datetime, max_runs: int) -> bool:
    """Fail a processing job whose lease lapsed after `max_runs` starts (`worker_crashed`):
    a job that kills or hangs every worker that runs it ends instead of looping."""
    now = utcnow()
    result = session.execute(
        update_job()
        .where(
            col(Job.id) == job_id,
            col(Job.status) == JobStatus.processing,
            col(Job.updated_at) < older_than,
            col(Job.attempts) >= max_runs,
        )
        .values(
            status=JobStatus.failed,
            finished_at=now,
            updated_at=now,
            error_code="worker_crashed",
            error_message=crashed_message(max_runs),
        )
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def stale_processing(
    *,
    session: Session,
    older_than: datetime,
    split_older_than: datetime | None = None,
    limit: int = 100,
) -> list[str]:
    """Jobs said to be processing whose worker stopped renewing the lease. A split job's
    segments may wait in the queue with nobody renewing it: it counts as stale only
    from ``split_older_than`` (its segments' messages lost), when that is given."""
    stale: Any = col(Job.updated_at) < older_than
    if split_older_than is not None:
        stale = or_(
            and_(col(Job.segments_total).is_(None), stale),
            col(Job.updated_at) < split_older_than,
        )
    rows = session.exec(
        select(Job.id).where(col(Job.status) == JobStatus.processing, stale).limit(limit)
    ).all()
    return list(rows)


def unpublished(*, session: Session, older_than: datetime, limit: int = 100) -> list[str]:
    """Queued jobs whose message was never confirmed by the broker (e.g. the API died)."""
    rows = session.exec(
        select(Job.id)
        .where(
            col(Job.status) == JobStatus.queued,
            col(Job.published_at).is_(None),
            col(Job.updated_at) < older_than,
        )
        .limit(limit)
    ).all()
    return list(rows)


def _message_lost(older_than: datetime) -> list[Any]:
    """Queued, published before `older_than` and untouched since."""
    return [
        col(Job.status) == JobStatus.queued,
        col(Job.published_at) < older_than,
        col(Job.updated_at) < older_than,
    ]


def unclaimed(*, session: Session, older_than: datetime, limit: int = 100) -> list[str]:
    """Queued jobs published before `older_than` and untouched since: their message was
    probably lost (dead-lettered while the database was down, or purged)."""
    rows = session.exec(select(Job.id).where(*_message_lost(older_than)).limit(limit)).all()
    return list(rows)


def take_for_republish(*, session: Session, job_id: str, older_than: datetime) -> str | None:
    """Mark an unclaimed job unpublished (guarded, so one reaper takes it); its token, or
    None when it moved on or another reaper took it first."""
    token = session.scalars(
        update_job()
        .where(col(Job.id) == job_id, *_message_lost(older_than))
        .values(published_at=None, updated_at=utcnow())
        .returning(Job.dispatch_token)
    ).first()
    session.commit()
    return token
