"""ffmpeg as a subprocess, one module per concern.

- ``args``: the conversion's command line
- ``progress``: ffmpeg's progress lines and the words that mark a cut-off input
- ``formats``: encoder and muxer arguments, one table row per output format
- ``outputs``: trim, fades, loudness, tags, cover and chapters on the command line
- ``loudness``: EBU R128 measurement (ebur128)
- ``run``: running ffmpeg (progress, limits, timeout) and ffprobe

What a file holds (``ProbeResult``), ffprobe's run, the whitelists and the child's limits,
errors mapped onto ``shared.errors`` and URL secrets redacted live in ``shared.media``:
the API probes uploads with the same code.
"""

from shared.media.facts import (
    AudioStream,
    Chapter,
    Loudness,
    ProbeResult,
    VideoStream,
    parse_probe,
)
from shared.media.failures import (
    CopyNotPossible,
    classify_failure,
    resource_limit,
    timed_out,
    too_long,
)
from shared.media.probe import probe_argv
from shared.media.sandbox import (
    FORMAT_WHITELIST,
    PRLIMIT,
    protocol_whitelist,
    resource_limits,
    sandboxed,
)
from worker.ffmpeg.args import Cut, can_stream_copy, transcode_argv
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
