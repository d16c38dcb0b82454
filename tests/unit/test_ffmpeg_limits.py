"""ffmpeg's child-process limits, observed from inside a real child process."""

from __future__ import annotations

import subprocess

import pytest

from shared.media import sandbox
from worker import ffmpeg
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


LIMITS_SEEN = ["sh", "-c", "ulimit -t; ulimit -v; ulimit -c"]


def test_prlimit_sets_the_same_limits_before_ffmpeg_runs() -> None:
    if ffmpeg.PRLIMIT is None:
        pytest.skip("util-linux prlimit is not installed")
    argv, preexec_fn = ffmpeg.sandboxed(LIMITS_SEEN, cpu_seconds=120, memory_mb=512)

    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()

    assert preexec_fn is None  # nothing runs in the child before exec: Python may vfork
    assert argv[-len(LIMITS_SEEN) :] == LIMITS_SEEN
    assert out == ["120", str(512 * 1024), "0"]


def test_without_prlimit_the_child_sets_its_own_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "PRLIMIT", None)
    argv, preexec_fn = ffmpeg.sandboxed(LIMITS_SEEN, cpu_seconds=120, memory_mb=512)

    out = subprocess.run(
        argv, preexec_fn=preexec_fn, capture_output=True, text=True, check=True
    ).stdout.split()

    assert argv == LIMITS_SEEN
    assert out == ["120", str(512 * 1024), "0"]
