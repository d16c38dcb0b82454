"""Claims of docs/SECURITY.md that no other test holds to."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from shared import users
from shared.models import ApiKey, User
from tests.unit.conftest import make_settings
from tests.unit.test_api_surface import assert_error_body

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
UPLOAD = {"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 10}


def test_api_keys_are_256_random_bits_stored_only_as_their_sha256(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session:
        user = users.create_user(session=session, email="ada@example.com")
        keys = [users.create_api_key(session=session, user=user, name=f"k{n}")[1] for n in range(2)]
        rows = session.exec(select(ApiKey)).all()
    assert keys[0] != keys[1]
    assert all(re.fullmatch(r"v2m_[A-Za-z0-9_-]{43}", key) for key in keys)  # 32 bytes
    assert {row.key_hash for row in rows} == {hashlib.sha256(k.encode()).hexdigest() for k in keys}
    stored = " ".join(str(value) for row in rows for value in row.model_dump().values())
    assert not any(key in stored or key[12:] in stored for key in keys)


def test_the_only_routes_are_the_documented_ones(app: FastAPI) -> None:
    # No route manages keys or users over HTTP: a stolen key cannot mint another
    routes = {
        (path, method)
        for path, ops in app.openapi()["paths"].items()
        for method in ops
        if path.startswith("/v1/")
    }
    assert routes == {
        ("/v1/uploads", "post"),
        # multipart uploads: part URLs, parts, completion and abort of the caller's own
        ("/v1/uploads/{upload_id}/parts", "post"),
        ("/v1/uploads/{upload_id}/parts", "get"),
        ("/v1/uploads/{upload_id}/complete", "post"),
        ("/v1/uploads/{upload_id}", "delete"),
        # what the uploaded file holds, for its owner only
        ("/v1/uploads/{upload_id}/probe", "get"),
        ("/v1/uploads/{upload_id}/cover", "get"),
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{job_id}", "get"),
        ("/v1/jobs/{job_id}/download", "get"),
        ("/v1/jobs/{job_id}/events", "get"),
        ("/v1/auth/login", "post"),
        ("/v1/auth/refresh", "post"),
        ("/v1/auth/me", "get"),
        # notification settings and deliveries: no key, no password, no other user
        ("/v1/account", "get"),
        ("/v1/account", "patch"),
        ("/v1/account/webhook-secret", "get"),
        ("/v1/account/webhook-secret/rotate", "post"),
        ("/v1/jobs/{job_id}/deliveries", "get"),
        ("/v1/jobs/{job_id}/deliveries/{delivery_id}/retry", "post"),
    }


def test_a_change_of_limits_applies_to_the_next_request(client: TestClient, engine: Engine) -> None:
    # The local user of an unauthenticated test app, as any user: limits read per request
    assert client.post("/v1/uploads", json=UPLOAD).status_code == 201
    with Session(engine) as session:
        [user] = session.exec(select(User)).all()
        user.uploads_per_minute = 1
        session.add(user)
        session.commit()
    assert_error_body(client.post("/v1/uploads", json=UPLOAD), 429, "rate_limited")


@pytest.mark.parametrize("settings", [make_settings(cors_origins=["http://page.test"])])
def test_api_cors_allows_the_listed_origin_and_never_credentials(client: TestClient) -> None:
    preflight = client.options(
        "/v1/jobs",
        headers={"Origin": "http://page.test", "Access-Control-Request-Method": "POST"},
    )
    other = client.get("/v1/jobs", headers={"Origin": "http://evil.test"})
    assert preflight.headers["access-control-allow-origin"] == "http://page.test"
    assert "access-control-allow-credentials" not in preflight.headers
    assert "access-control-allow-origin" not in other.headers


def test_the_pages_nginx_logs_paths_without_query_strings() -> None:
    conf = (ROOT / "frontend" / "nginx.conf").read_text()
    formats = dict(re.findall(r"log_format\s+(\w+)\s+((?:'[^']*'\s*)+);", conf))
    used = re.findall(r"^\s*access_log\s+\S+\s+(\w+);", conf, flags=re.M)
    assert used and all(name in formats for name in used)
    for name in used:
        assert not re.search(r"\$(request|request_uri|args|query_string|arg_)\b", formats[name])
