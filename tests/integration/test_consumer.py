"""The worker's consumer against a real RabbitMQ: how many messages a worker holds.

A worker holds its concurrency in messages, plus one while a job whose ffmpeg has exited
uploads its result; never more. The handlers here are scripted (no ffmpeg, no storage):
what is under test is what the broker hands the worker, and when.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pika
import pytest

from shared.config import Settings
from shared.queue import queue_names
from tests.integration.conftest import wait_for
from tests.unit.conftest import make_settings
from worker.consumer import Consumer
from worker.handlers import Action, Outcome

pytestmark = pytest.mark.integration

Handler = Callable[[bytes], Outcome]


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

    def publish(self, *bodies: bytes) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.settings.amqp_url))
        try:
            channel = conn.channel()
            for body in bodies:
                channel.basic_publish(exchange="", routing_key=self.settings.queue_name, body=body)
        finally:
            conn.close()

    def counts(self) -> tuple[int, int]:
        """(messages ready, consumers) of the main queue."""
        conn = pika.BlockingConnection(pika.URLParameters(self.settings.amqp_url))
        try:
            ok = conn.channel().queue_declare(queue=self.settings.queue_name, passive=True)
            return int(ok.method.message_count), int(ok.method.consumer_count)
        finally:
            conn.close()


def test_next_message_arrives_while_the_previous_job_uploads(settings: Settings) -> None:
    # Given a worker running one job at a time whose first job's ffmpeg has exited
    second_started = threading.Event()
    overlapped: list[bool] = []
    running: Running

    def handler(body: bytes) -> Outcome:
        if body == b"first":
            running.consumer.bind_next()()  # its slot released: ffmpeg has exited
            # When that job is still uploading its MP3 (it waits here, unacked)
            overlapped.append(second_started.wait(timeout=15))
        else:
            second_started.set()
        return Outcome(Action.ACK)

    running = Running(settings, handler)
    try:
        running.publish(b"first", b"second")
        # Then the second message is delivered and started before the first is settled
        wait_for(lambda: bool(overlapped), 30, "the first job to finish")
        assert overlapped == [True]
        wait_for(lambda: running.counts() == (0, 1), 30, "both acked, one lane left")
    finally:
        running.stop()


def test_worker_busy_encoding_holds_no_second_message(settings: Settings) -> None:
    # Given a worker whose only job is mid-encode (its slot not released)
    release = threading.Event()
    started: list[bytes] = []

    def handler(body: bytes) -> Outcome:
        started.append(body)
        if body == b"first":
            release.wait(timeout=30)
        return Outcome(Action.ACK)

    running = Running(settings, handler)
    try:
        running.publish(b"first", b"second")
        wait_for(lambda: started == [b"first"], 30, "the first job to start")
        # Then the second message stays in the queue, for any other worker to take
        time.sleep(1.0)
        assert started == [b"first"]
        assert running.counts()[0] == 1
        release.set()
        wait_for(lambda: started == [b"first", b"second"], 30, "the second job to start")
    finally:
        release.set()
        running.stop()


def test_lanes_do_not_accumulate_over_many_jobs(settings: Settings) -> None:
    # Given a worker of concurrency 2, each job releasing its slot before it is settled
    settings = settings.model_copy(update={"worker_concurrency": 2})
    done: list[bytes] = []
    lock = threading.Lock()
    running: Running

    def handler(body: bytes) -> Outcome:
        if body.endswith(b"3"):  # and some jobs settled without ever releasing it
            with lock:
                done.append(body)
            return Outcome(Action.ACK)
        running.consumer.bind_next()()  # its slot released: ffmpeg has exited
        time.sleep(0.01)
        with lock:
            done.append(body)
        return Outcome(Action.ACK)

    running = Running(settings, handler)
    try:
        bodies = [f"job-{i}".encode() for i in range(40)]
        running.publish(*bodies)
        wait_for(lambda: len(done) == 40, 60, "every job")
        # Then the worker is back to holding what it runs at once: two lanes, nothing unacked
        wait_for(lambda: running.counts() == (0, 2), 30, "two lanes")
        assert sorted(done) == sorted(bodies)
        assert running.consumer.prefetch == 2
    finally:
        running.stop()
