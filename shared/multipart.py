"""Multipart uploads: large files go straight to storage in parts, in parallel, resumable.

The API never sees a byte: it begins the upload in storage, presigns each part's PUT with
the part's size signed (so every part but the last has exactly ``part_size`` bytes), tells
a resuming client which parts storage already holds (ListParts), and joins the parts once
the client names them all with the ETags storage gave it.

Completion is checked against ListParts before storage is asked to join anything: a
missing part, a wrong ETag or a total other than the declared size is refused with its
own code, and the upload stays open for the client to fix it (some servers drop an upload
whose completion they refused).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import structlog
from sqlmodel import Session

from shared import uploads
from shared.config import MiB, Settings
from shared.errors import AppError, ConflictError, GoneError, InvalidRequestError
from shared.models import Upload, User, as_utc, utcnow
from shared.multipart_schemas import (
    MAX_PARTS,
    CompletedPart,
    MultipartPlan,
    PartUrl,
    StoredPart,
)
from shared.retention import INPUT_PREFIX
from shared.schemas import UploadCreate
from shared.storage import Storage

log = structlog.get_logger("multipart")


def plan_for(upload_in: UploadCreate, settings: Settings) -> MultipartPlan | None:
    """How a new upload is cut into parts, or None for a single PUT: files at or above the
    threshold, or any non-empty file the client asks to send in parts."""
    size = upload_in.size_bytes
    if size == 0 or not (upload_in.multipart or size >= settings.multipart_threshold_bytes):
        return None
    # At most 10,000 parts: larger files get larger parts, in whole MiB.
    smallest = math.ceil(math.ceil(size / MAX_PARTS) / MiB) * MiB
    part_size = max(settings.multipart_part_size_bytes, smallest)
    return MultipartPlan(part_size=part_size, part_count=math.ceil(size / part_size))


def plan_of(upload: Upload) -> MultipartPlan:
    part_size = upload.part_size or upload.size_bytes or 1
    return MultipartPlan(
        part_size=part_size, part_count=max(1, math.ceil(upload.size_bytes / part_size))
    )


def begin(*, storage: Storage, settings: Settings, upload: Upload, plan: MultipartPlan) -> None:
    """Begin the upload in storage and record it on ``upload`` (not yet saved)."""
    upload.multipart_id = storage.create_multipart(upload.key, content_type=upload.content_type)
    upload.part_size = plan.part_size
    upload.expires_at = upload.created_at + timedelta(seconds=settings.multipart_expires_s)


def abort_quietly(storage: Storage, upload: Upload) -> None:
    """Abort in storage when the row could not be saved; the reaper retries a failure."""
    if upload.multipart_id is None:
        return
    try:
        storage.abort_multipart(upload.key, upload_id=upload.multipart_id)
    except AppError:
        log.warning("multipart_abort_failed", upload_id=upload.id, exc_info=True)


def _open_upload(*, session: Session, user: User, upload_id: str) -> Upload:
    upload = uploads.get_upload(session=session, upload_id=upload_id, owner_id=user.id)
    if upload.multipart_id is None:
        raise ConflictError(
            "That upload is a single PUT, not a multipart upload.", code="upload_not_multipart"
        )
    if upload.completed_at is not None:
        raise ConflictError(
            "That upload is already complete; create a job with it.", code="upload_completed"
        )
    expires_at = as_utc(upload.expires_at)
    if expires_at is not None and expires_at < utcnow():
        raise GoneError(
            "The multipart upload expired before it was completed; start a new upload.",
            code="upload_expired",
        )
    return upload


def _part_size(upload: Upload, plan: MultipartPlan, number: int) -> int:
    if number < plan.part_count:
        return plan.part_size
    return upload.size_bytes - plan.part_size * (plan.part_count - 1)


def presign_parts(
    *,
    session: Session,
    storage: Storage,
    settings: Settings,
    user: User,
    upload_id: str,
    part_numbers: list[int],
) -> list[PartUrl]:
    """Short-lived PUT URLs for the given parts, each with its size signed."""
    upload = _open_upload(session=session, user=user, upload_id=upload_id)
    plan = plan_of(upload)
    outside = sorted({n for n in part_numbers if not 1 <= n <= plan.part_count})
    if outside:
        raise _out_of_range(plan, outside)
    assert upload.multipart_id is not None
    answer = []
    for number in dict.fromkeys(part_numbers):
        url, headers = storage.presign_part(
            upload.key,
            upload_id=upload.multipart_id,
            part_number=number,
            size_bytes=_part_size(upload, plan, number),
            expires_s=settings.multipart_part_url_expires_s,
        )
        answer.append(PartUrl(part_number=number, url=url, headers=headers))
    return answer


def stored_parts(
    *, session: Session, storage: Storage, user: User, upload_id: str
) -> list[StoredPart]:
    """The parts storage holds, so a client resumes by sending only the others."""
    upload = _open_upload(session=session, user=user, upload_id=upload_id)
    assert upload.multipart_id is not None
    parts = storage.list_parts(upload.key, upload_id=upload.multipart_id)
    if parts is None:
        raise _gone()
    return [StoredPart(part_number=p.number, size_bytes=p.size_bytes, etag=p.etag) for p in parts]


def complete(
    *, session: Session, storage: Storage, user: User, upload_id: str, parts: list[CompletedPart]
) -> Upload:
    """Join the parts into the object once every one is stored with the ETag the client
    names and they add up to the declared size; then check the object storage made."""
    upload = uploads.get_upload(session=session, upload_id=upload_id, owner_id=user.id)
    if upload.completed_at is not None and upload.multipart_id is not None:
        return upload  # a completion retried after its answer was lost
    upload = _open_upload(session=session, user=user, upload_id=upload_id)
    assert upload.multipart_id is not None
    plan = plan_of(upload)
    stored = storage.list_parts(upload.key, upload_id=upload.multipart_id)
    if stored is None:
        # Storage joined the parts but the answer or our record of it was lost.
        if _object_complete(storage, upload):
            return _mark_completed(session, upload)
        raise _gone()
    named = {p.part_number: p.etag for p in parts}
    extra = sorted(n for n in named if n > plan.part_count)
    if extra:
        raise _out_of_range(plan, extra)
    held = {p.number: p for p in stored}
    missing = [n for n in range(1, plan.part_count + 1) if n not in named or n not in held]
    if missing:
        where = "the request" if missing[0] not in named else "storage"
        raise ConflictError(
            f"The upload has {plan.part_count} parts; part {missing[0]} is missing from "
            f"{where}. Send it (GET the parts to see which storage holds), then complete again.",
            code="upload_part_missing",
        )
    wrong = [n for n, etag in named.items() if _etag(etag) != _etag(held[n].etag)]
    if wrong:
        raise ConflictError(
            f"Part {min(wrong)}'s ETag is not the one storage holds for it; send the ETag "
            "storage answered that part's PUT with.",
            code="upload_part_etag_mismatch",
        )
    total = sum(held[n].size_bytes for n in named)
    if total != upload.size_bytes:
        raise _incomplete(upload, total)
    storage.complete_multipart(
        upload.key, upload_id=upload.multipart_id, parts=[(n, held[n].etag) for n in sorted(named)]
    )
    if not _object_complete(storage, upload):
        info = storage.stat(upload.key)
        raise _incomplete(upload, 0 if info is None else info.size_bytes)
    return _mark_completed(session, upload)


def abort(*, session: Session, storage: Storage, user: User, upload_id: str) -> None:
    """Drop an upload that has no job: its parts or object, then its row."""
    upload = uploads.get_upload(session=session, upload_id=upload_id, owner_id=user.id)
    if uploads.has_job(session=session, upload_id=upload.id):
        raise ConflictError(
            "That upload has a job; it is removed with the job's input.",
            code="upload_already_used",
        )
    if upload.multipart_id is not None and upload.completed_at is None:
        storage.abort_multipart(upload.key, upload_id=upload.multipart_id)
    storage.delete(upload.key)
    uploads.delete_upload(session=session, upload_id=upload.id)
    log.info("upload_aborted", upload_id=upload.id)


def abort_abandoned(*, storage: Storage, settings: Settings, now: datetime) -> int:
    """Abort multipart uploads of inputs begun more than ``multipart_expires_s`` ago and
    still unfinished, with or without a row (an API that died between beginning one and
    recording it leaves none). Their rows go with the other expired uploads."""
    cutoff = now - timedelta(seconds=settings.multipart_expires_s)
    try:
        found = storage.multipart_uploads(INPUT_PREFIX)
    except AppError:
        # A server without the listing must not stop the reaper's other work; rows still
        # drive aborts of the uploads we recorded.
        log.warning("multipart_listing_failed", exc_info=True)
        return 0
    aborted = 0
    for upload in found:
        initiated = as_utc(upload.initiated)
        if initiated is not None and initiated < cutoff:
            try:
                storage.abort_multipart(upload.key, upload_id=upload.upload_id)
            except AppError:
                log.warning("multipart_abort_failed", key=upload.key, exc_info=True)
                continue
            aborted += 1
    return aborted


def _object_complete(storage: Storage, upload: Upload) -> bool:
    info = storage.stat(upload.key)
    return info is not None and info.size_bytes == upload.size_bytes


def _mark_completed(session: Session, upload: Upload) -> Upload:
    upload.completed_at = utcnow()
    session.add(upload)
    session.commit()
    session.refresh(upload)
    log.info("multipart_upload_completed", upload_id=upload.id, size_bytes=upload.size_bytes)
    return upload


def _etag(value: str) -> str:
    return value.strip().strip('"').lower()


def _incomplete(upload: Upload, got: int) -> ConflictError:
    return ConflictError(
        f"The upload is not complete: expected {upload.size_bytes} bytes, the parts hold {got}.",
        code="upload_incomplete",
    )


def _out_of_range(plan: MultipartPlan, numbers: list[int]) -> InvalidRequestError:
    return InvalidRequestError(
        f"Part numbers run from 1 to {plan.part_count} for this upload; "
        f"{', '.join(map(str, numbers[:10]))} is not among them.",
        code="part_number_out_of_range",
    )


def _gone() -> GoneError:
    return GoneError(
        "Storage no longer holds this multipart upload (aborted or expired); start a new upload.",
        code="upload_expired",
    )
