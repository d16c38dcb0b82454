"""The local user of a single-user laptop (V2M_AUTH_REQUIRED=false): made once, its
password hashed at start-up only, and first requests arriving together all served."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from shared import users
from shared.config import Settings
from shared.models import User
from shared.security import verify_password
from tests.unit.conftest import TestClientClass, make_settings


@pytest.fixture
def engine(file_engine: Engine) -> Engine:
    return file_engine


@pytest.fixture
def settings() -> Settings:
    return make_settings(auth_required=False, dev_password="local-password")


def test_requests_without_credentials_never_hash_the_dev_password(
    app: FastAPI, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api import main

    monkeypatch.setattr(main, "make_engine", lambda _s: engine)  # start-up uses it too
    with TestClientClass(app) as client:
        hashed: list[str] = []

        def counting_hash(password: str) -> str:
            hashed.append(password)
            return "x"

        monkeypatch.setattr(users, "hash_password", counting_hash)
        for _ in range(3):
            assert client.get("/v1/jobs").status_code == 200
    assert hashed == []
    with Session(engine) as session:
        [dev] = session.exec(select(User)).all()
    assert verify_password("local-password", dev.password_hash)


def test_first_requests_arriving_together_all_act_as_the_one_local_user(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api import main
    from tests.fakes import FakePublisher, FakeStorage

    # Given an API with no local user yet (none is made at start without dev credentials)
    monkeypatch.setattr(main, "configure_logging", lambda *_a, **_k: None)
    monkeypatch.setattr(main, "Storage", lambda _s: FakeStorage())
    monkeypatch.setattr(main, "Publisher", lambda _s: FakePublisher())
    monkeypatch.setattr(main, "make_engine", lambda _s: engine)
    app = main.create_app(make_settings(auth_required=False))
    with TestClientClass(app) as client, ThreadPoolExecutor(max_workers=12) as pool:
        # When twelve requests without credentials arrive at once
        answers = list(pool.map(lambda _: client.get("/v1/auth/me"), range(12)))
    # Then all are served, as one user
    assert [a.status_code for a in answers] == [200] * 12
    assert len({a.json()["id"] for a in answers}) == 1
