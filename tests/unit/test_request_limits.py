"""Bodies the API would have to read whole: refused past a size, declared or streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tests.unit.test_api_surface import assert_error_body

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

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
