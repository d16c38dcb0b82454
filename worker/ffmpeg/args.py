"""ffmpeg's and ffprobe's command lines, and the limits the child process runs under.

ffmpeg reads the input straight from storage over HTTP (range requests let it seek, so a
moov-at-end MP4 works) and writes the MP3 to a seekable local file so the muxer can go
back and write the Xing/LAME header with the true duration. Only the protocols the input
URL needs and a list of real audio/video demuxers are allowed.
"""

from __future__ import annotations

import resource
import shutil
from collections.abc import Callable
from urllib.parse import urlsplit

from shared.errors import MediaError
from shared.models import JobOptions

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


def protocol_whitelist(url: str) -> str:
    scheme = urlsplit(url).scheme or "file"
    if scheme == "https":
        return "https,tls,tcp"
    if scheme == "http":
        return "http,tcp"
    if scheme == "file":
        return "file"
    raise MediaError(f"Unsupported input location scheme {scheme!r}.")


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
    """One ffmpeg run that reads the input and writes the MP3.

    Sample rates and channel layouts MP3 cannot carry are left to ffmpeg's format
    negotiation with the encoder: 5.1 becomes stereo, 96 kHz the nearest rate LAME
    takes (48 kHz), mono stays mono.
    """
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        # Warnings and errors only: the input's description, which would print its
        # metadata verbatim, comes from ffprobe's JSON instead.
        "-loglevel",
        "level+warning",
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


PRLIMIT = shutil.which("prlimit")  # util-linux: in every Debian image, ours included


def sandboxed(
    argv: list[str], *, cpu_seconds: int, memory_mb: int
) -> tuple[list[str], Callable[[], None] | None]:
    """(argv, preexec_fn) that run ``argv`` under CPU, address-space and core limits.

    With util-linux's ``prlimit`` the limits are set by a tiny program that then execs
    ffmpeg in place (same pid, limits from its first instruction), so the worker can
    spawn without Python code between fork and exec, and Python uses vfork instead of
    copying the worker's page tables and running ``preexec_fn`` in the child.
    Without ``prlimit`` the limits are set in the child by ``preexec_fn``.
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
