"""README.md's shell blocks, run as a reader would against a real local stack.

`make run` is stood in for by the integration suite's stack (API, worker, RabbitMQ, the
S3 server, ffmpeg): each block runs in a directory laid out like the repository after
`make run` (`.run/` holding the stack's database and API key, `.venv/`), with the stack's
address in place of http://127.0.0.1:8000.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.docs.blocks import ROOT, run_by
from tests.integration.conftest import Stack, StackFactory

pytestmark = pytest.mark.integration

README = "README.md"
MAKE_RUN_API = "http://127.0.0.1:8000"


def reader_dir(stack: Stack, tmp_path: Path) -> Path:
    """A working directory like the repository's after `make run`, backed by `stack`."""
    (stack.workdir / "dev-api-key").write_text(stack.api_key + "\n")
    (tmp_path / ".run").symlink_to(stack.workdir)
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return tmp_path


def run_block(text: str, cwd: Path, stack: Stack, timeout: float = 180) -> str:
    env = {
        **{k: v for k, v in stack.env.items() if k != "V2M_DATABASE_URL"},
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", text.replace(MAKE_RUN_API, stack.api_url)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_curl_walkthrough_converts_a_video(make_stack: StackFactory, tmp_path: Path) -> None:
    block = run_by(README, "tests/docs/test_readme.py::test_curl_walkthrough_converts_a_video")
    # Given the stack `make run` gives and a video with sound named holiday.mp4
    stack = make_stack()
    cwd = reader_dir(stack, tmp_path)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"]
        + ["-f", "lavfi", "-i", "sine=frequency=440", "-t", "4", "-c:v", "libx264"]
        + ["-preset", "ultrafast", "-c:a", "aac", str(cwd / "holiday.mp4")],
        check=True,
    )
    # When the README's walk-through runs
    out = run_block(block.text, cwd, stack)
    # Then its last status read says completed, and holiday.mp3 is the MP3
    job = json.loads(out.strip().splitlines()[-1])
    assert job["status"] == "completed", job
    assert job["options"]["quality"] == 2
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0"]
        + [str(cwd / "holiday.mp3")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == ["mp3"]


def test_admin_cli_block_makes_a_user_whose_key_works(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    block = run_by(
        README, "tests/docs/test_readme.py::test_admin_cli_block_makes_a_user_whose_key_works"
    )
    # Given the stack `make run` gives
    stack = make_stack(workers=0)
    cwd = reader_dir(stack, tmp_path)
    # When the README's admin commands run against its database
    out = run_block(block.text, cwd, stack)
    # Then alice exists with raised limits, and the key printed once authenticates as her
    assert "created user alice@example.com" in out
    assert "limits for alice@example.com: uploads/minute=600 active jobs=100" in out
    key = next(line for line in out.splitlines() if line.startswith("v2m_"))
    me = httpx.get(
        f"{stack.api_url}/v1/auth/me", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "alice@example.com"
    assert "alice@example.com" in out.split("limits for")[-1]  # list-users shows her
