"""Retention: how long MP3s and inputs are kept, and the job rows that record it.

- An MP3 expires ``output_retention_days`` after its job completed (``output_expires_at``,
  set on completion). Where the storage server has lifecycle rules, one on the
  ``outputs/`` prefix deletes it (``lifecycle_rule``); the reaper deletes it everywhere
  and marks the row (``output_expired_at``). Job rows are never deleted.
- An MP3 found missing before its date (an operator deleted it, storage lost it) is
  marked the same way, by the download that found it.
- An input is deleted once its job is finished for good (``input_removed_at``): at once
  when it completed or failed permanently; a job that ran out of attempts sits in the
  dead-letter queue, where an operator may replay it, so its input is kept for the
  retention period too.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, select

from shared.config import Settings
from shared.models import Job, JobStatus

OUTPUT_PREFIX = "outputs/"
LIFECYCLE_RULE_ID = "v2m-output-retention"
INPUT_PREFIX = "uploads/"
ABORT_RULE_ID = "v2m-abort-incomplete-uploads"
# The error codes of jobs whose message was dead-lettered and may be replayed
# (worker/handlers.py, worker/reaper.py): their inputs stay for the replay window.
DEAD_LETTERED_CODES = ("retries_exhausted", "worker_crashed")


def retention(settings: Settings) -> timedelta:
    return timedelta(days=settings.output_retention_days)


def output_expires_at(settings: Settings, completed_at: datetime) -> datetime:
    return completed_at + retention(settings)


def lifecycle_rule(settings: Settings) -> dict[str, Any]:
    """The bucket lifecycle rule that expires MP3s. Lifecycle rules count whole days, so
    a fraction rounds up: the rule is the backstop, the reaper keeps the exact date."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Filter": {"Prefix": OUTPUT_PREFIX},
        "Status": "Enabled",
        "Expiration": {"Days": max(1, math.ceil(settings.output_retention_days))},
    }


def abort_incomplete_rule(settings: Settings) -> dict[str, Any]:
    """The bucket lifecycle rule that aborts multipart uploads of inputs left unfinished
    (whole days, rounded up: the reaper aborts them at ``multipart_expires_s``)."""
    return {
        "ID": ABORT_RULE_ID,
        "Filter": {"Prefix": INPUT_PREFIX},
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {
            "DaysAfterInitiation": max(1, math.ceil(settings.multipart_expires_s / 86400))
        },
    }


def outputs_due(*, session: Session, now: datetime, limit: int = 100) -> list[tuple[str, str]]:
    """(job id, output key) of MP3s past their date and not yet marked expired."""
    rows = session.exec(
        select(Job.id, Job.output_key)
        .where(
            col(Job.output_expired_at).is_(None),
            col(Job.output_expires_at) <= now,
            col(Job.output_key).is_not(None),
        )
        .limit(limit)
    ).all()
    return [(job_id, key) for job_id, key in rows if key]


def mark_output_expired(*, session: Session, job_id: str, now: datetime) -> bool:
    """Record that the job's MP3 is gone; False if it was recorded already."""
    result = session.execute(
        update(Job)
        .execution_options(synchronize_session=False)
        .where(col(Job.id) == job_id, col(Job.output_expired_at).is_(None))
        .values(output_expired_at=now)
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def inputs_due(
    *, session: Session, settings: Settings, now: datetime, limit: int = 100
) -> list[tuple[str, str]]:
    """(job id, input key) of inputs whose job is finished for good, not yet removed."""
    replay_window_ended = now - retention(settings)
    rows = session.exec(
        select(Job.id, Job.input_key)
        .where(
            col(Job.input_removed_at).is_(None),
            or_(
                col(Job.status) == JobStatus.completed,
                and_(
                    col(Job.status) == JobStatus.failed,
                    or_(
                        col(Job.error_code).is_(None),
                        col(Job.error_code).not_in(DEAD_LETTERED_CODES),
                        col(Job.finished_at) < replay_window_ended,
                    ),
                ),
            ),
        )
        .limit(limit)
    ).all()
    return [(job_id, key) for job_id, key in rows]


def mark_input_removed(*, session: Session, job_id: str, now: datetime) -> None:
    session.execute(
        update(Job)
        .execution_options(synchronize_session=False)
        .where(col(Job.id) == job_id)
        .values(input_removed_at=now)
    )
    session.commit()
