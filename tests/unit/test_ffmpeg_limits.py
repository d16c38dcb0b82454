"""ffmpeg's child-process limits, observed from inside a real child process."""

from __future__ import annotations

import subprocess

from worker.ffmpeg import resource_limits


def test_child_process_gets_cpu_memory_and_core_limits() -> None:
    out = subprocess.run(
        ["sh", "-c", "ulimit -t; ulimit -v; ulimit -c"],
        preexec_fn=resource_limits(cpu_seconds=120, memory_mb=512),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["120", str(512 * 1024), "0"]
