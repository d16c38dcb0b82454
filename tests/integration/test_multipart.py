"""A large file uploaded in parts through the API to a real S3 server, then converted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import multipart
from shared.models import utcnow
from shared.storage import Storage
from tests.integration import media
from tests.integration.conftest import Stack, StackFactory
from tests.integration.test_storage import settings_for

pytestmark = pytest.mark.integration

PART = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def video(sample: Callable[[str], Path]) -> Path:
    path = sample("mp4_12mb")
    assert 2 * PART < path.stat().st_size <= 3 * PART, "the sample must make three parts"
    return path


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    return make_stack(multipart_threshold_bytes=str(PART), multipart_part_size_bytes=str(PART))


def begin(api: httpx.Client, path: Path) -> dict[str, Any]:
    response = api.post(
        "/v1/uploads",
        json={
            "filename": "camera.mp4",
            "content_type": "video/mp4",
            "size_bytes": path.stat().st_size,
        },
    )
    assert response.status_code == 201, response.text
    grant: dict[str, Any] = response.json()
    return grant


def part_urls(api: httpx.Client, upload_id: str, numbers: list[int]) -> dict[int, dict[str, Any]]:
    response = api.post(f"/v1/uploads/{upload_id}/parts", json={"part_numbers": numbers})
    assert response.status_code == 200, response.text
    return {p["part_number"]: p for p in response.json()["parts"]}


def put_part(path: Path, grant: dict[str, Any]) -> str:
    start = (grant["part_number"] - 1) * PART
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(PART)
    response = httpx.put(grant["url"], content=data, headers=grant["headers"], timeout=60)
    assert response.status_code == 200, response.text
    etag: str = response.headers["etag"]
    return etag


def complete(api: httpx.Client, upload_id: str, etags: dict[int, str]) -> httpx.Response:
    parts = [{"part_number": n, "etag": e} for n, e in sorted(etags.items())]
    return api.post(f"/v1/uploads/{upload_id}/complete", json={"parts": parts})


def test_video_uploaded_in_three_parts_with_one_resent_converts(
    stack: Stack, video: Path, tmp_path: Path
) -> None:
    with stack.client() as api:
        # Given a multipart upload of a 12 MB video in three 5 MiB parts
        grant = begin(api, video)
        assert grant["url"] is None
        assert grant["multipart"] == {"part_size": PART, "part_count": 3}
        upload_id = grant["upload_id"]
        urls = part_urls(api, upload_id, [1, 2, 3])
        etags = {1: put_part(video, urls[1])}
        # When the connection drops in the middle of part 2 (half its bytes, no answer)
        half = httpx.put(
            urls[2]["url"],
            content=video.read_bytes()[PART : PART + PART // 2],
            headers={"Content-Length": str(PART // 2)},
            timeout=60,
        )
        assert half.status_code >= 400  # storage refuses a body shorter than signed
        # and a job is asked for before the upload is complete
        early = api.post("/v1/jobs", json={"upload_id": upload_id})
        assert early.status_code == 409 and early.json()["error"]["code"] == "upload_incomplete"
        # Then the parts storage holds say what to send again
        listed = api.get(f"/v1/uploads/{upload_id}/parts").json()["parts"]
        assert [(p["part_number"], p["size_bytes"]) for p in listed] == [(1, PART)]
        assert listed[0]["etag"] == etags[1]
        # When part 2 is sent again on a fresh URL, part 3 follows and the upload completes
        etags[2] = put_part(video, part_urls(api, upload_id, [2])[2])
        etags[3] = put_part(video, urls[3])
        done = complete(api, upload_id, etags)
        assert done.status_code == 200, done.text
        assert done.json()["size_bytes"] == video.stat().st_size
    # Then storage holds the same bytes and the job converts them
    assert stack.s3().get_object(Bucket=stack.bucket, Key=_key(stack, upload_id))[
        "Body"
    ].read() == (video.read_bytes())
    job = stack.wait_finished(stack.create_job(upload_id)["id"])
    assert job["status"] == "completed", job
    stack.download(job["id"], tmp_path / "out.mp3")
    assert abs(media.audio_duration(tmp_path / "out.mp3") - media.audio_duration(video)) <= 0.15


def test_completion_with_a_wrong_etag_or_a_missing_part_is_refused(
    stack: Stack, video: Path
) -> None:
    with stack.client() as api:
        # Given parts 1 and 3 stored, part 2 not
        upload_id = begin(api, video)["upload_id"]
        urls = part_urls(api, upload_id, [1, 2, 3])
        etags = {n: put_part(video, urls[n]) for n in (1, 3)}
        # When completion names part 2 with a made-up ETag, or leaves it out
        missing = complete(api, upload_id, etags)
        wrong_missing = complete(api, upload_id, {**etags, 2: f'"{"0" * 32}"'})
        # Then both are refused and the upload stays open
        assert missing.status_code == 409
        assert missing.json()["error"]["code"] == "upload_part_missing"
        assert wrong_missing.json()["error"]["code"] == "upload_part_missing"
        etags[2] = put_part(video, urls[2])
        wrong = complete(api, upload_id, {**etags, 1: etags[2]})
        assert wrong.status_code == 409
        assert wrong.json()["error"]["code"] == "upload_part_etag_mismatch"
        assert len(api.get(f"/v1/uploads/{upload_id}/parts").json()["parts"]) == 3
        assert api.post("/v1/jobs", json={"upload_id": upload_id}).status_code == 409
        # And with the right ETags it completes
        assert complete(api, upload_id, etags).status_code == 200


def test_deleting_an_upload_aborts_it_in_storage(stack: Stack, video: Path) -> None:
    with stack.client() as api:
        upload_id = begin(api, video)["upload_id"]
        put_part(video, part_urls(api, upload_id, [1])[1])

        assert api.delete(f"/v1/uploads/{upload_id}").status_code == 204

        uploads = stack.s3().list_multipart_uploads(Bucket=stack.bucket).get("Uploads", [])
        assert all(upload_id not in u["Key"] for u in uploads)


def _key(stack: Stack, upload_id: str) -> str:
    listed = stack.s3().list_objects_v2(Bucket=stack.bucket, Prefix="uploads/")
    keys: list[str] = [o["Key"] for o in listed.get("Contents", []) if f"/{upload_id}/" in o["Key"]]
    assert len(keys) == 1
    return keys[0]


def test_reaper_aborts_uploads_left_unfinished_past_their_expiry(stack: Stack, video: Path) -> None:
    # Given a multipart upload with one part stored, as the API made it on the real server
    with stack.client() as api:
        upload_id = begin(api, video)["upload_id"]
        put_part(video, part_urls(api, upload_id, [1])[1])
    settings = settings_for(stack.env["V2M_S3_ENDPOINT_URL"], stack.bucket)
    storage = Storage(settings)
    in_progress = storage.multipart_uploads("uploads/")
    assert any(f"/{upload_id}/" in u.key and u.initiated is not None for u in in_progress)

    # When the reaper's step runs a day after it began (past V2M_MULTIPART_EXPIRES_S)
    aborted = multipart.abort_abandoned(
        storage=storage, settings=settings, now=utcnow() + timedelta(days=2)
    )

    # Then storage dropped it, and the client is told to start over
    assert aborted >= 1
    assert all(f"/{upload_id}/" not in u.key for u in storage.multipart_uploads("uploads/"))
    with stack.client() as api:
        gone = api.get(f"/v1/uploads/{upload_id}/parts")
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "upload_expired"
