"""Baselines and tools: bare ffmpeg runs, a plain HTTP download, CPU time by process."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.media import Input
from shared.options import JobOptions
from worker import ffmpeg


@dataclass(frozen=True)
class Run:
    wall_s: float
    peak_rss: int  # bytes
    cpu_s: float = 0.0  # user + system


def bare_argv(inp: Input, out: Path, options: JobOptions | None = None) -> list[str]:
    """ffmpeg exactly as the worker runs it (same argv builder), on the local file."""
    options = options or JobOptions()
    probe = ffmpeg.probe("ffprobe", str(inp.path))
    return ffmpeg.transcode_argv(
        "ffmpeg",
        str(inp.path),
        str(out),
        options,
        stream_copy=ffmpeg.can_stream_copy(probe, options),
        probe=probe,
    )


def run_bare(argv: list[str]) -> Run:
    """One ffmpeg run: wall time from spawn to exit, and its peak RSS (from wait4)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"bare ffmpeg exited {proc.returncode}: {argv}")
    return Run(wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime)


def bare(inp: Input, options: JobOptions | None = None) -> Run:
    with tempfile.TemporaryDirectory(prefix="v2m-bench-bare-") as tmp:
        return run_bare(bare_argv(inp, Path(tmp) / "out.mp3", options))


def bare_batch(inp: Input, n: int, parallel: int) -> float:
    """Wall time of ``n`` bare conversions, ``parallel`` at a time."""
    with tempfile.TemporaryDirectory(prefix="v2m-bench-bare-") as tmp:
        argvs = [bare_argv(inp, Path(tmp) / f"out-{i}.mp3") for i in range(n)]
        started = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(run_bare, argvs))
        return time.perf_counter() - started


def download(url: str) -> tuple[float, int]:
    """Seconds to GET a URL to the end, and the bytes received."""
    got = 0
    started = time.perf_counter()
    with httpx.stream("GET", url, timeout=600) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_raw(1024 * 1024):
            got += len(chunk)
    return time.perf_counter() - started, got


def first_byte(url: str) -> float:
    """Seconds until the first byte of a one-byte ranged GET (storage's per-request cost)."""
    started = time.perf_counter()
    resp = httpx.get(url, headers={"Range": "bytes=0-0"}, timeout=120)
    resp.raise_for_status()
    return time.perf_counter() - started


# --------------------------------------------------------------------------- CPU


def cpu_s(pid: int, *, children: bool = False) -> float:
    """CPU seconds (user + system) a process has used; with ``children``, only what its
    reaped children used (for a worker: its ffprobe and ffmpeg runs)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    ticks = os.sysconf("SC_CLK_TCK")
    return ((cutime + cstime) if children else (utime + stime)) / ticks


def broker_pid() -> int | None:
    found = subprocess.run(["pgrep", "-o", "beam.smp"], capture_output=True, text=True)
    return int(found.stdout.split()[0]) if found.returncode == 0 and found.stdout.split() else None
