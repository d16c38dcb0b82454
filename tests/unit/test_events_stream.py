"""The events stream keeps checking its credential and is capped per user."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api.streams import StreamSlots
from shared import jobs, users
from shared.config import Settings
from shared.models import ApiKey, JobStatus
from shared.security import make_token
from tests.fakes import FakeStorage
from tests.unit.conftest import make_settings
from tests.unit.test_api_surface import assert_error_body
from tests.unit.test_auth import SECRET, auth, start_job

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


@pytest.fixture
def settings() -> Settings:
    return make_settings(
        auth_required=True,
        jwt_secret=SECRET,
        events_poll_interval_s=0.02,
        events_credential_recheck_s=0,  # at every poll
        events_streams_per_user=1,
    )


@pytest.fixture
def ada(engine: Engine) -> tuple[str, str]:
    with Session(engine, expire_on_commit=False) as session:
        user = users.create_user(session=session, email="ada@example.com")
        _, key = users.create_api_key(session=session, user=user, name="test")
        return user.id, key


def follow(app: FastAPI, path: str, **kwargs: Any) -> httpx.Response:
    """The whole stream; a stream that never ends fails the test instead of hanging it."""

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
            return await api.get(path, **kwargs)

    return asyncio.run(asyncio.wait_for(run(), timeout=60))


def closing_event(response: httpx.Response) -> str:
    assert response.status_code == 200
    events = [block for block in response.text.split("\n\n") if block.startswith("event:")]
    assert events[0].startswith("event: job\n")
    return events[-1]


def test_a_stream_ends_when_its_access_token_expires(
    app: FastAPI, client: TestClient, storage: FakeStorage, ada: tuple[str, str]
) -> None:
    user_id, key = ada
    job = start_job(client, storage, key)  # queued, and it stays so: no worker
    token = make_token(user_id=user_id, kind="access", ttl_s=2, secret=SECRET)
    response = follow(app, f"/v1/jobs/{job['id']}/events", params={"access_token": token})
    last = closing_event(response)
    assert last.startswith("event: closed\n") and '"unauthenticated"' in last
    assert "expired" in last


def test_a_stream_ends_when_its_api_key_is_revoked(
    app: FastAPI,
    client: TestClient,
    storage: FakeStorage,
    ada: tuple[str, str],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, key = ada
    job = start_job(client, storage, key)
    reads: list[str] = []
    get_job = jobs.get_job

    def revoking_get_job(**kwargs: Any) -> Any:
        reads.append(kwargs["job_id"])
        if len(reads) == 2:  # the stream's first poll: the key is revoked meanwhile
            with Session(engine) as session:
                [record] = session.exec(select(ApiKey)).all()
                users.revoke_api_key(session=session, key_id=record.id)
        return get_job(**kwargs)

    monkeypatch.setattr(jobs, "get_job", revoking_get_job)
    last = closing_event(follow(app, f"/v1/jobs/{job['id']}/events", headers=auth(key)))
    assert last.startswith("event: closed\n") and "revoked" in last


def test_a_user_gets_a_bounded_number_of_streams_and_gets_them_back(
    app: FastAPI, client: TestClient, storage: FakeStorage, ada: tuple[str, str], engine: Engine
) -> None:
    user_id, key = ada
    job = start_job(client, storage, key)
    slots: StreamSlots = app.state.event_streams
    # Given the user's one stream open
    assert slots.acquire(user_id)
    refused = client.get(f"/v1/jobs/{job['id']}/events", headers=auth(key))
    assert_error_body(refused, 429, "too_many_streams")
    assert int(refused.headers["retry-after"]) >= 1
    slots.release(user_id)
    # When a stream runs to its end (the job finished), its slot is free again
    with Session(engine) as session:
        row = jobs.get_job(session=session, job_id=job["id"])
        row.status = JobStatus.completed
        session.add(row)
        session.commit()
    assert client.get(f"/v1/jobs/{job['id']}/events", headers=auth(key)).status_code == 200
    assert slots.open(user_id) == 0
