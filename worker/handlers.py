"""process_job(): probe → transcode → upload → mark done, and what to do on failure.

The handler never acks or publishes itself (pika objects live on the consumer's I/O
thread); it returns an Outcome that the consumer carries out there.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from shared import jobs
from shared.config import Settings
from shared.errors import AppError, MediaError, TransientTranscodeError
from shared.models import TERMINAL_STATUSES, Job, JobOptions
from shared.queue import JobMessage, backoff_ms
from shared.storage import Storage
from worker import ffmpeg, metrics

log = structlog.get_logger("worker")

TMP_PREFIX = "v2m-job-"


class Action(Enum):
    ACK = "ack"  # done (completed, failed for good, or a duplicate)
    RETRY = "retry"  # publish to the retry queue for `attempt`, then ack
    DEAD_LETTER = "dead_letter"  # reject without requeue → DLQ
    REQUEUE = "requeue"  # give the message back (shutdown mid-way, DB down)


@dataclass(frozen=True)
class Outcome:
    action: Action
    retry_attempt: int = 0
    delay_ms: int = 0


def output_key(job_id: str) -> str:
    """Deterministic, so a redelivered job overwrites rather than duplicates."""
    return f"outputs/{job_id}.mp3"


@dataclass
class JobContext:
    settings: Settings
    engine: Engine
    storage: Storage


def process_message(body: bytes, ctx: JobContext) -> Outcome:
    try:
        message = JobMessage.decode(body)
    except ValueError:
        log.warning("poison_message", size=len(body))
        metrics.DEAD_LETTERED.labels("poison").inc()
        return Outcome(Action.DEAD_LETTER)
    with structlog.contextvars.bound_contextvars(job_id=message.job_id, attempt=message.attempt):
        try:
            return process_job(message, ctx)
        except SQLAlchemyError:
            log.error("database_unavailable", exc_info=True)
            time.sleep(1.0)
            return Outcome(Action.REQUEUE)


def process_job(message: JobMessage, ctx: JobContext) -> Outcome:
    with Session(ctx.engine, expire_on_commit=False) as session:
        existing = session.get(Job, message.job_id)
        if existing is None:
            log.warning("unknown_job")
            metrics.DEAD_LETTERED.labels("unknown_job").inc()
            return Outcome(Action.DEAD_LETTER)
        if existing.status in TERMINAL_STATUSES:
            log.info("duplicate_delivery_ignored", status=existing.status)
            return Outcome(Action.ACK)
        job = jobs.start_attempt(session=session, job_id=message.job_id)
        if job is None:
            return Outcome(Action.ACK)

    started = time.monotonic()
    try:
        with metrics.JOBS_IN_PROGRESS.track_inprogress():
            result = convert(job.id, job.input_key, JobOptions.model_validate(job.options), ctx)
    except AppError as exc:
        return handle_failure(exc, job.id, job.attempts, ctx, started)
    except Exception as exc:  # unexpected: log with traceback, treat as retryable
        log.error("job_crashed", exc_info=True)
        wrapped = TransientTranscodeError(
            "The conversion failed unexpectedly.", code="internal_error", detail=repr(exc)[:300]
        )
        return handle_failure(wrapped, job.id, job.attempts, ctx, started)

    with Session(ctx.engine) as session:
        jobs.complete(
            session=session,
            job_id=job.id,
            output_key=result.key,
            size_bytes=result.size_bytes,
            duration_s=result.duration_s,
            bitrate_kbps=result.bitrate_kbps,
        )
    record_finished("completed", "", started)
    log.info(
        "job_completed",
        duration_s=round(time.monotonic() - started, 3),
        media_s=result.duration_s,
        output_bytes=result.size_bytes,
        stream_copy=result.stream_copy,
    )
    return Outcome(Action.ACK)


def handle_failure(
    exc: AppError,
    job_id: str,
    attempt: int,
    ctx: JobContext,
    started: float,
) -> Outcome:
    elapsed = round(time.monotonic() - started, 3)
    with Session(ctx.engine) as session:
        if not exc.retryable:
            jobs.fail(session=session, job_id=job_id, code=exc.code, message=exc.message)
            record_finished("failed", exc.code, started)
            log.info("job_failed", code=exc.code, duration_s=elapsed, detail=exc.detail)
            return Outcome(Action.ACK)
        if attempt < ctx.settings.max_attempts:
            jobs.requeue_for_retry(
                session=session, job_id=job_id, code=exc.code, message=exc.message
            )
            ceiling = backoff_ms(ctx.settings, attempt)
            delay = random.randint(ceiling // 2, ceiling)  # jitter below the queue's TTL
            metrics.RETRIES.labels(exc.code).inc()
            log.info("job_retry_scheduled", code=exc.code, delay_ms=delay, detail=exc.detail)
            return Outcome(Action.RETRY, retry_attempt=attempt, delay_ms=delay)
        jobs.fail(
            session=session,
            job_id=job_id,
            code="retries_exhausted",
            message=f"The conversion failed {attempt} times; the last error was: {exc.message}",
        )
        record_finished("failed", "retries_exhausted", started)
        metrics.DEAD_LETTERED.labels("retries_exhausted").inc()
        log.warning("job_retries_exhausted", code=exc.code, detail=exc.detail)
        return Outcome(Action.DEAD_LETTER)


def record_finished(outcome: str, code: str, started: float) -> None:
    metrics.JOBS_FINISHED.labels(outcome, code).inc()
    metrics.JOB_DURATION.observe(time.monotonic() - started)


@dataclass(frozen=True)
class ConvertResult:
    key: str
    size_bytes: int
    duration_s: float
    bitrate_kbps: int | None
    stream_copy: bool


def convert(job_id: str, input_key: str, options: JobOptions, ctx: JobContext) -> ConvertResult:
    """Probe, transcode to a temp file, probe the result, upload. Temp dir always removed."""
    settings = ctx.settings
    input_url = ctx.storage.presign_internal_get(input_key, expires_s=settings.input_url_expires_s)
    probe = ffmpeg.probe(settings.ffprobe_bin, input_url)
    if not probe.audio:
        raise MediaError("The file has no audio track to convert.", code="no_audio_stream")
    log.info(
        "input_probed",
        format=probe.format_name,
        media_s=probe.duration_s,
        codec=probe.first_audio.codec,
        channels=probe.first_audio.channels,
    )
    workdir = Path(
        tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{job_id}-", dir=settings.tmp_dir)
    )
    try:
        out_path = workdir / "out.mp3"
        argv = ffmpeg.transcode_argv(settings.ffmpeg_bin, input_url, str(out_path), probe, options)

        def report(percent: int) -> None:
            with Session(ctx.engine) as session:
                jobs.set_progress(session=session, job_id=job_id, progress=percent)

        ffmpeg.run_transcode(
            argv,
            duration_s=probe.duration_s,
            on_progress=report,
            timeout_s=settings.job_timeout_s,
            progress_interval_s=settings.progress_interval_s,
        )
        result = ffmpeg.probe(settings.ffprobe_bin, str(out_path), restrict_formats=False)
        if not result.audio or not out_path.stat().st_size:
            raise MediaError("The file's audio could not be decoded.", code="unsupported_media")
        key = output_key(job_id)
        ctx.storage.upload_file(str(out_path), key, content_type="audio/mpeg")
        bitrate = result.first_audio.bit_rate or result.bit_rate
        return ConvertResult(
            key=key,
            size_bytes=out_path.stat().st_size,
            duration_s=round(result.duration_s or 0.0, 3),
            bitrate_kbps=round(bitrate / 1000) if bitrate else None,
            stream_copy=ffmpeg.can_stream_copy(probe, options),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
