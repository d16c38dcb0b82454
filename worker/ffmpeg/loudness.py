"""Measuring EBU R128 loudness with ffmpeg's ebur128 filter.

The figures come from the filter's per-frame metadata, written by ``ametadata`` to a file
of our own (the last frame holds the whole stream's integrated loudness and true peak),
never from ffmpeg's log, where the input's tags are printed verbatim.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

from shared.errors import TransientTranscodeError
from shared.media.facts import Loudness
from shared.media.failures import classify_failure
from shared.media.sandbox import sandboxed
from worker import metrics
from worker.ffmpeg.args import input_args

TAIL_BYTES = 4096  # the last frame's metadata lines, with room to spare


def measure_argv(
    ffmpeg: str, url: str, report: Path, *, before_input: list[str], filters: list[str]
) -> list[str]:
    """Decode the first audio stream through ``filters`` and ebur128, writing nothing."""
    chain = [*filters, "ebur128=peak=true:metadata=1", f"ametadata=mode=print:file={report}"]
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "level+error",
        *input_args(url),
        *before_input,
        "-i",
        url,
        "-map",
        "0:a:0",
        "-af",
        ",".join(chain),
        "-f",
        "null",
        "-",
    ]


def parse_report(text: str) -> Loudness | None:
    """The last frame's integrated loudness, range and true peak; None without a frame."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("lavfi.r128."):
            try:
                values[key.removeprefix("lavfi.r128.")] = float(value)
            except ValueError:
                continue
    if "I" not in values:
        return None
    peak = values.get("true_peak")
    return Loudness(
        integrated_lufs=round(values["I"], 2),
        range_lu=round(values.get("LRA", 0.0), 2),
        true_peak_db=round(20 * math.log10(peak), 2) if peak else None,
    )


def measure(
    ffmpeg: str,
    url: str,
    workdir: Path,
    *,
    before_input: list[str] | None = None,
    filters: list[str] | None = None,
    timeout_s: float,
    memory_mb: int = 0,
) -> Loudness | None:
    """Loudness of ``url``'s first audio stream (after ``filters``); None when silent
    throughout or too short to measure."""
    report = workdir / "loudness.txt"
    report.unlink(missing_ok=True)
    argv = measure_argv(ffmpeg, url, report, before_input=before_input or [], filters=filters or [])
    argv, preexec_fn = sandboxed(argv, cpu_seconds=int(timeout_s) + 60, memory_mb=memory_mb)
    try:
        proc = subprocess.run(
            argv, capture_output=True, timeout=timeout_s, check=False, preexec_fn=preexec_fn
        )
    except subprocess.TimeoutExpired as exc:
        raise TransientTranscodeError(
            "Measuring the loudness took too long.", code="timeout"
        ) from exc
    metrics.record_exit("ffmpeg", proc.returncode)
    if proc.returncode != 0:
        raise classify_failure(
            proc.returncode, proc.stderr.decode("utf-8", "replace"), stage="ffmpeg"
        )
    try:
        with report.open("rb") as file:
            size = file.seek(0, 2)
            file.seek(max(0, size - TAIL_BYTES))
            tail = file.read().decode("utf-8", "replace")
    except OSError:
        return None
    return parse_report(tail)
