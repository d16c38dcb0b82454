"""What may run on an input nobody has checked yet: the demuxers and protocols ffmpeg and
ffprobe may use, and the CPU-time, address-space and core limits their process runs under.

The worker (probe, transcode) and the API (the upload probe, the cover picture) use the same
lists and limits.
"""

from __future__ import annotations

import resource
import shutil
from collections.abc import Callable
from urllib.parse import urlsplit

from shared.errors import MediaError

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


def protocol_whitelist(url: str) -> str:
    scheme = urlsplit(url).scheme or "file"
    if scheme == "https":
        return "https,tls,tcp"
    if scheme == "http":
        return "http,tcp"
    if scheme == "file":
        return "file"
    raise MediaError(f"Unsupported input location scheme {scheme!r}.")


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
