"""RabbitMQ consumer: jobs on worker threads, acks on the I/O thread.

A worker holds at most its concurrency in messages, plus one for each job whose ffmpeg
has exited but which is still uploading its MP3 and recording the result
(``worker.handlers.Slots``): the next encode starts while that finishes, and a worker
that hangs mid-encode holds no more messages than it is running, so the reaper's
re-dispatch goes to a live worker.

RabbitMQ applies a consumer's prefetch when the consumer is created (``basic.qos`` with
``global=false`` changes it only for consumers created after it, and quorum queues
refuse ``global=true``), so the window is not widened by changing the prefetch. Instead
each message comes through a consumer of its own, a "lane" with prefetch 1: a worker
opens ``concurrency`` lanes; a job opens the lane for the next message as soon as its
ffmpeg exits (or, if it never gets that far, when it is settled), and its own lane is
cancelled before its message is settled, so the lane can take no second message.

ffmpeg runs in a thread pool so that pika's BlockingConnection keeps servicing
heartbeats on the main thread; results come back through
``connection.add_callback_threadsafe`` (pika is not thread-safe). On stop: cancel the
lanes, let running jobs finish up to the drain timeout, settle them, close. Anything
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
        # Shared with the handler (JobContext.stopping): a message that arrives while the
        # worker stops is given back instead of started.
        self._stop = stop or threading.Event()
        # I/O thread only: the open lanes (consumer tags), each delivery's lane, and the
        # deliveries whose job has already opened the lane for the next message.
        self._lanes: set[str] = set()
        self._lane_of: dict[int, str] = {}
        self._replaced: set[int] = set()
        self._current = threading.local()  # (channel, delivery tag) a pool thread works on
        self._in_flight: set[Future[Outcome]] = set()
        self._conn: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
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
        """Messages this worker may hold: its open lanes (one message each)."""
        return len(self._lanes)

    def bind_next(self) -> Callable[[], None]:
        """Called on a pool thread: a function that any thread may call, once its job's
        ffmpeg is done or nearly done, to take one more message (the lane after it)."""
        delivery: tuple[BlockingChannel, int] | None = getattr(self._current, "delivery", None)
        conn = self._conn
        if delivery is None or conn is None:
            return _nothing
        replace = functools.partial(self._replace, *delivery)

        def let_next_in() -> None:
            try:
                conn.add_callback_threadsafe(replace)
            except Exception:  # connection gone: nothing to widen
                pass

        return let_next_in

    def _replace(self, channel: BlockingChannel, tag: int) -> None:
        """Runs on the I/O thread: open the lane for the message after ``tag``'s, once."""
        if channel is not self._channel or tag in self._replaced or tag not in self._lane_of:
            return  # of a channel since closed, already replaced, or settled
        self._replaced.add(tag)
        self._open_lane()

    def _open_lane(self) -> None:
        """Runs on the I/O thread."""
        channel, names = self._channel, self._names
        if self._stop.is_set() or channel is None or not channel.is_open or names is None:
            return
        try:
            self._lanes.add(channel.basic_consume(names.main, self._on_message))
        except (pika.exceptions.AMQPError, OSError):
            log.warning("lane_open_failed", exc_info=True)

    def _close_lane(self, channel: BlockingChannel, tag: int) -> None:
        """Runs on the I/O thread: cancel the lane that brought ``tag`` (before it is
        settled, so that the lane cannot be given another message)."""
        lane = self._lane_of.pop(tag, None)
        if lane is None or lane not in self._lanes:  # gone with a drain or a reconnect
            return
        self._lanes.discard(lane)
        try:
            channel.basic_cancel(lane)
        except (pika.exceptions.AMQPError, OSError):
            log.warning("lane_close_failed", exc_info=True)

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
        self._lanes.clear()
        self._lane_of.clear()
        self._replaced.clear()
        channel.basic_qos(prefetch_count=1)  # per consumer: one message a lane
        for _ in range(self.settings.worker_concurrency):
            self._open_lane()
        self.connected.set()
        log.info("consuming", queue=self._names.main, prefetch=self.prefetch)
        while not self._stop.is_set():
            self._conn.process_data_events(time_limit=0.5)

    def _on_message(
        self, channel: BlockingChannel, method: Basic.Deliver, _props: BasicProperties, body: bytes
    ) -> None:
        tag = method.delivery_tag
        if method.consumer_tag in self._lanes:
            self._lane_of[tag] = method.consumer_tag
        future = self.pool.submit(self._handle, channel, tag, body)
        self._in_flight.add(future)
        conn = self._conn
        assert conn is not None

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

    def _handle(self, channel: BlockingChannel, tag: int, body: bytes) -> Outcome:
        self._current.delivery = (channel, tag)
        try:
            return self.handler(body)
        finally:
            self._current.delivery = None

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
        if not channel.is_open:
            return  # unacked messages of a closed channel are redelivered by the broker
        if channel is self._channel:
            self._close_lane(channel, tag)
            if tag not in self._replaced:
                self._open_lane()  # this job never reached the end of its ffmpeg run
            self._replaced.discard(tag)
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
                for lane in list(self._lanes):
                    channel.basic_cancel(lane)
                self._lanes.clear()
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


def _nothing() -> None:
    pass


def _next_attempt(body: bytes) -> bytes:
    message = JobMessage.decode(body)
    return message.model_copy(update={"attempt": message.attempt + 1}).encode()
