"""What the consumer does with a message once its handler is done with it.

Handlers never ack or publish themselves (pika's objects belong to the consumer's I/O
thread); they return an Outcome, which the consumer carries out there.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    ACK = "ack"  # done (completed, failed for good, or a duplicate)
    RETRY = "retry"  # publish to the retry queue for `retry_attempt`, then ack
    DEAD_LETTER = "dead_letter"  # reject without requeue → DLQ
    REQUEUE = "requeue"  # give the message back (shutdown mid-way, DB down)


@dataclass(frozen=True)
class Outcome:
    action: Action
    retry_attempt: int = 0
    delay_ms: int = 0
