"""ffmpeg as a subprocess, one module per concern.

- ``args``: the command lines (protocol and format whitelists) and the child's limits
- ``media``: what a file holds (``ProbeResult``), from ffprobe's JSON
- ``progress``: ffmpeg's progress lines and the words that mark a cut-off input
- ``errors``: an exit status and stderr mapped onto ``shared.errors``
- ``redact``: presigned URLs' secrets cut from their output before it is logged
- ``formats``: encoder and muxer arguments, one table row per output format
- ``outputs``: trim, fades, loudness, tags, cover and chapters on the command line
- ``loudness``: EBU R128 measurement (ebur128)
- ``run``: running ffmpeg (progress, limits, timeout) and ffprobe
"""

from worker.ffmpeg.args import (
    FORMAT_WHITELIST,
    PRLIMIT,
    Cut,
    can_stream_copy,
    probe_argv,
    protocol_whitelist,
    resource_limits,
    sandboxed,
    transcode_argv,
)
from worker.ffmpeg.errors import (
    CopyNotPossible,
    classify_failure,
    resource_limit,
    timed_out,
    too_long,
)
from worker.ffmpeg.media import (
    AudioStream,
    Chapter,
    Loudness,
    ProbeResult,
    VideoStream,
    parse_probe,
)
from worker.ffmpeg.progress import looks_truncated, parse_progress_line, progress_percent
from worker.ffmpeg.run import Transcoded, oom_kills, probe, run_transcode

__all__ = [
    "FORMAT_WHITELIST",
    "PRLIMIT",
    "AudioStream",
    "Chapter",
    "CopyNotPossible",
    "Cut",
    "Loudness",
    "ProbeResult",
    "Transcoded",
    "VideoStream",
    "can_stream_copy",
    "classify_failure",
    "looks_truncated",
    "oom_kills",
    "parse_probe",
    "parse_progress_line",
    "probe",
    "probe_argv",
    "progress_percent",
    "protocol_whitelist",
    "resource_limit",
    "resource_limits",
    "run_transcode",
    "sandboxed",
    "timed_out",
    "too_long",
    "transcode_argv",
]
