"""The worker's side of retention (shared/retention.py): the reaper's pass that deletes
expired MP3s and the inputs of finished jobs, and the check that names a job's missing
input.

Deleting an object that is already gone is fine in S3, so a bucket lifecycle rule that
got there first, or two workers' reapers on the same row, change nothing.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlmodel import Session

from shared import retention
from shared.config import Settings
from shared.errors import AppError, GoneError, StorageError
from shared.storage import Storage

log = structlog.get_logger("worker.retention")


def sweep(
    *, session: Session, storage: Storage, settings: Settings, now: datetime
) -> dict[str, int]:
    """One pass: MP3s past their date deleted and marked expired, inputs of finished
    jobs deleted; how many of each."""
    counts = {"outputs_expired": 0, "inputs_removed": 0}
    for job_id, key in retention.outputs_due(session=session, now=now):
        storage.delete(key)
        if retention.mark_output_expired(session=session, job_id=job_id, now=now):
            counts["outputs_expired"] += 1
    for job_id, key in retention.inputs_due(session=session, settings=settings, now=now):
        storage.delete(key)
        retention.mark_input_removed(session=session, job_id=job_id, now=now)
        counts["inputs_removed"] += 1
    if any(counts.values()):
        log.info("retention_applied", **counts)
    return counts


def missing_input(exc: AppError, input_key: str, storage: Storage) -> AppError:
    """``exc`` as GoneError `input_missing` (permanent) when the job failed because its
    input is no longer in storage; ``exc`` itself otherwise.

    ffmpeg reports a missing input as an HTTP error, which reads like a storage outage
    (retryable); a stat tells the two apart, and only on that failure path."""
    if not isinstance(exc, StorageError):
        return exc
    try:
        present = storage.stat(input_key) is not None
    except StorageError:
        return exc
    if present:
        return exc
    return GoneError(
        "The uploaded file is no longer in storage, so it cannot be converted; upload it again.",
        code="input_missing",
        detail=exc.detail,
    )
