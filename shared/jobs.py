"""Job rows: read, insert and delete.

Keyword-only functions taking a Session. The state transitions workers make are in
shared/job_transitions.py, the reaper's recovery in shared/job_recovery.py. Uploads live
in shared/uploads.py, limits in shared/limits.py, listing in shared/listing.py, and the
steps that combine them (create a job, dispatch it) in shared/services.py.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from shared.errors import ConflictError, NotFoundError
from shared.models import Job, JobStatus, Upload

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
