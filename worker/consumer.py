"""RabbitMQ consumer: one consumer with prefetch = concurrency, jobs on a thread pool,
acks on the I/O thread.

The broker hands a worker at most ``worker_concurrency`` unacknowledged messages
(``basic_qos(prefetch_count=concurrency)``, as dramatiq's and Celery's ``acks_late``
workers do) and each runs on a pool thread of the same number, so a delivered message
never waits for a thread, and a worker busy converting holds no message it is not
working on. A message is acked only once its outcome is recorded.

pika's BlockingConnection is not thread-safe: the main thread services its I/O (so
heartbeats survive long conversions) and each job posts its settlement (ack, retry
publish, reject) back to it through ``connection.add_callback_threadsafe``.

On stop: cancel the consumer, let running jobs finish for up to the drain timeout, settle
them, close. Anything still unacked when the connection closes goes back to the queue.
The loop records each turn, whether it is consuming or waiting to reconnect: liveness
is "the loop turns", never "the broker answers" (``alive``).
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
from worker import metrics
from worker.outcome import Action, Outcome

log = structlog.get_logger("worker.consumer")

Handler = Callable[[JobMessage], Outcome]


def run_delivery(body: bytes, handler: Handler, redelivered: bool = False) -> Outcome:
    """Decode one delivery and hand it to ``handler`` (on a pool thread).

    A body that is not a job message goes to the dead-letter queue unhandled; a handler
    that crashes gives its message back rather than losing it.
    """
    try:
        message = JobMessage.decode(body).model_copy(update={"redelivered": redelivered})
    except ValueError:
        log.warning("poison_message", size=len(body))
        metrics.DEAD_LETTERED.labels("poison").inc()
        return Outcome(Action.DEAD_LETTER)
    try:
        return handler(message)
    except Exception:
        log.error("handler_crashed", job_id=message.job_id, exc_info=True)
        return Outcome(Action.REQUEUE)


class Consumer:
    def __init__(
        self, settings: Settings, handler: Handler, stop: threading.Event | None = None
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.pool = ThreadPoolExecutor(
            max_workers=settings.worker_concurrency, thread_name_prefix="job"
        )
        # Shared with the handler (JobContext.stopping): a message that arrives while the
        # worker stops is given back instead of started.
        self._stop = stop or threading.Event()
        self._in_flight: set[Future[Outcome]] = set()
        self._conn: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._consumer_tag: str | None = None
        self._names: QueueNames | None = None
        self._last_turn = time.monotonic()
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

    def alive(self) -> bool:
        """The loop turned within ``worker_stall_timeout_s``, broker or no broker."""
        return time.monotonic() - self._last_turn < self.settings.worker_stall_timeout_s

    def _turn(self) -> None:
        self._last_turn = time.monotonic()

    # ------------------------------------------------------------------ main loop

    def run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            self._turn()
            try:
                self._connect_and_consume()
                delay = 1.0
            except (pika.exceptions.AMQPError, OSError) as exc:
                self.connected.clear()
                # Jobs settled on the lost channel cannot be acked: the broker redelivers them.
                self._in_flight = {f for f in self._in_flight if not f.done()}
                if self._stop.is_set():
                    break
                log.warning("broker_connection_lost", error=type(exc).__name__, retry_in_s=delay)
                self._pause(delay)
                delay = min(delay * 2, 30.0)
        self._drain()

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self._turn()
            self._stop.wait(min(left, 1.0))

    def _connect_and_consume(self) -> None:
        conn = pika.BlockingConnection(connection_parameters(self.settings))
        self._conn = conn
        channel = conn.channel()
        self._names = declare_topology(channel, self.settings)
        channel.confirm_delivery()
        channel.basic_qos(prefetch_count=self.settings.worker_concurrency)
        self._consumer_tag = channel.basic_consume(self._names.main, self._on_message)
        self._channel = channel
        self.connected.set()
        log.info("consuming", queue=self._names.main, prefetch=self.settings.worker_concurrency)
        while not self._stop.is_set():
            self._turn()
            process_events(conn, 0.5)

    def _on_message(
        self, channel: BlockingChannel, method: Basic.Deliver, _props: BasicProperties, body: bytes
    ) -> None:
        """Runs on the I/O thread: start the job on the pool."""
        tag = method.delivery_tag
        conn = self._conn
        assert conn is not None
        future = self.pool.submit(run_delivery, body, self.handler, method.redelivered)
        self._in_flight.add(future)

        def done(fut: Future[Outcome]) -> None:
            settle = functools.partial(self._settle, channel, tag, body, fut)
            try:
                conn.add_callback_threadsafe(settle)
            except Exception:  # connection already gone: the broker requeues the message
                self._in_flight.discard(fut)

        future.add_done_callback(done)

    def _settle(
        self, channel: BlockingChannel, tag: int, body: bytes, fut: Future[Outcome]
    ) -> None:
        """Runs on the I/O thread: carry out the job's outcome."""
        self._in_flight.discard(fut)
        if fut.cancelled():
            return
        outcome = fut.result()
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
                if self._consumer_tag is not None:
                    # pika rejects (requeues) deliveries not yet handed to _on_message.
                    channel.basic_cancel(self._consumer_tag)
                deadline = time.monotonic() + self.settings.worker_drain_timeout_s
                if self._in_flight:
                    log.info("draining", running=len(self._in_flight))
                while self._in_flight and time.monotonic() < deadline:
                    self._turn()
                    process_events(conn, 0.2)
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


def process_events(conn: pika.BlockingConnection, time_limit: float) -> None:
    """Service the connection's I/O; a connection that closes underneath is a lost
    connection, whichever way pika reports it."""
    try:
        conn.process_data_events(time_limit=time_limit)
    except ValueError as exc:
        # pika 1.x raises "Timeout closed before call" when a timer is scheduled on a
        # connection the broker has just closed (seen during broker restarts).
        raise pika.exceptions.AMQPConnectionError(str(exc)) from exc


def _next_attempt(body: bytes) -> bytes:
    message = JobMessage.decode(body)
    return message.model_copy(update={"attempt": message.attempt + 1}).encode()
