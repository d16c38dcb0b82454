"""RabbitMQ consumer: jobs on worker threads, acks on the I/O thread.

Prefetch is the concurrency, plus one for each job whose ffmpeg has exited but which is
still uploading its MP3 and recording the result (``worker.handlers.Slots``): the next
encode starts while that finishes, and a worker that hangs mid-encode holds no more
messages than it is running, so the reaper's re-dispatch goes to a live worker.

ffmpeg runs in a thread pool so that pika's BlockingConnection keeps servicing
heartbeats on the main thread; results come back through
``connection.add_callback_threadsafe`` (pika is not thread-safe). On stop: cancel the
consumer, let running jobs finish up to the drain timeout, settle them, close. Anything
still unacked when the connection closes goes back to the queue.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pika
import pika.exceptions
import structlog
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from shared.config import Settings
from shared.queue import (
    PERSISTENT,
    JobMessage,
    QueueNames,
    connection_parameters,
    declare_topology,
)
from worker.handlers import Action, Outcome

log = structlog.get_logger("worker.consumer")

Handler = Callable[[bytes], Outcome]


class Consumer:
    def __init__(
        self, settings: Settings, handler: Handler, stop: threading.Event | None = None
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.pool = ThreadPoolExecutor(
            max_workers=2 * settings.worker_concurrency, thread_name_prefix="job"
        )
        # Shared with the handler (JobContext.stopping): a job still waiting for an
        # ffmpeg slot when the worker stops is given back instead of started.
        self._stop = stop or threading.Event()
        self._post: set[int] = set()  # delivery tags of jobs past their ffmpeg run
        self._current = threading.local()  # the delivery tag a pool thread works on
        self._in_flight: set[Future[Outcome]] = set()
        self._conn: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._consumer_tag: str | None = None
        self._names: QueueNames | None = None
        self.connected = threading.Event()

    # ------------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Safe from a signal handler: only sets a flag the I/O loop checks."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def busy(self) -> int:
        return len(self._in_flight)

    @property
    def prefetch(self) -> int:
        return self.settings.worker_concurrency + len(self._post)

    def slot_released(self) -> None:
        """Called on a pool thread when its job's ffmpeg has exited: take one more message."""
        tag, conn = getattr(self._current, "tag", None), self._conn
        if tag is None or conn is None:
            return
        try:
            conn.add_callback_threadsafe(functools.partial(self._set_post, tag, True))
        except Exception:  # connection gone: nothing to widen
            pass

    def _set_post(self, tag: int, post: bool) -> None:
        """Runs on the I/O thread."""
        before = self.prefetch
        if post:
            self._post.add(tag)
        else:
            self._post.discard(tag)
        channel = self._channel
        if self.prefetch != before and channel is not None and channel.is_open:
            try:
                channel.basic_qos(prefetch_count=self.prefetch)
            except (pika.exceptions.AMQPError, OSError):
                log.warning("prefetch_change_failed", exc_info=True)

    # ------------------------------------------------------------------ main loop

    def run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                self._connect_and_consume()
                delay = 1.0
            except (pika.exceptions.AMQPError, OSError) as exc:
                self.connected.clear()
                if self._stop.is_set():
                    break
                log.warning("broker_connection_lost", error=type(exc).__name__, retry_in_s=delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
        self._drain()

    def _connect_and_consume(self) -> None:
        self._conn = pika.BlockingConnection(connection_parameters(self.settings))
        channel = self._conn.channel()
        self._channel = channel
        self._names = declare_topology(channel, self.settings)
        channel.confirm_delivery()
        self._post.clear()
        channel.basic_qos(prefetch_count=self.prefetch)
        self._consumer_tag = channel.basic_consume(self._names.main, self._on_message)
        self.connected.set()
        log.info("consuming", queue=self._names.main, prefetch=self.prefetch)
        while not self._stop.is_set():
            self._conn.process_data_events(time_limit=0.5)

    def _on_message(
        self, channel: BlockingChannel, method: Basic.Deliver, _props: BasicProperties, body: bytes
    ) -> None:
        future = self.pool.submit(self._handle, method.delivery_tag, body)
        self._in_flight.add(future)
        conn = self._conn
        assert conn is not None
        tag = method.delivery_tag

        def done(fut: Future[Outcome]) -> None:
            try:
                outcome = fut.result()
            except Exception:  # handler bugs must not lose the message
                log.error("handler_crashed", exc_info=True)
                outcome = Outcome(Action.REQUEUE)
            settle = functools.partial(self._settle, channel, tag, body, outcome, fut)
            try:
                conn.add_callback_threadsafe(settle)
            except Exception:  # connection already gone: the broker requeues it
                self._in_flight.discard(fut)

        future.add_done_callback(done)

    def _handle(self, tag: int, body: bytes) -> Outcome:
        self._current.tag = tag
        try:
            return self.handler(body)
        finally:
            self._current.tag = None

    def _settle(
        self,
        channel: BlockingChannel,
        tag: int,
        body: bytes,
        outcome: Outcome,
        fut: Future[Outcome],
    ) -> None:
        """Runs on the I/O thread."""
        self._in_flight.discard(fut)
        if tag in self._post and channel is self._channel:
            self._set_post(tag, False)
        if not channel.is_open:
            return  # unacked messages of a closed channel are redelivered by the broker
        try:
            if outcome.action is Action.ACK:
                channel.basic_ack(tag)
            elif outcome.action is Action.RETRY:
                assert self._names is not None
                channel.basic_publish(
                    exchange="",
                    routing_key=self._names.retry(outcome.retry_attempt),
                    body=_next_attempt(body),
                    properties=pika.BasicProperties(
                        content_type="application/json",
                        delivery_mode=PERSISTENT,
                        expiration=str(outcome.delay_ms),
                    ),
                    mandatory=True,
                )
                channel.basic_ack(tag)
            elif outcome.action is Action.DEAD_LETTER:
                channel.basic_nack(tag, requeue=False)
            else:
                channel.basic_nack(tag, requeue=True)
        except (pika.exceptions.AMQPError, OSError):
            log.warning("settle_failed", action=outcome.action.value, exc_info=True)

    def _drain(self) -> None:
        """Stop taking messages, finish what is running, settle it, close."""
        conn, channel = self._conn, self._channel
        if conn is not None and conn.is_open and channel is not None and channel.is_open:
            try:
                if self._consumer_tag:
                    channel.basic_cancel(self._consumer_tag)
                deadline = time.monotonic() + self.settings.worker_drain_timeout_s
                if self._in_flight:
                    log.info("draining", running=len(self._in_flight))
                while self._in_flight and time.monotonic() < deadline:
                    conn.process_data_events(time_limit=0.2)
                if self._in_flight:
                    log.warning("drain_timeout", running=len(self._in_flight))
            except (pika.exceptions.AMQPError, OSError):
                log.warning("drain_interrupted", exc_info=True)
            try:
                conn.close()
            except (pika.exceptions.AMQPError, OSError):
                pass
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.connected.clear()
        log.info("stopped")


def _next_attempt(body: bytes) -> bytes:
    message = JobMessage.decode(body)
    return message.model_copy(update={"attempt": message.attempt + 1}).encode()
