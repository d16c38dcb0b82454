"""The scripts the docs tell people to run, run against a real local stack with small counts.

- scripts/fault-tolerance-test.py: 5 jobs on two workers that a supervisor thread restarts
  (as `make run` does), with worker SIGKILLs. Broker restarts stay out: the machine's
  RabbitMQ is shared (tests/integration/test_reliability.py stops a node of its own).
- scripts/demo-autoscaling.sh --no-kubectl: the demo's submissions and follow-up through
  the API, without a cluster.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.docs.blocks import ROOT, run_by
from tests.integration.conftest import Proc, Stack, StackFactory

pytestmark = pytest.mark.integration

FAULT_RUN = "tests/docs/test_script_runs.py::test_fault_run_with_worker_kills_loses_nothing"
DEMO_RUN = "tests/docs/test_script_runs.py::test_autoscaling_demo_without_kubectl_converts_its_jobs"


@contextmanager
def restarted_workers(stack: Stack) -> Iterator[list[Proc]]:
    """Start a worker again whenever one dies, as `make run`'s supervisor does."""
    stop = threading.Event()
    replaced: list[Proc] = []

    def sweep() -> None:
        for proc in list(stack.procs):
            if proc.name.startswith("worker") and proc.popen.poll() is not None:
                if proc not in replaced:
                    replaced.append(proc)
                    try:
                        stack.start_worker()
                    except AssertionError:
                        pass  # killed while it started: the next sweep replaces it

    def supervise() -> None:
        while not stop.wait(0.2):
            sweep()

    thread = threading.Thread(target=supervise, daemon=True)
    thread.start()
    try:
        yield replaced
    finally:
        stop.set()
        thread.join()
        sweep()  # a kill in the run's last moments


def table(output: str) -> dict[str, str]:
    """The script's Markdown table as {figure: value}."""
    rows = re.findall(r"^\| (.+?) +\| (.+?) \|$", output, re.M)
    return {name: value for name, value in rows if name != "figure"}


def with_options(argv: list[str], **options: str) -> list[str]:
    """`argv` with each `--name value` set to the given value (added when absent)."""
    out = list(argv)
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
    return out


def doc_command(doc: str, test: str, script: str) -> tuple[list[str], list[str]]:
    """The argv of the block's line that runs `script`, and the block's other lines."""
    lines = run_by(doc, test).text.splitlines()
    command = next(shlex.split(line.split("#")[0]) for line in lines if script in line)
    return command, [line for line in lines if script not in line]


def run_script(stack: Stack, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a script from the repository as the stack's user (its API key in V2M_API_KEY)."""
    return subprocess.run(
        argv,
        cwd=ROOT,
        env={**stack.env, "V2M_API_KEY": stack.api_key, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_fault_run_with_worker_kills_loses_nothing(make_stack: StackFactory) -> None:
    command, others = doc_command(
        "docs/RELIABILITY.md", FAULT_RUN, "scripts/fault-tolerance-test.py"
    )
    admin = [line for line in others if "api.admin set-limits" in line]
    assert admin, "the doc raises the dev user's limits before the run"
    # Given two workers that come back when killed, and the dev user's limits raised as
    # the doc says
    stack = make_stack(workers=2)
    for line in admin:
        stack.run_module("api.admin", *shlex.split(line)[3:])
    # When the doc's fault run goes with 5 jobs and at most two worker SIGKILLs
    argv = with_options(
        command[1:],
        jobs="5",
        api=stack.api_url,
        faults="kill",
        max_faults="2",
        min_interval="0.3",
        max_interval="1.5",
        timeout="300",
    )
    with restarted_workers(stack) as replaced:
        run = run_script(stack, [sys.executable, *argv], timeout=400)
    figures = table(run.stdout)
    output = run.stdout + run.stderr[-3000:]
    # Then every job completed once, with its MP3, and at least one worker was killed
    assert run.returncode == 0, output
    assert figures["accepted (202)"] == figures["completed"] == "5", output
    assert figures["lost"] == figures["stuck"] == figures["duplicates"] == "0", output
    kills = int(figures.get("fault: worker killed (SIGKILL)", "0"))
    assert kills >= 1, output
    assert len(replaced) == kills, output  # only this stack's workers were killed
    assert len([k for k in stack.output_keys() if k.endswith(".mp3")]) == 5


def test_fault_run_without_credentials_says_how_to_get_them(tmp_path: Path) -> None:
    # Given no V2M_API_KEY and no .run/dev-api-key beside the script
    script = tmp_path / "scripts" / "fault-tolerance-test.py"
    script.parent.mkdir()
    script.write_text((ROOT / "scripts" / "fault-tolerance-test.py").read_text())
    env = {k: v for k, v in os.environ.items() if k != "V2M_API_KEY"}
    env["PYTHONPATH"] = str(ROOT)
    # When it is run
    run = subprocess.run(
        [sys.executable, str(script), "--faults", "kill", "--jobs", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it stops at once and names both ways to give it a key
    assert run.returncode != 0
    assert "V2M_API_KEY" in run.stderr and ".run/dev-api-key" in run.stderr, run.stderr


def test_autoscaling_demo_without_kubectl_converts_its_jobs(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    command, _ = doc_command("docs/OPERATIONS.md", DEMO_RUN, "scripts/demo-autoscaling.sh")
    assert "--no-kubectl" in command
    # Given a stack and a short clip
    stack = make_stack()
    clip = tmp_path / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5"]
        + ["-f", "lavfi", "-i", "sine=frequency=440", "-t", "3", "-c:v", "libx264"]
        + ["-preset", "ultrafast", "-c:a", "aac", str(clip)],
        check=True,
    )
    # When the doc's demo command runs with 3 jobs (no kubectl on PATH is needed)
    argv = with_options(command, jobs="3", url=stack.api_url, file=str(clip), interval="1")
    run = run_script(stack, ["bash", *argv], timeout=300)
    output = run.stdout + run.stderr
    # Then it submitted three authenticated jobs and saw all three complete
    assert run.returncode == 0, output
    assert "all 3 jobs completed" in run.stderr, output
    with stack.client() as api:
        jobs = api.get("/v1/jobs", params={"limit": 100}).json()["items"]
    assert [j["status"] for j in jobs] == ["completed"] * 3
