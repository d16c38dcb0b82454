"""GET /v1/uploads/{id}/probe and /cover against real storage (rclone) and real ffprobe:
tags, cover and duration of a file, a file with none, garbage, and a trim checked at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration import media
from tests.integration.conftest import Stack
from tests.integration.test_accounts import second_user

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def probe(stack: Stack, upload_id: str) -> httpx.Response:
    with stack.client() as api:
        return api.get(f"/v1/uploads/{upload_id}/probe")


def cover(stack: Stack, upload_id: str) -> httpx.Response:
    with stack.client() as api:
        return api.get(f"/v1/uploads/{upload_id}/cover")


def test_probe_gives_the_sources_tags_duration_and_cover(
    shared_stack: Stack, sample: Callable[[str], Path]
) -> None:
    # Given an MP3 with all eight tags and a PNG cover, uploaded
    upload_id = shared_stack.upload(sample("mp3_tagged_cover"), "tagged.mp3", "audio/mpeg")

    # When the page asks what it holds
    resp = probe(shared_stack, upload_id)

    # Then it gets the tags, the duration, the audio and that it has a cover
    assert resp.status_code == 200, resp.text
    facts: dict[str, Any] = resp.json()
    assert facts["tags"] == media.SOURCE_TAGS
    assert facts["duration_s"] == pytest.approx(3.0, abs=0.1)
    assert facts["audio"]["codec"] == "mp3"
    assert facts["has_cover"] is True
    assert facts["format_name"] == "mp3"
    # And the cover is the PNG itself
    picture = cover(shared_stack, upload_id)
    assert picture.status_code == 200, picture.text
    assert picture.headers["content-type"] == "image/png"
    assert picture.content.startswith(PNG_MAGIC)
    assert len(picture.content) < 10_000


def test_a_second_probe_answers_from_the_upload_row(
    shared_stack: Stack, sample: Callable[[str], Path]
) -> None:
    upload_id = shared_stack.upload(sample("mp3_tagged_cover"), "tagged.mp3", "audio/mpeg")
    first = probe(shared_stack, upload_id).json()
    # The object is gone, so only the stored facts can answer
    shared_stack.s3().delete_object(
        Bucket=shared_stack.bucket, Key=_upload_key(shared_stack, upload_id)
    )

    again = probe(shared_stack, upload_id)

    assert again.status_code == 200, again.text
    assert again.json() == first


def _upload_key(stack: Stack, upload_id: str) -> str:
    listing = stack.s3().list_objects_v2(Bucket=stack.bucket, Prefix="uploads/")
    keys = [o["Key"] for o in listing.get("Contents", []) if f"/{upload_id}/" in o["Key"]]
    assert len(keys) == 1, keys
    return str(keys[0])


def test_a_video_without_tags_or_cover_has_empty_tags_and_no_cover(
    shared_stack: Stack, sample: Callable[[str], Path]
) -> None:
    upload_id = shared_stack.upload(sample("mp4_h264_aac"), "clip.mp4", "video/mp4")

    resp = probe(shared_stack, upload_id)

    assert resp.status_code == 200, resp.text
    facts = resp.json()
    assert {k: v for k, v in facts["tags"].items() if v is not None} == {}
    assert facts["has_cover"] is False
    assert facts["video_codec"] == "h264"
    assert facts["audio"]["codec"] == "aac"
    missing = cover(shared_stack, upload_id)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "no_cover"


def test_garbage_is_a_clear_422_and_stays_one(shared_stack: Stack, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all\n" * 200)
    upload_id = shared_stack.upload(garbage, "garbage.mp4", "video/mp4")

    first, again = probe(shared_stack, upload_id), probe(shared_stack, upload_id)

    for resp in (first, again):
        assert resp.status_code == 422, resp.text
        error = resp.json()["error"]
        assert error["code"] == "unsupported_media"
        assert "could not be read" in error["message"]
    assert cover(shared_stack, upload_id).status_code == 422


def test_probe_before_the_put_is_409_upload_incomplete(shared_stack: Stack) -> None:
    with shared_stack.client() as api:
        grant = api.post(
            "/v1/uploads",
            json={"filename": "later.mp4", "content_type": "video/mp4", "size_bytes": 1000},
        ).json()

    resp = probe(shared_stack, grant["upload_id"])

    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "upload_incomplete"


def test_another_users_upload_is_404(shared_stack: Stack, sample: Callable[[str], Path]) -> None:
    upload_id = shared_stack.upload(sample("mp3_tagged_cover"), "tagged.mp3", "audio/mpeg")
    bob = second_user(shared_stack, "bob-probe@example.com")
    with shared_stack.client(api_key=bob) as other:
        for path in ("probe", "cover"):
            resp = other.get(f"/v1/uploads/{upload_id}/{path}")
            assert resp.status_code == 404, resp.text
            assert resp.json()["error"]["code"] == "upload_not_found"


def test_a_trim_past_a_probed_uploads_end_is_422_at_creation(
    shared_stack: Stack, sample: Callable[[str], Path]
) -> None:
    # Given a 3 s upload the page has probed
    upload_id = shared_stack.upload(sample("mp4_h264_aac"), "clip.mp4", "video/mp4")
    assert probe(shared_stack, upload_id).status_code == 200

    # When a job asks to start at 30 s
    with shared_stack.client() as api:
        resp = api.post(
            "/v1/jobs", json={"upload_id": upload_id, "options": {"trim": {"start_s": 30}}}
        )

    # Then it is refused at once, naming the field; a trim inside the file is accepted
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["code"] == "trim_out_of_range"
    assert "options.trim.start_s" in error["message"]
    job = shared_stack.create_job(upload_id, {"trim": {"start_s": 1}})
    assert shared_stack.wait_finished(job["id"])["status"] == "completed"
