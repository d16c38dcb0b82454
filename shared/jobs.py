"""Job rows: read, insert, and the state transitions workers make.

Keyword-only functions taking a Session. Transitions are guarded in SQL so that a late or
duplicate worker can never move a finished job backwards. Uploads live in
shared/uploads.py, limits in shared/limits.py, listing in shared/listing.py, and the
steps that combine them (create a job, dispatch it) in shared/services.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from shared.errors import ConflictError, NotFoundError
from shared.models import Job, JobStatus, Upload, new_id, utcnow

ACTIVE = (JobStatus.queued, JobStatus.processing)


def get_job(*, session: Session, job_id: str, owner_id: str | None = None) -> Job:
    """The job; another owner's job is reported exactly like a missing one (no leak)."""
    job = None if "\x00" in job_id else session.get(Job, job_id)  # NUL: no such id
    if job is None or (owner_id is not None and job.owner_id != owner_id):
        raise NotFoundError("No job has that id.", code="job_not_found")
    return job


def find_by_idempotency_key(*, session: Session, key: str, owner_id: str) -> Job | None:
    """Keys are scoped per owner: two users may pick the same key."""
    return session.exec(
        select(Job).where(Job.idempotency_key == key, Job.owner_id == owner_id)
    ).first()


def insert_job(
    *,
    session: Session,
    upload: Upload,
    options: dict[str, Any],
    idempotency_key: str | None,
    request_hash: str | None,
    notify: dict[str, Any] | None = None,
) -> Job:
    """Insert a queued job; raises ConflictError if the upload already has one."""
    job = Job(
        owner_id=upload.owner_id,
        upload_id=upload.id,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        input_key=upload.key,
        input_filename=upload.filename,
        input_size_bytes=upload.size_bytes,
        options=options,
        notify=notify,
    )
    session.add(job)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(
            "That upload already has a job; upload the file again to convert it again.",
            code="upload_already_used",
        ) from exc
    return job


def delete_job(*, session: Session, job_id: str) -> None:
    job = session.get(Job, job_id)
    if job is not None:
        session.delete(job)
        session.commit()


# --------------------------------------------------------------------------- worker side
#
# Every job has a dispatch token, carried by its queue message. Only a message with the
# job's current token may run it: when a job is re-dispatched (a stale "processing" put
# back, an unpublished job published by the reaper, a dead letter replayed) the token
# changes, so any older copy of its message still in flight is recognised and dropped.
# Writes by a worker are guarded by the token too, so a worker that lost its lease can
# never overwrite the outcome of the one that took over.


def _update_job() -> Any:
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
        _update_job()
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
        _update_job()
        .where(*_owned(job_id, token), col(Job.status) == JobStatus.processing)
        .values(progress=max(0, min(99, progress)), updated_at=utcnow())
    )
    session.commit()


def heartbeat(*, session: Session, job_id: str, token: str | None = None) -> bool:
    """Renew the lease of a running job; False if it is no longer ours."""
    result = session.execute(
        _update_job()
        .where(*_owned(job_id, token), col(Job.status) == JobStatus.processing)
        .values(updated_at=utcnow())
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
    now = utcnow()
    result = session.execute(
        _update_job()
        .where(*_owned(job_id, token), col(Job.status).in_(ACTIVE))
        .values(
            status=JobStatus.completed,
            progress=100,
            finished_at=now,
            updated_at=now,
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
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def fail(
    *, session: Session, job_id: str, code: str, message: str, token: str | None = None
) -> bool:
    now = utcnow()
    result = session.execute(
        _update_job()
        .where(*_owned(job_id, token), col(Job.status).in_(ACTIVE))
        .values(
            status=JobStatus.failed,
            finished_at=now,
            updated_at=now,
            error_code=code,
            error_message=message[:1024],
        )
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def requeue_for_retry(
    *, session: Session, job_id: str, code: str, message: str, token: str | None = None
) -> bool:
    """Back to queued between attempts; the last error is kept for operators."""
    result = session.execute(
        _update_job()
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
        _update_job()
        .where(col(Job.id) == job_id, col(Job.dispatch_token) == token)
        .values(published_at=utcnow())
    )
    session.commit()


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
        _update_job()
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
        _update_job()
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


def unclaimed(*, session: Session, older_than: datetime, limit: int = 100) -> list[str]:
    """Queued jobs published before `older_than` and untouched since: their message was
    probably lost (dead-lettered while the database was down, or purged)."""
    rows = session.exec(
        select(Job.id)
        .where(
            col(Job.status) == JobStatus.queued,
            col(Job.published_at) < older_than,
            col(Job.updated_at) < older_than,
        )
        .limit(limit)
    ).all()
    return list(rows)


def take_for_republish(*, session: Session, job_id: str, older_than: datetime) -> str | None:
    """Mark an unclaimed job unpublished (guarded, so one reaper takes it); its token, or
    None when it moved on or another reaper took it first."""
    token = session.scalars(
        _update_job()
        .where(
            col(Job.id) == job_id,
            col(Job.status) == JobStatus.queued,
            col(Job.published_at) < older_than,
            col(Job.updated_at) < older_than,
        )
        .values(published_at=None, updated_at=utcnow())
        .returning(Job.dispatch_token)
    ).first()
    session.commit()
    return token
