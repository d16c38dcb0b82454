"""Running ffprobe and ffmpeg as subprocesses.

ffprobe describes the input first (JSON: format, duration, audio streams), and the
input limits are checked from that before ffmpeg starts; ffmpeg then converts, printing
only warnings and errors on stderr and its progress on stdout.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from shared.errors import AppError
from shared.media import probe as media_probe
from shared.media.facts import ProbeResult
from shared.media.failures import classify_failure, timed_out, too_long
from shared.media.redact import redact
from worker import metrics
from worker.ffmpeg.progress import parse_progress_line, progress_percent

STDERR_TAIL_LINES = 20
# The kernel's count of OOM kills in this container's memory cgroup (v2, then v1).
OOM_COUNTERS = (
    Path("/sys/fs/cgroup/memory.events"),
    Path("/sys/fs/cgroup/memory/memory.oom_control"),
)


def oom_kills(paths: Iterable[Path] | None = None) -> int | None:
    """How many processes the OOM killer has ended in this cgroup; None when unknown."""
    for path in OOM_COUNTERS if paths is None else paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def probe(
    ffprobe: str,
    url: str,
    *,
    timeout_s: float = 120.0,
    restrict_formats: bool = True,
    memory_mb: int = 0,
) -> ProbeResult:
    """``shared.media.probe.probe`` with ffprobe's exit status counted in the worker's metrics."""
    return media_probe.probe(
        ffprobe,
        url,
        timeout_s=timeout_s,
        restrict_formats=restrict_formats,
        memory_mb=memory_mb,
        on_exit=metrics.record_exit,
    )


@dataclass(frozen=True)
class Transcoded:
    stderr_tail: list[str]  # ffmpeg's last warnings and errors


def run_transcode(
    argv: list[str],
    *,
    on_progress: Callable[[int], None],
    timeout_s: float,
    duration_s: float | None = None,
    max_duration_s: float | None = None,
    progress_interval_s: float = 1.0,
    preexec_fn: Callable[[], None] | None = None,
) -> Transcoded:
    """Run ffmpeg, reporting progress against ``duration_s`` at most once per interval.

    Output past ``max_duration_s`` stops it, for inputs whose container gives no duration
    or a wrong one; so does ``timeout_s`` of wall time.
    """
    started = time.monotonic()
    oom_before = oom_kills()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec_fn,
    )
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    stopped_by: list[AppError] = []
    assert proc.stdout is not None and proc.stderr is not None
    err_stream = proc.stderr

    def stop(error: AppError) -> None:
        stopped_by.append(error)
        proc.kill()

    def drain_stderr() -> None:
        for raw in iter(err_stream.readline, b""):
            stderr_tail.append(redact(raw.decode("utf-8", "replace").rstrip())[:300])

    err_thread = threading.Thread(target=drain_stderr, daemon=True)
    err_thread.start()
    timer = threading.Timer(timeout_s, lambda: stop(timed_out(timeout_s)))
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
    if stopped_by:
        raise stopped_by[0]
    if returncode != 0:
        oom_after = oom_kills() if oom_before is not None else None
        raise classify_failure(
            returncode,
            "\n".join(stderr_tail),
            stage="ffmpeg",
            oom_killed=oom_after is not None and oom_before is not None and oom_after > oom_before,
        )
    metrics.record_transcode(duration_s, time.monotonic() - started)
    return Transcoded(stderr_tail=list(stderr_tail))


def _lines(stream: Iterable[bytes]) -> Iterable[str]:
    for raw in stream:
        yield raw.decode("utf-8", "replace")
