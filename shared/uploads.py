"""Upload rows: what a client may PUT, read back when it asks for a job, removed unused."""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel import Session, col, select

from shared.errors import ConflictError, GoneError, NotFoundError
from shared.models import Job, Upload, as_utc, utcnow
from shared.storage import Storage

_MEDIA_TYPE = re.compile(r"^(video|audio)/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


def is_accepted_content_type(content_type: str) -> bool:
    """Video and audio types, and application/octet-stream for clients that cannot tell."""
    return content_type == "application/octet-stream" or bool(_MEDIA_TYPE.match(content_type))


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


def get_upload(*, session: Session, upload_id: str, owner_id: str | None = None) -> Upload:
    """The upload; another owner's upload is reported exactly like a missing one."""
    upload = None if "\x00" in upload_id else session.get(Upload, upload_id)
    if upload is None or (owner_id is not None and upload.owner_id != owner_id):
        raise NotFoundError("No upload has that id.", code="upload_not_found")
    return upload


def has_job(*, session: Session, upload_id: str) -> bool:
    return session.exec(select(Job.id).where(Job.upload_id == upload_id)).first() is not None


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


def check_arrived(storage: Storage, upload: Upload) -> None:
    """ConflictError `upload_incomplete` unless storage holds the declared size;
    GoneError `upload_expired` when nothing came before the URL expired."""
    if upload.multipart_id is not None and upload.completed_at is None:
        raise ConflictError(
            "The multipart upload is not complete: send every part, then "
            f"POST /v1/uploads/{upload.id}/complete.",
            code="upload_incomplete",
        )
    info = storage.stat(upload.key)
    if info is not None and info.size_bytes == upload.size_bytes:
        return
    expires_at = as_utc(upload.expires_at)
    if info is None and expires_at is not None and expires_at < utcnow():
        raise GoneError(
            "The upload URL expired before the file arrived; start a new upload.",
            code="upload_expired",
        )
    got = "nothing" if info is None else f"{info.size_bytes} bytes"
    raise ConflictError(
        f"The upload is not complete: expected {upload.size_bytes} bytes, storage has {got}.",
        code="upload_incomplete",
    )
