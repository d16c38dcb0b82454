"""A user's jobs, newest first, keyset-paginated on (created_at, id) with opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from shared.errors import InvalidRequestError
from shared.models import Job, JobStatus, as_utc


def encode_cursor(job: Job) -> str:
    created = as_utc(job.created_at)
    assert created is not None
    raw = json.dumps([created.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) of the last job of a page; InvalidRequestError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_s, job_id = json.loads(raw)
        if "\x00" in str(job_id):
            raise ValueError("NUL in a job id")
        return datetime.fromisoformat(created_s), str(job_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidRequestError(
            "The cursor is not one this API handed out.", code="invalid_cursor"
        ) from exc


def list_jobs(
    *,
    session: Session,
    owner_id: str,
    status: JobStatus | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Job], str | None]:
    """One page of an owner's jobs and the cursor of the next page (None on the last)."""
    query = select(Job).where(Job.owner_id == owner_id)
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
