"""Accounts and access, route by route, with authentication on (as in Compose/Kubernetes)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api import admin
from api.auth import get_current_user
from shared import jobs, users
from shared.config import Settings
from shared.db import make_engine, migrate
from shared.models import ApiKey, User, as_utc
from shared.security import make_token
from tests.fakes import FakeStorage
from tests.unit.conftest import make_settings
from tests.unit.test_api_surface import assert_error_body

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

SECRET = "unit-test-jwt-secret-" + "0123456789abcdef" * 4
UPLOAD = {"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 10}
ROUTES = [
    ("POST", "/v1/uploads"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/some-id"),
    ("GET", "/v1/jobs/some-id/download"),
    ("GET", "/v1/jobs/some-id/events"),
    ("GET", "/v1/auth/me"),
]


@pytest.fixture
def settings() -> Settings:
    return make_settings(
        auth_required=True,
        jwt_secret=SECRET,
        uploads_per_minute=3,
        max_active_jobs=2,
        login_backoff_base_s=60,
    )


Account = tuple[str, str]  # (user id, API key)


@pytest.fixture
def account(engine: Engine) -> Callable[..., Account]:
    def create(email: str, password: str | None = None) -> Account:
        with Session(engine, expire_on_commit=False) as session:
            user = users.create_user(session=session, email=email, password=password)
            _, key = users.create_api_key(session=session, user=user, name="test")
            return user.id, key

    return create


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def start_job(client: TestClient, storage: FakeStorage, key: str, **headers: str) -> dict[str, Any]:
    grant = client.post("/v1/uploads", json=UPLOAD, headers=auth(key)).json()
    storage.put_presigned(grant["url"], b"\0" * 10, grant["headers"])
    resp = client.post(
        "/v1/jobs", json={"upload_id": grant["upload_id"]}, headers={**auth(key), **headers}
    )
    assert resp.status_code == 202, resp.text
    job: dict[str, Any] = resp.json()
    return job


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_without_credentials_is_401_unauthenticated(
    client: TestClient, method: str, path: str
) -> None:
    resp = client.request(method, path, json={})
    assert_error_body(resp, 401, "unauthenticated")
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("path", ["/v1/uploads", "/v1/jobs"])
@pytest.mark.parametrize("body", [{"filename": 5}, [], {"upload_id": None, "extra": 1}])
def test_create_without_credentials_is_401_whatever_the_fields_of_its_body(
    client: TestClient, path: str, body: object
) -> None:
    # The credential is checked before the body's fields are validated
    assert_error_body(client.post(path, json=body), 401, "unauthenticated")


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_refuses_a_wrong_key(client: TestClient, method: str, path: str) -> None:
    resp = client.request(method, path, json={}, headers=auth("v2m_not-a-real-key"))
    assert_error_body(resp, 401, "unauthenticated")


def test_revoked_key_stops_working(
    client: TestClient, engine: Engine, account: Callable[..., Account]
) -> None:
    _, key = account("ada@example.com")
    assert client.get("/v1/jobs", headers=auth(key)).status_code == 200
    with Session(engine) as session:  # what the admin CLI does, from another process
        record = session.exec(select(ApiKey)).one()
        users.revoke_api_key(session=session, key_id=record.id)
    # Refused on the very next request: nothing remembers the key
    assert_error_body(client.get("/v1/jobs", headers=auth(key)), 401, "unauthenticated")


def test_deactivated_accounts_access_token_stops_working_at_once(
    client: TestClient, engine: Engine, account: Callable[..., Account]
) -> None:
    user_id, _ = account("ada@example.com")
    token = make_token(user_id=user_id, kind="access", ttl_s=900, secret=SECRET)
    assert client.get("/v1/auth/me", headers=auth(token)).json()["id"] == user_id
    with Session(engine) as session:
        user = session.get(User, user_id)
        assert user is not None
        user.is_active = False
        session.add(user)
        session.commit()
    assert_error_body(client.get("/v1/auth/me", headers=auth(token)), 401, "unauthenticated")


def test_key_use_is_recorded_at_most_once_a_minute(
    client: TestClient, engine: Engine, account: Callable[..., Account]
) -> None:
    def last_used() -> datetime | None:
        with Session(engine) as session:
            return as_utc(session.exec(select(ApiKey)).one().last_used_at)

    _, key = account("ada@example.com")
    client.get("/v1/jobs", headers=auth(key))
    first = last_used()
    assert first is not None
    client.post("/v1/uploads", json=UPLOAD, headers=auth(key))
    assert last_used() == first  # within the minute: no second write
    with Session(engine) as session:
        record = session.exec(select(ApiKey)).one()
        record.last_used_at = datetime.now(UTC) - timedelta(minutes=2)
        session.add(record)
        session.commit()
    client.get(f"/v1/jobs/{uuid.uuid4()}", headers=auth(key))
    recorded = last_used()
    assert recorded is not None and recorded > datetime.now(UTC) - timedelta(minutes=1)


def test_overriding_the_current_user_reaches_every_route(
    app: FastAPI, client: TestClient, engine: Engine, storage: FakeStorage
) -> None:
    # Given the current-user dependency replaced, as a test or an embedding app would
    with Session(engine, expire_on_commit=False) as session:
        stand_in = users.create_user(session=session, email="stand-in@example.com")
    app.dependency_overrides[get_current_user] = lambda: stand_in

    # When requests come without any credential (authentication is required here)
    grant = client.post("/v1/uploads", json=UPLOAD)
    storage.put_presigned(grant.json()["url"], b"\0" * 10, grant.json()["headers"])
    job = client.post("/v1/jobs", json={"upload_id": grant.json()["upload_id"]})
    read = client.get(f"/v1/jobs/{job.json()['id']}")

    # Then every route acted as the stand-in user
    assert grant.status_code == 201
    assert storage.key_of(grant.json()["url"]).startswith(f"uploads/{stand_in.id}/")
    assert read.status_code == 200 and read.json()["id"] == job.json()["id"]
    with Session(engine) as session:
        assert jobs.get_job(session=session, job_id=job.json()["id"]).owner_id == stand_in.id
    assert client.get("/v1/auth/me").json()["email"] == "stand-in@example.com"


def test_login_returns_tokens_that_authenticate(
    client: TestClient, account: Callable[..., Account]
) -> None:
    user_id, _ = account("ada@example.com", password="correct horse battery")
    resp = client.post(
        "/v1/auth/login", json={"email": "ADA@example.com ", "password": "correct horse battery"}
    )
    assert resp.status_code == 200, resp.text
    tokens = resp.json()
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    me = client.get("/v1/auth/me", headers=auth(tokens["access_token"]))
    assert me.json()["id"] == user_id
    refreshed = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert (
        client.get("/v1/auth/me", headers=auth(refreshed.json()["access_token"])).status_code == 200
    )


@pytest.mark.parametrize(
    ("email", "password"),
    [("ada@example.com", "wrong password"), ("nobody@example.com", "correct horse battery")],
)
def test_wrong_login_is_401_with_one_message(
    client: TestClient, account: Callable[..., Account], email: str, password: str
) -> None:
    account("ada@example.com", password="correct horse battery")
    resp = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert_error_body(resp, 401, "unauthenticated")
    assert resp.json()["error"]["message"] == "The email or password is not right."


def forged_tokens(user_id: str) -> dict[str, str]:
    now = datetime.now(UTC)
    claims = {"sub": user_id, "typ": "access", "iat": now, "exp": now + timedelta(minutes=5)}
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    payload = jwt.utils.base64url_encode(
        f'{{"sub":"{user_id}","typ":"access","exp":{int((now + timedelta(minutes=5)).timestamp())}}}'.encode()
    ).decode()
    return {
        "expired": make_token(user_id=user_id, kind="access", ttl_s=-10, secret=SECRET),
        "bad_signature": make_token(
            user_id=user_id,
            kind="access",
            ttl_s=300,
            secret="another-secret-" + "fedcba9876543210" * 4,
        ),
        "alg_none": f"{header}.{payload}.",
        "hs512_same_secret": jwt.encode(claims, SECRET, algorithm="HS512"),
        "refresh_as_access": make_token(user_id=user_id, kind="refresh", ttl_s=300, secret=SECRET),
        "garbage": "not.a.jwt",
    }


@pytest.mark.parametrize(
    "kind",
    ["expired", "bad_signature", "alg_none", "hs512_same_secret", "refresh_as_access", "garbage"],
)
def test_bad_jwts_are_401(client: TestClient, account: Callable[..., Account], kind: str) -> None:
    user_id, _ = account("ada@example.com")
    token = forged_tokens(user_id)[kind]
    assert_error_body(client.get("/v1/jobs", headers=auth(token)), 401, "unauthenticated")


def test_access_token_cannot_refresh(client: TestClient, account: Callable[..., Account]) -> None:
    user_id, _ = account("ada@example.com")
    access = make_token(user_id=user_id, kind="access", ttl_s=300, secret=SECRET)
    assert_error_body(
        client.post("/v1/auth/refresh", json={"refresh_token": access}), 401, "unauthenticated"
    )


def test_query_token_works_for_events_and_download_but_never_an_api_key(
    client: TestClient, storage: FakeStorage, account: Callable[..., Account]
) -> None:
    user_id, key = account("ada@example.com")
    job = start_job(client, storage, key)
    access = make_token(user_id=user_id, kind="access", ttl_s=300, secret=SECRET)
    download = client.get(f"/v1/jobs/{job['id']}/download", params={"access_token": access})
    assert_error_body(download, 409, "not_ready")  # authenticated, just not finished
    refused = client.get(f"/v1/jobs/{job['id']}/download", params={"access_token": key})
    assert_error_body(refused, 401, "unauthenticated")


def test_other_users_jobs_and_uploads_are_404(
    client: TestClient, storage: FakeStorage, account: Callable[..., Account]
) -> None:
    # Given a job and an unused upload of Ada's
    _, ada = account("ada@example.com")
    _, bob = account("bob@example.com")
    job = start_job(client, storage, ada)
    spare = client.post("/v1/uploads", json=UPLOAD, headers=auth(ada)).json()["upload_id"]
    # Then Bob sees neither, exactly as if they did not exist
    for path in (
        f"/v1/jobs/{job['id']}",
        f"/v1/jobs/{job['id']}/download",
        f"/v1/jobs/{job['id']}/events",
    ):
        assert_error_body(client.get(path, headers=auth(bob)), 404, "job_not_found")
    reuse = client.post("/v1/jobs", json={"upload_id": spare}, headers=auth(bob))
    assert_error_body(reuse, 404, "upload_not_found")
    big = {**UPLOAD, "multipart": True}
    parted = client.post("/v1/uploads", json=big, headers=auth(ada)).json()["upload_id"]
    for method, path, body in (
        ("POST", f"/v1/uploads/{parted}/parts", {"part_numbers": [1]}),
        ("GET", f"/v1/uploads/{parted}/parts", None),
        ("POST", f"/v1/uploads/{parted}/complete", {"parts": [{"part_number": 1, "etag": "x"}]}),
        ("DELETE", f"/v1/uploads/{parted}", None),
        ("DELETE", f"/v1/uploads/{spare}", None),
    ):
        answer = client.request(method, path, json=body, headers=auth(bob))
        assert_error_body(answer, 404, "upload_not_found")
    assert client.get("/v1/jobs", headers=auth(bob)).json()["items"] == []
    assert [j["id"] for j in client.get("/v1/jobs", headers=auth(ada)).json()["items"]] == [
        job["id"]
    ]


def test_idempotency_keys_are_per_user(
    client: TestClient, storage: FakeStorage, account: Callable[..., Account]
) -> None:
    _, ada = account("ada@example.com")
    _, bob = account("bob@example.com")
    first = start_job(client, storage, ada, **{"Idempotency-Key": "same"})
    second = start_job(client, storage, bob, **{"Idempotency-Key": "same"})
    assert first["id"] != second["id"]


def test_objects_are_namespaced_per_user(
    client: TestClient, storage: FakeStorage, account: Callable[..., Account]
) -> None:
    ada_id, ada = account("ada@example.com")
    grant = client.post("/v1/uploads", json=UPLOAD, headers=auth(ada)).json()
    assert storage.key_of(grant["url"]).startswith(f"uploads/{ada_id}/{grant['upload_id']}/")


def test_uploads_over_the_per_minute_limit_get_429_with_retry_after(
    client: TestClient, account: Callable[..., Account]
) -> None:
    _, key = account("ada@example.com")
    for _ in range(3):
        assert client.post("/v1/uploads", json=UPLOAD, headers=auth(key)).status_code == 201
    resp = client.post("/v1/uploads", json=UPLOAD, headers=auth(key))
    assert_error_body(resp, 429, "rate_limited")
    assert 1 <= int(resp.headers["retry-after"]) <= 60
    _, other = account("bob@example.com")
    assert (
        client.post("/v1/uploads", json=UPLOAD, headers=auth(other)).status_code == 201
    )  # per user


def test_active_jobs_over_the_limit_get_429(
    client: TestClient, storage: FakeStorage, account: Callable[..., Account]
) -> None:
    _, key = account("ada@example.com")
    start_job(client, storage, key)
    start_job(client, storage, key)
    grant = client.post("/v1/uploads", json=UPLOAD, headers=auth(key)).json()
    storage.put_presigned(grant["url"], b"\0" * 10, grant["headers"])
    resp = client.post("/v1/jobs", json={"upload_id": grant["upload_id"]}, headers=auth(key))
    assert_error_body(resp, 429, "rate_limited")
    assert resp.headers["retry-after"] == "5"


def test_daily_volume_is_enforced_per_user(
    client: TestClient, engine: Engine, account: Callable[..., Account]
) -> None:
    user_id, key = account("ada@example.com")
    with Session(engine) as session:
        user = session.get(User, user_id)
        assert user is not None
        user.bytes_per_day = 15  # a per-user quota overrides the default
        session.add(user)
        session.commit()
    assert client.post("/v1/uploads", json=UPLOAD, headers=auth(key)).status_code == 201
    assert_error_body(
        client.post("/v1/uploads", json=UPLOAD, headers=auth(key)), 429, "rate_limited"
    )


def test_security_headers_and_page_csp(client: TestClient, account: Callable[..., Account]) -> None:
    _, key = account("ada@example.com")
    api = client.get("/v1/jobs", headers=auth(key))
    assert api.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in api.headers
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "connect-src 'self' http://s3.public.test:9000" in csp
    assert page.headers["x-frame-options"] == "DENY"


def test_production_refuses_weak_auth_settings() -> None:
    base: dict[str, Any] = {"environment": "production", "s3_secret_key": "a-real-secret-value"}
    with pytest.raises(ValueError, match="V2M_JWT_SECRET"):
        make_settings(**base, jwt_secret="short")
    with pytest.raises(ValueError, match="V2M_AUTH_REQUIRED"):
        make_settings(**base, jwt_secret="x" * 40, auth_required=False)
    make_settings(**base, jwt_secret="x" * 40, auth_required=True)


def test_admin_cli_creates_lists_and_revokes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.config import get_settings

    monkeypatch.setenv("V2M_DATABASE_URL", f"sqlite:///{tmp_path / 'admin.db'}")
    get_settings.cache_clear()
    try:
        assert admin.main(["create-user", "ada@example.com", "--no-password"]) == 0
        assert admin.main(["create-key", "ada@example.com", "--name", "laptop"]) == 0
        out = capsys.readouterr().out
        key = out.strip().splitlines()[-1]
        key_id = out.split("key id ")[1].split()[0]
        assert key.startswith("v2m_")
        engine = make_engine(get_settings())
        with Session(engine) as session:
            assert users.authenticate_api_key(session=session, key=key).email == "ada@example.com"
        assert admin.main(["revoke-key", key_id]) == 0
        assert admin.main(["list-users"]) == 0
        listing = capsys.readouterr().out
        assert "ada@example.com" in listing and "revoked" in listing
        assert admin.main(["create-user", "ada@example.com", "--no-password"]) == 1  # exists
        assert (
            admin.main(
                [
                    "set-limits",
                    "ada@example.com",
                    "--uploads-per-minute",
                    "5",
                    "--bytes-per-day",
                    "1000",
                ]
            )
            == 0
        )
        with Session(engine) as session:
            ada = users.require_user(session=session, email="ada@example.com")
            assert (ada.uploads_per_minute, ada.max_active_jobs, ada.bytes_per_day) == (
                5,
                None,
                1000,
            )
        assert admin.main(["set-limits", "ada@example.com", "--uploads-per-minute", "default"]) == 0
        with Session(engine) as session:
            assert (
                users.require_user(session=session, email="ada@example.com").uploads_per_minute
                is None
            )
        engine.dispose()
    finally:
        get_settings.cache_clear()


def test_migrations_build_the_schema_the_models_describe(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    engine = make_engine(make_settings(database_url=f"sqlite:///{tmp_path / 'm.db'}"))
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    engine.dispose()
    assert diff == []


def test_repeated_failed_logins_are_slowed_with_429(
    client: TestClient, account: Callable[..., Account], settings: Settings
) -> None:
    account("ada@example.com", password="correct horse battery")
    for _ in range(settings.login_failures_allowed):
        wrong = client.post(
            "/v1/auth/login", json={"email": "ada@example.com", "password": "guess"}
        )
        assert wrong.status_code == 401
    # Then even the right password waits: guessing cannot go on at request speed
    blocked = client.post(
        "/v1/auth/login", json={"email": "ada@example.com", "password": "correct horse battery"}
    )
    assert_error_body(blocked, 429, "rate_limited")
    assert int(blocked.headers["retry-after"]) > 0
    other = client.post("/v1/auth/login", json={"email": "bob@example.com", "password": "guess"})
    assert other.status_code == 401  # counted per email
