"""Reading what ffmpeg prints while it converts: ``-progress`` lines on stdout, and the
words on stderr that mark a cut-off input.

Facts about the input (format, duration, streams) come from ffprobe's JSON
(``shared.media.facts``), never from ffmpeg's free-text log: a file's metadata is
printed there verbatim and could pass for ffmpeg's own lines.
"""

from __future__ import annotations

from collections.abc import Iterable


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


# What ffmpeg says when the input stops before its container says it should.
TRUNCATION_MARKERS = ("partial file", "Truncating packet", "truncated")


def looks_truncated(stderr_lines: Iterable[str]) -> bool:
    return any(marker in line for line in stderr_lines for marker in TRUNCATION_MARKERS)
