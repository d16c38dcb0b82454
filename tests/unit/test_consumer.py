"""worker.consumer without a broker: decoding deliveries, and liveness as "the loop turns".

The HTTP side of liveness (/healthz on the metrics port) is checked against a real worker
during a broker outage in tests/integration/test_reliability.py.
"""

from __future__ import annotations

import threading
from typing import Any
from unittest.mock import MagicMock

import pika.exceptions
import pytest
from structlog.testing import capture_logs

from shared.queue import JobMessage
from tests.unit.conftest import make_settings
from worker.consumer import Consumer, run_delivery
from worker.outcome import Action, Outcome


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe\x00", b"[]", b"null", b'{"v": 1}', b'{"job_id": null}'],
    ids=["empty", "not-json", "binary", "list", "null", "no-job-id", "null-job-id"],
)
def test_poison_message_goes_to_dead_letter_without_reaching_the_handler(body: bytes) -> None:
    handled: list[JobMessage] = []

    def handler(message: JobMessage) -> Outcome:
        handled.append(message)
        return Outcome(Action.ACK)

    assert run_delivery(body, handler) == Outcome(Action.DEAD_LETTER)
    assert handled == []


def test_job_message_reaches_the_handler_decoded() -> None:
    message = JobMessage(job_id="job-1", attempt=2, token="t")

    outcome = run_delivery(message.encode(), lambda m: Outcome(Action.RETRY, m.attempt, 10))

    assert outcome == Outcome(Action.RETRY, retry_attempt=2, delay_ms=10)


def test_a_crashing_handler_gives_its_message_back_and_logs_the_traceback() -> None:
    def handler(_message: JobMessage) -> Outcome:
        raise RuntimeError("bug")

    with capture_logs() as logs:
        outcome = run_delivery(JobMessage(job_id="job-1").encode(), handler)

    assert outcome == Outcome(Action.REQUEUE)
    [crashed] = [e for e in logs if e["event"] == "handler_crashed"]
    assert crashed["job_id"] == "job-1" and crashed["exc_info"] is True


def test_liveness_holds_while_the_broker_is_unreachable_and_fails_when_the_loop_stalls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker whose broker does not answer
    settings = make_settings(worker_stall_timeout_s=30)

    def unreachable(*_args: Any) -> None:
        raise pika.exceptions.AMQPConnectionError("connection refused")

    monkeypatch.setattr("worker.consumer.pika.BlockingConnection", unreachable)
    consumer = Consumer(settings, lambda _m: Outcome(Action.ACK))
    now = [1000.0]
    monkeypatch.setattr("worker.consumer.time.monotonic", lambda: now[0])
    attempts = threading.Semaphore(0)
    real_pause = consumer._pause

    def pause(seconds: float) -> None:
        attempts.release()
        now[0] += seconds  # the clock moves on while it waits to reconnect
        real_pause(0)

    monkeypatch.setattr(consumer, "_pause", pause)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        # When it has failed to connect, and waited, more than a stall timeout in all
        for _ in range(6):  # 1 + 2 + 4 + 8 + 16 + 30 s of back-off
            assert attempts.acquire(timeout=30), "no reconnection attempt"
        # Then it is alive: its loop keeps turning
        assert not consumer.connected.is_set()
        assert consumer.alive()
    finally:
        consumer.request_stop()
        thread.join(timeout=30)
    # And a loop that stops turning for the stall timeout is not
    now[0] += settings.worker_stall_timeout_s
    assert not consumer.alive()


def test_timeout_closed_before_call_during_a_broker_restart_is_a_lost_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a broker whose first connection pika tears down mid-event-loop the way it does
    # when the broker restarts (a timer scheduled on a closed connection)
    connections: list[MagicMock] = []
    consumer = Consumer(make_settings(), lambda _m: Outcome(Action.ACK))

    def connect(*_args: Any) -> MagicMock:
        conn = MagicMock()
        if not connections:
            conn.process_data_events.side_effect = ValueError("Timeout closed before call")
        else:  # the reconnection works; stop once it has run the loop
            conn.process_data_events.side_effect = lambda **_kw: consumer.request_stop()
        connections.append(conn)
        return conn

    monkeypatch.setattr("worker.consumer.pika.BlockingConnection", connect)
    monkeypatch.setattr(consumer, "_pause", lambda _seconds: None)

    # When the worker runs, Then it reconnects rather than dying with the error
    with capture_logs() as logs:
        consumer.run()

    assert len(connections) == 2
    assert [e["error"] for e in logs if e["event"] == "broker_connection_lost"] == [
        "AMQPConnectionError"
    ]
    assert connections[1].process_data_events.called
