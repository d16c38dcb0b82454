"""process_job(): transcode (one ffmpeg run) → check → upload → mark done, and what to do on failure.

The handler never acks or publishes itself (pika objects live on the consumer's I/O
thread); it returns an Outcome that the consumer carries out there.
"""

from __future__ import annotations

import contextvars
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
from worker import ffmpeg, metrics, mp3info, timing

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


def output_key(job_id: str, owner_id: str | None = None) -> str:
    """Deterministic, so a redelivered job overwrites rather than duplicates; namespaced
    per owner (outputs/{user}/{job}.mp3)."""
    return f"outputs/{owner_id}/{job_id}.mp3" if owner_id else f"outputs/{job_id}.mp3"


class Slots:
    """At most ``concurrency`` ffmpeg runs at once in this worker.

    A job gives its slot back as soon as its ffmpeg exits, before it uploads the MP3 and
    records the result, and lets one more message in then, so the next encode overlaps
    that work instead of waiting for it; a job whose input is short asks for that message
    earlier, once ffmpeg has described the input (``Slot.let_next_in``). ``bind_next``
    (set by the consumer, called on the job's own thread) gives the function that lets
    the message after this job's in. A job is claimed before it waits for its slot, so a
    message let in early is claimed while the last encode ends, not after it.
    """

    def __init__(self, concurrency: int) -> None:
        self._sem = threading.BoundedSemaphore(concurrency)
        self.bind_next: Callable[[], Callable[[], None]] | None = None

    @contextmanager
    def take(self) -> Iterator[Slot]:
        """Wait for a slot. Only claimed jobs wait, and a claimed job is never given
        back: if the worker stops meanwhile, its drain finishes the job."""
        self._sem.acquire()
        slot = Slot(self, self.bind_next() if self.bind_next is not None else None)
        try:
            yield slot
        finally:
            slot.release(early=False)


class Slot:
    def __init__(self, slots: Slots, next_in: Callable[[], None] | None = None) -> None:
        self._slots = slots
        self._next_in = next_in
        self._lock = threading.Lock()
        self._held = True

    def let_next_in(self) -> None:
        """Let the message after this job's in (once; from any thread)."""
        with self._lock:
            next_in, self._next_in = self._next_in, None
        if next_in is not None:
            next_in()

    def release(self, *, early: bool = True) -> None:
        """Idempotent: released as soon as ffmpeg exits, and again (no-op) at the end."""
        with self._lock:
            if not self._held:
                return
            self._held = False
            self._slots._sem.release()
        if early:
            self.let_next_in()


@dataclass
class JobContext:
    settings: Settings
    engine: Engine
    storage: Storage
    stopping: threading.Event = field(default_factory=threading.Event)
    slots: Slots = field(init=False)

    def __post_init__(self) -> None:
        self.slots = Slots(self.settings.worker_concurrency)


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
    if ctx.stopping.is_set():  # a message that arrives while the worker stops goes back
        log.info("stopping_job_not_started")
        return Outcome(Action.REQUEUE)
    timing.start()
    claimed = claim(message, ctx)
    if isinstance(claimed, Outcome):
        return claimed
    timing.mark("claim")
    log.info("job_started", attempts=claimed.attempts)
    return run_job(claimed, ctx)


def claim(message: JobMessage, ctx: JobContext) -> Job | Outcome:
    """The job, marked processing for this attempt; else what to do with the message."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        # The message's token is the one the row holds, unless the job was re-dispatched
        # since: claim straight away (one UPDATE … RETURNING), and read the row only to
        # tell why when that claims nothing.
        job = None
        if message.token is not None:
            job = jobs.start_attempt(session=session, job_id=message.job_id, token=message.token)
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
            if message.token is not None:  # active, ours, yet not claimed: a race lost
                return Outcome(Action.ACK)
            job = jobs.start_attempt(
                session=session, job_id=message.job_id, token=existing.dispatch_token
            )
            if job is None:
                return Outcome(Action.ACK)
        return job


def run_job(job: Job, ctx: JobContext) -> Outcome:
    """Convert a claimed job (its lease renewed from here on) and record the outcome."""
    token = job.dispatch_token
    started = time.monotonic()
    try:
        with (
            metrics.JOBS_IN_PROGRESS.track_inprogress(),
            lease(ctx, job.id, token),
            ctx.slots.take() as slot,
        ):
            timing.mark("slot")
            result = convert(
                job.id,
                job.input_key,
                JobOptions.model_validate(job.options),
                ctx,
                token=token,
                key=output_key(job.id, job.owner_id),
                slot=slot,
            )
    except AppError as exc:
        return handle_failure(exc, job.id, job.attempts, ctx, started, token=token)
    except Exception as exc:  # unexpected: log with traceback, treat as retryable
        log.error("job_crashed", exc_info=True)
        wrapped = TransientTranscodeError(
            "The conversion failed unexpectedly.", code="internal_error", detail=repr(exc)[:300]
        )
        return handle_failure(wrapped, job.id, job.attempts, ctx, started, token=token)

    with Session(ctx.engine) as session:
        owned = jobs.complete(
            session=session,
            job_id=job.id,
            output_key=result.key,
            size_bytes=result.size_bytes,
            duration_s=result.duration_s,
            bitrate_kbps=result.bitrate_kbps,
            token=token,
        )
    timing.mark("complete")
    if not owned:
        # Our lease lapsed and the job was handed to another worker: its outcome stands.
        log.warning("lease_lost_result_discarded")
        return Outcome(Action.ACK)
    record_finished("completed", "", started)
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


def handle_failure(
    exc: AppError,
    job_id: str,
    attempt: int,
    ctx: JobContext,
    started: float,
    token: str | None = None,
) -> Outcome:
    elapsed = round(time.monotonic() - started, 3)
    with Session(ctx.engine) as session:
        if not exc.retryable:
            jobs.fail(
                session=session, job_id=job_id, code=exc.code, message=exc.message, token=token
            )
            record_finished("failed", exc.code, started)
            log.info("job_failed", code=exc.code, duration_s=elapsed, detail=exc.detail)
            return Outcome(Action.ACK)
        if attempt < ctx.settings.max_attempts:
            jobs.requeue_for_retry(
                session=session, job_id=job_id, code=exc.code, message=exc.message, token=token
            )
            ceiling = backoff_ms(ctx.settings, attempt)
            # Jitter in the top quarter, below the retry queue's TTL: delays still double.
            delay = random.randint(ceiling * 3 // 4, ceiling)
            metrics.RETRIES.labels(exc.code).inc()
            log.info("job_retry_scheduled", code=exc.code, delay_ms=delay, detail=exc.detail)
            return Outcome(Action.RETRY, retry_attempt=attempt, delay_ms=delay)
        jobs.fail(
            session=session,
            job_id=job_id,
            code="retries_exhausted",
            message=f"The conversion failed {attempt} times; the last error was: {exc.message}",
            token=token,
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


@contextmanager
def lease(ctx: JobContext, job_id: str, token: str | None) -> Iterator[None]:
    """Renew the job's lease every heartbeat interval while the block runs."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(ctx.settings.heartbeat_interval_s):
            try:
                with Session(ctx.engine) as session:
                    jobs.heartbeat(session=session, job_id=job_id, token=token)
            except SQLAlchemyError:
                log.warning("heartbeat_failed")

    thread = threading.Thread(  # in a copy of this context: its logs carry the job's ids
        target=contextvars.copy_context().run, args=(beat,), daemon=True, name=f"lease-{job_id[:8]}"
    )
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)


def is_truncated_mp4(error: MediaError, input_key: str, ctx: JobContext) -> bool:
    """A cut-off MP4 (ftyp, but no moov) rather than a file that is not media at all."""
    if not (error.detail and "moov atom not found" in error.detail):
        return False
    return ctx.storage.read_head(input_key, 12)[4:8] == b"ftyp"


def check_input_limits(probe: ffmpeg.ProbeResult, settings: Settings) -> None:
    if not probe.audio:
        raise MediaError("The file has no audio track to convert.", code="no_audio_stream")
    limit = settings.max_media_duration_s
    if probe.duration_s and probe.duration_s > limit:
        raise ffmpeg.too_long(probe.duration_s, limit)


def check_output(
    probe: ffmpeg.ProbeResult,
    result: ffmpeg.ProbeResult,
    stderr_tail: list[str],
    size: int,
    settings: Settings,
) -> None:
    """Refuse an MP3 that is shorter than the input says it is, or that hit the size cap."""
    if not result.audio or not size:
        raise MediaError("The file's audio could not be decoded.", code="unsupported_media")
    if size >= settings.max_output_bytes:
        raise MediaError(
            "The MP3 would be larger than the largest output allowed.", code="output_too_large"
        )
    mov = probe.format_name.startswith("mov") and probe.audio
    expected = probe.first_audio.duration_s if mov else None
    got = result.duration_s or 0.0
    if ffmpeg.looks_truncated(stderr_tail) or (
        expected and got < expected - max(1.0, 0.02 * expected)
    ):
        raise MediaError(
            "The upload is incomplete: the file was cut off before its end.",
            code="input_truncated",
            detail="\n".join(stderr_tail)[-1500:] or f"decoded {got:.2f}s of {expected}s",
        )


def convert(
    job_id: str,
    input_key: str,
    options: JobOptions,
    ctx: JobContext,
    token: str | None = None,
    key: str | None = None,
    slot: Slot | None = None,
) -> ConvertResult:
    """One ffmpeg run (it describes the input as it reads it), check, upload.

    The temp dir, which only ever holds the MP3, is always removed.
    """
    settings = ctx.settings
    input_url = ctx.storage.presign_internal_get(input_key, expires_s=settings.input_url_expires_s)
    workdir = Path(
        tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{job_id}-", dir=settings.tmp_dir)
    )
    try:
        out_path = workdir / "out.mp3"
        stream_copy = ffmpeg.can_stream_copy(input_key, options)
        try:
            run = transcode(input_url, out_path, options, ctx, job_id, token, stream_copy, slot)
        except ffmpeg.CopyNotPossible:
            log.info("stream_copy_not_possible")  # named .mp3, but the audio is not MP3
            stream_copy = False
            run = transcode(input_url, out_path, options, ctx, job_id, token, stream_copy, slot)
        except MediaError as exc:
            if is_truncated_mp4(exc, input_key, ctx):
                raise MediaError(
                    "The upload is incomplete: the file was cut off before its end.",
                    code="input_truncated",
                    detail=exc.detail,
                ) from exc
            raise
        finally:
            if slot is not None:
                slot.release()  # the next job's ffmpeg may start while this one uploads
        timing.mark("transcode")
        # The MP3's own Xing/Info header says what ffprobe would, without another process.
        result = mp3info.read_xing(out_path) or ffmpeg.probe(
            settings.ffprobe_bin, str(out_path), restrict_formats=False
        )
        check_output(run.input, result, run.stderr_tail, out_path.stat().st_size, settings)
        timing.mark("check")
        key = key or output_key(job_id)
        ctx.storage.upload_file(str(out_path), key, content_type="audio/mpeg")
        timing.mark("upload")
        bitrate = result.first_audio.bit_rate or result.bit_rate
        return ConvertResult(
            key=key,
            size_bytes=out_path.stat().st_size,
            duration_s=round(result.duration_s or 0.0, 3),
            bitrate_kbps=round(bitrate / 1000) if bitrate else None,
            stream_copy=stream_copy,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def transcode(
    input_url: str,
    out_path: Path,
    options: JobOptions,
    ctx: JobContext,
    job_id: str,
    token: str | None,
    stream_copy: bool,
    slot: Slot | None = None,
) -> ffmpeg.Transcoded:
    settings = ctx.settings
    argv = ffmpeg.transcode_argv(
        settings.ffmpeg_bin,
        input_url,
        str(out_path),
        options,
        stream_copy=stream_copy,
        max_output_bytes=settings.max_output_bytes,
    )

    def on_input(probe: ffmpeg.ProbeResult) -> None:
        check_input_limits(probe, settings)
        if (
            slot is not None
            and probe.duration_s
            and probe.duration_s <= settings.worker_lookahead_s
        ):
            # A short input's encode ends soon: the next message may wait for it here
            # rather than in the broker for the round trip after it.
            slot.let_next_in()
        audio = probe.first_audio
        log.info(
            "input_probed",
            format=probe.format_name,
            media_s=probe.duration_s,
            codec=audio.codec,
            channels=audio.channels,
        )

    def report(percent: int) -> None:
        with Session(ctx.engine) as session:
            jobs.set_progress(session=session, job_id=job_id, progress=percent, token=token)

    argv, preexec_fn = ffmpeg.sandboxed(
        argv,
        cpu_seconds=int(settings.job_timeout_s) + 60,
        memory_mb=settings.ffmpeg_memory_limit_mb,
    )
    return ffmpeg.run_transcode(
        argv,
        on_input=on_input,
        on_progress=report,
        max_duration_s=settings.max_media_duration_s,
        timeout_s=settings.job_timeout_s,
        progress_interval_s=settings.progress_interval_s,
        preexec_fn=preexec_fn,
    )
