"""The event consumer: one pika consumer on the notify queue, with a prefetch.

Each event is recorded as its first delivery attempts in the database, then acked; the
sender thread does the sending. An event that cannot be recorded (database down) is
given back to the queue; one that cannot be parsed is dropped with a warning.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pika
import pika.exceptions
import structlog
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from notifier import metrics
from shared import deliveries
from shared.config import Settings
from shared.events import JobEvent, declare_events
from shared.queue import connection_parameters

log = structlog.get_logger("notifier")


class EventConsumer:
    def __init__(self, settings: Settings, engine: Engine, on_recorded: Callable[[], None]) -> None:
        self.settings = settings
        self.engine = engine
        self.on_recorded = on_recorded
        self.stopping = threading.Event()

    def run(self) -> None:
        """Consume until stopped, reconnecting with backoff when the broker goes away."""
        delay = 1.0
        while not self.stopping.is_set():
            try:
                self._consume()
                delay = 1.0
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.warning("broker_unavailable", error=repr(exc), retry_in_s=delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 30.0)

    def _consume(self) -> None:
        connection = pika.BlockingConnection(connection_parameters(self.settings))
        try:
            channel = connection.channel()
            declare_events(channel, self.settings)
            channel.basic_qos(prefetch_count=self.settings.notifier_prefetch)
            channel.basic_consume(self.settings.notify_queue_name, self._on_message)
            log.info("notifier_consuming", queue=self.settings.notify_queue_name)
            while not self.stopping.is_set():
                connection.process_data_events(time_limit=1.0)
        finally:
            if connection.is_open:
                connection.close()

    def _on_message(
        self, channel: BlockingChannel, method: Basic.Deliver, _props: BasicProperties, body: bytes
    ) -> None:
        tag = method.delivery_tag
        try:
            event = JobEvent.decode(body)
        except ValueError:
            log.warning("event_unreadable", size=len(body))
            channel.basic_reject(tag, requeue=False)
            return
        with structlog.contextvars.bound_contextvars(job_id=event.job_id, event_id=event.id):
            try:
                with Session(self.engine, expire_on_commit=False) as session:
                    rows = deliveries.record_event(session=session, event=event)
            except SQLAlchemyError:
                log.warning("database_unavailable", exc_info=True)
                time.sleep(1.0)
                channel.basic_nack(tag, requeue=True)
                return
            channel.basic_ack(tag)
            metrics.EVENTS.labels(event.type).inc()
            log.info("event_recorded", type=event.type, deliveries=len(rows))
        if rows:
            self.on_recorded()
