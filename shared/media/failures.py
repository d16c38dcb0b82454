"""How an ffmpeg or ffprobe run that went wrong maps onto the error tree in shared/errors.py.

Users see only the sentences written here; ffmpeg's own stderr goes to ``detail``, which
is for operators' logs.
"""

from __future__ import annotations

import signal

from shared.errors import AppError, MediaError, StorageError, TransientTranscodeError
from shared.media.redact import redact


class CopyNotPossible(MediaError):
    """A stream copy was tried on audio that is not MP3 (a misnamed file): convert instead."""

    code = "copy_not_possible"


# What ffmpeg (or the dynamic loader starting it) prints when an allocation fails under
# its address-space limit: ENOMEM's text, a library that no longer fits, a context that
# could not be allocated.
MEMORY_MARKERS = (
    "Cannot allocate memory",
    "failed to map segment from shared object",
    "Error allocating",
    "std::bad_alloc",
)
STORAGE_MARKERS = (
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


def resource_limit(detail: str | None = None) -> MediaError:
    """The input needs more memory or CPU time than one conversion may use: another
    attempt would hit the same limit, so it is permanent."""
    return MediaError(
        "The file needs more resources than a conversion may use.",
        code="resource_limit",
        detail=detail,
    )


def classify_failure(
    returncode: int, stderr: str, *, stage: str, oom_killed: bool = False
) -> AppError:
    """Map an ffprobe/ffmpeg exit to our error tree. Raw stderr never reaches users.

    ``oom_killed``: the kernel's OOM killer ended the process (its SIGKILL is otherwise
    indistinguishable from any other kill).
    """
    detail = redact(stderr)[-1500:]
    if (
        returncode == -signal.SIGXCPU
        or (oom_killed and returncode == -signal.SIGKILL)
        or any(marker in stderr for marker in MEMORY_MARKERS)
    ):
        return resource_limit(detail)
    if returncode < 0:
        return TransientTranscodeError(
            f"The {stage} process was stopped by a signal.", detail=detail
        )
    if "matches no streams" in stderr:
        return MediaError("The file has no audio track to convert.", code="no_audio_stream")
    if "Exactly one MP3 audio stream is required" in stderr:
        return CopyNotPossible("The input's audio is not MP3.", detail=detail)
    if any(marker in stderr for marker in STORAGE_MARKERS):
        return StorageError("The input could not be read from storage.", detail=detail)
    return MediaError("The file could not be read as audio or video.", detail=detail)


def too_long(duration_s: float, limit_s: float) -> MediaError:
    return MediaError(
        f"The file is {duration_s / 3600:.1f} hours long; the longest accepted is "
        f"{limit_s / 3600:.1f} hours.",
        code="media_too_long",
    )


def timed_out(limit_s: float) -> MediaError:
    """The conversion ran past ``V2M_JOB_TIMEOUT_S``: the same input would again, so the
    job fails at once rather than holding a worker for the limit once per attempt."""
    return MediaError(
        "The conversion took longer than the time limit.",
        code="timeout",
        detail=f"stopped after {limit_s:.0f} s",
    )
