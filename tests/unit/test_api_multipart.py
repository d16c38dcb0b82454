"""Multipart uploads through the API, against the in-memory storage fake."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from shared.config import MiB, Settings
from shared.multipart import plan_for
from shared.schemas import UploadCreate
from tests.fakes import FakeStorage
from tests.unit.conftest import make_settings

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

PART = 5 * MiB
SIZE = 2 * PART + 1000
BODY = {"filename": "long.mp4", "content_type": "video/mp4", "size_bytes": SIZE, "multipart": True}


@pytest.fixture
def settings() -> Settings:
    return make_settings(max_upload_bytes=100 * MiB, multipart_part_size_bytes=PART)


def begin(client: TestClient, body: dict[str, Any] = BODY) -> dict[str, Any]:
    response = client.post("/v1/uploads", json=body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def send_parts(
    client: TestClient, storage: FakeStorage, upload_id: str, numbers: list[int]
) -> dict[int, str]:
    response = client.post(f"/v1/uploads/{upload_id}/parts", json={"part_numbers": numbers})
    assert response.status_code == 200, response.text
    etags = {}
    for part in response.json()["parts"]:
        size = int(part["headers"]["Content-Length"])
        etags[part["part_number"]] = storage.put_part(
            part["url"], bytes([part["part_number"]]) * size
        )
    return etags


def complete(client: TestClient, upload_id: str, etags: dict[int, str]) -> Any:
    parts = [{"part_number": n, "etag": e} for n, e in sorted(etags.items())]
    return client.post(f"/v1/uploads/{upload_id}/complete", json={"parts": parts})


def test_multipart_upload_answers_a_plan_and_no_url(client: TestClient) -> None:
    body = begin(client)

    assert body["url"] is None
    assert body["multipart"] == {"part_size": PART, "part_count": 3}


@pytest.mark.parametrize(
    ("size", "multipart", "expected"),
    [
        (64 * MiB - 1, False, None),
        (64 * MiB, False, (16 * MiB, 4)),
        (1000, True, (16 * MiB, 1)),
        (0, True, None),
        (400 * 1024 * MiB, False, (41 * MiB, 9991)),
    ],
)
def test_plan_keeps_parts_at_most_ten_thousand(
    size: int, multipart: bool, expected: tuple[int, int] | None
) -> None:
    settings = Settings(_env_file=None)
    upload_in = UploadCreate(
        filename="a.mp4", content_type="video/mp4", size_bytes=size, multipart=multipart
    )

    plan = plan_for(upload_in, settings)

    assert (plan.part_size, plan.part_count) == expected if plan else expected is None
    if plan:
        assert plan.part_count <= 10_000 and plan.part_size >= 5 * MiB


def test_parts_sent_listed_completed_then_job_accepted(
    client: TestClient, storage: FakeStorage
) -> None:
    upload_id = begin(client)["upload_id"]
    # Given two parts stored and a job asked for too early
    etags = send_parts(client, storage, upload_id, [1, 2])
    early = client.post("/v1/jobs", json={"upload_id": upload_id})
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "upload_incomplete"
    # When the client resumes: lists, sends the rest, completes
    listed = client.get(f"/v1/uploads/{upload_id}/parts").json()["parts"]
    assert [(p["part_number"], p["size_bytes"]) for p in listed] == [(1, PART), (2, PART)]
    etags |= send_parts(client, storage, upload_id, [3])
    done = complete(client, upload_id, etags)
    # Then the object is whole and a job is accepted
    assert done.status_code == 200, done.text
    assert done.json()["size_bytes"] == SIZE
    assert len(storage.objects[storage.multipart_keys_done[-1]].data) == SIZE
    assert client.post("/v1/jobs", json={"upload_id": upload_id}).status_code == 202


def test_completion_with_a_wrong_etag_is_refused_and_the_upload_stays_open(
    client: TestClient, storage: FakeStorage
) -> None:
    upload_id = begin(client)["upload_id"]
    etags = send_parts(client, storage, upload_id, [1, 2, 3])

    refused = complete(client, upload_id, {**etags, 2: '"0123"'})

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "upload_part_etag_mismatch"
    assert complete(client, upload_id, etags).status_code == 200


def test_completion_with_a_missing_part_is_refused(
    client: TestClient, storage: FakeStorage
) -> None:
    upload_id = begin(client)["upload_id"]
    etags = send_parts(client, storage, upload_id, [1, 3])

    refused = complete(client, upload_id, etags)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "upload_part_missing"
    assert "part 2" in refused.json()["error"]["message"]


def test_part_numbers_outside_the_plan_are_refused(client: TestClient) -> None:
    upload_id = begin(client)["upload_id"]

    response = client.post(f"/v1/uploads/{upload_id}/parts", json={"part_numbers": [1, 4]})
    too_many = client.post(
        f"/v1/uploads/{upload_id}/parts", json={"part_numbers": list(range(1, 102))}
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "part_number_out_of_range"
    assert too_many.status_code == 422


def test_delete_aborts_the_upload_in_storage(client: TestClient, storage: FakeStorage) -> None:
    upload_id = begin(client)["upload_id"]
    send_parts(client, storage, upload_id, [1])

    response = client.delete(f"/v1/uploads/{upload_id}")

    assert response.status_code == 204
    assert storage.multipart == {}
    assert client.get(f"/v1/uploads/{upload_id}/parts").status_code == 404


def test_small_uploads_still_get_a_single_put(client: TestClient) -> None:
    body = begin(client, {**BODY, "size_bytes": 4096, "multipart": False})

    assert body["url"] is not None
    assert body["multipart"] is None


def test_a_completion_naming_many_parts_may_exceed_the_small_body_limit(
    client: TestClient, settings: Settings
) -> None:
    upload_id = begin(client)["upload_id"]
    parts = [{"part_number": n, "etag": f'"{n:032x}"'} for n in range(1, 2001)]
    body = {"parts": parts}

    completion = client.post(f"/v1/uploads/{upload_id}/complete", json=body)
    elsewhere = client.post(f"/v1/uploads/{upload_id}/parts", json=body)

    assert len(str(body)) > settings.max_request_body_bytes
    assert completion.status_code == 422  # read and judged: part numbers past part_count
    assert completion.json()["error"]["code"] == "part_number_out_of_range"
    assert elsewhere.status_code == 413
