"""Sign-in throttling: a bounded number of password hashes at once, a short exponential
back-off per email, a limit per client address, no race between check and record, and
old attempts pruned."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api.hashing import PasswordHashing
from shared import users
from shared.config import Settings
from shared.models import LoginFailure, User, utcnow
from tests.unit.conftest import TestClientClass, make_settings
from tests.unit.test_api_surface import assert_error_body

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

EMAIL, PASSWORD = "ada@example.com", "correct horse battery"
RIGHT = {"email": EMAIL, "password": PASSWORD}
WRONG = {"email": EMAIL, "password": "guess"}


@pytest.fixture
def engine(file_engine: Engine) -> Engine:
    """A database file, so parallel requests use connections of their own."""
    return file_engine


@pytest.fixture
def settings() -> Settings:
    return make_settings(
        auth_required=True,
        login_failures_allowed=3,
        login_backoff_base_s=2,
        login_backoff_max_s=60,
        login_failures_per_ip=50,
    )


@pytest.fixture
def ada(engine: Engine) -> None:
    with Session(engine) as session:
        users.create_user(session=session, email=EMAIL, password=PASSWORD)


def add_failures(engine: Engine, count: int, ago: timedelta, email: str = EMAIL) -> None:
    with Session(engine) as session:
        for _ in range(count):
            session.add(LoginFailure(email=email, client_ip="testclient", at=utcnow() - ago))
        session.commit()


def failures(engine: Engine) -> list[LoginFailure]:
    with Session(engine) as session:
        return list(session.exec(select(LoginFailure)).all())


def test_a_burst_of_parallel_wrong_logins_never_passes_the_limit(
    client: TestClient, ada: None, settings: Settings
) -> None:
    # When ten wrong passwords arrive at once for an account that allows three failures
    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(
            pool.map(lambda _: client.post("/v1/auth/login", json=WRONG).status_code, range(10))
        )
    # Then three were checked and the rest refused before any password was hashed
    assert sorted(codes) == [401] * 3 + [429] * 7


def test_the_right_password_gets_in_once_the_short_back_off_has_passed(
    client: TestClient, ada: None, engine: Engine
) -> None:
    # Given twenty failures, the last one just now
    add_failures(engine, 20, ago=timedelta(0))
    blocked = client.post("/v1/auth/login", json=RIGHT)
    assert_error_body(blocked, 429, "rate_limited")
    assert int(blocked.headers["retry-after"]) <= 60  # a back-off, not a lock-out
    # Given the same failures, the last one a minute ago
    with Session(engine) as session:
        for row in session.exec(select(LoginFailure)).all():
            row.at = utcnow() - timedelta(seconds=61)
            session.add(row)
        session.commit()
    assert client.post("/v1/auth/login", json=RIGHT).status_code == 200


def test_failed_logins_from_one_address_are_limited_whatever_the_email(
    app: FastAPI, ada: None, engine: Engine
) -> None:
    app.state.settings = make_settings(auth_required=True, login_failures_per_ip=3)
    with TestClientClass(app, client=("203.0.113.7", 4000)) as attacker:
        for n in range(3):
            wrong = {"email": f"user{n}@example.com", "password": "guess"}
            assert attacker.post("/v1/auth/login", json=wrong).status_code == 401
        assert_error_body(attacker.post("/v1/auth/login", json=RIGHT), 429, "rate_limited")
    with TestClientClass(app, client=("198.51.100.2", 4000)) as neighbour:
        assert neighbour.post("/v1/auth/login", json=RIGHT).status_code == 200


def test_attempts_older_than_the_window_are_pruned(
    client: TestClient, ada: None, engine: Engine, settings: Settings
) -> None:
    add_failures(
        engine, 5, ago=timedelta(seconds=settings.login_failure_window_s + 1), email="x@y.z"
    )
    assert client.post("/v1/auth/login", json=WRONG).status_code == 401
    assert [(f.email, f.client_ip) for f in failures(engine)] == [(EMAIL, "testclient")]


def test_a_successful_login_leaves_no_failure_behind(
    client: TestClient, ada: None, engine: Engine
) -> None:
    assert client.post("/v1/auth/login", json=RIGHT).status_code == 200
    assert failures(engine) == []


@pytest.mark.parametrize("email", [EMAIL, "nobody@example.com"])
def test_a_login_that_finds_every_hashing_slot_taken_is_503_and_not_counted(
    app: FastAPI, ada: None, engine: Engine, email: str
) -> None:
    with TestClientClass(app) as client:
        app.state.password_hashing = hashing = PasswordHashing(concurrency=1, wait_s=0.05)
        # Given the only slot held (an unknown email needs one too: it is hashed alike)
        assert hashing._slots.acquire(timeout=5)
        try:
            busy = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        finally:
            hashing._slots.release()
        assert_error_body(busy, 503, "server_busy")
        assert int(busy.headers["retry-after"]) >= 1
        assert failures(engine) == []
        assert client.post("/v1/auth/login", json=RIGHT).status_code == 200
        hashing.close()


def test_a_hash_with_older_parameters_still_verifies_and_is_replaced_at_login(
    client: TestClient, engine: Engine
) -> None:
    old = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4).hash(PASSWORD)
    with Session(engine) as session:
        session.add(User(email=EMAIL, password_hash=old))
        session.commit()
    assert client.post("/v1/auth/login", json=RIGHT).status_code == 200
    with Session(engine) as session:
        stored = session.exec(select(User.password_hash)).one()
    assert stored is not None and stored != old
    assert "m=19456,t=2,p=1" in stored
    assert client.post("/v1/auth/login", json=RIGHT).status_code == 200
