"""Job events: what the worker publishes once a job's outcome is stored, for the notifier.

Topology (declared by whoever connects first, publisher or notifier):

    <events_exchange>   durable topic exchange; routing keys are event types
                        (``job.completed``, ``job.failed``)
    <notify_queue_name> durable quorum queue bound to ``job.*``: the notifier's input

The queue exists as soon as a worker has published once, so events wait for a notifier
that is not running yet instead of being dropped.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Literal

from pika.adapters.blocking_connection import BlockingChannel
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.config import Settings

EventType = Literal["job.completed", "job.failed"]
EVENT_TYPES: tuple[EventType, ...] = ("job.completed", "job.failed")
_EVENT_NAMESPACE = uuid.UUID("6f1d9c7e-52b5-4c1e-9a57-0c8f2f6f1a20")


def event_id(job_id: str, token: str, event_type: str) -> str:
    """The event's `webhook-id`: the same for every copy of one outcome of one dispatch of a
    job (a job re-run from the dead-letter queue gets a new token, so a new event)."""
    return "msg_" + uuid.uuid5(_EVENT_NAMESPACE, f"{job_id}:{token}:{event_type}").hex


class JobEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    v: int = 1
    id: str
    type: EventType
    job_id: str
    at: datetime

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, body: bytes) -> JobEvent:
        """Raises ValueError for anything that is not a job event (poison)."""
        try:
            return cls.model_validate(json.loads(body))
        except (ValidationError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("not a job event") from exc


def declare_events(channel: BlockingChannel, settings: Settings) -> None:
    channel.exchange_declare(exchange=settings.events_exchange, exchange_type="topic", durable=True)
    channel.queue_declare(
        queue=settings.notify_queue_name, durable=True, arguments={"x-queue-type": "quorum"}
    )
    channel.queue_bind(
        queue=settings.notify_queue_name, exchange=settings.events_exchange, routing_key="job.*"
    )
