"""What every client sees regardless of route: error bodies, health, OpenAPI, metrics."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import create_engine

from api import deps
from shared.config import Settings
from shared.queue import Publisher
from shared.storage import Storage
from tests.fakes import FakePublisher, FakeStorage
from tests.unit.conftest import TestClientClass

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

UploadFactory = Callable[..., str]
REPO_ROOT = str(Path(__file__).resolve().parents[2])
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
UPLOAD = {"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 10}


def assert_error_body(response: httpx.Response, status: int, code: str | None = None) -> None:
    """Exactly {"error": {"code", "message"}}: snake_case code, a sentence, nothing leaked."""
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, f"extra keys in error body: {sorted(set(body) - {'error'})}"
    assert set(body["error"]) == {"code", "message"}
    assert SNAKE_CASE.match(body["error"]["code"]), body["error"]["code"]
    if code is not None:
        assert body["error"]["code"] == code
    message = body["error"]["message"]
    assert message[:1].isupper() and message.endswith("."), message
    assert "Traceback" not in response.text
    assert REPO_ROOT not in response.text and ".py" not in response.text


# --------------------------------------------------------------------------- error bodies


def test_unknown_route_is_404_in_the_error_shape(client: TestClient) -> None:
    assert_error_body(client.get("/v2/nothing-here"), 404, "not_found")


def test_wrong_method_is_405_in_the_error_shape(client: TestClient) -> None:
    assert_error_body(client.delete("/v1/jobs"), 405, "method_not_allowed")
    assert_error_body(client.put("/healthz"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        pytest.param(("GET", "/v1/jobs/missing", None), 404, "job_not_found", id="job-404"),
        pytest.param(
            ("POST", "/v1/jobs", {"upload_id": "missing"}), 404, "upload_not_found", id="upload-404"
        ),
        pytest.param(
            ("POST", "/v1/uploads", {**UPLOAD, "size_bytes": 10**12}),
            413,
            "upload_too_large",
            id="upload-413",
        ),
        pytest.param(
            ("POST", "/v1/uploads", {**UPLOAD, "content_type": "text/plain"}),
            415,
            "unsupported_media_type",
            id="upload-415",
        ),
        pytest.param(
            ("GET", "/v1/jobs?cursor=garbage", None), 422, "invalid_cursor", id="cursor-422"
        ),
    ],
)
def test_api_errors_have_exactly_code_and_message(
    client: TestClient, request_: tuple[str, str, Any], status: int, code: str
) -> None:
    method, url, body = request_

    response = client.request(method, url, json=body)

    assert_error_body(response, status, code)


@pytest.mark.parametrize(
    ("url", "body"),
    [
        pytest.param("/v1/uploads", {"filename": "a.mp4"}, id="upload-missing-fields"),
        pytest.param("/v1/jobs", {"upload_id": "x", "options": {"quality": 99}}, id="job-options"),
    ],
)
def test_validation_errors_have_exactly_code_and_message(
    client: TestClient, url: str, body: dict[str, Any]
) -> None:
    response = client.post(url, json=body)

    assert_error_body(response, 422, "validation_error")


def test_validation_error_message_names_the_bad_field(client: TestClient) -> None:
    response = client.post("/v1/uploads", json={**UPLOAD, "size_bytes": -5})

    assert "size_bytes" in response.json()["error"]["message"]


def test_malformed_json_is_422_in_the_error_shape(client: TestClient) -> None:
    response = client.post(
        "/v1/uploads", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_conflicts_have_exactly_code_and_message(
    client: TestClient, uploaded: UploadFactory
) -> None:
    incomplete = client.post("/v1/jobs", json={"upload_id": uploaded(put=False)})
    upload_id = uploaded()
    client.post("/v1/jobs", json={"upload_id": upload_id})
    reused = client.post("/v1/jobs", json={"upload_id": upload_id})

    assert_error_body(incomplete, 409, "upload_incomplete")
    assert_error_body(reused, 409, "upload_already_used")


def test_unavailable_dependencies_have_exactly_code_and_message(
    client: TestClient, uploaded: UploadFactory, storage: FakeStorage, publisher: FakePublisher
) -> None:
    upload_id = uploaded()
    publisher.fail = True
    queue_down = client.post("/v1/jobs", json={"upload_id": upload_id})
    storage.fail = True
    storage_down = client.post("/v1/uploads", json=UPLOAD)

    assert_error_body(queue_down, 503, "queue_unavailable")
    assert_error_body(storage_down, 503, "storage_unavailable")


def test_responses_carry_a_request_id(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc123"})
    made = client.get("/healthz")

    assert given.headers["x-request-id"] == "abc123"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])


# --------------------------------------------------------------------------- health


def test_healthz_is_200_without_checking_dependencies(
    client: TestClient, storage: FakeStorage, publisher: FakePublisher
) -> None:
    storage.fail = publisher.fail = True

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_the_database_answers(client: TestClient) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}


def test_readyz_is_503_not_ready_when_the_database_is_down(
    app: FastAPI, client: TestClient, tmp_path: Path
) -> None:
    unreachable = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'v.db'}")
    app.dependency_overrides[deps.get_engine] = lambda: unreachable

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "error": {"code": "not_ready", "message": "Not ready: database unreachable."},
        "checks": {"database": "unreachable"},
    }


def test_broker_and_storage_outage_keeps_the_api_ready_and_status_reads_served(
    client: TestClient, uploaded: UploadFactory, storage: FakeStorage, publisher: FakePublisher
) -> None:
    # Given a job, then the broker and storage both unreachable
    job_id = client.post("/v1/jobs", json={"upload_id": uploaded()}).json()["id"]
    waiting = uploaded()
    storage.fail = publisher.fail = True

    # Then the API stays ready, and reads of jobs are served
    assert client.get("/readyz").status_code == 200
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    assert [j["id"] for j in client.get("/v1/jobs").json()["items"]] == [job_id]
    # While the routes that need storage answer 503 with a code that says which
    assert_error_body(
        client.post("/v1/jobs", json={"upload_id": waiting}), 503, "storage_unavailable"
    )


def test_broker_outage_is_503_queue_unavailable_on_job_creation_only(
    client: TestClient, uploaded: UploadFactory, publisher: FakePublisher
) -> None:
    upload_id = uploaded()
    publisher.fail = True

    assert client.get("/readyz").status_code == 200
    assert client.post("/v1/uploads", json=UPLOAD).status_code == 201
    assert_error_body(
        client.post("/v1/jobs", json={"upload_id": upload_id}), 503, "queue_unavailable"
    )


# --------------------------------------------------------------------------- OpenAPI


@pytest.fixture
def openapi(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    return spec


def test_openapi_lists_every_route(openapi: dict[str, Any]) -> None:
    assert {
        ("/v1/uploads", "post"),
        ("/v1/uploads/{upload_id}/probe", "get"),
        ("/v1/uploads/{upload_id}/cover", "get"),
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{job_id}", "get"),
        ("/v1/jobs/{job_id}/download", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    } <= {(path, method) for path, ops in openapi["paths"].items() for method in ops}


def test_openapi_error_responses_of_v1_routes_use_error_response(
    openapi: dict[str, Any],
) -> None:
    wrong = []
    for path, ops in openapi["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if int(status) < 400:
                    continue
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema != {"$ref": "#/components/schemas/ErrorResponse"}:
                    wrong.append(f"{method.upper()} {path} {status}: {schema}")
    assert wrong == []


def test_openapi_says_which_routes_need_a_bearer_credential(openapi: dict[str, Any]) -> None:
    open_routes = {("/v1/auth/login", "post"), ("/v1/auth/refresh", "post")}
    for path, ops in openapi["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            expected: list[dict[str, list[str]]] | None = (
                None if (path, method) in open_routes else [{"HTTPBearer": []}]
            )
            assert op.get("security") == expected, (method, path)
    assert openapi["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_openapi_documents_the_job_id_of_every_job_route(openapi: dict[str, Any]) -> None:
    for path, ops in openapi["paths"].items():
        if "{job_id}" not in path:
            continue
        for method, op in ops.items():
            params = [
                p for p in op.get("parameters", []) if p["in"] == "path" and p["name"] == "job_id"
            ]
            assert params == [
                {
                    "in": "path",
                    "name": "job_id",
                    "required": True,
                    "schema": {"title": "Job Id", "type": "string"},
                }
            ], (method, path)


def test_openapi_documents_the_contract_statuses(openapi: dict[str, Any]) -> None:
    paths = openapi["paths"]

    assert {"201", "413", "415", "422"} <= set(paths["/v1/uploads"]["post"]["responses"])
    assert {"202", "404", "409", "422", "503"} <= set(paths["/v1/jobs"]["post"]["responses"])
    assert {"200", "404"} <= set(paths["/v1/jobs/{job_id}"]["get"]["responses"])
    assert {"307", "404", "409"} <= set(paths["/v1/jobs/{job_id}/download"]["get"]["responses"])
    assert {"200", "503"} <= set(paths["/readyz"]["get"]["responses"])
    for route in ("probe", "cover"):
        responses = set(paths[f"/v1/uploads/{{upload_id}}/{route}"]["get"]["responses"])
        assert {"200", "404", "409", "422", "503"} <= responses
    cover = paths["/v1/uploads/{upload_id}/cover"]["get"]["responses"]["200"]["content"]
    assert set(cover) == {"image/jpeg", "image/png"}


def test_openapi_request_models_carry_examples(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]

    upload_example = schemas["UploadCreate"]["examples"][0]
    job_example = schemas["JobCreate"]["examples"][0]
    assert set(upload_example) == {"filename", "content_type", "size_bytes"}
    assert "upload_id" in job_example
    assert schemas["UploadProbePublic"]["examples"][0]["tags"]["title"] == "Episode 12"
    assert schemas["ErrorResponse"]["properties"]["error"] == {
        "$ref": "#/components/schemas/ErrorInfo"
    }


def test_openapi_job_create_takes_an_idempotency_key_header(openapi: dict[str, Any]) -> None:
    params = openapi["paths"]["/v1/jobs"]["post"].get("parameters", [])

    assert {"name": "Idempotency-Key", "in": "header"} in [
        {"name": p["name"], "in": p["in"]} for p in params
    ]


# --------------------------------------------------------------------------- metrics


def test_metrics_count_requests_by_route_template_not_raw_id(client: TestClient) -> None:
    job_id = str(uuid.uuid4())
    client.get(f"/v1/jobs/{job_id}")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = [ln for ln in response.text.splitlines() if ln.startswith("v2m_api_requests_total{")]
    assert any(
        'route="/v1/jobs/{job_id}"' in ln and 'method="GET"' in ln and 'status="4xx"' in ln
        for ln in lines
    ), lines
    assert job_id not in response.text


def test_metrics_do_not_label_unknown_paths_by_their_path(client: TestClient) -> None:
    path = f"/probe-{uuid.uuid4().hex}"
    client.get(path)

    text = client.get("/metrics").text

    assert path not in text


# --------------------------------------------------------------------------- lifespan


def test_app_starts_with_real_adapters_without_touching_the_network(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api import main

    monkeypatch.setattr(main, "configure_logging", lambda *_a, **_k: None)
    app = main.create_app(settings)

    with TestClientClass(app) as client:
        assert client.get("/healthz").status_code == 200
        assert isinstance(app.state.storage, Storage)
        assert isinstance(app.state.publisher, Publisher)
        assert app.state.engine.url.get_backend_name() == "sqlite"
