"""Retention against the real stack (rclone serve s3, RabbitMQ, ffmpeg, API and worker
processes): expired and deleted MP3s answer 410 and say so, inputs go once their job is
finished, a job whose input vanished fails with input_missing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Stack, StackFactory, wait_for

pytestmark = pytest.mark.integration

# The reaper passes often, so the tests wait on its work rather than its interval.
FAST_REAPER = {"reaper_interval_s": "0.5"}


def keys(stack: Stack, prefix: str) -> list[str]:
    listing = stack.s3().list_objects_v2(Bucket=stack.bucket, Prefix=prefix)
    return [obj["Key"] for obj in listing.get("Contents", [])]


def download_answer(stack: Stack, job_id: str) -> tuple[int, dict[str, Any]]:
    with stack.client() as api:
        resp = api.get(f"/v1/jobs/{job_id}/download")
    return resp.status_code, (resp.json() if resp.status_code != 307 else {})


def test_an_mp3_past_its_retention_is_deleted_by_the_reaper_and_answers_410(
    make_stack: StackFactory, sample: Callable[[str], Path]
) -> None:
    # Given a deployment keeping MP3s for about two seconds
    stack = make_stack(workers=1, output_retention_days="0.00002", **FAST_REAPER)
    job = stack.convert(sample("mp4_h264_aac"), "clip.mp4", "video/mp4")
    assert job["status"] == "completed", job
    output_key = stack.output_key(job["id"])

    # When its retention passes, the reaper deletes the MP3 and marks the job
    wait_for(lambda: output_key not in keys(stack, "outputs/"), 60, "the MP3 to be deleted")
    wait_for(
        lambda: stack.get_job(job["id"])["output"]["expired"] is True, 30, "the job marked expired"
    )

    # Then the download is 410 output_expired, and the job is still listed, completed
    status, body = download_answer(stack, job["id"])
    assert (status, body["error"]["code"]) == (410, "output_expired")
    after = stack.get_job(job["id"])
    assert after["status"] == "completed" and after["output"]["size_bytes"] > 0
    assert keys(stack, "uploads/") == []  # the input went once the job completed


def test_inputs_go_once_converted_and_a_deleted_mp3_answers_410(
    make_stack: StackFactory, sample: Callable[[str], Path], tmp_path: Path
) -> None:
    # Given a conversion on a deployment with the default retention (7 days)
    stack = make_stack(workers=1, **FAST_REAPER)
    job = stack.convert(sample("mp4_h264_aac"), "clip.mp4", "video/mp4")
    assert job["status"] == "completed", job
    assert job["output"]["expired"] is False and job["output"]["expires_at"]

    # Then its input is deleted, while the MP3 stays downloadable
    wait_for(lambda: keys(stack, "uploads/") == [], 30, "the input to be deleted")
    stack.download(job["id"], tmp_path / "clip.mp3")
    assert (tmp_path / "clip.mp3").stat().st_size == job["output"]["size_bytes"]

    # When the MP3 is deleted behind the API's back
    stack.s3().delete_object(Bucket=stack.bucket, Key=stack.output_key(job["id"]))

    # Then the download answers 410 and the job says the output expired
    status, body = download_answer(stack, job["id"])
    assert (status, body["error"]["code"]) == (410, "output_expired")
    assert stack.get_job(job["id"])["output"]["expired"] is True


def test_a_job_whose_input_was_deleted_before_it_ran_fails_with_input_missing(
    make_stack: StackFactory, sample: Callable[[str], Path]
) -> None:
    # Given a queued job, no worker yet, whose input object is then deleted
    stack = make_stack(workers=0)
    job = stack.create_job(stack.upload(sample("mp4_h264_aac"), "clip.mp4", "video/mp4"))
    (input_key,) = keys(stack, "uploads/")
    stack.s3().delete_object(Bucket=stack.bucket, Key=input_key)

    # When a worker takes it
    stack.start_worker()
    done = stack.wait_finished(job["id"])

    # Then it fails for good on its first attempt, with a code saying why
    assert done["status"] == "failed"
    assert done["error"]["code"] == "input_missing"
    assert done["attempts"] == 1
