"""RabbitMQ topology, the job message, and a thread-safe publisher with confirms.

Topology for a base queue name ``q`` (names derived in one place, ``queue_names``):

    q            quorum queue the workers consume; x-delivery-limit stops a message that
                 keeps killing workers from looping forever; dead-letters to q.dlq
    q.retry.N    classic queues with a TTL of the N-th backoff step; expired messages
                 dead-letter back to q (RabbitMQ does the waiting, not the consumer)
    q.dlq        what cannot succeed: poison messages and exhausted retries
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.config import Settings
from shared.errors import QueueError
from shared.events import JobEvent, declare_events

MESSAGE_VERSION = 1


class JobMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    v: int = MESSAGE_VERSION
    job_id: str
    attempt: int = 1
    token: str | None = None  # the job's dispatch token; older copies are ignored
    # Set for one segment of a split job (shared/segments.py): its index.
    segment: int | None = None
    # Set by the consumer from the delivery, never sent: the broker gave this copy back
    # (its worker died, lost its connection, or gave it back), so its job may be running.
    redelivered: bool = Field(default=False, exclude=True)

    def encode(self) -> bytes:
        # A whole job's message carries no segment field: its format predates split jobs.
        return self.model_dump_json(exclude={"segment"} if self.segment is None else None).encode()

    @classmethod
    def decode(cls, body: bytes) -> JobMessage:
        """Raises ValueError for anything that is not a job message (poison)."""
        try:
            return cls.model_validate(json.loads(body))
        except (ValidationError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("not a job message") from exc


@dataclass(frozen=True)
class QueueNames:
    main: str
    dlq: str
    retry_prefix: str

    def retry(self, attempt: int) -> str:
        return f"{self.retry_prefix}{attempt}"


def queue_names(base: str) -> QueueNames:
    return QueueNames(main=base, dlq=f"{base}.dlq", retry_prefix=f"{base}.retry.")


def backoff_ms(settings: Settings, attempt: int) -> int:
    """Upper bound of the delay before retry number ``attempt`` (1-based), in ms."""
    delay = settings.retry_backoff_base_s * (2 ** (attempt - 1))
    return int(min(delay, settings.retry_backoff_max_s) * 1000)


def delivery_limit(settings: Settings) -> int:
    """Deliveries the main queue allows a message past its first, and the most times a
    job may be started before a lapsed lease fails it (`worker_crashed`)."""
    return settings.max_attempts + 2


def declare_topology(channel: BlockingChannel, settings: Settings) -> QueueNames:
    names = queue_names(settings.queue_name)
    channel.queue_declare(queue=names.dlq, durable=True)
    channel.queue_declare(
        queue=names.main,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit(settings),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": names.dlq,
        },
    )
    for attempt in range(1, settings.max_attempts):
        channel.queue_declare(
            queue=names.retry(attempt),
            durable=True,
            arguments={
                "x-message-ttl": backoff_ms(settings, attempt),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": names.main,
            },
        )
    return names


def connection_parameters(settings: Settings, *, heartbeat: int = 30) -> pika.URLParameters:
    params = pika.URLParameters(settings.amqp_url)
    params.heartbeat = heartbeat
    params.blocked_connection_timeout = settings.publish_timeout_s * 6
    params.socket_timeout = settings.publish_timeout_s
    params.connection_attempts = 1
    params.client_properties = {"connection_name": "video2mp3"}
    return params


PERSISTENT = pika.DeliveryMode.Persistent


class Publisher:
    """Publishes job messages with publisher confirms.

    pika's BlockingConnection is not thread-safe, and FastAPI runs sync endpoints in a
    threadpool, so one connection is shared under a lock. A dropped connection (broker
    restart, missed heartbeats while idle) is reopened once per publish before giving up
    with QueueError.
    """

    def __init__(
        self, settings: Settings, connect: Callable[[], pika.BlockingConnection] | None = None
    ) -> None:
        self.settings = settings
        self._connect = connect or (
            lambda: pika.BlockingConnection(connection_parameters(settings))
        )
        self._lock = threading.Lock()
        self._conn: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self.names = queue_names(settings.queue_name)

    def _open(self) -> BlockingChannel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self.close_quietly()
        self._conn = self._connect()
        channel = self._conn.channel()
        declare_topology(channel, self.settings)
        declare_events(channel, self.settings)
        channel.confirm_delivery()
        self._channel = channel
        return channel

    def publish(self, message: JobMessage, *, routing_key: str | None = None) -> None:
        props = pika.BasicProperties(
            content_type="application/json", delivery_mode=PERSISTENT, message_id=message.job_id
        )
        self._send("", routing_key or self.names.main, message.encode(), props)

    def publish_event(self, event: JobEvent) -> None:
        """A job event to the events exchange (routing key: its type), confirmed."""
        props = pika.BasicProperties(
            content_type="application/json", delivery_mode=PERSISTENT, message_id=event.id
        )
        self._send(self.settings.events_exchange, event.type, event.encode(), props)

    def _send(
        self, exchange: str, routing_key: str, body: bytes, props: pika.BasicProperties
    ) -> None:
        with self._lock:
            last: Exception | None = None
            for _ in range(2):
                try:
                    channel = self._open()
                    channel.basic_publish(
                        exchange=exchange,
                        routing_key=routing_key,
                        body=body,
                        properties=props,
                        mandatory=True,
                    )
                    return
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
                    raise QueueError("The broker refused the job message.") from exc
                except (pika.exceptions.AMQPError, OSError) as exc:
                    last = exc
                    self.close_quietly()
            raise QueueError("The job queue is unavailable.") from last

    def close_quietly(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                if conn.is_open:
                    conn.close()
            except Exception:  # closing a broken connection may fail in any way
                pass
