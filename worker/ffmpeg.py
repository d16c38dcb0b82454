"""ffmpeg as a subprocess: argv builder, input description, progress, error mapping.

One ffmpeg run per job: it describes its input on stderr (format, duration, audio
streams), which the worker reads as it goes instead of running ffprobe first; limits
are enforced from that description and ffmpeg is stopped as soon as one is passed.
ffprobe remains for the rare MP3 without a Xing header. ffmpeg reads the input straight from storage over HTTP (range requests let it seek, so a
moov-at-end MP4 works) and writes the MP3 to a seekable local file so the muxer can go
back and write the Xing/LAME header with the true duration.
"""

from __future__ import annotations

import contextvars
import json
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from shared.errors import AppError, MediaError, StorageError, TransientTranscodeError
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
MP3_SUFFIXES = (".mp3", ".mpga")
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


class CopyNotPossible(MediaError):
    """A stream copy was tried on audio that is not MP3 (a misnamed file): convert instead."""

    code = "copy_not_possible"


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
    if "matches no streams" in stderr:
        return MediaError("The file has no audio track to convert.", code="no_audio_stream")
    if "Exactly one MP3 audio stream is required" in stderr:
        return CopyNotPossible("The input's audio is not MP3.", detail=detail)
    if _is_storage_problem(stderr):
        return StorageError("The input could not be read from storage.", detail=detail)
    return MediaError("The file could not be read as audio or video.", detail=detail)


def can_stream_copy(input_key: str, options: JobOptions) -> bool:
    """Try a stream copy when nothing was asked and the upload is named as an MP3.

    Decided before ffmpeg starts, from the name alone: a misnamed file makes the copy
    fail fast with `CopyNotPossible`, and the handler converts it instead.
    """
    return options.is_default and input_key.lower().endswith(MP3_SUFFIXES)


def transcode_argv(
    ffmpeg: str,
    input_url: str,
    output_path: str,
    options: JobOptions,
    *,
    stream_copy: bool = False,
    max_output_bytes: int | None = None,
) -> list[str]:
    """One ffmpeg run that reads (and describes) the input and writes the MP3.

    Sample rates and channel layouts MP3 cannot carry are left to ffmpeg's format
    negotiation with the encoder: 5.1 becomes stereo, 96 kHz the nearest rate LAME
    takes (48 kHz), mono stays mono.
    """
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        # info: the input's description (format, duration, streams) replaces a separate
        # ffprobe run; the level prefix tells it from warnings and errors.
        "-loglevel",
        "level+info",
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
    if stream_copy:
        argv += ["-c:a", "copy"]
    else:
        argv += ["-c:a", "libmp3lame"]
        if options.bitrate_kbps is not None:
            argv += ["-b:a", f"{options.bitrate_kbps}k"]
        else:
            argv += ["-q:a", str(options.quality if options.quality is not None else 2)]
        if options.sample_rate_hz is not None:
            argv += ["-ar", str(options.sample_rate_hz)]
        if options.channels is not None:
            argv += ["-ac", str(options.channels)]
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


# ------------------------------------------------------------------ the input's description

_LEVEL = re.compile(r"\[(panic|fatal|error|warning|info|verbose|debug|trace)\] ")
_INPUT = re.compile(r"^Input #0, (.+?), from ")
_DURATION = re.compile(
    r"^  Duration: (?:(\d+):(\d\d):(\d\d(?:\.\d+)?)|N/A), .*bitrate: (?:(\d+) kb/s|N/A)"
)
_STREAM = re.compile(r"^  Stream #0:(\d+)[^:]*: (Audio|Video|Subtitle|Data|Attachment): (.*)$")
_DISPOSITION = re.compile(
    r"(?: \((?:default|forced|dub|original|comment|lyrics|karaoke|"
    r"hearing impaired|visual impaired|clean effects|attached pic|captions|descriptions|"
    r"metadata|dependent|still image)\))+$"
)
_LAYOUT_CHANNELS = {
    "mono": 1,
    "stereo": 2,
    "2.1": 3,
    "3.0": 3,
    "3.0(back)": 3,
    "4.0": 4,
    "quad": 4,
    "quad(side)": 4,
    "3.1": 4,
    "5.0": 5,
    "5.0(side)": 5,
    "4.1": 5,
    "5.1": 6,
    "5.1(side)": 6,
    "6.0": 6,
    "6.1": 7,
    "7.0": 7,
    "7.1": 8,
    "7.1(wide)": 8,
    "octagonal": 8,
    "downmix": 2,
}
# Lines a user's own metadata cannot forge: ffmpeg prints a value's extra lines without
# the level prefix, and its keys four spaces in, so "[info]   Stream" is always ffmpeg's.
_HEADER_END = ("Stream mapping:", "Output #0")


def split_level(line: str) -> tuple[str | None, str]:
    """(level, message) of a ``-loglevel level+…`` line; (None, line) when unprefixed."""
    match = _LEVEL.search(line)
    if match is None:
        return None, line
    return match.group(1), line[match.end() :]


def _audio_stream(index: int, description: str) -> AudioStream:
    # "aac (LC) (mp4a / 0x6134706D), 44100 Hz, 5.1, fltp, 172 kb/s (default)"
    parts = [_DISPOSITION.sub("", p.strip()) for p in description.split(", ")]
    codec = parts[0].split(" ", 1)[0] if parts else "unknown"
    rate = channels = 0
    bit_rate = None
    for part in parts[1:]:
        if part.endswith(" Hz") and part[:-3].isdigit():
            rate = int(part[:-3])
        elif part in _LAYOUT_CHANNELS:
            channels = _LAYOUT_CHANNELS[part]
        elif part.endswith(" channels") and part.split(" ", 1)[0].isdigit():
            channels = int(part.split(" ", 1)[0])
        elif part.endswith(" kb/s") and part.split(" ", 1)[0].isdigit():
            bit_rate = int(part.split(" ", 1)[0]) * 1000
        if channels == 0 and "(" in part and part.split("(", 1)[0] in _LAYOUT_CHANNELS:
            channels = _LAYOUT_CHANNELS[part.split("(", 1)[0]]
    return AudioStream(
        index=index, codec=codec, channels=channels, sample_rate=rate, bit_rate=bit_rate
    )


class InputHeader:
    """Reads ffmpeg's description of its input from stderr, line by line.

    ffmpeg prints it after opening the input and before converting anything, so the
    worker learns the format, duration and audio streams from the conversion itself
    instead of a separate ffprobe run over the network.
    """

    def __init__(self) -> None:
        self.format_name = ""
        self.duration_s: float | None = None
        self.bit_rate: int | None = None
        self.audio: list[AudioStream] = []
        self.has_video = False
        self.complete = False

    def feed(self, level: str | None, message: str) -> bool:
        """Take one line; True once the header is complete (on the line that ends it)."""
        if self.complete or level != "info":
            return False
        if match := _INPUT.match(message):
            self.format_name = match.group(1)
        elif match := _DURATION.match(message):
            hours, minutes, seconds, kbps = match.groups()
            if hours is not None:
                self.duration_s = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            self.bit_rate = int(kbps) * 1000 if kbps else None
        elif match := _STREAM.match(message):
            kind = match.group(2)
            if kind == "Audio":
                self.audio.append(_audio_stream(int(match.group(1)), match.group(3)))
            elif kind == "Video" and "attached pic" not in match.group(3):
                self.has_video = True
        elif message.startswith(_HEADER_END) and self.format_name:
            self.complete = True
            return True
        return False

    def result(self) -> ProbeResult:
        audio = self.audio
        if not self.has_video and self.duration_s is not None:
            # Audio only: the container's duration is the audio's (used to spot cut-off files).
            audio = [replace(stream, duration_s=self.duration_s) for stream in audio]
        return ProbeResult(
            format_name=self.format_name,
            duration_s=self.duration_s,
            bit_rate=self.bit_rate,
            audio=list(audio),
        )


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


@dataclass(frozen=True)
class Transcoded:
    input: ProbeResult  # what ffmpeg said of its input
    stderr_tail: list[str]  # its last warnings and errors


def run_transcode(
    argv: list[str],
    *,
    on_progress: Callable[[int], None],
    timeout_s: float,
    on_input: Callable[[ProbeResult], None] | None = None,
    max_duration_s: float | None = None,
    progress_interval_s: float = 1.0,
    preexec_fn: Callable[[], None] | None = None,
) -> Transcoded:
    """Run ffmpeg, reporting progress at most once per interval.

    ``on_input`` is called with the input's description as soon as ffmpeg prints it; an
    AppError it raises stops ffmpeg and is raised here (that is how input limits are
    enforced without a separate probe). Output past ``max_duration_s`` stops it too, for
    inputs whose header gives no duration or a wrong one.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec_fn,
    )
    header = InputHeader()
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    stopped_by: list[AppError] = []
    assert proc.stdout is not None and proc.stderr is not None
    err_stream = proc.stderr

    def stop(error: AppError) -> None:
        stopped_by.append(error)
        proc.kill()

    def drain_stderr() -> None:
        for raw in iter(err_stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            level, message = split_level(line)
            if level == "info":
                if header.feed(level, message) and on_input is not None and not stopped_by:
                    try:
                        on_input(header.result())
                    except AppError as exc:
                        stop(exc)
            elif level is not None or not header.format_name or header.complete:
                # Unprefixed lines inside the header continue a metadata value: not ours.
                stderr_tail.append(line[:300])

    # In a copy of the caller's context: what on_input logs carries the job's bound ids.
    err_thread = threading.Thread(
        target=contextvars.copy_context().run, args=(drain_stderr,), daemon=True
    )
    err_thread.start()

    def kill_on_timeout() -> None:
        stop(
            TransientTranscodeError(
                "The conversion took longer than the time limit.", code="timeout"
            )
        )

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
            if max_duration_s and out_time > max_duration_s and not stopped_by:
                stop(too_long(out_time, max_duration_s))
            now = time.monotonic()
            if now - last_report >= progress_interval_s:
                percent = progress_percent(out_time, header.duration_s)
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
    if stopped_by:
        raise stopped_by[0]
    if returncode != 0:
        raise classify_failure(returncode, "\n".join(stderr_tail), stage="ffmpeg")
    metrics.record_transcode(header.duration_s, time.monotonic() - started)
    return Transcoded(input=header.result(), stderr_tail=list(stderr_tail))


def too_long(duration_s: float, limit_s: float) -> MediaError:
    return MediaError(
        f"The file is {duration_s / 3600:.1f} hours long; the longest accepted is "
        f"{limit_s / 3600:.1f} hours.",
        code="media_too_long",
    )


# What ffmpeg says when the input stops before its container says it should.
TRUNCATION_MARKERS = ("partial file", "Truncating packet", "truncated")


def looks_truncated(stderr_lines: Iterable[str]) -> bool:
    return any(marker in line for line in stderr_lines for marker in TRUNCATION_MARKERS)


PRLIMIT = shutil.which("prlimit")  # util-linux: in every Debian image, ours included


def sandboxed(
    argv: list[str], *, cpu_seconds: int, memory_mb: int
) -> tuple[list[str], Callable[[], None] | None]:
    """(argv, preexec_fn) that run ``argv`` under CPU, address-space and core limits.

    With util-linux's ``prlimit`` the limits are set by a tiny program that then execs
    ffmpeg in place (same pid, limits from its first instruction), so the worker can
    spawn without Python code between fork and exec: Python then uses vfork, about
    3 ms less per job than copying the worker's page tables and running ``preexec_fn``.
    Without ``prlimit`` the limits are set in the child by ``preexec_fn``, as before.
    """
    if PRLIMIT is None:
        return argv, resource_limits(cpu_seconds=cpu_seconds, memory_mb=memory_mb)
    limits = [PRLIMIT, f"--cpu={cpu_seconds}:{cpu_seconds + 5}", "--core=0"]
    if memory_mb > 0:
        limits.append(f"--as={memory_mb * 1024 * 1024}")
    return [*limits, "--", *argv], None


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
