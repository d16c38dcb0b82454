"""Unit fixtures: settings, an in-memory SQLite engine, fakes, and the API under TestClient.

Nothing here opens a socket: the database is SQLite in memory (StaticPool, so every
session sees the same connection), storage and the broker are the fakes in tests/fakes.py.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, create_engine

from api import deps
from shared.config import Settings
from shared.db import create_tables, make_engine, migrate
from shared.models import Upload
from shared.queue import Publisher
from shared.storage import Storage
from tests.fakes import FakePublisher, FakeStorage

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


def _import_test_client() -> type[TestClient]:
    # Starlette warns that it prefers httpx2 over httpx; that is about the test client
    # itself, not our code, and the suite turns warnings into errors.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient`")
        from fastapi.testclient import TestClient

    return TestClient


TestClientClass = _import_test_client()


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No V2M_* variable of the machine running the tests leaks into Settings."""
    for name in list(os.environ):
        if name.startswith("V2M_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        # Requests without credentials act as the local user; tests/unit/test_auth.py
        # turns authentication on and checks it route by route.
        "auth_required": False,
        "database_url": "sqlite://",
        "s3_create_bucket": False,
        "s3_endpoint_url": "http://s3.internal.test:9000",
        "s3_public_endpoint_url": "http://s3.public.test:9000",
        "s3_bucket": "video2mp3",
        "frontend_dir": "no-such-frontend-dir",
        "max_upload_bytes": 10 * 1024 * 1024,
        "max_attempts": 3,
        "retry_backoff_base_s": 2.0,
        "retry_backoff_max_s": 300.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = create_engine(
        "sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool
    )
    create_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def file_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database file: connections of their own, for concurrent tests."""
    engine = make_engine(make_settings(database_url=f"sqlite:///{tmp_path / 'v.db'}"))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def storage() -> FakeStorage:
    return FakeStorage()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def app(
    settings: Settings,
    engine: Engine,
    storage: FakeStorage,
    publisher: FakePublisher,
    monkeypatch: pytest.MonkeyPatch,
) -> FastAPI:
    from api import main

    # The lifespan would configure structlog for production (cached loggers writing to
    # stdout), which defeats structlog.testing.capture_logs in later tests.
    monkeypatch.setattr(main, "configure_logging", lambda *_a, **_k: None)
    # The lifespan's adapters are the fakes too (building boto3 clients costs ~25 ms per
    # test); test_api_surface.py starts one app with the real ones.
    monkeypatch.setattr(main, "Storage", lambda _settings: storage)
    monkeypatch.setattr(main, "Publisher", lambda _settings: publisher)
    app = main.create_app(settings)

    app.dependency_overrides[deps.get_engine] = lambda: engine
    app.dependency_overrides[deps.get_storage] = lambda: cast(Storage, storage)
    app.dependency_overrides[deps.get_publisher] = lambda: cast(Publisher, publisher)
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClientClass(app) as client:
        yield client


UploadFactory = Callable[..., str]


@pytest.fixture
def uploaded(client: TestClient, storage: FakeStorage) -> UploadFactory:
    """Presign through the API and PUT the bytes into the fake bucket; returns upload_id."""

    def create(
        filename: str = "holiday.mov",
        size_bytes: int = 2048,
        content_type: str = "video/quicktime",
        put: bool = True,
    ) -> str:
        response = client.post(
            "/v1/uploads",
            json={"filename": filename, "content_type": content_type, "size_bytes": size_bytes},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        if put:
            storage.put_presigned(body["url"], b"\0" * size_bytes, body["headers"])
        upload_id: str = body["upload_id"]
        return upload_id

    return create


def add_upload(
    *,
    session: Session,
    upload_id: str,
    owner_id: str,
    key: str,
    filename: str,
    content_type: str,
    size_bytes: int,
    expires_at: datetime,
) -> Upload:
    """An upload row for a test (outside the tally the upload limits read; the API
    counts uploads with `limits.count_upload`)."""
    upload = Upload(
        id=upload_id,
        owner_id=owner_id,
        key=key,
        filename=filename,
        content_type=content_type,
        size_bytes=size_bytes,
        expires_at=expires_at,
    )
    session.add(upload)
    session.commit()
    return upload
