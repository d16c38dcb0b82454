"""Job and upload state transitions: the only code that writes those rows.

Keyword-only functions taking a Session, used by the API (create, read, list) and the
worker (start, progress, finish). Transitions are guarded in SQL so that a late or
duplicate worker can never move a finished job backwards.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from shared.errors import ConflictError, NotFoundError
from shared.models import Job, JobStatus, Upload, as_utc, new_id, utcnow

ACTIVE = (JobStatus.queued, JobStatus.processing)


# --------------------------------------------------------------------------- uploads


def create_upload(
    *,
    session: Session,
    upload_id: str,
    owner_id: str,
    key: str,
    filename: str,
    content_type: str,
    size_bytes: int,
    expires_at: datetime,
) -> Upload:
    upload = Upload(
        id=upload_id,
        owner_id=owner_id,
        key=key,
        filename=filename,
        content_type=content_type,
        size_bytes=size_bytes,
        expires_at=expires_at,
    )
    session.add(upload)
    session.commit()
    return upload


def get_upload(*, session: Session, upload_id: str, owner_id: str | None = None) -> Upload:
    """The upload; another owner's upload is reported exactly like a missing one."""
    upload = session.get(Upload, upload_id)
    if upload is None or (owner_id is not None and upload.owner_id != owner_id):
        raise NotFoundError("No upload has that id.", code="upload_not_found")
    return upload


# --------------------------------------------------------------------------- jobs


def get_job(*, session: Session, job_id: str, owner_id: str | None = None) -> Job:
    """The job; another owner's job is reported exactly like a missing one (no leak)."""
    job = session.get(Job, job_id)
    if job is None or (owner_id is not None and job.owner_id != owner_id):
        raise NotFoundError("No job has that id.", code="job_not_found")
    return job


def upload_has_job(*, session: Session, upload_id: str) -> bool:
    return session.exec(select(Job.id).where(Job.upload_id == upload_id)).first() is not None


def find_by_idempotency_key(*, session: Session, key: str, owner_id: str) -> Job | None:
    """Keys are scoped per owner: two users may pick the same key."""
    return session.exec(
        select(Job).where(Job.idempotency_key == key, Job.owner_id == owner_id)
    ).first()


def create_job(
    *,
    session: Session,
    upload: Upload,
    options: dict[str, Any],
    idempotency_key: str | None,
    request_hash: str | None,
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


def encode_cursor(job: Job) -> str:
    created = as_utc(job.created_at)
    assert created is not None
    raw = json.dumps([created.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_s, job_id = json.loads(raw)
        return datetime.fromisoformat(created_s), str(job_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursorError from exc


class InvalidCursorError(ValueError):
    pass


def list_jobs(
    *,
    session: Session,
    status: JobStatus | None,
    limit: int,
    cursor: str | None,
    owner_id: str | None = None,
) -> tuple[list[Job], str | None]:
    """Newest first, keyset-paginated on (created_at, id); one owner's jobs when given."""
    query = select(Job)
    if owner_id is not None:
        query = query.where(Job.owner_id == owner_id)
    if status is not None:
        query = query.where(Job.status == status)
    if cursor:
        created, job_id = decode_cursor(cursor)
        query = query.where(
            or_(
                col(Job.created_at) < created,
                and_(col(Job.created_at) == created, col(Job.id) < job_id),
            )
        )
    query = query.order_by(col(Job.created_at).desc(), col(Job.id).desc()).limit(limit + 1)
    rows = list(session.exec(query).all())
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


# --------------------------------------------------------------------------- usage


@dataclass(frozen=True)
class UploadUsage:
    recent_count: int  # uploads created after `recent_since`
    recent_oldest: datetime | None
    window_bytes: int  # bytes of uploads created after `window_since`
    window_oldest: datetime | None


def upload_usage(
    *, session: Session, owner_id: str, recent_since: datetime, window_since: datetime
) -> UploadUsage:
    """An owner's recent uploads (for a per-minute limit) and a longer window's bytes (for a
    daily volume), in one query over the (owner_id, created_at) index."""
    recent = col(Upload.created_at) > recent_since
    row = session.exec(
        select(
            func.count(case((recent, 1))),
            func.min(case((recent, Upload.created_at))),
            func.coalesce(func.sum(Upload.size_bytes), 0),
            func.min(Upload.created_at),
        ).where(Upload.owner_id == owner_id, col(Upload.created_at) > window_since)
    ).one()
    return UploadUsage(int(row[0]), as_utc(row[1]), int(row[2]), as_utc(row[3]))


def active_jobs(*, session: Session, owner_id: str) -> int:
    return int(
        session.exec(
            select(func.count()).where(Job.owner_id == owner_id, col(Job.status).in_(ACTIVE))
        ).one()
    )


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


def start_attempt(*, session: Session, job_id: str, token: str | None = None) -> Job | None:
    """Mark an active job processing and count the attempt; None if finished or not ours."""
    now = utcnow()
    result = session.execute(
        _update_job()
        .where(*_owned(job_id, token), col(Job.status).in_(ACTIVE))
        .values(
            status=JobStatus.processing,
            attempts=Job.attempts + 1,
            progress=0,
            started_at=now,
            updated_at=now,
            error_code=None,
            error_message=None,
        )
    )
    session.commit()
    if result.rowcount == 0:  # type: ignore[attr-defined]
        return None
    job = session.get(Job, job_id)
    if job is not None:
        session.refresh(job)
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
    token: str | None = None,
) -> bool:
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


def stale_processing(*, session: Session, older_than: datetime, limit: int = 100) -> list[str]:
    """Jobs said to be processing whose worker stopped renewing the lease."""
    rows = session.exec(
        select(Job.id)
        .where(col(Job.status) == JobStatus.processing, col(Job.updated_at) < older_than)
        .limit(limit)
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


def expired_unused_uploads(*, session: Session, now: datetime, limit: int = 100) -> list[Upload]:
    used = select(Job.upload_id)
    rows = session.exec(
        select(Upload).where(col(Upload.expires_at) < now, col(Upload.id).not_in(used)).limit(limit)
    ).all()
    return list(rows)


def delete_upload(*, session: Session, upload_id: str) -> None:
    upload = session.get(Upload, upload_id)
    if upload is not None:
        session.delete(upload)
        session.commit()
