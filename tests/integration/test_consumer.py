"""The worker's consumer against a real RabbitMQ: what it holds, and how it settles.

A worker holds as many messages as it runs jobs at once (prefetch = concurrency), settles
each with its outcome, and on stop finishes the jobs in hand while the rest stay queued.
The handlers here are scripted (no ffmpeg, no storage): what is under test is what the
broker hands the worker, and what the worker hands back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pika
import pytest

from shared.config import Settings
from shared.queue import JobMessage, queue_names
from tests.integration.conftest import wait_for
from tests.unit.conftest import make_settings
from worker.consumer import Consumer
from worker.outcome import Action, Outcome

pytestmark = pytest.mark.integration

Handler = Callable[[JobMessage], Outcome]


@pytest.fixture
def settings(amqp_url: str) -> Iterator[Settings]:
    settings = make_settings(
        amqp_url=amqp_url, queue_name=f"v2m-test-consumer-{uuid.uuid4().hex[:10]}"
    )
    yield settings
    names = queue_names(settings.queue_name)
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = conn.channel()
        for name in [names.main, names.dlq] + [names.retry(i) for i in range(1, 10)]:
            channel.queue_delete(queue=name)
    finally:
        conn.close()


class Running:
    """A Consumer on a thread of its own; ``stop()`` drains it and waits."""

    def __init__(self, settings: Settings, handler: Handler) -> None:
        self.settings = settings
        self.consumer = Consumer(settings, handler)
        self.thread = threading.Thread(target=self.consumer.run, daemon=True)
        self.thread.start()
        assert self.consumer.connected.wait(30), "the consumer did not connect"

    def stop(self) -> None:
        self.consumer.request_stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()

    def publish(self, *job_ids: str) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.settings.amqp_url))
        try:
            channel = conn.channel()
            for job_id in job_ids:
                channel.basic_publish(
                    exchange="",
                    routing_key=self.settings.queue_name,
                    body=JobMessage(job_id=job_id).encode(),
                )
        finally:
            conn.close()

    def counts(self, queue: str | None = None) -> tuple[int, int]:
        """(messages ready, consumers) of a queue, the main one by default."""
        conn = pika.BlockingConnection(pika.URLParameters(self.settings.amqp_url))
        try:
            ok = conn.channel().queue_declare(queue=queue or self.settings.queue_name, passive=True)
            return int(ok.method.message_count), int(ok.method.consumer_count)
        finally:
            conn.close()

    def take(self, queue: str) -> JobMessage | None:
        """Take one message off ``queue`` (acked), or None when it is empty."""
        conn = pika.BlockingConnection(pika.URLParameters(self.settings.amqp_url))
        try:
            _method, _props, body = conn.channel().basic_get(queue, auto_ack=True)
            return None if body is None else JobMessage.decode(body)
        finally:
            conn.close()


def test_worker_busy_converting_holds_no_second_message(settings: Settings) -> None:
    # Given a worker running one job at a time, whose only job is still converting
    release = threading.Event()
    started: list[str] = []

    def handler(message: JobMessage) -> Outcome:
        started.append(message.job_id)
        if message.job_id == "first":
            release.wait(timeout=30)
        return Outcome(Action.ACK)

    running = Running(settings, handler)
    try:
        running.publish("first", "second")
        wait_for(lambda: started == ["first"], 30, "the first job to start")
        # Then the second message stays in the queue, for any other worker to take
        time.sleep(1.0)
        assert started == ["first"]
        assert running.counts()[0] == 1
        # And it is delivered once the first is acked
        release.set()
        wait_for(lambda: started == ["first", "second"], 30, "the second job to start")
        wait_for(lambda: running.counts() == (0, 1), 30, "both acked")
    finally:
        release.set()
        running.stop()


def test_worker_runs_as_many_jobs_at_once_as_its_concurrency_and_holds_no_more(
    settings: Settings,
) -> None:
    # Given a worker of concurrency 2 whose jobs wait until released
    settings = settings.model_copy(update={"worker_concurrency": 2})
    release = threading.Event()
    running_now: set[str] = set()
    lock = threading.Lock()

    def handler(message: JobMessage) -> Outcome:
        with lock:
            running_now.add(message.job_id)
        release.wait(timeout=30)
        return Outcome(Action.ACK)

    running = Running(settings, handler)
    try:
        # When three jobs are queued
        running.publish("a", "b", "c")
        # Then two run together and the third waits in the queue
        wait_for(lambda: len(running_now) == 2, 30, "two jobs to run at once")
        time.sleep(1.0)
        assert running_now <= {"a", "b", "c"} and len(running_now) == 2
        assert running.counts()[0] == 1
        release.set()
        wait_for(lambda: running.counts() == (0, 1), 30, "every job acked")
        assert running_now == {"a", "b", "c"}
    finally:
        release.set()
        running.stop()


def test_each_outcome_is_carried_out_on_the_broker(settings: Settings) -> None:
    # Given jobs whose handler asks for a retry, a dead letter and an ack
    names = queue_names(settings.queue_name)
    outcomes = {
        "retry": Outcome(Action.RETRY, retry_attempt=1, delay_ms=60_000),
        "poison": Outcome(Action.DEAD_LETTER),
        "done": Outcome(Action.ACK),
    }
    handled: list[str] = []

    def handler(message: JobMessage) -> Outcome:
        handled.append(message.job_id)
        return outcomes[message.job_id]

    running = Running(settings, handler)
    try:
        running.publish("retry", "poison", "done")
        wait_for(lambda: len(handled) == 3, 30, "the three jobs")
        wait_for(lambda: running.counts(names.dlq)[0] == 1, 30, "the dead letter")
        # Then the retry waits in the first retry queue as the next attempt
        wait_for(lambda: running.counts(names.retry(1))[0] == 1, 30, "the retry")
        retried = running.take(names.retry(1))
        assert retried is not None and (retried.job_id, retried.attempt) == ("retry", 2)
        # And the rejected one is in the dead-letter queue, and nothing is left unacked
        dead = running.take(names.dlq)
        assert dead is not None and dead.job_id == "poison"
        assert running.counts() == (0, 1)
        assert sorted(handled) == ["done", "poison", "retry"]
    finally:
        running.stop()


def test_stop_finishes_the_job_in_hand_acks_it_and_leaves_the_rest_queued(
    settings: Settings,
) -> None:
    # Given a worker converting its only job while two more wait in the queue
    release = threading.Event()
    started: list[str] = []
    finished: list[str] = []

    def handler(message: JobMessage) -> Outcome:
        started.append(message.job_id)
        release.wait(timeout=30)
        finished.append(message.job_id)
        return Outcome(Action.ACK)

    running = Running(settings, handler)
    running.publish("first", "second", "third")
    wait_for(lambda: started == ["first"], 30, "the first job to start")
    # When it is told to stop, and the job then ends
    stopper = threading.Thread(target=running.stop)
    stopper.start()
    wait_for(
        lambda: not running.consumer.connected.is_set() or running.consumer.stopping, 30, "stop"
    )
    release.set()
    stopper.join(timeout=60)
    # Then the job in hand was finished and acked, and no other job was started
    assert started == finished == ["first"]
    assert running.counts() == (2, 0)
