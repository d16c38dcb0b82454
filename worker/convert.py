"""One conversion: ffprobe describes the input, ffmpeg converts it, the output is checked,
its loudness measured, and it is uploaded.

Both read the input from storage through a presigned GET URL, so the temp directory
holds only the output; it is always removed. Loudness normalisation takes two passes:
the first measures the (trimmed, faded) input, the second applies the gain. The input
limits are checked from ffprobe's JSON before ffmpeg starts (``check_input_limits``):
facts never come from ffmpeg's log, where a file's metadata is printed verbatim.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlmodel import Session

from shared import job_transitions
from shared.config import Settings
from shared.errors import MediaError
from shared.options import JobOptions, format_info
from worker import ffmpeg, mp3info, opus_cover, timing
from worker.context import JobContext
from worker.ffmpeg import loudness, outputs
from worker.ffmpeg.formats import encoding

log = structlog.get_logger("worker")

TMP_PREFIX = "v2m-job-"


@dataclass(frozen=True)
class ConvertResult:
    key: str
    size_bytes: int
    duration_s: float
    bitrate_kbps: int | None
    stream_copy: bool
    loudness: ffmpeg.Loudness | None = None


class JobSplit(Exception):
    """The job was split into segments that any worker encodes, not converted here."""


def output_key(job_id: str, owner_id: str | None = None, extension: str = ".mp3") -> str:
    """Deterministic, so a redelivered job overwrites rather than duplicates; namespaced
    per owner (outputs/{user}/{job}.mp3)."""
    name = f"{job_id}{extension}"
    return f"outputs/{owner_id}/{name}" if owner_id else f"outputs/{name}"


def check_input_limits(probe: ffmpeg.ProbeResult, settings: Settings) -> None:
    if not probe.audio:
        raise MediaError("The file has no audio track to convert.", code="no_audio_stream")
    limit = settings.max_media_duration_s
    if probe.duration_s and probe.duration_s > limit:
        raise ffmpeg.too_long(probe.duration_s, limit)


def check_trim(probe: ffmpeg.ProbeResult, options: JobOptions) -> None:
    """A trim that starts at or past the input's end leaves nothing to convert."""
    start = options.trim.start_s if options.trim else None
    if start is not None and probe.duration_s is not None and start >= probe.duration_s:
        raise MediaError(
            f"The trim starts at {start:g} s, but the file is only {probe.duration_s:.2f} s long.",
            code="trim_out_of_range",
        )


def check_output(
    probe: ffmpeg.ProbeResult,
    result: ffmpeg.ProbeResult,
    stderr_tail: list[str],
    size: int,
    settings: Settings,
    options: JobOptions | None = None,
) -> None:
    """Refuse an output that is shorter than the input says it is, or that hit the size cap."""
    if not result.audio or not size:
        raise MediaError("The file's audio could not be decoded.", code="unsupported_media")
    if size >= settings.max_output_bytes:
        raise MediaError(
            "The output would be larger than the largest output allowed.", code="output_too_large"
        )
    mov = probe.format_name.startswith("mov") and probe.audio
    expected = probe.first_audio.duration_s if mov else None
    if expected is not None and options is not None:
        expected = outputs.output_duration(options, expected)
    got = result.duration_s or 0.0
    if ffmpeg.looks_truncated(stderr_tail) or (
        expected and got < expected - max(1.0, 0.02 * expected)
    ):
        raise MediaError(
            "The upload is incomplete: the file was cut off before its end.",
            code="input_truncated",
            detail="\n".join(stderr_tail)[-1500:] or f"decoded {got:.2f}s of {expected}s",
        )


def is_truncated_mp4(error: MediaError, input_key: str, ctx: JobContext) -> bool:
    """A cut-off MP4 (ftyp, but no moov) rather than a file that is not media at all."""
    if not (error.detail and "moov atom not found" in error.detail):
        return False
    return ctx.storage.read_head(input_key, 12)[4:8] == b"ftyp"


def convert(
    job_id: str,
    input_key: str,
    options: JobOptions,
    ctx: JobContext,
    token: str | None = None,
    key: str | None = None,
    splitter: Callable[[ffmpeg.ProbeResult], bool] | None = None,
) -> ConvertResult:
    """ffprobe, then one ffmpeg run, check, upload; ``JobSplit`` when ``splitter`` split
    the job into segments (worker/segmented.py) instead."""
    settings = ctx.settings
    input_url = ctx.storage.presign_internal_get(input_key, expires_s=settings.input_url_expires_s)
    workdir = Path(
        tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{job_id}-", dir=settings.tmp_dir)
    )
    try:
        info = format_info(options.format)
        out_path = workdir / f"out{info.extension}"
        stream_copy = False
        try:
            probe = describe(input_url, settings)
            check_trim(probe, options)
            stream_copy = ffmpeg.can_stream_copy(probe, options)
            if splitter is not None and not stream_copy and splitter(probe):
                raise JobSplit
            measured = measure_input(input_url, workdir, options, probe, settings)
            run = transcode(
                input_url, out_path, options, ctx, probe, job_id, token, stream_copy, measured
            )
        except ffmpeg.CopyNotPossible:
            log.info("stream_copy_not_possible")  # the codec ffprobe named would not copy
            stream_copy = False
            run = transcode(input_url, out_path, options, ctx, probe, job_id, token, False, None)
        except MediaError as exc:
            if is_truncated_mp4(exc, input_key, ctx):
                raise MediaError(
                    "The upload is incomplete: the file was cut off before its end.",
                    code="input_truncated",
                    detail=exc.detail,
                ) from exc
            raise
        timing.mark("transcode")
        if encoding(options).cover_after:
            opus_cover.add_cover(str(out_path), input_url, options, probe, settings)
        # An MP3's own Xing/Info header says what ffprobe would, without another process.
        xing = mp3info.read_xing(out_path) if options.format == "mp3" else None
        result = xing or ffmpeg.probe(settings.ffprobe_bin, str(out_path), restrict_formats=False)
        size = out_path.stat().st_size
        check_output(probe, result, run.stderr_tail, size, settings, options)
        timing.mark("check")
        level = loudness.measure(
            settings.ffmpeg_bin,
            str(out_path),
            workdir,
            timeout_s=settings.job_timeout_s,
            memory_mb=settings.ffmpeg_memory_limit_mb,
        )
        timing.mark("loudness")
        key = key or output_key(job_id, extension=info.extension)
        ctx.storage.upload_file(str(out_path), key, content_type=info.content_type)
        timing.mark("upload")
        bitrate = result.first_audio.bit_rate or result.bit_rate
        return ConvertResult(
            key=key,
            size_bytes=size,
            duration_s=round(result.duration_s or 0.0, 3),
            bitrate_kbps=round(bitrate / 1000) if bitrate else None,
            stream_copy=stream_copy,
            loudness=level,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measure_input(
    input_url: str,
    workdir: Path,
    options: JobOptions,
    probe: ffmpeg.ProbeResult,
    settings: Settings,
) -> ffmpeg.Loudness | None:
    """The first pass of normalisation: the loudness of the part of the input kept, as
    the second pass will see it (trimmed and faded); None when nothing asks for it."""
    if options.normalize is None:
        return None
    duration = outputs.output_duration(options, probe.duration_s)
    measured = loudness.measure(
        settings.ffmpeg_bin,
        input_url,
        workdir,
        before_input=outputs.trim_args(options),
        filters=outputs.fade_filters(options, duration),
        timeout_s=settings.job_timeout_s,
        memory_mb=settings.ffmpeg_memory_limit_mb,
    )
    timing.mark("measure")
    log.info("input_loudness_measured", loudness=measured)
    return measured


def describe(input_url: str, settings: Settings) -> ffmpeg.ProbeResult:
    """ffprobe's description of the input, refused when it passes a limit."""
    probe = ffmpeg.probe(settings.ffprobe_bin, input_url, memory_mb=settings.ffmpeg_memory_limit_mb)
    check_input_limits(probe, settings)
    audio = probe.first_audio
    log.info(
        "input_probed",
        format=probe.format_name,
        media_s=probe.duration_s,
        codec=audio.codec,
        channels=audio.channels,
    )
    timing.mark("probe")
    return probe


def transcode(
    input_url: str,
    out_path: Path,
    options: JobOptions,
    ctx: JobContext,
    probe: ffmpeg.ProbeResult,
    job_id: str,
    token: str | None,
    stream_copy: bool,
    measured: ffmpeg.Loudness | None,
) -> ffmpeg.Transcoded:
    """Run ffmpeg under the job's CPU-time and address-space limits, writing progress."""
    settings = ctx.settings
    argv = ffmpeg.transcode_argv(
        settings.ffmpeg_bin,
        input_url,
        str(out_path),
        options,
        stream_copy=stream_copy,
        max_output_bytes=settings.max_output_bytes,
        probe=probe,
        measured=measured,
    )

    def report(percent: int) -> None:
        with Session(ctx.engine) as session:
            job_transitions.set_progress(
                session=session, job_id=job_id, progress=percent, token=token
            )

    argv, preexec_fn = ffmpeg.sandboxed(
        argv,
        cpu_seconds=int(settings.job_timeout_s) + 60,
        memory_mb=settings.ffmpeg_memory_limit_mb,
    )
    return ffmpeg.run_transcode(
        argv,
        on_progress=report,
        duration_s=outputs.output_duration(options, probe.duration_s),
        max_duration_s=settings.max_media_duration_s,
        timeout_s=settings.job_timeout_s,
        progress_interval_s=settings.progress_interval_s,
        preexec_fn=preexec_fn,
    )
