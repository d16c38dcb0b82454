"""The installed `v2m` command against the real stack (API, worker, RabbitMQ, S3 server,
ffmpeg): a folder converts, a text file named .mp4 fails alone, a second run creates no
job, Ctrl-C exits 130 and resumes, the rows render in a real terminal (tmux), and the
README's block runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docs.blocks import run_by
from tests.integration import media
from tests.integration.conftest import Stack, StackFactory, wait_for

pytestmark = pytest.mark.integration

V2M = str(Path(sys.executable).parent / "v2m")
SAMPLES = {"clip.mp4": "mp4_h264_aac", "short.mp4": "short_clip", "camera.mov": "mov_pcm"}


def v2m_env(stack: Stack, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("V2M_")}
    env["PATH"] = f"{Path(V2M).parent}{os.pathsep}{env.get('PATH', '')}"  # as the Makefile's
    return {**env, "V2M_API_URL": stack.api_url, "V2M_API_KEY": stack.api_key, **extra}


def v2m(stack: Stack, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [V2M, *args], cwd=cwd, env=v2m_env(stack), capture_output=True, text=True, timeout=240
    )


def start_v2m(stack: Stack, *args: str, cwd: Path) -> subprocess.Popen[str]:
    """v2m in the background, its output read line by line as it comes."""
    return subprocess.Popen(
        [V2M, *args],
        cwd=cwd,
        env=v2m_env(stack),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def job_count(stack: Stack) -> int:
    with stack.client() as api:
        return len(api.get("/v1/jobs", params={"limit": 100}).json()["items"])


@pytest.fixture
def folder(tmp_path: Path, media_dir: Path) -> Path:
    """Three short videos and a text file named .mp4."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name, sample in SAMPLES.items():
        shutil.copy(media.make(media.SAMPLES[sample], media_dir), videos / name)
    (videos / "notes.mp4").write_text("These are my notes, not a video.\n" * 20)
    return videos


def test_folder_converts_a_text_file_fails_alone_and_a_rerun_creates_no_job(
    shared_stack: Stack, folder: Path
) -> None:
    inputs = ["camera.mov", "clip.mp4", "notes.mp4", "short.mp4"]
    # When the folder is converted with JSON events
    first = v2m(shared_stack, "convert", *inputs, "-o", "out", "--json", cwd=folder)
    # Then every line parses, the three videos are MP3s and the text file alone failed
    assert first.returncode == 1, first.stderr
    got = events(first.stdout)
    summary = got[-1]
    assert summary["event"] == "summary"
    assert (summary["converted"], summary["skipped"], summary["failed"]) == (3, 0, 1)
    [failure] = summary["failures"]
    assert failure["file"] == "notes.mp4" and failure["code"] == "unsupported_media"
    assert failure["message"]
    for name in ("camera", "clip", "short"):
        streams: Any = media.probe(folder / "out" / f"{name}.mp3")["streams"]
        assert [s["codec_name"] for s in streams] == ["mp3"]
    jobs_after_first = job_count(shared_stack)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (folder / "out").iterdir()}

    # When the same command runs again
    second = v2m(shared_stack, "convert", *inputs, "-o", "out", "--json", cwd=folder)
    # Then no job is created, nothing is uploaded or downloaded, the failure is reported again
    assert second.returncode == 1, second.stderr
    names = [(e["file"], e["event"]) for e in events(second.stdout)[:-1]]
    assert sorted(n for n in names if n[1] == "skipped") == [
        ("camera.mov", "skipped"),
        ("clip.mp4", "skipped"),
        ("short.mp4", "skipped"),
    ]
    assert [n for n in names if n[0] == "notes.mp4"] == [
        ("notes.mp4", "job_resumed"),
        ("notes.mp4", "failed"),
    ]
    assert job_count(shared_stack) == jobs_after_first
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "out").iterdir()} == mtimes

    # When one MP3 is deleted and the command runs a third time
    (folder / "out" / "clip.mp3").unlink()
    third = v2m(shared_stack, "convert", "clip.mp4", "-o", "out", "--json", cwd=folder)
    # Then it is downloaded from its existing job: no upload, no new job
    assert third.returncode == 0, third.stderr
    assert [e["event"] for e in events(third.stdout)] == [
        "job_resumed",
        "downloading",
        "saved",
        "summary",
    ]
    assert job_count(shared_stack) == jobs_after_first
    assert media.probe(folder / "out" / "clip.mp3")["streams"]


def test_ctrl_c_exits_130_and_the_rerun_resumes_the_same_job(
    make_stack: StackFactory, folder: Path
) -> None:
    # Given a stack with no worker yet, so the job waits in the queue
    stack = make_stack(workers=0)
    proc = start_v2m(stack, "convert", "clip.mp4", "--json", cwd=folder)
    assert proc.stdout is not None and proc.stderr is not None
    seen = [json.loads(proc.stdout.readline()) for _ in range(3)]
    assert [e["event"] for e in seen] == ["uploading", "uploaded", "job_created"]
    # When the user presses Ctrl-C while the job is followed
    proc.send_signal(signal.SIGINT)
    # Then v2m stops with 130 and says how to resume
    assert proc.wait(timeout=30) == 130
    assert "run the same command again" in proc.stderr.read()
    # When a worker starts and the command is run again
    stack.start_worker()
    again = v2m(stack, "convert", "clip.mp4", "--json", cwd=folder)
    # Then the same job finishes and is saved, with no second upload
    assert again.returncode == 0, again.stderr
    resumed = events(again.stdout)
    assert (resumed[0]["event"], resumed[0]["job_id"]) == ("job_resumed", seen[2]["job_id"])
    assert "uploading" not in [e["event"] for e in resumed]
    assert (folder / "clip.mp3").stat().st_size > 0
    assert job_count(stack) == 1


def test_a_large_file_goes_up_in_parts_and_converts(
    make_stack: StackFactory, tmp_path: Path, media_dir: Path
) -> None:
    # Given a server that takes files of 5 MiB and more in 5 MiB parts, and a 12 MB video
    part = str(5 * 1024 * 1024)
    stack = make_stack(multipart_threshold_bytes=part, multipart_part_size_bytes=part)
    shutil.copy(media.make(media.SAMPLES["mp4_12mb"], media_dir), tmp_path / "camera.mp4")
    # When it is converted
    run = v2m(stack, "convert", "camera.mp4", "--json", cwd=tmp_path)
    # Then it went up in three parts and its MP3 is saved
    assert run.returncode == 0, run.stderr
    got = events(run.stdout)
    assert {"event": "uploading_in_parts", "file": "camera.mp4", "part_count": 3} in got
    streams: Any = media.probe(tmp_path / "camera.mp3")["streams"]
    assert [s["codec_name"] for s in streams] == ["mp3"]


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[list[str]]:
    """tmux on its own server socket, killed afterwards."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: run `make install-test-tools` (apt-get install tmux)")
    command = ["tmux", "-S", str(tmp_path / "tmux.sock")]
    yield command
    subprocess.run([*command, "kill-server"], capture_output=True, check=False)


def test_progress_rows_render_and_end_at_100_percent_in_a_terminal(
    shared_stack: Stack, folder: Path, tmux: list[str]
) -> None:
    # Given v2m started in a real terminal, 120 columns wide
    env = " ".join(
        f"{k}={shlex.quote(v)}" for k, v in v2m_env(shared_stack).items() if k.startswith("V2M_")
    )
    cmd = f"cd {shlex.quote(str(folder))} && env {env} {V2M} convert clip.mp4 short.mp4 camera.mov -o tty; echo V2M_EXIT=$?; sleep 300"
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", "120", "-y", "30", "bash", "-c", cmd], check=True
    )

    def screen() -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p"], capture_output=True, text=True, check=True
        ).stdout

    # When it finishes
    wait_for(lambda: "V2M_EXIT=" in screen(), 180, "v2m to finish in tmux", interval=0.5)
    text = screen()
    # Then each file's row and the overall row ended at 100 %, and the summary is printed
    assert "V2M_EXIT=0" in text, text
    for name in ("clip.mp4", "short.mp4", "camera.mov", "all files"):
        [row] = [line for line in text.splitlines() if line.startswith(name)]
        assert re.search(r"\b100%", row), text
    assert "3 converted, 0 skipped, 0 failed" in text


def test_a_429_is_waited_out_with_the_reason_on_screen(
    make_stack: StackFactory, folder: Path
) -> None:
    # Given a user allowed one active job who has one queued, and no worker yet to run it
    stack = make_stack(workers=0, max_active_jobs="1")
    upload_id = stack.upload(folder / "short.mp4", "short.mp4", "video/mp4")
    stack.create_job(upload_id)
    proc = start_v2m(stack, "convert", "clip.mp4", cwd=folder)
    assert proc.stdout is not None
    # When v2m's job is refused with 429 (plain lines: stdout is not a terminal)
    lines: list[str] = []
    while not any(": waiting " in line for line in lines):
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    # Then it says why it waits, and finishes once a worker has run the other job
    waiting = next(line for line in lines if ": waiting " in line)
    assert waiting.startswith("clip.mp4: waiting 5 s: the API is limiting requests")
    assert "(rate_limited: You already have 1 jobs queued or converting" in waiting
    stack.start_worker()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    assert out.splitlines()[-1] == "1 converted, 0 skipped, 0 failed"
    assert media.probe(folder / "clip.mp3")["streams"]


def test_wrong_key_exits_2_and_an_unreachable_api_exits_1(
    shared_stack: Stack, folder: Path
) -> None:
    env = v2m_env(shared_stack, V2M_API_KEY="v2m_" + uuid.uuid4().hex)
    wrong = subprocess.run(
        [V2M, "convert", "clip.mp4"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2
    assert "refused the credentials" in wrong.stderr and "v2m login" in wrong.stderr
    env = v2m_env(shared_stack, V2M_API_URL="http://127.0.0.1:9")
    down = subprocess.run(
        [V2M, "jobs"], cwd=folder, env=env, capture_output=True, text=True, timeout=60
    )
    assert down.returncode == 1
    assert "Cannot reach the API at http://127.0.0.1:9" in down.stderr


def test_options_the_api_refuses_exit_2_with_its_message_and_create_nothing(
    shared_stack: Stack, folder: Path
) -> None:
    jobs_before = job_count(shared_stack)
    refused = v2m(shared_stack, "convert", "clip.mp4", "--format", "no-such-format", cwd=folder)
    assert refused.returncode == 2
    assert "The request is not valid: options." in refused.stderr
    assert job_count(shared_stack) == jobs_before
    assert not (folder / "clip.no-such-format").exists()


def test_readme_commands(shared_stack: Stack, folder: Path) -> None:
    block = run_by("README.md", "tests/cli/test_v2m_stack.py::test_readme_commands").text
    env = v2m_env(shared_stack, V2M_PASSWORD=shared_stack.env["V2M_DEV_PASSWORD"])
    del env["V2M_API_KEY"]  # the block logs in
    (folder / "notes.mp4").unlink()
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Logged in to" in out.stdout and "dev@localhost" in out.stdout
    assert sorted(p.name for p in (folder / "mp3").iterdir()) == ["clip.mp3", "short.mp3"]
    assert "completed" in out.stdout


def test_status_download_and_jobs_read_a_converted_file(shared_stack: Stack, folder: Path) -> None:
    # Given a converted file
    done = v2m(shared_stack, "convert", "short.mp4", "-o", "first", "--json", cwd=folder)
    assert done.returncode == 0, done.stderr
    [saved] = [e for e in events(done.stdout) if e["event"] == "saved"]
    job_id = saved["job_id"]
    # Then its job reads as completed, lists among the jobs, and downloads again
    status = v2m(shared_stack, "status", job_id, "--json", cwd=folder)
    assert json.loads(status.stdout)["status"] == "completed"
    listed = v2m(shared_stack, "jobs", "--status", "completed", "--json", cwd=folder)
    assert job_id in [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    (folder / "again").mkdir()
    got = v2m(shared_stack, "download", job_id, "-o", "again", cwd=folder)
    assert got.returncode == 0, got.stderr
    assert (folder / "again" / "short.mp3").read_bytes() == (
        folder / "first" / "short.mp3"
    ).read_bytes()
    # And an existing file is not replaced, an unknown job is said so
    again = v2m(shared_stack, "download", job_id, "-o", "again", cwd=folder)
    assert again.returncode == 2 and "pass --overwrite" in again.stderr
    unknown = v2m(shared_stack, "status", "no-such-job", cwd=folder)
    assert unknown.returncode == 1 and "No job has that id." in unknown.stderr


def test_login_with_an_api_key_keeps_it_for_later_commands(
    shared_stack: Stack, folder: Path, config_home: Path
) -> None:
    env = v2m_env(shared_stack)
    key = env.pop("V2M_API_KEY")
    login = subprocess.run(
        [V2M, "login", "--api-key", key], env=env, capture_output=True, text=True, timeout=60
    )
    assert login.returncode == 0, login.stderr
    stored = config_home / "v2m" / "config.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    listed = subprocess.run([V2M, "jobs"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "status" in listed.stdout  # the table's header
