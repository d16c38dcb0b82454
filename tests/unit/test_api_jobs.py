"""POST/GET /v1/jobs, GET /v1/jobs/{id}, GET /v1/jobs/{id}/download."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared import job_transitions, users
from shared.models import Job, JobStatus, Upload
from tests.fakes import FakePublisher, FakeStorage
from tests.unit.conftest import make_settings

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

UploadFactory = Callable[..., str]

#: The job fields the v1 contract lists; `attempts` is this API's one addition.
CONTRACT_JOB_KEYS = {
    "id",
    "status",
    "progress",
    "created_at",
    "started_at",
    "finished_at",
    "input",
    "options",
    "output",
    "error",
}


def post_job(
    client: TestClient,
    upload_id: str,
    options: dict[str, Any] | None = None,
    *,
    key: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"upload_id": upload_id}
    if options is not None:
        body["options"] = options
    headers = {"Idempotency-Key": key} if key else {}
    response: httpx.Response = client.post("/v1/jobs", json=body, headers=headers)
    return response


def listed_ids(client: TestClient, **params: Any) -> list[str]:
    response = client.get("/v1/jobs", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


# --------------------------------------------------------------------------- create


def test_job_for_unknown_upload_is_404_upload_not_found(
    client: TestClient, publisher: FakePublisher
) -> None:
    response = post_job(client, "00000000-0000-0000-0000-000000000000")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "upload_not_found"
    assert publisher.messages == []


def test_job_before_the_bytes_arrive_is_409_upload_incomplete(
    client: TestClient, uploaded: UploadFactory, publisher: FakePublisher
) -> None:
    upload_id = uploaded(put=False)

    response = post_job(client, upload_id)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "upload_incomplete"
    assert publisher.messages == []
    assert listed_ids(client) == []


def test_job_on_object_of_wrong_size_is_409_upload_incomplete(
    client: TestClient, uploaded: UploadFactory, storage: FakeStorage, engine: Engine
) -> None:
    # Given an upload that declared 2048 bytes but storage holds only 1000
    upload_id = uploaded(size_bytes=2048, put=False)
    with Session(engine) as session:
        upload = session.get(Upload, upload_id)
        assert upload is not None
        storage.put(upload.key, b"x" * 1000)

    # When a job is asked for
    response = post_job(client, upload_id)

    # Then it is refused and the message says what storage has
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "upload_incomplete"
    assert "2048" in error["message"] and "1000" in error["message"]


def test_job_is_accepted_with_202_and_the_contract_shape(
    client: TestClient, uploaded: UploadFactory
) -> None:
    upload_id = uploaded(filename="holiday.mov", size_bytes=2048)

    response = post_job(client, upload_id)

    assert response.status_code == 202
    job = response.json()
    assert set(job) == CONTRACT_JOB_KEYS | {"attempts", "segments"}
    assert job["segments"] is None  # converted whole unless a worker splits it
    assert job["status"] == "queued"
    assert job["progress"] == 0
    assert datetime.fromisoformat(job["created_at"]).tzinfo is not None
    assert job["started_at"] is None
    assert job["finished_at"] is None
    assert job["input"] == {"filename": "holiday.mov", "size_bytes": 2048}
    assert job["options"] == {
        "bitrate_kbps": None,
        "quality": None,
        "sample_rate_hz": None,
        "channels": None,
        # Output options added since v1 shipped, at defaults that keep its MP3 behaviour.
        "format": "mp3",
        "trim": None,
        "normalize": None,
        "tags": None,
        "cover": "source",
        "cover_at_s": None,
        "chapters": True,
    }
    assert job["output"] is None
    assert job["error"] is None
    assert job["attempts"] == 0


def test_created_job_is_published_once_with_its_id(
    client: TestClient, uploaded: UploadFactory, publisher: FakePublisher
) -> None:
    job = post_job(client, uploaded()).json()

    assert publisher.job_ids == [job["id"]]
    assert publisher.messages[0].attempt == 1


def test_created_job_can_be_read_back(client: TestClient, uploaded: UploadFactory) -> None:
    created = post_job(client, uploaded(), {"bitrate_kbps": 192, "channels": 1}).json()

    response = client.get(f"/v1/jobs/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created
    assert response.json()["options"]["bitrate_kbps"] == 192
    assert response.json()["options"]["channels"] == 1


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"bitrate_kbps": 64},
        {"bitrate_kbps": 320},
        {"quality": 0},
        {"quality": 9},
        {"sample_rate_hz": 22050},
        {"sample_rate_hz": 32000},
        {"sample_rate_hz": 44100},
        {"sample_rate_hz": 48000},
        {"channels": 1},
        {"channels": 2},
        {"bitrate_kbps": 128, "sample_rate_hz": 44100, "channels": 2},
        {"format": "m4a", "bitrate_kbps": 128, "sample_rate_hz": 48000},
        {"format": "opus", "bitrate_kbps": 96, "channels": 1},
        {"format": "flac", "sample_rate_hz": 44100},
        {"format": "wav", "channels": 1},
        {"format": "mp4", "bitrate_kbps": 160},
        {"trim": {"start_s": 1.5, "end_s": 30, "fade_in_s": 1, "fade_out_s": 2}},
        {"normalize": {"target_lufs": -16, "true_peak_db": -1.5}},
        {"tags": {"title": "Episode 12", "artist": "Ada", "track": "3/12"}},
        {"format": "flac", "cover": "frame", "cover_at_s": 4},
        {"cover": "none", "chapters": False},
    ],
)
def test_valid_options_are_accepted(
    client: TestClient, uploaded: UploadFactory, options: dict[str, Any]
) -> None:
    response = post_job(client, uploaded(), options)

    assert response.status_code == 202, response.text
    defaults = {"format": "mp3", "cover": "source", "chapters": True}
    returned = {
        k: v
        for k, v in response.json()["options"].items()
        if v is not None and defaults.get(k, object()) != v
    }
    expected = {k: v for k, v in options.items() if defaults.get(k, object()) != v}
    for value in returned.values():
        if isinstance(value, dict):  # nested options come back with their defaults filled
            for key in [k for k, v in value.items() if v is None]:
                del value[key]
    if "normalize" in options:
        assert returned["normalize"] == options["normalize"]
    assert returned == expected


@pytest.mark.parametrize(
    ("options", "field"),
    [
        pytest.param({"format": "flac", "quality": 2}, "quality", id="quality-with-flac"),
        pytest.param({"format": "m4a", "quality": 2}, "quality", id="quality-with-m4a"),
        pytest.param({"format": "wav", "bitrate_kbps": 128}, "bitrate_kbps", id="bitrate-wav"),
        pytest.param({"format": "flac", "bitrate_kbps": 128}, "bitrate_kbps", id="bitrate-flac"),
        pytest.param(
            {"format": "opus", "sample_rate_hz": 44100}, "sample_rate_hz", id="rate-with-opus"
        ),
        pytest.param({"format": "wav", "cover": "frame"}, "cover", id="cover-frame-wav"),
        pytest.param({"cover": "none", "cover_at_s": 3}, "cover_at_s", id="cover-at-not-frame"),
        pytest.param({"trim": {"start_s": 10, "end_s": 5}}, "start_s", id="trim-backwards"),
        pytest.param({"trim": {"start_s": -1}}, "start_s", id="trim-negative"),
        pytest.param({"normalize": {"target_lufs": -40}}, "target_lufs", id="target-too-low"),
        pytest.param({"normalize": {"target_lufs": -3}}, "target_lufs", id="target-too-high"),
        pytest.param({"normalize": {}}, "target_lufs", id="normalize-without-target"),
        pytest.param({"tags": {"title": "a\u0000b"}}, "title", id="tag-with-nul"),
        pytest.param({"tags": {"track": "three"}}, "track", id="track-not-a-number"),
        pytest.param({"tags": {"lyrics": "x"}}, "lyrics", id="unknown-tag"),
        pytest.param({"format": "ogg"}, "format", id="unknown-format"),
    ],
)
def test_nonsensical_output_options_are_a_422_naming_the_field(
    client: TestClient,
    uploaded: UploadFactory,
    publisher: FakePublisher,
    options: dict[str, Any],
    field: str,
) -> None:
    response = post_job(client, uploaded(), options)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["message"]
    assert publisher.messages == []


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"bitrate_kbps": 63}, id="bitrate-below-64"),
        pytest.param({"bitrate_kbps": 321}, id="bitrate-above-320"),
        pytest.param({"quality": -1}, id="quality-below-0"),
        pytest.param({"quality": 10}, id="quality-above-9"),
        pytest.param({"bitrate_kbps": 192, "quality": 2}, id="bitrate-and-quality"),
        pytest.param({"sample_rate_hz": 16000}, id="rate-16000"),
        pytest.param({"sample_rate_hz": 96000}, id="rate-96000"),
        pytest.param({"channels": 0}, id="channels-0"),
        pytest.param({"channels": 6}, id="channels-6"),
        pytest.param({"codec": "aac"}, id="unknown-option"),
        pytest.param({"quality": 2.5}, id="fractional-quality"),
    ],
)
def test_invalid_options_are_refused_with_422(
    client: TestClient, uploaded: UploadFactory, publisher: FakePublisher, options: dict[str, Any]
) -> None:
    response = post_job(client, uploaded(), options)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert publisher.messages == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-upload-id"),
        pytest.param({"upload_id": ""}, id="empty-upload-id"),
        pytest.param({"upload_id": "x", "priority": 1}, id="extra-field"),
        pytest.param({"upload_id": "x", "options": 192}, id="options-not-an-object"),
    ],
)
def test_bad_job_body_is_refused_with_422(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/v1/jobs", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_same_idempotency_key_and_body_return_the_same_job_once(
    client: TestClient, uploaded: UploadFactory, publisher: FakePublisher
) -> None:
    upload_id = uploaded()

    first = post_job(client, upload_id, {"quality": 4}, key="key-1")
    second = post_job(client, upload_id, {"quality": 4}, key="key-1")

    assert first.status_code == second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert publisher.job_ids == [first.json()["id"]]
    assert listed_ids(client) == [first.json()["id"]]


def test_same_idempotency_key_with_another_body_is_409_idempotency_key_reused(
    client: TestClient, uploaded: UploadFactory, publisher: FakePublisher
) -> None:
    upload_id = uploaded()
    first = post_job(client, upload_id, {"quality": 4}, key="key-1")

    second = post_job(client, upload_id, {"quality": 5}, key="key-1")

    assert first.status_code == 202
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "idempotency_key_reused"
    assert len(publisher.messages) == 1


def test_idempotency_key_reused_for_another_upload_is_409(
    client: TestClient, uploaded: UploadFactory
) -> None:
    assert post_job(client, uploaded(), key="key-1").status_code == 202

    response = post_job(client, uploaded(), key="key-1")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_key_of_a_refused_request_can_be_used_once_the_upload_is_complete(
    client: TestClient, uploaded: UploadFactory, storage: FakeStorage, engine: Engine
) -> None:
    # Given a create refused because the bytes had not arrived yet
    upload_id = uploaded(size_bytes=10, put=False)
    assert post_job(client, upload_id, key="k").status_code == 409

    # When the bytes arrive and the client retries with the same key
    with Session(engine) as session:
        upload = session.get(Upload, upload_id)
        assert upload is not None
        storage.put(upload.key, b"0123456789")
    response = post_job(client, upload_id, key="k")

    # Then the job is created
    assert response.status_code == 202, response.text


def test_second_job_on_the_same_upload_is_409_upload_already_used(
    client: TestClient, uploaded: UploadFactory, publisher: FakePublisher
) -> None:
    upload_id = uploaded()
    assert post_job(client, upload_id).status_code == 202

    response = post_job(client, upload_id)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "upload_already_used"
    assert len(publisher.messages) == 1


def test_unavailable_queue_is_503_and_leaves_no_job_then_retry_succeeds(
    client: TestClient, uploaded: UploadFactory, publisher: FakePublisher
) -> None:
    # Given a broker that refuses to publish
    upload_id = uploaded()
    publisher.fail = True

    # When a job is created
    failed = post_job(client, upload_id, {"quality": 3}, key="retry-me")

    # Then the client is told to retry and nothing is left half-created
    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == "queue_unavailable"
    assert listed_ids(client) == []

    # When the broker is back and the client retries with the same key
    publisher.fail = False
    retried = post_job(client, upload_id, {"quality": 3}, key="retry-me")

    # Then the job is created and queued exactly once
    assert retried.status_code == 202, retried.text
    assert publisher.job_ids == [retried.json()["id"]]
    assert listed_ids(client) == [retried.json()["id"]]


def test_storage_down_while_checking_the_upload_is_503(
    client: TestClient, uploaded: UploadFactory, storage: FakeStorage, publisher: FakePublisher
) -> None:
    upload_id = uploaded()
    storage.fail = True

    response = post_job(client, upload_id)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert publisher.messages == []


# --------------------------------------------------------------------------- read


def test_unknown_job_is_404_job_not_found(client: TestClient) -> None:
    response = client.get("/v1/jobs/does-not-exist")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "job_not_found", "message": "No job has that id."}}


def test_completed_job_shows_output_and_progress_100(
    client: TestClient, uploaded: UploadFactory, engine: Engine
) -> None:
    job_id = post_job(client, uploaded()).json()["id"]
    expires_at = datetime.now(UTC) + timedelta(days=7)
    finish(engine, job_id, expires_at=expires_at)

    job = client.get(f"/v1/jobs/{job_id}").json()

    assert job["status"] == "completed"
    assert job["progress"] == 100
    output = job["output"]
    assert datetime.fromisoformat(output.pop("expires_at")) == expires_at
    assert output == {
        "size_bytes": 3000,
        "duration_s": 12.5,
        "bitrate_kbps": 192,
        "expired": False,
        "format": "mp3",
        "encoded": True,
        "loudness_lufs": -16.2,
        "true_peak_db": -1.4,
    }
    assert job["error"] is None
    assert job["started_at"] is not None and job["finished_at"] is not None


def test_failed_job_shows_error_and_no_output(
    client: TestClient, uploaded: UploadFactory, engine: Engine
) -> None:
    job_id = post_job(client, uploaded()).json()["id"]
    with Session(engine) as session:
        job_transitions.start_attempt(session=session, job_id=job_id)
        job_transitions.fail(
            session=session,
            job_id=job_id,
            code="no_audio_stream",
            message="The file has no audio track to convert.",
        )

    job = client.get(f"/v1/jobs/{job_id}").json()

    assert job["status"] == "failed"
    assert job["output"] is None
    assert job["error"] == {
        "code": "no_audio_stream",
        "message": "The file has no audio track to convert.",
    }


# --------------------------------------------------------------------------- list


def insert_jobs(
    engine: Engine, count: int, *, status: JobStatus = JobStatus.queued, same_time: bool = False
) -> list[str]:
    """Jobs with distinct (or, with same_time, identical) created_at; ids oldest first."""
    base = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    ids = []
    with Session(engine) as session:
        # The requests in these tests come without credentials: the local user's jobs.
        owner = users.ensure_dev_user(session=session, settings=make_settings())
        for i in range(count):
            created = base if same_time else base + timedelta(seconds=i)
            upload = Upload(
                owner_id=owner.id,
                key=f"uploads/{i}/a.mp4",
                filename="a.mp4",
                content_type="video/mp4",
                size_bytes=10,
                expires_at=created + timedelta(hours=1),
            )
            job = Job(
                owner_id=owner.id,
                upload_id=upload.id,
                status=status,
                created_at=created,
                input_key=upload.key,
                input_filename=upload.filename,
                input_size_bytes=10,
            )
            session.add(upload)
            session.add(job)
            ids.append(job.id)
        session.commit()
    return ids


def test_list_is_newest_first(client: TestClient, engine: Engine) -> None:
    ids = insert_jobs(engine, 4)

    response = client.get("/v1/jobs")

    body = response.json()
    assert set(body) == {"items", "next_cursor"}
    assert [item["id"] for item in body["items"]] == ids[::-1]
    assert body["next_cursor"] is None


def test_list_of_jobs_made_through_the_api_is_newest_first(
    client: TestClient, uploaded: UploadFactory
) -> None:
    made = [post_job(client, uploaded()).json()["id"] for _ in range(3)]

    assert listed_ids(client) == made[::-1]


def test_list_limit_caps_the_page_and_offers_a_cursor(client: TestClient, engine: Engine) -> None:
    ids = insert_jobs(engine, 5)

    body = client.get("/v1/jobs", params={"limit": 2}).json()

    assert [item["id"] for item in body["items"]] == ids[::-1][:2]
    assert isinstance(body["next_cursor"], str)


def test_last_full_page_has_no_next_cursor(client: TestClient, engine: Engine) -> None:
    insert_jobs(engine, 4)

    body = client.get("/v1/jobs", params={"limit": 4}).json()

    assert len(body["items"]) == 4
    assert body["next_cursor"] is None


@pytest.mark.parametrize("same_time", [False, True], ids=["distinct-times", "same-time"])
def test_cursor_pages_through_every_job_once(
    client: TestClient, engine: Engine, same_time: bool
) -> None:
    ids = insert_jobs(engine, 7, same_time=same_time)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/v1/jobs", params=params).json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "paging does not end"

    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == set(ids)
    if not same_time:
        assert seen == ids[::-1]


def test_status_filter_lists_only_that_status(client: TestClient, engine: Engine) -> None:
    queued = insert_jobs(engine, 2, status=JobStatus.queued)
    failed = insert_jobs(engine, 3, status=JobStatus.failed)

    assert set(listed_ids(client, status="failed")) == set(failed)
    assert set(listed_ids(client, status="queued")) == set(queued)
    assert listed_ids(client, status="completed") == []


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not-a-cursor", id="junk"),
        pytest.param(_b64(b"not json"), id="not-json"),
        pytest.param(_b64(b'["2024-05-01T12:00:00+00:00"]'), id="one-element"),
        pytest.param(_b64(b'["yesterday", "abc"]'), id="bad-date"),
        pytest.param(_b64(b"42"), id="a-number"),
        pytest.param(_b64(b"\xff\xfe"), id="not-utf8"),
    ],
)
def test_bad_cursor_is_422_invalid_cursor(client: TestClient, engine: Engine, cursor: str) -> None:
    insert_jobs(engine, 2)

    response = client.get("/v1/jobs", params={"cursor": cursor})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    "params",
    [{"status": "done"}, {"limit": 0}, {"limit": 101}, {"limit": "ten"}],
    ids=["bad-status", "limit-0", "limit-101", "limit-not-a-number"],
)
def test_bad_list_query_is_422(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get("/v1/jobs", params=params)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


# --------------------------------------------------------------------------- download


def finish(
    engine: Engine,
    job_id: str,
    storage: FakeStorage | None = None,
    expires_at: datetime | None = None,
) -> None:
    """Complete the job as a worker does: its MP3 stored (when ``storage`` is given)."""
    key = f"outputs/{job_id}.mp3"
    if storage is not None:
        storage.put(key, b"\xff\xfb" * 1500, "audio/mpeg")
    with Session(engine) as session:
        assert job_transitions.start_attempt(session=session, job_id=job_id) is not None
        assert job_transitions.complete(
            session=session,
            job_id=job_id,
            output_key=key,
            size_bytes=3000,
            duration_s=12.5,
            bitrate_kbps=192,
            expires_at=expires_at or datetime.now(UTC) + timedelta(days=7),
            encoded=True,
            loudness_lufs=-16.2,
            true_peak_db=-1.4,
        )


def test_download_before_completion_is_409_not_ready(
    client: TestClient, uploaded: UploadFactory, engine: Engine
) -> None:
    job_id = post_job(client, uploaded()).json()["id"]

    queued = client.get(f"/v1/jobs/{job_id}/download", follow_redirects=False)
    with Session(engine) as session:
        job_transitions.start_attempt(session=session, job_id=job_id)
    processing = client.get(f"/v1/jobs/{job_id}/download", follow_redirects=False)

    for response in (queued, processing):
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "not_ready"


def test_download_of_failed_job_is_409_not_ready(
    client: TestClient, uploaded: UploadFactory, engine: Engine
) -> None:
    job_id = post_job(client, uploaded()).json()["id"]
    with Session(engine) as session:
        job_transitions.start_attempt(session=session, job_id=job_id)
        job_transitions.fail(
            session=session, job_id=job_id, code="unsupported_media", message="Bad file."
        )

    response = client.get(f"/v1/jobs/{job_id}/download", follow_redirects=False)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_ready"


def test_download_of_unknown_job_is_404_job_not_found(client: TestClient) -> None:
    response = client.get("/v1/jobs/nope/download", follow_redirects=False)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


def test_download_of_completed_job_redirects_307_to_mp3_named_after_the_input(
    client: TestClient, uploaded: UploadFactory, engine: Engine, storage: FakeStorage
) -> None:
    # Given a job whose worker has finished
    job_id = post_job(client, uploaded(filename="Holiday in Rome.mov")).json()["id"]
    finish(engine, job_id, storage)

    # When the MP3 is asked for
    response = client.get(f"/v1/jobs/{job_id}/download", follow_redirects=False)

    # Then the client is sent to a presigned URL of the output, named <stem>.mp3
    assert response.status_code == 307
    location = response.headers["location"]
    assert storage.key_of(location) == f"outputs/{job_id}.mp3"
    disposition = storage.query_of(location)["response-content-disposition"][0]
    assert 'filename="Holiday_in_Rome.mp3"' in disposition
    assert "filename*=UTF-8''Holiday%20in%20Rome.mp3" in disposition


@pytest.mark.parametrize(
    ("fmt", "extension", "content_type"),
    [
        ("mp3", "mp3", "audio/mpeg"),
        ("m4a", "m4a", "audio/mp4"),
        ("opus", "opus", "audio/ogg"),
        ("flac", "flac", "audio/flac"),
        ("wav", "wav", "audio/wav"),
        ("mp4", "mp4", "video/mp4"),
    ],
)
def test_download_name_and_type_follow_the_format(
    client: TestClient,
    uploaded: UploadFactory,
    engine: Engine,
    storage: FakeStorage,
    fmt: str,
    extension: str,
    content_type: str,
) -> None:
    # Given a finished job that asked for a format
    job_id = post_job(client, uploaded(filename="talk.mov"), {"format": fmt}).json()["id"]
    finish(engine, job_id, storage)

    # When its output is downloaded
    location = client.get(f"/v1/jobs/{job_id}/download", follow_redirects=False).headers["location"]

    # Then the file is named with the format's extension and served as its type
    query = storage.query_of(location)
    assert f'filename="talk.{extension}"' in query["response-content-disposition"][0]
    assert query["response-content-type"] == [content_type]


def test_default_format_keeps_the_idempotency_hash_of_a_request_without_it(
    client: TestClient, uploaded: UploadFactory
) -> None:
    upload_id = uploaded()
    first = post_job(client, upload_id, {"quality": 2}, key="k-1")

    again = post_job(client, upload_id, {"quality": 2, "format": "mp3"}, key="k-1")

    assert again.status_code == 202, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
