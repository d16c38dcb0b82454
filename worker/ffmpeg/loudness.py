"""Measuring EBU R128 loudness with ffmpeg's ebur128 filter.

The figures come from the filter's per-frame metadata, written by ``ametadata`` to a file
of our own (the last frame holds the whole stream's integrated loudness and true peak),
never from ffmpeg's log, where the input's tags are printed verbatim.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shared.errors import TransientTranscodeError
from shared.media.facts import Loudness
from shared.media.failures import classify_failure
from shared.media.sandbox import sandboxed
from worker import metrics
from worker.ffmpeg.args import input_args

TAIL_BYTES = 4096  # the last frame's metadata lines, with room to spare
BLOCK_FRAMES = 4  # ebur128 writes a frame every 100 ms; a block spans four
LUFS_OFFSET = 0.691
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = 10.0


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


@dataclass(frozen=True)
class Blocks:
    """Momentary loudness (LUFS) of each 400 ms block, one every 100 ms from the start of
    the measured stream (the first ends 400 ms in), and the stream's true peak (linear)."""

    momentary: list[float]
    true_peak: float


def parse_blocks(text: str) -> Blocks:
    """Every frame's momentary loudness from ebur128's metadata, after the three frames
    whose window is not yet full; its last true peak."""
    momentary: list[float] = []
    peak = 0.0
    frame = -1
    for line in text.splitlines():
        if line.startswith("frame:"):
            frame += 1
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "lavfi.r128.M" and frame >= BLOCK_FRAMES - 1:
            momentary.append(float(value))
        elif key == "lavfi.r128.true_peak":
            peak = float(value)
    return Blocks(momentary=momentary, true_peak=peak)


def measure_blocks(
    ffmpeg: str, path: Path, workdir: Path, *, filters: list[str], timeout_s: float, memory_mb: int
) -> Blocks:
    """The 400 ms blocks and true peak of a local file's audio (after ``filters``)."""
    report = workdir / "blocks.txt"
    report.unlink(missing_ok=True)
    argv = measure_argv(ffmpeg, str(path), report, before_input=[], filters=filters)
    _run(argv, timeout_s=timeout_s, memory_mb=memory_mb)
    return parse_blocks(report.read_text(errors="replace"))


def integrated(momentary: list[float]) -> float | None:
    """BS.1770 gated integrated loudness from 400 ms block loudness: the blocks above
    -70 LUFS, then those above their mean less 10 LU; None when none passes."""

    def mean_lufs(values: list[float]) -> float:
        energy = sum(10 ** ((m + LUFS_OFFSET) / 10) for m in values) / len(values)
        return -LUFS_OFFSET + 10 * math.log10(energy)

    loud = [m for m in momentary if m > ABSOLUTE_GATE_LUFS]
    if not loud:
        return None
    relative = mean_lufs(loud) - RELATIVE_GATE_LU
    gated = [m for m in loud if m > relative]
    return mean_lufs(gated) if gated else None


def _run(argv: list[str], *, timeout_s: float, memory_mb: int) -> None:
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
    _run(argv, timeout_s=timeout_s, memory_mb=memory_mb)
    try:
        with report.open("rb") as file:
            size = file.seek(0, 2)
            file.seek(max(0, size - TAIL_BYTES))
            tail = file.read().decode("utf-8", "replace")
    except OSError:
        return None
    return parse_report(tail)
