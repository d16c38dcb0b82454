"""POST /v1/uploads: the presigned PUT the client sends its bytes to."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared import users
from shared.config import Settings
from shared.models import Upload
from tests.fakes import PUBLIC_BASE, FakeStorage

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

BODY = {"filename": "holiday.mov", "content_type": "video/quicktime", "size_bytes": 4096}


def test_upload_returns_201_with_presigned_put(client: TestClient, settings: Settings) -> None:
    before = datetime.now(UTC)

    response = client.post("/v1/uploads", json=BODY)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "upload_id",
        "url",
        "method",
        "headers",
        "expires_at",
        "max_size_bytes",
        "multipart",
    }
    assert body["multipart"] is None
    assert body["method"] == "PUT"
    assert body["url"].startswith(PUBLIC_BASE + "/")
    assert body["headers"] == {"Content-Type": "video/quicktime", "Content-Length": "4096"}
    assert body["max_size_bytes"] == settings.max_upload_bytes
    expires_at = datetime.fromisoformat(body["expires_at"])
    expected = before + timedelta(seconds=settings.upload_url_expires_s)
    assert expected - timedelta(seconds=5) <= expires_at <= expected + timedelta(seconds=5)


def test_server_chooses_the_key_from_upload_id_and_sanitised_name(
    client: TestClient, storage: FakeStorage, engine: Engine
) -> None:
    response = client.post("/v1/uploads", json={**BODY, "filename": "../../etc/my video?.mov"})

    body = response.json()
    key = storage.key_of(body["url"])
    with Session(engine) as session:
        owner = users.get_user_by_email(session=session, email="dev@localhost")
    assert owner is not None
    # Namespaced per user: uploads/{user}/{upload}/{sanitised name}.
    assert key == f"uploads/{owner.id}/{body['upload_id']}/my_video.mov"
    with Session(engine) as session:
        upload = session.get(Upload, body["upload_id"])
        assert upload is not None
        assert upload.key == key
        # The original name is kept for the download's Content-Disposition.
        assert upload.filename == "../../etc/my video?.mov"
        assert upload.size_bytes == 4096


def test_each_upload_gets_its_own_id_and_key(client: TestClient, storage: FakeStorage) -> None:
    first = client.post("/v1/uploads", json=BODY).json()
    second = client.post("/v1/uploads", json=BODY).json()

    assert first["upload_id"] != second["upload_id"]
    assert storage.key_of(first["url"]) != storage.key_of(second["url"])


def test_size_at_the_limit_is_accepted(client: TestClient, settings: Settings) -> None:
    response = client.post("/v1/uploads", json={**BODY, "size_bytes": settings.max_upload_bytes})

    assert response.status_code == 201


def test_size_over_limit_is_refused_with_413(
    client: TestClient, settings: Settings, storage: FakeStorage
) -> None:
    response = client.post(
        "/v1/uploads", json={**BODY, "size_bytes": settings.max_upload_bytes + 1}
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "upload_too_large"
    assert storage.presigned_puts == {}


def test_default_limit_is_fifty_gibibytes() -> None:
    assert Settings(_env_file=None).max_upload_bytes == 50 * 1024**3


@pytest.mark.parametrize(
    "content_type", ["text/plain", "image/png", "application/pdf", "video", "video/", "*/*"]
)
def test_non_media_content_type_is_refused_with_415(client: TestClient, content_type: str) -> None:
    response = client.post("/v1/uploads", json={**BODY, "content_type": content_type})

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "content_type",
    ["video/mp4", "video/x-matroska", "audio/mpeg", "audio/x-wav", "application/octet-stream"],
)
def test_video_audio_and_octet_stream_are_accepted(client: TestClient, content_type: str) -> None:
    response = client.post("/v1/uploads", json={**BODY, "content_type": content_type})

    assert response.status_code == 201
    assert response.json()["headers"]["Content-Type"] == content_type


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="empty"),
        pytest.param({"content_type": "video/mp4", "size_bytes": 1}, id="no-filename"),
        pytest.param({"filename": "a.mp4", "size_bytes": 1}, id="no-content-type"),
        pytest.param({"filename": "a.mp4", "content_type": "video/mp4"}, id="no-size"),
        pytest.param({**BODY, "size_bytes": -1}, id="negative-size"),
        pytest.param({**BODY, "size_bytes": "big"}, id="size-not-a-number"),
        pytest.param({**BODY, "filename": ""}, id="empty-filename"),
        pytest.param({**BODY, "key": "uploads/mine.mp4"}, id="client-names-the-key"),
        pytest.param({**BODY, "bucket": "other"}, id="client-names-the-bucket"),
        pytest.param([BODY], id="not-an-object"),
    ],
)
def test_bad_body_is_refused_with_422(client: TestClient, body: Any) -> None:
    response = client.post("/v1/uploads", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    ("content", "content_type", "says"),
    [
        pytest.param(b'{"filename": "a.mp4",', "application/json", "Invalid JSON", id="broken"),
        pytest.param(b"", "application/json", "Field required", id="empty"),
        pytest.param(b"\xff\xfe", "application/json", "Invalid JSON", id="not-utf-8"),
        pytest.param(b"filename=a.mp4", "application/x-www-form-urlencoded", "JSON", id="form"),
        pytest.param(b'{"filename": "a.mp4"}', "text/plain", "Content-Type", id="text"),
    ],
)
def test_body_that_is_not_a_json_object_is_refused_with_a_sentence_saying_why(
    client: TestClient, content: bytes, content_type: str, says: str
) -> None:
    response = client.post("/v1/uploads", content=content, headers={"Content-Type": content_type})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert says in error["message"]


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/vnd.upload+json"]
)
def test_json_media_types_with_parameters_or_suffix_are_read_as_json(
    client: TestClient, content_type: str
) -> None:
    response = client.post(
        "/v1/uploads", content=json.dumps(BODY), headers={"Content-Type": content_type}
    )

    assert response.status_code == 201
    assert response.json()["headers"]["Content-Length"] == str(BODY["size_bytes"])


def test_openapi_documents_the_upload_body_and_its_answers(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/uploads"]["post"]

    body = operation["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UploadCreate"
    }
    assert set(spec["components"]["schemas"]["UploadCreate"]["required"]) == {
        "filename",
        "content_type",
        "size_bytes",
    }
    assert operation["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UploadPublic"
    }
    assert {"401", "413", "415", "422", "429", "503"} <= set(operation["responses"])
    assert operation["security"] == [{"HTTPBearer": []}]


def test_storage_failure_while_signing_is_503(client: TestClient, storage: FakeStorage) -> None:
    storage.fail = True

    response = client.post("/v1/uploads", json=BODY)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"
