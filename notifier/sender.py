"""The delivery loop: claim due deliveries, send each, record the outcome.

Runs on its own thread beside the event consumer. It wakes when the consumer records an
event and otherwise every `notify_poll_interval_s`, which is also when retries whose
backoff has passed are picked up: the database, not the broker, holds the schedule.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from notifier import mail, metrics, webhook
from shared import deliveries, notify_settings
from shared.config import Settings
from shared.errors import AppError
from shared.models import Delivery, Job, User, as_utc, utcnow
from shared.schemas import JobPublic
from shared.webhook_targets import check_webhook_url

log = structlog.get_logger("notifier")


class Sender:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._client = webhook.make_client(settings.webhook_timeout_s)
        self._thread = threading.Thread(target=self.run, name="sender", daemon=True)
        # How far back the sweep has looked: the whole window once after a start.
        self._swept_until = utcnow() - timedelta(seconds=settings.notify_sweep_window_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout)
        self._client.close()

    def run(self) -> None:
        next_sweep = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_sweep:
                    self.sweep()
                    next_sweep = time.monotonic() + self.settings.notify_sweep_interval_s
                sent = self.run_once()
            except SQLAlchemyError:
                log.warning("database_unavailable", exc_info=True)
                sent = 0
            if not sent:
                self.wake.wait(self.settings.notify_poll_interval_s)
                self.wake.clear()

    def sweep(self) -> int:
        """Record events the broker never brought (a publish the worker could not make)."""
        before = utcnow() - timedelta(seconds=self.settings.notify_sweep_grace_s)
        with Session(self.engine, expire_on_commit=False) as session:
            recorded, self._swept_until = deliveries.record_missed_events(
                session=session, finished_after=self._swept_until, finished_before=before
            )
        if recorded:
            log.warning("missed_events_recorded", count=recorded)
        return recorded

    def run_once(self) -> int:
        """Claim and send what is due now; how many were sent."""
        with Session(self.engine, expire_on_commit=False) as session:
            claimed = deliveries.claim_due(session=session, settings=self.settings)
            for row in claimed:
                if self._stop.is_set():
                    break  # left claimed: due again after the claim timeout
                with structlog.contextvars.bound_contextvars(
                    job_id=row.job_id, delivery_id=row.id, channel=row.channel, attempt=row.attempt
                ):
                    self.deliver(session, row)
            return len(claimed)

    def deliver(self, session: Session, row: Delivery) -> None:
        started = time.monotonic()
        ok, status_code, error = self._attempt(session, row)
        metrics.DELIVERY_DURATION.labels(row.channel).observe(time.monotonic() - started)
        metrics.DELIVERIES.labels(row.channel, "succeeded" if ok else "failed").inc()
        next_row = deliveries.record_outcome(
            session=session,
            settings=self.settings,
            delivery=row,
            ok=ok,
            status_code=status_code,
            error=error,
        )
        if ok:
            event_at = as_utc(row.event_at)
            if event_at is not None:
                latency = (utcnow() - event_at).total_seconds()
                metrics.DELIVERY_LATENCY.labels(row.channel).observe(max(0.0, latency))
            log.info("delivery_succeeded", status_code=status_code)
        else:
            retry_at = next_row.scheduled_at.isoformat() if next_row else None
            log.info(
                "delivery_failed", status_code=status_code, error=error, next_retry_at=retry_at
            )

    def _attempt(self, session: Session, row: Delivery) -> tuple[bool, int | None, str | None]:
        job = session.get(Job, row.job_id)
        if job is None:
            return False, None, "job_deleted"
        public = JobPublic.from_job(job)
        if row.channel == "email":
            return self._email(session, row, public)
        try:
            check_webhook_url(row.target, allow_private=self.settings.webhook_allow_private_targets)
        except AppError as exc:
            return False, None, f"{exc.code}: {exc.message}"
        secrets = notify_settings.signing_secrets(session=session, account_id=row.owner_id)
        payload = webhook.body(row.event_type, row.event_at, public)
        result = webhook.send(
            self._client, row.target, payload, webhook.headers(row.event_id, payload, secrets)
        )
        return result.ok, result.status_code, result.error

    def _email(
        self, session: Session, row: Delivery, job: JobPublic
    ) -> tuple[bool, int | None, str | None]:
        user = session.get(User, row.owner_id)
        if user is None:
            return False, None, "account_deleted"
        if self.settings.smtp_url is None:
            return False, None, "smtp_not_configured: V2M_SMTP_URL is not set"
        msg = mail.build(
            job=job,
            to=user.email,
            sender=self.settings.mail_from,
            public_url=self.settings.public_url,
        )
        try:
            mail.send(
                msg,
                self.settings.smtp_url.get_secret_value(),
                timeout_s=self.settings.smtp_timeout_s,
            )
        except (OSError, ValueError) as exc:  # smtplib.SMTPException is an OSError
            return False, None, f"smtp_error: {exc}"[:512]
        return True, None, None
