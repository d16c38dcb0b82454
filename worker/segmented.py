"""Split jobs, the running part: split a job into segment messages, run one segment,
and join the segments once the last is done (docs/ARCHITECTURE.md, "Split jobs").

Segment messages go on the job queue itself, so any free worker takes one and the
queue's length (what KEDA scales on) counts them. A segment is claimed, renewed and
finished in its own row (shared/segments.py), under the job's dispatch token; the job's
lease is renewed with it. A segment that fails for a reason that may pass is retried
alone through the retry queues; one that fails for good fails its job with its code.
The worker whose segment completes the count joins; a copy of that segment's message
delivered later (its worker died while joining) joins again, with the same result.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import structlog
from sqlmodel import Session

from shared import job_transitions, segments
from shared.errors import AppError, MediaError, TransientTranscodeError
from shared.models import TERMINAL_STATUSES, Job, utcnow
from shared.options import JobOptions, format_info
from shared.queue import JobMessage, backoff_ms
from shared.retention import output_expires_at
from worker import ffmpeg, metrics, mp3info, split
from worker.context import JobContext
from worker.convert import TMP_PREFIX, describe, output_key
from worker.events import publish_outcome
from worker.ffmpeg import loudness
from worker.lease import renewing
from worker.outcome import Action, Outcome

log = structlog.get_logger("worker")


def part_key(job_id: str, token: str, index: int) -> str:
    return f"parts/{job_id}/{token}/{index}.mp3"


def dispatch_segments(job: Job, probe: ffmpeg.ProbeResult, ctx: JobContext) -> bool:
    """Record the job's segments and publish one message each; False when this worker
    cannot publish (no publisher), and the job is converted whole instead."""
    if ctx.events is None or probe.duration_s is None:
        return False
    rate = probe.first_audio.sample_rate
    ranges = split.plan(probe.duration_s, rate, ctx.settings.split_segment_s)
    token = job.dispatch_token
    remove_parts(job.id, ctx)  # of an earlier split under an older token
    with Session(ctx.engine) as session:
        if not segments.create(
            session=session, job_id=job.id, token=token, ranges=ranges, sample_rate=rate
        ):
            return True  # the job moved on (re-dispatched): nothing of ours to do
    for index in range(len(ranges)):
        ctx.events.publish(JobMessage(job_id=job.id, token=token, segment=index))
    metrics.SPLIT_JOBS.inc()
    log.info("job_split", segments=len(ranges), media_s=probe.duration_s)
    return True


def remove_parts(job_id: str, ctx: JobContext) -> None:
    """Delete the stored segments of the job's finished segments (best effort: a part
    left behind is only bytes, under the job's own prefix)."""
    with Session(ctx.engine) as session:
        keys = [row.part_key for row in segments.all_of(session=session, job_id=job_id)]
    for key in filter(None, keys):
        try:
            ctx.storage.delete(key)
        except AppError:
            log.warning("segment_part_not_removed", key=key)


def handle_segment(message: JobMessage, ctx: JobContext) -> Outcome:
    """Run the segment a message names (the consumer's handler for segment messages)."""
    assert message.segment is not None and message.token is not None
    index, token = message.segment, message.token
    while True:
        with Session(ctx.engine, expire_on_commit=False) as session:
            job = session.get(Job, message.job_id)
            if job is None:
                metrics.DEAD_LETTERED.labels("unknown_job").inc()
                return Outcome(Action.DEAD_LETTER)
            if job.status in TERMINAL_STATUSES or job.dispatch_token != token:
                log.info("stale_segment_ignored", status=job.status)
                return Outcome(Action.ACK)
            cutoff = utcnow() - timedelta(seconds=ctx.settings.job_lease_s)
            row = segments.start(
                session=session, job_id=job.id, index=index, token=token, lease_cutoff=cutoff
            )
            existing = row or segments.get(session=session, job_id=job.id, index=index)
        if existing is None or existing.token != token:
            return Outcome(Action.ACK)
        if row is not None:
            return run_segment(job, row, message.attempt, ctx)
        if existing.state == segments.SegmentState.done:
            if job.segments_total and job.segments_done >= job.segments_total:
                return join_job(job, ctx)  # the joiner died: this copy joins
            return Outcome(Action.ACK)
        if not message.redelivered:
            log.info("duplicate_segment_ignored")
            return Outcome(Action.ACK)
        # Redelivered while its row says running: its worker may have died; wait for the
        # lease to lapse, then claim it.
        if ctx.stopping.wait(ctx.settings.heartbeat_interval_s):
            return Outcome(Action.REQUEUE)


def run_segment(job: Job, row: segments.JobSegment, attempt: int, ctx: JobContext) -> Outcome:
    started = time.monotonic()

    def beat(session: Session) -> None:
        segments.heartbeat(session=session, job_id=job.id, index=row.idx, token=row.token)

    log.info("segment_started", segment=row.idx)
    try:
        with renewing(ctx, f"segment-{job.id[:8]}-{row.idx}", beat):
            result = encode_segment(job, row, ctx)
    except AppError as exc:
        return segment_failed(exc, job, row, attempt, ctx)
    except Exception as exc:  # unexpected: log with traceback, treat as retryable
        log.error("segment_crashed", exc_info=True)
        wrapped = TransientTranscodeError(
            "The conversion failed unexpectedly.", code="internal_error", detail=repr(exc)[:300]
        )
        return segment_failed(wrapped, job, row, attempt, ctx)
    with Session(ctx.engine) as session:
        counts = segments.finish(
            session=session,
            job_id=job.id,
            index=row.idx,
            token=row.token,
            result=result,
        )
    metrics.SEGMENTS_FINISHED.labels("done").inc()
    log.info("segment_done", segment=row.idx, counts=counts, wall_s=time.monotonic() - started)
    if counts is None:  # the job failed or moved on meanwhile: nobody will join this part
        ctx.storage.delete(result.part_key)
    elif counts[0] == counts[1]:
        return join_job(job, ctx)
    return Outcome(Action.ACK)


def _workdir(ctx: JobContext, job_id: str) -> Path:
    prefix = f"{TMP_PREFIX}{os.getpid()}-{job_id}-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=ctx.settings.tmp_dir))


def encode_segment(job: Job, row: segments.JobSegment, ctx: JobContext) -> segments.Result:
    """Encode the segment's range, measure its blocks' loudness, store the frames kept."""
    settings = ctx.settings
    options = JobOptions.model_validate(job.options)
    url = ctx.storage.presign_internal_get(job.input_key, expires_s=settings.input_url_expires_s)
    part = segments.Range(row.start_sample, row.end_sample)
    win = split.window(part, row.sample_rate)
    workdir = _workdir(ctx, job.id)
    try:
        # Only segment 0 carries the tags, cover and chapters; it needs the input's facts.
        probe = describe(url, settings) if row.idx == 0 else None
        if row.idx:
            options = options.model_copy(update={"cover": "none", "chapters": False})
        encoded = workdir / "segment.mp3"
        argv = ffmpeg.transcode_argv(
            settings.ffmpeg_bin,
            url,
            str(encoded),
            options,
            max_output_bytes=settings.max_output_bytes,
            probe=probe,
            cut=win.cut,
        )
        argv, preexec_fn = ffmpeg.sandboxed(
            argv,
            cpu_seconds=int(settings.job_timeout_s) + 60,
            memory_mb=settings.ffmpeg_memory_limit_mb,
        )
        run = ffmpeg.run_transcode(
            argv,
            on_progress=lambda _percent: None,
            duration_s=None,
            max_duration_s=settings.max_media_duration_s,
            timeout_s=settings.job_timeout_s,
            preexec_fn=preexec_fn,
        )
        if ffmpeg.looks_truncated(run.stderr_tail):
            raise MediaError(
                "The upload is incomplete: the file was cut off before its end.",
                code="input_truncated",
                detail="\n".join(run.stderr_tail)[-1500:],
            )
        try:
            body, padding = split.cut_part(encoded.read_bytes(), row.idx, win)
        except ValueError as exc:
            raise MediaError(
                "The file's audio could not be decoded.", code="unsupported_media", detail=str(exc)
            ) from exc
        grid = split.blocks(part, win, row.sample_rate)
        measured = loudness.measure_blocks(
            settings.ffmpeg_bin,
            encoded,
            workdir,
            filters=[f"atrim=start_sample={grid.start_sample}"],
            timeout_s=settings.job_timeout_s,
            memory_mb=settings.ffmpeg_memory_limit_mb,
        )
        end = None if grid.count is None else grid.first + grid.count
        kept = workdir / "part.mp3"
        kept.write_bytes(body)
        key = part_key(job.id, row.token, row.idx)
        ctx.storage.upload_file(str(kept), key, content_type="audio/mpeg")
        return segments.Result(
            part_key=key,
            padding=padding,
            loudness_blocks=measured.momentary[grid.first : end],
            true_peak=measured.true_peak,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def segment_failed(
    exc: AppError, job: Job, row: segments.JobSegment, attempt: int, ctx: JobContext
) -> Outcome:
    """A retryable failure retries this segment alone; a permanent one, or the last
    attempt, fails the job with the segment's code."""
    if exc.retryable and attempt < ctx.settings.max_attempts:
        with Session(ctx.engine) as session:
            segments.release(session=session, job_id=job.id, index=row.idx, token=row.token)
        metrics.SEGMENTS_FINISHED.labels("retry").inc()
        metrics.RETRIES.labels(exc.code).inc()
        delay = backoff_ms(ctx.settings, attempt)
        log.info("segment_retry_scheduled", segment=row.idx, code=exc.code, detail=exc.detail)
        return Outcome(Action.RETRY, retry_attempt=attempt, delay_ms=delay)
    code, message = exc.code, exc.message
    if exc.retryable:
        code = "retries_exhausted"
        message = f"The conversion failed {attempt} times; the last error was: {exc.message}"
    with Session(ctx.engine) as session:
        failed = job_transitions.fail(
            session=session, job_id=job.id, code=code, message=message, token=row.token
        )
    metrics.SEGMENTS_FINISHED.labels("failed").inc()
    if failed:
        remove_parts(job.id, ctx)
        publish_outcome(ctx, job.id, row.token, "job.failed")
        metrics.JOBS_FINISHED.labels("failed", code).inc()
    log.info("segment_failed", segment=row.idx, code=code, detail=exc.detail)
    return Outcome(Action.ACK)


def join_job(job: Job, ctx: JobContext) -> Outcome:
    """Fetch the segments, join them, measure, store and complete the job."""
    started = time.monotonic()
    settings = ctx.settings
    token = job.dispatch_token
    workdir = _workdir(ctx, job.id)
    try:
        with Session(ctx.engine) as session:
            rows = segments.all_of(session=session, job_id=job.id)
        parts = []
        for row in rows:
            assert row.part_key is not None
            path = workdir / f"{row.idx}.mp3"
            ctx.storage.download_file(row.part_key, str(path))
            parts.append(path.read_bytes())
        out = workdir / "out.mp3"
        out.write_bytes(split.join(parts, rows[-1].padding or 0))
        del parts
        facts = mp3info.read_xing(out)
        size = out.stat().st_size
        if facts is None or size >= settings.max_output_bytes:
            raise MediaError("The joined output could not be read.", code="unsupported_media")
        level = joined_loudness(rows)
        info = format_info("mp3")
        key = output_key(job.id, job.owner_id, info.extension)
        ctx.storage.upload_file(str(out), key, content_type=info.content_type)
    except AppError as exc:
        log.warning("join_failed", code=exc.code, detail=exc.detail)
        if exc.retryable:  # the segment's message comes back, and its worker joins again
            return Outcome(Action.REQUEUE)
        with Session(ctx.engine) as session:
            if job_transitions.fail(
                session=session, job_id=job.id, code=exc.code, message=exc.message, token=token
            ):
                publish_outcome(ctx, job.id, token, "job.failed")
        return Outcome(Action.ACK)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bitrate = facts.bit_rate
    with Session(ctx.engine) as session:
        owned = job_transitions.complete(
            session=session,
            job_id=job.id,
            output_key=key,
            size_bytes=size,
            duration_s=round(facts.duration_s or 0.0, 3),
            bitrate_kbps=round(bitrate / 1000) if bitrate else None,
            expires_at=output_expires_at(settings, utcnow()),
            token=token,
            encoded=True,
            loudness_lufs=level.integrated_lufs if level else None,
            true_peak_db=level.true_peak_db if level else None,
        )
    if owned:
        remove_parts(job.id, ctx)
        publish_outcome(ctx, job.id, token, "job.completed")
        metrics.JOBS_FINISHED.labels("completed", "").inc()
        metrics.record_completed(input_bytes=job.input_size_bytes, output_bytes=size)
    metrics.JOIN_DURATION.observe(time.monotonic() - started)
    log.info(
        "job_completed",
        split=len(rows),
        join_s=round(time.monotonic() - started, 3),
        media_s=facts.duration_s,
        output_bytes=size,
    )
    return Outcome(Action.ACK)


def joined_loudness(rows: list[segments.JobSegment]) -> ffmpeg.Loudness | None:
    """The joined output's loudness from its segments' blocks (gated as one stream) and
    true peaks (the largest), without measuring the joined file again."""
    blocks = [m for row in rows for m in row.loudness_blocks or []]
    value = loudness.integrated(blocks)
    if value is None:
        return None
    peak = max((row.true_peak or 0.0) for row in rows)
    return ffmpeg.Loudness(
        integrated_lufs=round(value, 2),
        range_lu=0.0,
        true_peak_db=round(20 * math.log10(peak), 2) if peak > 0 else None,
    )
