"""What the API does for a client, as steps that combine rows, limits, storage and queue.

- `create_upload`: check the request against the limits and record the upload, in one
  write transaction, and hand back a presigned PUT URL.
- `create_job`: an idempotent job for an upload whose bytes arrived (the active-jobs
  limit checked and the job inserted holding the owner's row), sent to the queue
  with `shared.dispatch.dispatch` (the reaper and the dead-letter tool send work the same
  way).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from shared import jobs, limits, multipart, upload_probe, uploads
from shared.config import Settings
from shared.db import write_transaction
from shared.dispatch import dispatch
from shared.errors import ConflictError, QueueError, TooLargeError, UnsupportedTypeError
from shared.models import Job, Upload, User, new_id, utcnow
from shared.multipart_schemas import MultipartPlan
from shared.queue import Publisher
from shared.schemas import JobCreate, UploadCreate
from shared.storage import Storage, sanitize_filename
from shared.webhook_targets import check_webhook_url


@dataclass(frozen=True)
class PresignedUpload:
    upload: Upload
    url: str | None  # None for a multipart upload, whose parts are presigned on demand
    headers: dict[str, str]
    multipart: MultipartPlan | None = None


def create_upload(
    *, session: Session, storage: Storage, settings: Settings, user: User, upload_in: UploadCreate
) -> PresignedUpload:
    """Reserve an upload for `user` and presign its PUT (size and type signed), or begin
    it in storage as a multipart upload when it is large (shared/multipart.py).

    TooLargeError, UnsupportedTypeError or RateLimitError when it is refused. The limits
    are checked and the row inserted in one write transaction holding the owner's row.
    """
    if upload_in.size_bytes > settings.max_upload_bytes:
        raise TooLargeError(
            f"The file is {uploads.human_bytes(upload_in.size_bytes)}; the largest accepted is "
            f"{uploads.human_bytes(settings.max_upload_bytes)}.",
            code="upload_too_large",
        )
    if not uploads.is_accepted_content_type(upload_in.content_type):
        raise UnsupportedTypeError(
            f"Files of type {upload_in.content_type!r} are not accepted; send a video or audio "
            "file (video/*, audio/* or application/octet-stream).",
        )
    now, upload_id = utcnow(), new_id()
    name = sanitize_filename(upload_in.filename, default="video")
    upload = Upload(
        id=upload_id,
        owner_id=user.id,
        key=f"uploads/{user.id}/{upload_id}/{name}",  # namespaced per user
        filename=upload_in.filename,
        content_type=upload_in.content_type,
        size_bytes=upload_in.size_bytes,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.upload_url_expires_s),
    )
    plan = multipart.plan_for(upload_in, settings)
    url: str | None = None
    headers: dict[str, str] = {}
    if plan is None:
        url, headers = storage.presign_put(
            upload.key,
            content_type=upload.content_type,
            size_bytes=upload.size_bytes,
            expires_s=settings.upload_url_expires_s,
        )
    else:
        multipart.begin(storage=storage, settings=settings, upload=upload, plan=plan)
    try:
        with write_transaction(session):
            limits.lock_owner(session=session, owner_id=user.id)
            now = upload.created_at = utcnow()  # the time the limits hold at, once locked
            usage = limits.upload_usage(session=session, owner_id=user.id, now=now)
            limits.check_upload(
                usage=usage, user=user, settings=settings, size_bytes=upload.size_bytes, now=now
            )
            session.add(upload)
            limits.count_upload(
                session=session, owner_id=user.id, size_bytes=upload.size_bytes, now=now
            )
    except Exception:
        multipart.abort_quietly(storage, upload)
        raise
    return PresignedUpload(upload=upload, url=url, headers=headers, multipart=plan)


@dataclass(frozen=True)
class CreatedJob:
    job: Job
    replayed: bool  # an earlier request with the same Idempotency-Key made it


def request_hash(job_in: JobCreate) -> str:
    """Options left at their defaults do not count: a request naming `"format": "mp3"`
    is the same request as one leaving it out (and as one made before formats existed)."""
    data = job_in.model_dump(mode="json", exclude_none=True)
    data["options"] = job_in.options.model_dump(mode="json", exclude_defaults=True)
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


def create_job(
    *,
    session: Session,
    storage: Storage,
    publisher: Publisher,
    settings: Settings,
    user: User,
    job_in: JobCreate,
    idempotency_key: str | None = None,
) -> CreatedJob:
    """Queue a conversion of an upload whose bytes are in storage, and dispatch it.

    With an idempotency key, a repeat of the same request returns the same job; the same
    key with another body is ConflictError `idempotency_key_reused`. If the broker
    refuses the message the job is deleted again and QueueError raised: nothing is left
    half-created, and a retry with the same key is safe.
    """
    digest = request_hash(job_in)
    if idempotency_key:
        replay = _replay(session, user, idempotency_key, digest)
        if replay is not None:
            return replay
    upload = uploads.get_upload(session=session, upload_id=job_in.upload_id, owner_id=user.id)
    if uploads.has_job(session=session, upload_id=upload.id):
        raise ConflictError(
            "That upload already has a job; upload the file again to convert it again.",
            code="upload_already_used",
        )
    notify = _checked_notify(job_in, settings)
    uploads.check_arrived(storage, upload)
    upload_probe.check_trim(upload, job_in.options)
    try:
        # The active-jobs limit is checked and the job inserted while the owner's row is
        # held, as for uploads: two API processes cannot both let the last job in.
        with write_transaction(session):
            limits.lock_owner(session=session, owner_id=user.id)
            limits.check_job(session=session, user=user, settings=settings)
            job = jobs.insert_job(
                session=session,
                upload=upload,
                options=job_in.options.model_dump(exclude_none=True),
                idempotency_key=idempotency_key,
                request_hash=digest,
                notify=notify,
            )
    except ConflictError:
        if idempotency_key:  # a concurrent request with the same key won the race
            replay = _replay(session, user, idempotency_key, digest)
            if replay is not None:
                return replay
        raise
    try:
        dispatch(session=session, publisher=publisher, job_id=job.id, token=job.dispatch_token)
    except QueueError:
        jobs.delete_job(session=session, job_id=job.id)
        raise
    return CreatedJob(job=job, replayed=False)


def _checked_notify(job_in: JobCreate, settings: Settings) -> dict[str, Any] | None:
    """The request's `notify` as given, its webhook URL checked (422 webhook_url_not_allowed)."""
    if job_in.notify is None:
        return None
    if job_in.notify.webhook_url is not None:
        check_webhook_url(
            job_in.notify.webhook_url, allow_private=settings.webhook_allow_private_targets
        )
    return job_in.notify.model_dump(exclude_unset=True)


def _replay(session: Session, user: User, key: str, digest: str) -> CreatedJob | None:
    existing = jobs.find_by_idempotency_key(session=session, key=key, owner_id=user.id)
    if existing is None:
        return None
    if existing.request_hash != digest:
        raise ConflictError(
            "That Idempotency-Key was already used with a different request body.",
            code="idempotency_key_reused",
        )
    return CreatedJob(job=existing, replayed=True)
