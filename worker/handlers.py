"""handle(message, ctx): claim the job, convert it, record the outcome, say what to do with
the message.

The job row, not the message, carries the job: a message names a job and the dispatch
token it was sent with, and only the holder of the row's current token may claim it and
write to it (``shared.job_transitions``). A claimed job's lease is renewed while it runs, so the
reaper can tell a dead worker's job from a live one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from shared import job_recovery, job_transitions
from shared.errors import AppError, TransientTranscodeError
from shared.models import TERMINAL_STATUSES, Job, utcnow
from shared.options import JobOptions, format_info
from shared.queue import JobMessage, backoff_ms, delivery_limit
from shared.retention import output_expires_at
from worker import ffmpeg, metrics, split, timing
from worker.context import JobContext
from worker.convert import JobSplit, convert, output_key
from worker.events import publish_outcome
from worker.lease import renewing
from worker.outcome import Action, Outcome
from worker.retention import missing_input
from worker.segmented import dispatch_segments, handle_segment

log = structlog.get_logger("worker")


def handle(message: JobMessage, ctx: JobContext) -> Outcome:
    """Run the job a message names; what the consumer should do with the message."""
    with structlog.contextvars.bound_contextvars(job_id=message.job_id, attempt=message.attempt):
        if ctx.stopping.is_set():  # delivered while the worker stops: give it back unstarted
            log.info("stopping_job_not_started")
            return Outcome(Action.REQUEUE)
        if message.segment is not None:
            with structlog.contextvars.bound_contextvars(segment=message.segment):
                try:
                    return handle_segment(message, ctx)
                except SQLAlchemyError:
                    log.error("database_unavailable", exc_info=True)
                    wait_for_database(ctx)
                    return Outcome(Action.REQUEUE)
        timing.start()
        while True:
            try:
                claimed = claim(message, ctx)
                break
            except SQLAlchemyError:
                log.warning("database_unavailable", exc_info=True)
                # Unreachable: hold the message until it answers, since each give-back
                # counts toward the queue's delivery limit and would dead-letter a job
                # that is fine. Reachable yet failing: give the message back.
                if database_answers(ctx) or not wait_for_database(ctx):
                    time.sleep(1.0)
                    return Outcome(Action.REQUEUE)
        if isinstance(claimed, Outcome):
            return claimed
        timing.mark("claim")
        log.info("job_started", attempts=claimed.attempts)
        try:
            return run_job(claimed, ctx)
        except SQLAlchemyError:
            log.error("database_unavailable", exc_info=True)
            wait_for_database(ctx)
            return Outcome(Action.REQUEUE)


def database_answers(ctx: JobContext) -> bool:
    try:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


def wait_for_database(ctx: JobContext) -> bool:
    """Block until the database answers (True) or the worker stops (False)."""
    delay = 1.0
    while not ctx.stopping.wait(delay):
        if database_answers(ctx):
            log.info("database_available")
            return True
        delay = min(delay * 2, 15.0)
    return False


def claim(message: JobMessage, ctx: JobContext) -> Job | Outcome:
    """The job, marked processing for this attempt; else what to do with the message."""
    while True:
        with Session(ctx.engine, expire_on_commit=False) as session:
            claimed = _claim_once(session, message, ctx)
        if claimed is not None:
            return claimed
        # A redelivered copy of the message whose job is still running: hold the copy
        # until that run ends or its lease lapses (its worker died), then look again.
        if ctx.stopping.wait(ctx.settings.heartbeat_interval_s):
            return Outcome(Action.REQUEUE)


def _claim_once(session: Session, message: JobMessage, ctx: JobContext) -> Job | Outcome | None:
    """One look at the job: claimed, an outcome, or None to wait for its current run."""
    lease_cutoff = utcnow() - timedelta(seconds=ctx.settings.job_lease_s)
    # The message's token is the one the row holds, unless the job was re-dispatched
    # since: claim straight away (one UPDATE … RETURNING), and read the row only to tell
    # why when that claims nothing.
    limit = delivery_limit(ctx.settings)
    job = None
    if message.token is not None:
        job = job_transitions.start_attempt(
            session=session,
            job_id=message.job_id,
            token=message.token,
            lease_cutoff=lease_cutoff,
            max_runs=limit,
        )
    if job is None:
        existing = session.get(Job, message.job_id)
        if existing is None:
            log.warning("unknown_job")
            metrics.DEAD_LETTERED.labels("unknown_job").inc()
            return Outcome(Action.DEAD_LETTER)
        if existing.status in TERMINAL_STATUSES:
            log.info("duplicate_delivery_ignored", status=existing.status)
            return Outcome(Action.ACK)
        if message.token is not None and message.token != existing.dispatch_token:
            # An older copy of a job that has since been re-dispatched with a new token.
            log.info("stale_message_ignored", status=existing.status)
            return Outcome(Action.ACK)
        if job_recovery.fail_crashed(
            session=session, job_id=existing.id, older_than=lease_cutoff, max_runs=limit
        ):
            # Started `limit` times, and every run died with its worker: stop here.
            metrics.JOBS_FINISHED.labels("failed", "worker_crashed").inc()
            log.warning("crashed_job_failed", attempts=existing.attempts)
            return Outcome(Action.ACK)
        if message.token is not None:  # ours, and running under another delivery
            if message.redelivered:
                return None  # that run may have died with this copy's worker: wait and see
            log.info("duplicate_copy_ignored")  # a second copy; the first one runs the job
            return Outcome(Action.ACK)
        job = job_transitions.start_attempt(
            session=session,
            job_id=message.job_id,
            token=existing.dispatch_token,
            lease_cutoff=lease_cutoff,
            max_runs=limit,
        )
        if job is None:
            return Outcome(Action.ACK)
    return job


def run_job(job: Job, ctx: JobContext) -> Outcome:
    """Convert a claimed job (its lease renewed meanwhile) and record the outcome."""
    token = job.dispatch_token
    started = time.monotonic()
    try:
        options = JobOptions.model_validate(job.options)
        extension = format_info(options.format).extension
        with metrics.JOBS_IN_PROGRESS.track_inprogress(), lease(ctx, job.id, token):
            result = convert(
                job.id,
                job.input_key,
                options,
                ctx,
                token=token,
                key=output_key(job.id, job.owner_id, extension),
                splitter=splitter(job, options, ctx),
            )
    except JobSplit:
        return Outcome(Action.ACK)  # the segments' workers take it from here
    except AppError as exc:
        failure = missing_input(exc, job.input_key, ctx.storage)
        return handle_failure(failure, job.id, job.attempts, ctx, started, token=token)
    except Exception as exc:  # unexpected: log with traceback, treat as retryable
        log.error("job_crashed", exc_info=True)
        wrapped = TransientTranscodeError(
            "The conversion failed unexpectedly.", code="internal_error", detail=repr(exc)[:300]
        )
        return handle_failure(wrapped, job.id, job.attempts, ctx, started, token=token)

    with Session(ctx.engine) as session:
        owned = job_transitions.complete(
            session=session,
            job_id=job.id,
            output_key=result.key,
            size_bytes=result.size_bytes,
            duration_s=result.duration_s,
            bitrate_kbps=result.bitrate_kbps,
            expires_at=output_expires_at(ctx.settings, utcnow()),
            token=token,
            encoded=not result.stream_copy,
            loudness_lufs=result.loudness.integrated_lufs if result.loudness else None,
            true_peak_db=result.loudness.true_peak_db if result.loudness else None,
        )
    timing.mark("complete")
    if not owned:
        # Our lease lapsed and the job was handed to another worker: its outcome stands.
        log.warning("lease_lost_result_discarded")
        return Outcome(Action.ACK)
    record_finished("completed", "", started)
    publish_outcome(ctx, job.id, token, "job.completed")
    metrics.record_completed(input_bytes=job.input_size_bytes, output_bytes=result.size_bytes)
    log.info(
        "job_completed",
        duration_s=round(time.monotonic() - started, 3),
        media_s=result.duration_s,
        output_bytes=result.size_bytes,
        stream_copy=result.stream_copy,
        phases_ms=timing.phases_ms(),
    )
    return Outcome(Action.ACK)


def splitter(
    job: Job, options: JobOptions, ctx: JobContext
) -> Callable[[ffmpeg.ProbeResult], bool]:
    """Split the job into segments when it qualifies (worker/split.py)."""

    def maybe_split(probe: ffmpeg.ProbeResult) -> bool:
        if not split.should_split(options, probe, ctx.settings):
            return False
        return dispatch_segments(job, probe, ctx)

    return maybe_split


def handle_failure(
    exc: AppError,
    job_id: str,
    attempt: int,
    ctx: JobContext,
    started: float,
    token: str | None = None,
) -> Outcome:
    """Permanent errors fail the job at once; retryable ones go to the retry queue with
    jittered exponential backoff until ``max_attempts``, then to the dead-letter queue."""
    elapsed = round(time.monotonic() - started, 3)
    with Session(ctx.engine) as session:
        if not exc.retryable:
            if job_transitions.fail(
                session=session, job_id=job_id, code=exc.code, message=exc.message, token=token
            ):
                publish_outcome(ctx, job_id, token, "job.failed")
            record_finished("failed", exc.code, started)
            log.info("job_failed", code=exc.code, duration_s=elapsed, detail=exc.detail)
            return Outcome(Action.ACK)
        if attempt < ctx.settings.max_attempts:
            job_transitions.requeue_for_retry(
                session=session, job_id=job_id, code=exc.code, message=exc.message, token=token
            )
            ceiling = backoff_ms(ctx.settings, attempt)
            # Jitter in the top quarter, below the retry queue's TTL: delays still double.
            delay = random.randint(ceiling * 3 // 4, ceiling)
            metrics.RETRIES.labels(exc.code).inc()
            log.info("job_retry_scheduled", code=exc.code, delay_ms=delay, detail=exc.detail)
            return Outcome(Action.RETRY, retry_attempt=attempt, delay_ms=delay)
        if job_transitions.fail(
            session=session,
            job_id=job_id,
            code="retries_exhausted",
            message=f"The conversion failed {attempt} times; the last error was: {exc.message}",
            token=token,
        ):
            publish_outcome(ctx, job_id, token, "job.failed")
        record_finished("failed", "retries_exhausted", started)
        metrics.DEAD_LETTERED.labels("retries_exhausted").inc()
        log.warning("job_retries_exhausted", code=exc.code, detail=exc.detail)
        return Outcome(Action.DEAD_LETTER)


def record_finished(outcome: str, code: str, started: float) -> None:
    metrics.JOBS_FINISHED.labels(outcome, code).inc()
    metrics.JOB_DURATION.observe(time.monotonic() - started)


def lease(ctx: JobContext, job_id: str, token: str | None) -> AbstractContextManager[None]:
    """Renew the job's lease every heartbeat interval while the block runs."""

    def beat(session: Session) -> None:
        job_transitions.heartbeat(session=session, job_id=job_id, token=token)

    return renewing(ctx, f"lease-{job_id[:8]}", beat)
