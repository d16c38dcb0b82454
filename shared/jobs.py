"""Job and upload state transitions: the only code that writes those rows.

Keyword-only functions taking a Session, used by the API (create, read, list) and the
worker (start, progress, finish). Transitions are guarded in SQL so that a late or
duplicate worker can never move a finished job backwards.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from shared.errors import ConflictError, NotFoundError
from shared.models import Job, JobStatus, Upload, UploadTally, User, as_utc, new_id, utcnow

ACTIVE = (JobStatus.queued, JobStatus.processing)


# --------------------------------------------------------------------------- uploads


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


def fetch_job(*, conn: Connection, job_id: str, owner_id: str) -> Job:
    """`get_job` in one Core statement on a connection: the API's read of a job."""
    row = conn.execute(_SELECT_JOB, {"job_id": job_id}).first()
    if row is None or row.owner_id != owner_id:
        raise NotFoundError("No job has that id.", code="job_not_found")
    return Job(**row._mapping)


_job = Job.__table__  # type: ignore[attr-defined]
_SELECT_JOB = select(_job).where(_job.c.id == bindparam("job_id"))


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


MINUTE_S = 60.0
DAY_S = 86400.0
RECENT_SPAN_S = 1  # tally buckets for the per-minute limit
WINDOW_SPAN_S = 60  # tally buckets for the daily volume
_tally = UploadTally.__table__  # type: ignore[attr-defined]
_upload = Upload.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class UploadUsage:
    recent_count: int  # uploads of the last minute
    recent_oldest: datetime | None  # when the oldest of them stops counting, minus a minute
    window_bytes: int  # bytes of the last day's uploads
    window_oldest: datetime | None  # when the oldest of them stops counting, minus a day

    def plus(self, size_bytes: int, at: datetime) -> UploadUsage:
        """This usage with one more upload, made at `at`."""
        return UploadUsage(
            self.recent_count + 1,
            self.recent_oldest or at,
            self.window_bytes + size_bytes,
            self.window_oldest or at,
        )


def _usage_statement() -> Any:
    span, last_at, start = _tally.c.span_s, _tally.c.last_at, _tally.c.start_s
    recent = and_(
        span == RECENT_SPAN_S,
        start > bindparam("recent_start"),
        last_at > bindparam("recent_since"),
    )
    window = and_(
        span == WINDOW_SPAN_S,
        start > bindparam("window_start"),
        last_at > bindparam("window_since"),
    )
    return select(
        func.coalesce(func.sum(case((span == RECENT_SPAN_S, _tally.c.uploads))), 0),
        func.min(case((span == RECENT_SPAN_S, last_at))),
        func.coalesce(func.sum(case((span == WINDOW_SPAN_S, _tally.c.bytes))), 0),
        func.min(case((span == WINDOW_SPAN_S, last_at))),
    ).where(_tally.c.owner_id == bindparam("owner_id"), or_(recent, window))


# Built once: building a SQLAlchemy statement costs more than SQLite takes to run it.
_USAGE = _usage_statement()


def upload_usage(*, conn: Connection, owner_id: str, now: datetime) -> UploadUsage:
    """An owner's uploads of the last minute and bytes of the last day, from the tally
    (at most 61 + 1441 rows however many uploads there were), in one query."""
    now_s = now.timestamp()
    recent_since, window_since = now_s - MINUTE_S, now_s - DAY_S
    row = conn.execute(
        _USAGE,
        {
            "owner_id": owner_id,
            "recent_start": recent_since - RECENT_SPAN_S,
            "recent_since": recent_since,
            "window_start": window_since - WINDOW_SPAN_S,
            "window_since": window_since,
        },
    ).one()
    return UploadUsage(int(row[0]), _from_unix(row[1]), int(row[2]), _from_unix(row[3]))


def _from_unix(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def lock_owners(*, conn: Connection, owner_ids: Iterable[str]) -> None:
    """Hold the owners' account rows until the transaction ends, so that two API
    processes checking one user's limits take turns (PostgreSQL; SQLite's BEGIN
    IMMEDIATE already serialises every writer)."""
    if conn.dialect.name == "sqlite":
        return
    account = User.__table__  # type: ignore[attr-defined]
    conn.execute(
        select(account.c.id)
        .where(account.c.id.in_(sorted(set(owner_ids))))
        .order_by(account.c.id)
        .with_for_update()
    )


@dataclass(frozen=True)
class NewUpload:
    id: str
    owner_id: str
    key: str
    filename: str
    content_type: str
    size_bytes: int
    expires_at: datetime


def record_uploads(*, conn: Connection, uploads: Sequence[NewUpload], now: datetime) -> None:
    """Insert upload rows made at `now` and count them in their owners' tally."""
    if not uploads:
        return
    conn.execute(
        _INSERT_UPLOADS,
        [
            {
                "id": u.id,
                "owner_id": u.owner_id,
                "key": u.key,
                "filename": u.filename,
                "content_type": u.content_type,
                "size_bytes": u.size_bytes,
                "created_at": now,
                "expires_at": u.expires_at,
            }
            for u in uploads
        ],
    )
    per_owner: dict[str, list[int]] = {}
    for u in uploads:
        count_bytes = per_owner.setdefault(u.owner_id, [0, 0])
        count_bytes[0] += 1
        count_bytes[1] += u.size_bytes
    now_s = now.timestamp()
    rows = [
        {
            "owner_id": owner,
            "span_s": span,
            "start_s": int(now_s // span) * span,
            "uploads": count,
            "bytes": size,
            "last_at": now_s,
        }
        for owner, (count, size) in per_owner.items()
        for span in (RECENT_SPAN_S, WINDOW_SPAN_S)
    ]
    conn.execute(_tally_upsert(conn.dialect.name), rows)


@cache
def _tally_upsert(dialect: str) -> Any:
    upsert = sqlite_insert(_tally) if dialect == "sqlite" else postgresql_insert(_tally)
    return upsert.on_conflict_do_update(
        index_elements=["owner_id", "span_s", "start_s"],
        set_={
            "uploads": _tally.c.uploads + upsert.excluded.uploads,
            "bytes": _tally.c.bytes + upsert.excluded.bytes,
            "last_at": case(
                (upsert.excluded.last_at > _tally.c.last_at, upsert.excluded.last_at),
                else_=_tally.c.last_at,
            ),
        },
    )


_INSERT_UPLOADS = insert(_upload)
_PRUNE_TALLY = delete(_tally).where(
    _tally.c.owner_id == bindparam("owner_id"),
    or_(
        and_(_tally.c.span_s == RECENT_SPAN_S, _tally.c.start_s < bindparam("recent_before")),
        and_(_tally.c.span_s == WINDOW_SPAN_S, _tally.c.start_s < bindparam("window_before")),
    ),
)


def prune_tally(*, conn: Connection, owner_id: str, now: datetime) -> None:
    """Drop an owner's tally buckets that no window reaches any more."""
    now_s = now.timestamp()
    conn.execute(
        _PRUNE_TALLY,
        {
            "owner_id": owner_id,
            "recent_before": now_s - MINUTE_S - 2 * RECENT_SPAN_S,
            "window_before": now_s - DAY_S - 2 * WINDOW_SPAN_S,
        },
    )


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
    """Mark an active job processing and count the attempt; None if finished or not ours.

    One statement (UPDATE … RETURNING) on the path of every job: the row comes back with
    the update, instead of being read again after it."""
    now = utcnow()
    job = session.scalars(
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
