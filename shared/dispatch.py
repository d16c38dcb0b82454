"""Sending a job to the workers: the one way the API, the reaper and the dead-letter
tool put work on the queue.

- `dispatch`: publish the job's message, then mark the job published. A job whose
  publish failed stays unpublished, and the reaper sends it later.
- `redispatch`: a new dispatch token for a job found in an expected state, dispatched.
  The token changes so that any older copy of its message still in flight is dropped.
- `republish`: a queued job's message sent again under the same token, for a job whose
  message was lost. Same token: should the first copy still be waiting in the queue, the
  job keeps its place, and the copy that comes second is acked as a duplicate.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from shared import job_recovery, job_transitions
from shared.models import JobStatus
from shared.queue import JobMessage, Publisher


def dispatch(*, session: Session, publisher: Publisher, job_id: str, token: str) -> None:
    """Publish the job's message with its dispatch token, then mark the job published.

    QueueError when the broker refuses or cannot be reached; the job is then left
    unpublished."""
    publisher.publish(JobMessage(job_id=job_id, token=token))
    job_transitions.mark_published(session=session, job_id=job_id, token=token)


def redispatch(
    *,
    session: Session,
    publisher: Publisher,
    job_id: str,
    expect_status: JobStatus,
    older_than: datetime,
    reset_attempts: bool = False,
) -> bool:
    """Put a job back in the queue under a new dispatch token and dispatch it.

    False when the job was not in `expect_status` since before `older_than` (another
    worker got there first, or it moved on). A failed publish raises QueueError and leaves
    the job queued and unpublished, for the reaper's next pass.
    """
    token = job_recovery.redispatch(
        session=session,
        job_id=job_id,
        expect_status=expect_status,
        older_than=older_than,
        reset_attempts=reset_attempts,
    )
    if token is None:
        return False
    dispatch(session=session, publisher=publisher, job_id=job_id, token=token)
    return True


def republish(*, session: Session, publisher: Publisher, job_id: str, older_than: datetime) -> bool:
    """Send a queued job's message again if it was published before `older_than` and the
    job has not moved since; False when it moved (or another reaper took it). A failed
    publish raises QueueError and leaves the job unpublished, for the reaper's next pass."""
    token = job_recovery.take_for_republish(session=session, job_id=job_id, older_than=older_than)
    if token is None:
        return False
    dispatch(session=session, publisher=publisher, job_id=job_id, token=token)
    return True
