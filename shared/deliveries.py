"""Delivery rows: recording an event's deliveries, claiming due ones, recording outcomes.

Each row is one attempt on one channel. The notifier records an event's first attempts
when the event arrives (then acks it); its sender claims due rows, sends, and records the
outcome together with the next attempt, if any, in one transaction. A row claimed by a
notifier that died is due again after `notify_claim_timeout_s`, and is sent again with the
same event id: at-least-once, and receivers dedupe on `webhook-id`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from shared.config import Settings
from shared.errors import NotFoundError
from shared.events import JobEvent, event_id
from shared.models import TERMINAL_STATUSES, Delivery, DeliveryStatus, Job, as_utc, utcnow
from shared.notify_settings import targets_for


def backoff_s(settings: Settings, attempt: int) -> float:
    """Delay between attempt ``attempt`` (1-based) failing and the next one."""
    delay = settings.notify_backoff_base_s * settings.notify_backoff_factor ** (attempt - 1)
    return float(min(delay, settings.notify_backoff_max_s))


def record_event(*, session: Session, event: JobEvent) -> list[Delivery]:
    """The event's first attempt on each channel its job asks for; nothing if recorded
    before (a redelivered event) or if the job no longer exists."""
    job = session.get(Job, event.job_id)
    if job is None:
        return []
    targets = targets_for(session=session, job=job)
    rows: list[Delivery] = []
    if targets.webhook_url:
        rows.append(_row(job, event, "webhook", targets.webhook_url))
    if targets.email:
        rows.append(_row(job, event, "email", job.owner_id))
    if not rows:
        return []
    session.add_all(rows)
    try:
        session.commit()
    except IntegrityError:  # recorded by an earlier copy of this event
        session.rollback()
        return []
    return rows


def record_missed_events(
    *, session: Session, finished_after: datetime, finished_before: datetime, limit: int = 200
) -> tuple[int, datetime]:
    """Record the events of jobs that finished in the window and have no delivery yet.

    The worker publishes an event after storing the outcome; if the broker refused that
    publish, this finds the job instead. The event id is derived as the worker derives it,
    so an event that did arrive, or arrives later, is recorded once. Jobs are taken oldest
    first; returns how many events were recorded and how far the window was covered (pass
    it as the next `finished_after`).
    """
    has_delivery = select(Delivery.id).where(col(Delivery.job_id) == col(Job.id)).exists()
    candidates = session.exec(
        select(Job)
        .where(
            col(Job.status).in_(list(TERMINAL_STATUSES)),
            col(Job.finished_at) > finished_after,
            col(Job.finished_at) <= finished_before,
            ~has_delivery,
        )
        .order_by(col(Job.finished_at))
        .limit(limit)
    ).all()
    recorded = 0
    for job in candidates:
        event_type = "job.completed" if job.status == "completed" else "job.failed"
        event = JobEvent(
            id=event_id(job.id, job.dispatch_token, event_type),
            type=event_type,
            job_id=job.id,
            at=as_utc(job.finished_at) or utcnow(),
        )
        recorded += len(record_event(session=session, event=event)) > 0
    if len(candidates) < limit:
        return recorded, finished_before
    covered = as_utc(candidates[-1].finished_at)
    return recorded, covered or finished_before


def _row(job: Job, event: JobEvent, channel: str, target: str) -> Delivery:
    return Delivery(
        job_id=job.id,
        owner_id=job.owner_id,
        event_id=event.id,
        event_type=event.type,
        channel=channel,
        target=target,
        event_at=event.at,
    )


def _another_attempt(row: Delivery, *, attempt: int, due: datetime) -> Delivery:
    """A new attempt at the same event on the same channel (same `webhook-id`)."""
    return Delivery(
        job_id=row.job_id,
        owner_id=row.owner_id,
        event_id=row.event_id,
        event_type=row.event_type,
        channel=row.channel,
        target=row.target,
        attempt=attempt,
        scheduled_at=due,
        event_at=row.event_at,
    )


def claim_due(
    *, session: Session, settings: Settings, limit: int = 20, now: datetime | None = None
) -> list[Delivery]:
    """Mark due rows sending (this notifier's); rows another notifier claimed are skipped."""
    now = now or utcnow()
    abandoned = now - timedelta(seconds=settings.notify_claim_timeout_s)
    due = or_(
        and_(col(Delivery.status) == DeliveryStatus.pending, col(Delivery.scheduled_at) <= now),
        and_(col(Delivery.status) == DeliveryStatus.sending, col(Delivery.claimed_at) < abandoned),
    )
    ids = session.exec(
        select(Delivery.id).where(due).order_by(col(Delivery.scheduled_at)).limit(limit)
    ).all()
    claimed: list[Delivery] = []
    for delivery_id in ids:
        result = session.execute(
            update(Delivery)
            .where(col(Delivery.id) == delivery_id, due)
            .values(status=DeliveryStatus.sending, claimed_at=now)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        if result.rowcount:  # type: ignore[attr-defined]
            row = session.get(Delivery, delivery_id, populate_existing=True)
            if row is not None:
                claimed.append(row)
    return claimed


def record_outcome(
    *,
    session: Session,
    settings: Settings,
    delivery: Delivery,
    ok: bool,
    status_code: int | None = None,
    error: str | None = None,
) -> Delivery | None:
    """Store an attempt's outcome and, when it failed and attempts remain, schedule the
    next attempt. The next attempt's row, or None."""
    now = utcnow()
    next_row: Delivery | None = None
    if not ok and delivery.attempt < settings.notify_max_attempts:
        due = now + timedelta(seconds=backoff_s(settings, delivery.attempt))
        next_row = _another_attempt(delivery, attempt=delivery.attempt + 1, due=due)
    delivery.status = DeliveryStatus.succeeded if ok else DeliveryStatus.failed
    delivery.finished_at = now
    delivery.status_code = status_code
    delivery.error = error[:512] if error else None
    delivery.next_retry_at = next_row.scheduled_at if next_row else None
    session.add(delivery)
    if next_row is not None:
        session.add(next_row)
    try:
        session.commit()
    except IntegrityError:  # another notifier sent this attempt too and got there first
        session.rollback()
        return None
    return next_row


def list_for_job(*, session: Session, job_id: str) -> list[Delivery]:
    return list(
        session.exec(
            select(Delivery)
            .where(col(Delivery.job_id) == job_id)
            .order_by(col(Delivery.created_at), col(Delivery.attempt))
        ).all()
    )


def retry(*, session: Session, job_id: str, delivery_id: str) -> Delivery:
    """Send a delivery's event again now, as a new attempt on the same channel."""
    old = session.get(Delivery, delivery_id)
    if old is None or old.job_id != job_id:
        raise NotFoundError("No delivery of this job has that id.", code="delivery_not_found")
    same_event = (col(Delivery.event_id) == old.event_id, col(Delivery.channel) == old.channel)
    waiting = session.exec(
        select(Delivery).where(*same_event, col(Delivery.status) == DeliveryStatus.pending)
    ).first()
    if waiting is not None:  # a retry is already scheduled: bring it forward
        waiting.scheduled_at = utcnow()
        session.add(waiting)
        session.commit()
        session.refresh(waiting)
        return waiting
    last = session.exec(select(func.max(Delivery.attempt)).where(*same_event)).one()
    row = _another_attempt(old, attempt=(last or 0) + 1, due=utcnow())
    session.add(row)
    session.commit()
    session.refresh(row)
    return row
