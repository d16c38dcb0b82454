"""Input refused before it reaches the database: bodies past a size, declared or streamed,
and NUL characters (PostgreSQL text cannot hold them; tests/integration/test_accounts.py
runs the same requests against PostgreSQL)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.unit.test_api_surface import assert_error_body

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

NUL_CURSOR = base64.urlsafe_b64encode(
    json.dumps(["2026-01-01T00:00:00+00:00", "a\x00b"]).encode()
).decode()
BIG = json.dumps({"upload_id": "u", "options": {}, "pad": "x" * (200 * 1024)}).encode()


def test_a_body_over_the_limit_is_413_before_it_is_parsed(client: TestClient) -> None:
    for path in ("/v1/jobs", "/v1/uploads", "/v1/auth/login"):
        response = client.post(path, content=BIG, headers={"Content-Type": "application/json"})
        assert_error_body(response, 413, "payload_too_large")


def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(BIG), 8192):
            yield BIG[start : start + 8192]

    response = client.post(
        "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error_body(response, 413, "payload_too_large")


NUL_REQUESTS = [
    ("POST", "/v1/auth/login", {"email": "a\x00@example.com", "password": "x"}, 422),
    (
        "POST",
        "/v1/uploads",
        {"filename": "a\x00.mp4", "content_type": "video/mp4", "size_bytes": 1},
        422,
    ),
    (
        "POST",
        "/v1/uploads",
        {"filename": "a.mp4", "content_type": "video/mp4\x00", "size_bytes": 1},
        422,
    ),
    ("POST", "/v1/jobs", {"upload_id": "u\x00"}, 422),
    ("GET", "/v1/jobs/a%00b", None, 404),
    ("GET", "/v1/jobs/a%00b/download", None, 404),
    ("GET", "/v1/jobs/a%00b/events", None, 404),
    ("GET", "/v1/jobs?cursor=" + NUL_CURSOR, None, 422),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), NUL_REQUESTS)
def test_a_nul_character_is_refused_with_a_clear_code(
    client: TestClient, method: str, path: str, body: dict[str, object] | None, status: int
) -> None:
    response = client.request(method, path, json=body)
    code = {422: None, 404: "job_not_found"}[status]
    assert_error_body(response, status, code)
    if status == 422:
        assert response.json()["error"]["code"] in ("validation_error", "invalid_cursor")
        assert (
            "NUL" in response.json()["error"]["message"]
            or "cursor" in response.json()["error"]["message"]
        )
