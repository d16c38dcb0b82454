"""The database unreachable: the API answers 503 `database_unavailable` with Retry-After,
never 500 `internal_error`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import create_engine

from api import deps
from tests.unit.conftest import TestClientClass


@pytest.fixture
def unreachable_engine(tmp_path: Path) -> Iterator[Engine]:
    # A database file in a directory that does not exist: every connection attempt fails
    # with the driver's OperationalError, as a stopped PostgreSQL server's would.
    engine = create_engine(f"sqlite:///{tmp_path / 'gone' / 'video2mp3.db'}")
    yield engine
    engine.dispose()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/jobs", None),
        ("GET", "/v1/jobs/00000000-0000-0000-0000-000000000000", None),
        ("POST", "/v1/jobs", {"upload_id": "00000000-0000-0000-0000-000000000000"}),
        ("POST", "/v1/uploads", {"filename": "a.mp4", "size_bytes": 10}),
    ],
    ids=["list-jobs", "get-job", "create-job", "create-upload"],
)
def test_database_outage_is_503_database_unavailable_with_retry_after(
    app: FastAPI,
    unreachable_engine: Engine,
    method: str,
    path: str,
    body: dict[str, object] | None,
) -> None:
    with TestClientClass(app, raise_server_exceptions=False) as client:
        # Given an API whose database went away after start-up
        app.dependency_overrides[deps.get_engine] = lambda: unreachable_engine

        response = client.request(method, path, json=body)

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "database_unavailable"
    assert response.json()["error"]["message"]
    assert int(response.headers["Retry-After"]) > 0
