"""Worker lifecycle and the edges of the pipeline: shutdown, poison messages, PostgreSQL."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import StackFactory, wait_for

pytestmark = pytest.mark.integration


def test_sigterm_during_a_job_lets_it_finish_and_takes_no_new_work(
    make_stack: StackFactory, sample: Callable[[str], Path]
) -> None:
    # Given a worker converting a long input
    stack = make_stack(workers=1)
    worker = stack.procs[-1]
    first = stack.create_job(stack.upload(sample("long_audio"), "lecture.m4a", "audio/mp4"))
    wait_for(lambda: stack.get_job(first["id"])["progress"] > 0, 60, "the job to make progress")
    # When the worker is asked to stop mid-job, and another job arrives meanwhile
    worker.popen.send_signal(signal.SIGTERM)
    second = stack.create_job(stack.upload(sample("mp4_h264_aac"), "clip.mp4", "video/mp4"))
    # Then it finishes the running job, exits 0, and leaves the new one queued
    assert worker.popen.wait(timeout=120) == 0
    assert stack.get_job(first["id"])["status"] == "completed"
    assert stack.get_job(second["id"])["status"] == "queued"
    assert worker.events("shutdown_requested") and worker.events("stopped")
    # And the queued job is not lost: the next worker converts it
    stack.start_worker()
    assert stack.wait_finished(second["id"])["status"] == "completed"
    assert not list((stack.workdir / "tmp").iterdir()), "temp files left behind"


def test_poison_message_goes_to_dead_letter_queue_at_once(make_stack: StackFactory) -> None:
    stack = make_stack(workers=1)
    worker = stack.procs[-1]
    stack.publish_raw(b"this is not a job message")
    stack.publish_raw(json.dumps({"job_id": str(uuid.uuid4())}).encode())
    dlq = f"{stack.queue}.dlq"
    wait_for(lambda: stack.queue_counts(dlq)[0] == 2, 20, "both messages in the dead-letter queue")
    assert stack.queue_counts(stack.queue)[0] == 0
    assert len(worker.events("poison_message")) == 1
    assert len(worker.events("unknown_job")) == 1
    assert worker.popen.poll() is None  # the worker is still running


def test_readyz_is_ready_with_real_services(make_stack: StackFactory) -> None:
    stack = make_stack(workers=0)
    with stack.client() as api:
        resp = api.get("/readyz")
    assert resp.status_code == 200
    assert resp.json()["checks"] == {"database": "ok"}


def test_pipeline_runs_on_postgresql(
    make_stack: StackFactory, postgres_url: str, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    stack = make_stack(workers=1, database_url=postgres_url)
    job = stack.convert(sample("mp4_moov_at_end"), "moov-at-end.mp4", "video/mp4")
    assert job["status"] == "completed" and job["attempts"] == 1
    failed = stack.convert(sample("no_audio"), "silent-film.mp4", "video/mp4")
    assert failed["error"]["code"] == "no_audio_stream"
    with stack.client() as api:
        listing = api.get("/v1/jobs", params={"limit": 1}).json()
        second_page = api.get(
            "/v1/jobs", params={"limit": 1, "cursor": listing["next_cursor"]}
        ).json()
        completed = api.get("/v1/jobs", params={"status": "completed"}).json()
    assert [j["id"] for j in listing["items"]] == [failed["id"]]
    assert [j["id"] for j in second_page["items"]] == [job["id"]] and second_page[
        "next_cursor"
    ] is None
    assert [j["id"] for j in completed["items"]] == [job["id"]]
    stack.download(job["id"], tmp_path / "out.mp3")
    assert (tmp_path / "out.mp3").stat().st_size == job["output"]["size_bytes"]


def test_job_is_idempotent_over_http(
    make_stack: StackFactory, sample: Callable[[str], Path]
) -> None:
    stack = make_stack(workers=1)
    upload_id = stack.upload(sample("short_clip"), "blink.mp4", "video/mp4")
    key = f"test-{uuid.uuid4()}"
    first = stack.create_job(upload_id, {"quality": 4}, idempotency_key=key)
    again = stack.create_job(upload_id, {"quality": 4}, idempotency_key=key)
    assert again["id"] == first["id"]
    assert stack.wait_finished(first["id"])["status"] == "completed"
    time.sleep(0.5)
    assert stack.output_keys() == [stack.output_key(first["id"])]
