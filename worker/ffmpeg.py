"""ffprobe and ffmpeg as subprocesses: argv builders, progress parsing, error mapping.

ffmpeg reads the input straight from storage over HTTP (range requests let it seek, so a
moov-at-end MP4 works) and writes the MP3 to a seekable local file so the muxer can go
back and write the Xing/LAME header with the true duration.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from shared.errors import MediaError, StorageError, TransientTranscodeError
from shared.models import JobOptions
from worker import metrics

# Demuxers we accept. Anything else (playlists such as hls/concat, image sequences,
# raw devices, "tty" text art...) is refused before a byte is decoded.
ALLOWED_DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "mpegts",
    "flv",
    "mp3",
    "wav",
    "ogg",
    "aac",
    "flac",
    "asf",
    "mpeg",
    "mpegvideo",
    "m4v",
    "h264",
    "hevc",
    "ac3",
    "eac3",
    "aiff",
    "amr",
    "caf",
    "dts",
    "dv",
    "mxf",
    "nut",
    "rm",
    "w64",
    "wv",
    "ape",
    "mpc",
    "mpc8",
    "tta",
    "gxf",
    "truehd",
    "mlp",
    "au",
    "voc",
    "avs",
    "bink",
    "smk",
    "swf",
    "opus",
    "loas",
    "latm",
    "xwma",
    "mp2",
    "mpa",
)
FORMAT_WHITELIST = ",".join(ALLOWED_DEMUXERS)
MP3_SAMPLE_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})
STDERR_TAIL_LINES = 20


def protocol_whitelist(url: str) -> str:
    scheme = urlsplit(url).scheme or "file"
    if scheme == "https":
        return "https,tls,tcp"
    if scheme == "http":
        return "http,tcp"
    if scheme == "file":
        return "file"
    raise MediaError(f"Unsupported input location scheme {scheme!r}.")


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    channels: int
    sample_rate: int
    bit_rate: int | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class ProbeResult:
    format_name: str
    duration_s: float | None
    bit_rate: int | None
    audio: list[AudioStream] = field(default_factory=list)

    @property
    def first_audio(self) -> AudioStream:
        return self.audio[0]


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def parse_probe(data: dict[str, Any]) -> ProbeResult:
    fmt = data.get("format") or {}
    streams = []
    for s in data.get("streams") or []:
        if s.get("codec_type") != "audio":
            continue
        streams.append(
            AudioStream(
                index=int(s.get("index", 0)),
                codec=str(s.get("codec_name", "unknown")),
                channels=int(s.get("channels") or 0),
                sample_rate=int(_float(s.get("sample_rate")) or 0),
                bit_rate=int(_float(s.get("bit_rate")) or 0) or None,
                duration_s=_float(s.get("duration")),
            )
        )
    bit_rate = _float(fmt.get("bit_rate"))
    return ProbeResult(
        format_name=str(fmt.get("format_name", "")),
        duration_s=_float(fmt.get("duration")),
        bit_rate=int(bit_rate) if bit_rate else None,
        audio=streams,
    )


def probe_argv(ffprobe: str, url: str, *, restrict_formats: bool = True) -> list[str]:
    argv = [ffprobe, "-v", "error", "-protocol_whitelist", protocol_whitelist(url)]
    if restrict_formats:
        argv += ["-format_whitelist", FORMAT_WHITELIST]
    return argv + [
        "-show_entries",
        "format=format_name,duration,bit_rate:stream=index,codec_type,codec_name,channels,sample_rate,bit_rate,duration",
        "-of",
        "json",
        url,
    ]


def probe(
    ffprobe: str, url: str, *, timeout_s: float = 120.0, restrict_formats: bool = True
) -> ProbeResult:
    """Probe a media URL; MediaError when it is not media we accept."""
    try:
        proc = subprocess.run(
            probe_argv(ffprobe, url, restrict_formats=restrict_formats),
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TransientTranscodeError("Reading the input took too long.", code="timeout") from exc
    stderr = proc.stderr.decode("utf-8", "replace")
    metrics.record_exit("ffprobe", proc.returncode)
    if proc.returncode != 0:
        raise classify_failure(proc.returncode, stderr, stage="probe")
    try:
        data = json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise MediaError("The file could not be read as audio or video.") from exc
    result = parse_probe(data)
    if not result.format_name:
        raise MediaError("The file could not be read as audio or video.")
    return result


def _is_storage_problem(stderr: str) -> bool:
    markers = (
        "Connection refused",
        "Connection reset",
        "Connection timed out",
        "Server returned 5",
        "Server returned 403",
        "Server returned 404",
        "Network is unreachable",
        "End of file while",
        "Failed to resolve",
        "I/O error",
    )
    return any(m in stderr for m in markers)


def classify_failure(returncode: int, stderr: str, *, stage: str) -> Exception:
    """Map an ffprobe/ffmpeg exit to our error tree. Raw stderr never reaches users."""
    detail = stderr[-1500:]
    if returncode == -signal.SIGXCPU or "Cannot allocate memory" in stderr:
        return MediaError(
            "The file needs more resources than a conversion may use.",
            code="resource_limit",
            detail=detail,
        )
    if returncode < 0:
        return TransientTranscodeError(
            f"The {stage} process was stopped by a signal.", detail=detail
        )
    if _is_storage_problem(stderr):
        return StorageError("The input could not be read from storage.", detail=detail)
    return MediaError("The file could not be read as audio or video.", detail=detail)


def output_sample_rate(source_rate: int, requested: int | None) -> int | None:
    """None keeps the source rate; rates MP3 cannot carry go to 44.1 or 48 kHz."""
    if requested is not None:
        return requested
    if source_rate in MP3_SAMPLE_RATES:
        return None
    return 44100 if source_rate and source_rate % 11025 == 0 else 48000


def output_channels(source_channels: int, requested: int | None) -> int | None:
    if requested is not None:
        return requested
    if source_channels > 2 or source_channels <= 0:
        return 2
    return None


def can_stream_copy(probe_result: ProbeResult, options: JobOptions) -> bool:
    return options.is_default and probe_result.first_audio.codec == "mp3"


def transcode_argv(
    ffmpeg: str,
    input_url: str,
    output_path: str,
    probe_result: ProbeResult,
    options: JobOptions,
    max_output_bytes: int | None = None,
) -> list[str]:
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "error",
        "-y",
        "-protocol_whitelist",
        protocol_whitelist(input_url),
        "-format_whitelist",
        FORMAT_WHITELIST,
    ]
    if urlsplit(input_url).scheme in ("http", "https"):
        argv += [
            "-reconnect",
            "1",
            "-reconnect_on_network_error",
            "1",
            "-reconnect_delay_max",
            "10",
        ]
    argv += ["-i", input_url, "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "0"]
    if can_stream_copy(probe_result, options):
        argv += ["-c:a", "copy"]
    else:
        audio = probe_result.first_audio
        argv += ["-c:a", "libmp3lame"]
        if options.bitrate_kbps is not None:
            argv += ["-b:a", f"{options.bitrate_kbps}k"]
        else:
            argv += ["-q:a", str(options.quality if options.quality is not None else 2)]
        rate = output_sample_rate(audio.sample_rate, options.sample_rate_hz)
        if rate is not None:
            argv += ["-ar", str(rate)]
        channels = output_channels(audio.channels, options.channels)
        if channels is not None:
            argv += ["-ac", str(channels)]
    argv += [
        "-id3v2_version",
        "3",
        "-write_xing",
        "1",
        "-f",
        "mp3",
        "-progress",
        "pipe:1",
    ]
    if max_output_bytes:
        argv += ["-fs", str(max_output_bytes)]
    return [*argv, output_path]


def parse_progress_line(line: str) -> float | None:
    """Seconds of output written, from one ``-progress`` line, else None."""
    key, _, value = line.strip().partition("=")
    if key in ("out_time_us", "out_time_ms"):  # both are microseconds in ffmpeg
        try:
            micros = int(value)
        except ValueError:
            return None
        return micros / 1_000_000 if micros >= 0 else None
    return None


def progress_percent(out_time_s: float, duration_s: float | None) -> int | None:
    if not duration_s or duration_s <= 0:
        return None
    return max(0, min(99, int(out_time_s * 100 / duration_s)))


def run_transcode(
    argv: list[str],
    *,
    duration_s: float | None,
    on_progress: Callable[[int], None],
    timeout_s: float,
    progress_interval_s: float = 1.0,
    preexec_fn: Callable[[], None] | None = None,
) -> list[str]:
    """Run ffmpeg, reporting progress at most once per interval.

    Returns the last lines ffmpeg wrote to stderr (for truncation checks and logs);
    raises on failure.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec_fn,
    )
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    assert proc.stdout is not None and proc.stderr is not None
    err_stream = proc.stderr

    def drain_stderr() -> None:
        for raw in iter(err_stream.readline, b""):
            stderr_tail.append(raw.decode("utf-8", "replace").rstrip()[:300])

    err_thread = threading.Thread(target=drain_stderr, daemon=True)
    err_thread.start()
    timed_out = threading.Event()

    def kill_on_timeout() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout_s, kill_on_timeout)
    timer.daemon = True
    timer.start()
    # The first report waits an interval too: a short job never writes progress at all.
    last_report = started
    try:
        for line in _lines(proc.stdout):
            out_time = parse_progress_line(line)
            if out_time is None:
                continue
            now = time.monotonic()
            if now - last_report >= progress_interval_s:
                percent = progress_percent(out_time, duration_s)
                if percent is not None:
                    on_progress(percent)
                    last_report = now
        returncode = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err_thread.join(timeout=5)
    metrics.record_exit("ffmpeg", returncode)
    if timed_out.is_set():
        raise TransientTranscodeError(
            "The conversion took longer than the time limit.", code="timeout"
        )
    if returncode != 0:
        raise classify_failure(returncode, "\n".join(stderr_tail), stage="ffmpeg")
    metrics.record_transcode(duration_s, time.monotonic() - started)
    return list(stderr_tail)


# What ffmpeg says when the input stops before its container says it should.
TRUNCATION_MARKERS = ("partial file", "Truncating packet", "truncated")


def looks_truncated(stderr_lines: Iterable[str]) -> bool:
    return any(marker in line for line in stderr_lines for marker in TRUNCATION_MARKERS)


def resource_limits(*, cpu_seconds: int, memory_mb: int) -> Callable[[], None]:
    """A preexec_fn that caps ffmpeg's CPU time and address space, and forbids core dumps."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        if memory_mb > 0:
            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _lines(stream: Iterable[bytes]) -> Iterable[str]:
    for raw in stream:
        yield raw.decode("utf-8", "replace")
