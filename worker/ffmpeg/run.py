"""Running ffmpeg and ffprobe as subprocesses.

One ffmpeg run per job: it describes its input on stderr before converting anything,
and the worker reads that description as it comes (``worker.ffmpeg.stderr``), enforcing
the input limits from it and stopping ffmpeg as soon as one is passed. ffprobe remains
for the rare MP3 output without a Xing header.
"""

from __future__ import annotations

import contextvars
import json
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from shared.errors import AppError, MediaError, TransientTranscodeError
from worker import metrics
from worker.ffmpeg.args import probe_argv
from worker.ffmpeg.errors import classify_failure, timed_out, too_long
from worker.ffmpeg.media import ProbeResult, parse_probe
from worker.ffmpeg.stderr import InputHeader, parse_progress_line, progress_percent, split_level

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
    oom_before = oom_kills()
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
        oom_after = oom_kills() if oom_before is not None else None
        raise classify_failure(
            returncode,
            "\n".join(stderr_tail),
            stage="ffmpeg",
            oom_killed=oom_after is not None and oom_before is not None and oom_after > oom_before,
        )
    metrics.record_transcode(header.duration_s, time.monotonic() - started)
    return Transcoded(input=header.result(), stderr_tail=list(stderr_tail))


def _lines(stream: Iterable[bytes]) -> Iterable[str]:
    for raw in stream:
        yield raw.decode("utf-8", "replace")
