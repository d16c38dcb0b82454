"""Baselines and load tools: bare ffmpeg runs, wrk, a plain HTTP download."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.media import Input
from shared.models import JobOptions
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


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int  # non-2xx/3xx responses and socket errors


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    method: str = "GET",
    body: str | None = None,
    headers: dict[str, str] | None = None,
    workdir: Path,
) -> WrkResult:
    """wrk (one thread) against ``url``; a Lua script sets the method, body and headers."""
    script = workdir / "wrk.lua"
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        lines.append(f"wrk.body = [[{body}]]")
    for name, value in (headers or {}).items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    script.write_text("\n".join(lines) + "\n")
    wrk_bin = shutil.which("wrk")
    if wrk_bin is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    out = subprocess.run(
        [
            wrk_bin,
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if set(pct) != {"50", "99"}:
        raise RuntimeError(f"wrk gave no latency distribution:\n{out}")
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket:
        bad += sum(int(g) for g in socket.groups())
    return WrkResult(rps, _ms(pct["50"]), _ms(pct["99"]), requests, bad)
