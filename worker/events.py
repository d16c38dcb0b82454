"""Job events: published once a job's outcome is stored, for the notifier (shared/events.py)."""

from __future__ import annotations

import structlog

from shared.errors import QueueError
from shared.events import EventType, JobEvent, event_id
from shared.models import utcnow
from worker.context import JobContext

log = structlog.get_logger("worker")


def publish_outcome(ctx: JobContext, job_id: str, token: str | None, event_type: EventType) -> None:
    """Publish `job.completed` / `job.failed`; a broker failure is logged, never raised: the
    outcome is stored and the job's message must still be settled."""
    if ctx.events is None:
        return
    event = JobEvent(
        id=event_id(job_id, token or "", event_type), type=event_type, job_id=job_id, at=utcnow()
    )
    try:
        ctx.events.publish_event(event)
    except QueueError:
        log.warning("job_event_not_published", event_type=event_type, event_id=event.id)
