"""ffprobe on an input nobody has checked yet, and the cover picture ffmpeg copies out of it.

Both run sandboxed (demuxer and protocol whitelists, CPU-time, address-space and core
limits) with a wall-clock timeout; a failure maps onto ``shared.errors`` through
``failures.classify_failure``, so callers only ever see a code and a sentence.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from shared.errors import MediaError, TransientTranscodeError
from shared.media.facts import TAG_KEYS, ProbeResult, parse_probe
from shared.media.failures import classify_failure
from shared.media.redact import redact
from shared.media.sandbox import FORMAT_WHITELIST, protocol_whitelist, sandboxed

ExitHook = Callable[[str, int], None]  # (program, exit status), e.g. for a metric

_TAGS = ",".join(TAG_KEYS)
PROBE_ENTRIES = (
    f"format=format_name,duration,bit_rate,start_time:format_tags={_TAGS}"
    ":stream=index,codec_type,codec_name,channels,sample_rate,bit_rate,duration,start_time"
    f":stream_disposition=attached_pic:stream_tags={_TAGS}"
    ":chapter=start_time,end_time:chapter_tags=title"
)
# Attached pictures copied as they are; any other codec is re-encoded as PNG.
COVER_COPY = {"mjpeg": "image/jpeg", "png": "image/png"}


def probe_argv(ffprobe: str, url: str, *, restrict_formats: bool = True) -> list[str]:
    argv = [ffprobe, "-v", "error", "-protocol_whitelist", protocol_whitelist(url)]
    if restrict_formats:
        argv += ["-format_whitelist", FORMAT_WHITELIST]
    return argv + ["-show_entries", PROBE_ENTRIES, "-of", "json", url]


def _run(
    argv: list[str],
    *,
    timeout_s: float,
    memory_mb: int,
    program: str,
    stage: str,
    on_exit: ExitHook | None,
) -> bytes:
    preexec_fn = None
    if memory_mb:
        argv, preexec_fn = sandboxed(argv, cpu_seconds=int(timeout_s) + 5, memory_mb=memory_mb)
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
            preexec_fn=preexec_fn,
        )
    except subprocess.TimeoutExpired as exc:
        raise TransientTranscodeError(
            "Reading the input took too long.", code="probe_timeout"
        ) from exc
    if on_exit is not None:
        on_exit(program, proc.returncode)
    if proc.returncode != 0:
        stderr = redact(proc.stderr.decode("utf-8", "replace"))
        raise classify_failure(proc.returncode, stderr, stage=stage)
    return proc.stdout


def probe(
    ffprobe: str,
    url: str,
    *,
    timeout_s: float = 120.0,
    restrict_formats: bool = True,
    memory_mb: int = 0,
    on_exit: ExitHook | None = None,
) -> ProbeResult:
    """Probe a media URL; MediaError when it is not media we accept.

    ``memory_mb``: run ffprobe under the same CPU-time, address-space and core limits as
    ffmpeg, for input nobody has checked yet.
    """
    argv = probe_argv(ffprobe, url, restrict_formats=restrict_formats)
    out = _run(
        argv,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        program="ffprobe",
        stage="probe",
        on_exit=on_exit,
    )
    try:
        data = json.loads(out or b"{}")
    except json.JSONDecodeError as exc:
        raise MediaError("The file could not be read as audio or video.") from exc
    result = parse_probe(data if isinstance(data, dict) else {})
    if not result.format_name:
        raise MediaError("The file could not be read as audio or video.")
    return result


def extract_cover(
    ffmpeg: str,
    url: str,
    *,
    stream_index: int,
    codec: str,
    max_bytes: int,
    timeout_s: float = 30.0,
    memory_mb: int = 0,
) -> tuple[bytes, str]:
    """The attached picture at ``stream_index`` as (bytes, Content-Type); MediaError with
    code ``cover_too_large`` when it is over ``max_bytes``."""
    content_type = COVER_COPY.get(codec)
    image = grab_picture(
        ffmpeg,
        url,
        map_spec=f"0:{stream_index}",
        codec_args=["-c:v", "copy"] if content_type else ["-c:v", "png"],
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
    )
    return image, content_type or "image/png"


def grab_picture(
    ffmpeg: str,
    url: str,
    *,
    map_spec: str,
    codec_args: list[str],
    max_bytes: int,
    seek_s: float | None = None,
    timeout_s: float = 30.0,
    memory_mb: int = 0,
) -> bytes:
    """One picture of the input (stream ``map_spec``, from ``seek_s``) encoded by
    ``codec_args``; MediaError ``cover_too_large`` over ``max_bytes``, ``no_cover`` when
    ffmpeg wrote nothing."""
    seek = ["-ss", f"{seek_s:.3f}"] if seek_s is not None else []
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-protocol_whitelist",
        protocol_whitelist(url),
        "-format_whitelist",
        FORMAT_WHITELIST,
        *seek,
        "-i",
        url,
        "-map",
        map_spec,
        *codec_args,
        "-frames:v",
        "1",
        "-fs",
        str(max_bytes + 1),
        "-f",
        "image2pipe",
        "pipe:1",
    ]
    out = _run(
        argv,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        program="ffmpeg",
        stage="cover",
        on_exit=None,
    )
    if len(out) > max_bytes:
        raise MediaError("The source's cover picture is too large to show.", code="cover_too_large")
    if not out:
        raise MediaError("The source has no cover picture.", code="no_cover")
    return out
