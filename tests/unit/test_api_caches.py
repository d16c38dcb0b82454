"""The API's fast paths: cached credentials, cached completed jobs, group-committed
uploads, and SQLite write transactions that hold the write lock from their start."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from api import upload_writer
from api.upload_writer import UploadWriter
from shared import jobs, users
from shared.config import Settings
from shared.db import make_engine, migrate, write_transaction
from shared.errors import RateLimitError
from shared.jobs import NewUpload
from shared.models import ApiKey, Job, JobStatus, User, new_id, utcnow
from shared.security import make_token
from shared.users import AuthUser, TTLCache
from tests.fakes import FakeStorage
from tests.unit.conftest import make_settings
from tests.unit.test_api_jobs import finish, post_job
from tests.unit.test_api_surface import assert_error_body

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from tests.unit.conftest import UploadFactory

SECRET = "unit-test-jwt-secret-" + "0123456789abcdef" * 4
Account = tuple[str, str]  # (user id, API key)


@pytest.fixture
def settings() -> Settings:
    return make_settings(auth_required=True, jwt_secret=SECRET, auth_cache_ttl_s=5)


@pytest.fixture(autouse=True)
def _empty_caches() -> None:
    users.api_key_cache.clear()
    users.user_cache.clear()


@pytest.fixture
def account(engine: Engine) -> Callable[[str], Account]:
    def create(email: str) -> Account:
        with Session(engine, expire_on_commit=False) as session:
            user = users.create_user(session=session, email=email)
            _, key = users.create_api_key(session=session, user=user, name="test")
            return user.id, key

    return create


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def revoke_elsewhere(engine: Engine) -> None:
    """What another API process or the admin CLI does: no cache of ours is told."""
    with Session(engine) as session:
        session.execute(update(ApiKey).values(revoked_at=utcnow()))
        session.commit()


def deactivate_elsewhere(engine: Engine, user_id: str) -> None:
    with Session(engine) as session:
        session.execute(update(User).where(User.id == user_id).values(is_active=False))  # type: ignore[arg-type]
        session.commit()


class Clock:
    """The credential caches' clock, moved by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(users.api_key_cache, "clock", clock)
    monkeypatch.setattr(users.user_cache, "clock", clock)
    return clock


# --------------------------------------------------------------------------- credentials


def test_api_key_is_answered_from_memory_until_the_ttl_passes(
    client: TestClient, engine: Engine, account: Callable[[str], Account], clock: Clock
) -> None:
    # Given a key this process has just seen
    _, key = account("ada@example.com")
    assert client.get("/v1/jobs", headers=auth(key)).status_code == 200
    # When another process revokes it
    revoke_elsewhere(engine)
    # Then this process accepts it until its cached answer is auth_cache_ttl_s old
    clock.now += 4.9
    assert client.get("/v1/jobs", headers=auth(key)).status_code == 200
    clock.now += 0.2
    assert_error_body(client.get("/v1/jobs", headers=auth(key)), 401, "unauthenticated")


def test_ttl_zero_reads_the_database_on_every_request(
    client: TestClient, engine: Engine, account: Callable[[str], Account]
) -> None:
    client.app.state.settings = make_settings(  # type: ignore[attr-defined]
        auth_required=True, jwt_secret=SECRET, auth_cache_ttl_s=0
    )
    _, key = account("ada@example.com")
    assert client.get("/v1/jobs", headers=auth(key)).status_code == 200
    revoke_elsewhere(engine)
    assert_error_body(client.get("/v1/jobs", headers=auth(key)), 401, "unauthenticated")
    assert len(users.api_key_cache) == 0


def test_access_token_user_is_cached_until_the_ttl_passes(
    client: TestClient, engine: Engine, account: Callable[[str], Account], clock: Clock
) -> None:
    user_id, _ = account("ada@example.com")
    token = make_token(user_id=user_id, kind="access", ttl_s=900, secret=SECRET)
    assert client.get("/v1/auth/me", headers=auth(token)).json()["id"] == user_id
    deactivate_elsewhere(engine, user_id)
    assert client.get("/v1/auth/me", headers=auth(token)).status_code == 200
    clock.now += 5.1
    assert_error_body(client.get("/v1/auth/me", headers=auth(token)), 401, "unauthenticated")


def test_a_lookup_that_started_before_a_revocation_cannot_cache_its_answer() -> None:
    cache: TTLCache[str, str] = TTLCache(10)
    generation = cache.generation  # a lookup starts
    cache.discard("key-hash")  # the key is revoked meanwhile
    cache.put("key-hash", "stale grant", generation=generation)
    assert cache.get("key-hash", ttl_s=60) is None


def test_cache_keeps_the_most_recently_used_entries() -> None:
    cache: TTLCache[str, int] = TTLCache(2)
    for i, key in enumerate("abc"):
        if key == "c":
            assert cache.get("a", ttl_s=60) == 0  # "a" is used, so "b" goes
        cache.put(key, i, generation=cache.generation)
    assert (cache.get("a", 60), cache.get("b", 60), cache.get("c", 60)) == (0, None, 2)


def test_key_use_is_written_at_most_once_a_minute(
    client: TestClient, engine: Engine, account: Callable[[str], Account]
) -> None:
    _, key = account("ada@example.com")

    def last_used() -> object:
        with Session(engine) as session:
            return session.exec(select(ApiKey)).one().last_used_at

    client.get("/v1/jobs", headers=auth(key))
    first = last_used()
    assert first is not None
    users.api_key_cache.clear()  # even a fresh lookup reads the recorded time, not now
    client.get("/v1/jobs", headers=auth(key))
    assert last_used() == first
    grant = users.KeyGrant(
        user=AuthUser("u", "e", utcnow(), None, None, None), key_id="k", last_used_at=0.0
    )
    assert grant.touch_due(now_s=61.0)
    assert not grant.touch_due(now_s=62.0)  # one write in flight at a time


# --------------------------------------------------------------------------- jobs


def create_job(client: TestClient, storage: FakeStorage, key: str) -> str:
    """Upload a small file with ``key`` and queue its job, as a client does."""
    grant = client.post(
        "/v1/uploads",
        json={"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 10},
        headers=auth(key),
    ).json()
    storage.put_presigned(grant["url"], b"\0" * 10, grant["headers"])
    job_id: str = client.post(
        "/v1/jobs", json={"upload_id": grant["upload_id"]}, headers=auth(key)
    ).json()["id"]
    return job_id


def test_completed_job_is_served_from_memory_to_its_owner_only(
    client: TestClient, storage: FakeStorage, engine: Engine, account: Callable[[str], Account]
) -> None:
    _, key = account("ada@example.com")
    job_id = create_job(client, storage, key)
    finish(engine, job_id)
    first = client.get(f"/v1/jobs/{job_id}", headers=auth(key))
    assert first.json()["status"] == "completed"
    # A change no worker could make shows that the second answer came from memory.
    with Session(engine) as session:
        session.execute(update(Job).where(col(Job.id) == job_id).values(output_size_bytes=1))
        session.commit()
    assert client.get(f"/v1/jobs/{job_id}", headers=auth(key)).content == first.content
    _, other = account("bob@example.com")
    assert_error_body(client.get(f"/v1/jobs/{job_id}", headers=auth(other)), 404, "job_not_found")


@pytest.fixture
def open_client(client: TestClient) -> TestClient:
    client.app.state.settings = make_settings()  # type: ignore[attr-defined]  # no auth
    return client


def test_unfinished_job_is_read_from_the_database_every_time(
    open_client: TestClient, uploaded: UploadFactory, engine: Engine
) -> None:
    job_id = post_job(open_client, uploaded()).json()["id"]
    assert open_client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    with Session(engine) as session:
        jobs.start_attempt(session=session, job_id=job_id)
        jobs.set_progress(session=session, job_id=job_id, progress=40)
    body = open_client.get(f"/v1/jobs/{job_id}").json()
    assert (body["status"], body["progress"]) == ("processing", 40)
    assert len(open_client.app.state.completed_jobs) == 0  # type: ignore[attr-defined]


def test_failed_job_is_not_cached_because_an_operator_may_replay_it(
    open_client: TestClient, uploaded: UploadFactory, engine: Engine
) -> None:
    job_id = post_job(open_client, uploaded()).json()["id"]
    with Session(engine) as session:
        jobs.start_attempt(session=session, job_id=job_id)
        jobs.fail(session=session, job_id=job_id, code="no_audio_stream", message="No audio.")
    assert open_client.get(f"/v1/jobs/{job_id}").json()["status"] == "failed"
    with Session(engine) as session:  # what `python -m worker.dlq replay` does
        jobs.redispatch(
            session=session,
            job_id=job_id,
            expect_status=JobStatus.failed,
            older_than=utcnow() + timedelta(seconds=1),
            reset_attempts=True,
        )
    assert open_client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"


# --------------------------------------------------------------------------- uploads


@pytest.fixture
def file_engine(tmp_path: Path) -> Engine:
    engine = make_engine(make_settings(database_url=f"sqlite:///{tmp_path / 'v.db'}"))
    migrate(engine)
    return engine


def new_user(engine: Engine, **limits: int) -> AuthUser:
    with Session(engine, expire_on_commit=False) as session:
        user = users.create_user(session=session, email=f"{new_id()}@example.com")
        for name, value in limits.items():
            setattr(user, name, value)
        session.add(user)
        session.commit()
        return AuthUser.of(user)


def new_upload(user: AuthUser, size_bytes: int = 10) -> NewUpload:
    upload_id = new_id()
    return NewUpload(
        upload_id,
        user.id,
        f"uploads/{user.id}/{upload_id}/a.mp4",
        "a.mp4",
        "video/mp4",
        size_bytes,
        utcnow() + timedelta(hours=1),
    )


def record_in_own_loop(
    writer: UploadWriter, engine: Engine, user: AuthUser, n: int
) -> list[object]:
    async def record_all() -> list[BaseException | None]:
        return await asyncio.gather(
            *(writer.record(engine=engine, upload=new_upload(user), user=user) for _ in range(n)),
            return_exceptions=True,
        )

    # A loop of its own in a thread: another test's loop may still run on this one.
    with ThreadPoolExecutor(1) as pool:
        return list(pool.submit(asyncio.run, record_all()).result(timeout=30))


def test_uploads_committed_together_still_respect_the_per_minute_limit(
    file_engine: Engine,
) -> None:
    # Given a user allowed 3 uploads a minute
    user = new_user(file_engine, uploads_per_minute=3)
    writer = UploadWriter(make_settings())

    # When 5 arrive at once
    outcomes = record_in_own_loop(writer, file_engine, user, 5)
    # Then the first 3 are recorded and the last 2 refused with a time to come back
    assert outcomes[:3] == [None, None, None]
    assert all(isinstance(o, RateLimitError) and 1 <= o.retry_after_s <= 60 for o in outcomes[3:])
    with file_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM upload")).scalar() == 3
        usage = jobs.upload_usage(conn=conn, owner_id=user.id, now=utcnow())
    assert (usage.recent_count, usage.window_bytes) == (3, 30)
    file_engine.dispose()


def test_upload_writer_thread_ends_when_idle_and_the_next_upload_starts_another(
    file_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_writer, "IDLE_EXIT_S", 0.05)
    user = new_user(file_engine)
    writer = UploadWriter(make_settings())

    assert record_in_own_loop(writer, file_engine, user, 3) == [None] * 3
    first = writer._thread
    deadline = time.monotonic() + 10
    while writer._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer._thread is None  # idle: ended
    assert first is not None and not first.is_alive()

    assert record_in_own_loop(writer, file_engine, user, 2) == [None] * 2
    with file_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM upload")).scalar() == 5
    file_engine.dispose()


def test_a_database_failure_fails_its_uploads_and_the_writer_goes_on(
    file_engine: Engine, tmp_path: Path
) -> None:
    user = new_user(file_engine)
    writer = UploadWriter(make_settings())
    no_tables = make_engine(make_settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}"))

    failed = record_in_own_loop(writer, no_tables, user, 2)
    assert all(isinstance(o, Exception) and "no such table" in str(o) for o in failed)

    assert record_in_own_loop(writer, file_engine, user, 1) == [None]
    no_tables.dispose()
    file_engine.dispose()


def test_upload_counts_leave_the_minute_window_but_stay_in_the_days(
    file_engine: Engine,
) -> None:
    user = new_user(file_engine)
    now = utcnow()
    with write_transaction(file_engine) as conn:
        jobs.record_uploads(conn=conn, uploads=[new_upload(user, 100)], now=now)
    with file_engine.connect() as conn:
        later = jobs.upload_usage(conn=conn, owner_id=user.id, now=now + timedelta(seconds=61))
        next_day = jobs.upload_usage(
            conn=conn, owner_id=user.id, now=now + timedelta(days=1, minutes=2)
        )
    assert (later.recent_count, later.window_bytes) == (0, 100)
    assert (next_day.recent_count, next_day.window_bytes) == (0, 0)
    file_engine.dispose()


def test_sqlite_write_transaction_holds_the_write_lock_from_its_start(
    file_engine: Engine, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "v.db", timeout=0)
    with write_transaction(file_engine) as conn:
        conn.execute(text("SELECT 1"))  # a read only, so far
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")  # another process cannot write in between
    other.execute("BEGIN IMMEDIATE")  # free again once committed
    other.rollback()
    other.close()
    file_engine.dispose()


def test_sqlite_write_transactions_of_one_process_take_turns(file_engine: Engine) -> None:
    events: list[str] = []
    inside = threading.Event()

    def first() -> None:
        with write_transaction(file_engine):
            events.append("first begins")
            inside.set()
            time.sleep(0.2)
            events.append("first ends")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait()
    with write_transaction(file_engine):  # waits on the process's lock, not SQLite's
        events.append("second begins")
    thread.join()
    assert events == ["first begins", "first ends", "second begins"]
    file_engine.dispose()


@pytest.mark.parametrize("route", ["poll", "upload"])
def test_key_used_only_on_a_self_authenticating_route_has_its_use_recorded(
    client: TestClient,
    storage: FakeStorage,
    engine: Engine,
    account: Callable[[str], Account],
    route: str,
) -> None:
    # GET /v1/jobs/{id} and POST /v1/uploads authenticate inside the route, not through
    # the dependency
    user_id, key = account("ada@example.com")
    job_id = create_job(client, storage, key)
    with Session(engine, expire_on_commit=False) as session:
        user = session.get(User, user_id)
        assert user is not None
        record, other = users.create_api_key(session=session, user=user, name=route)
    if route == "poll":
        response = client.get(f"/v1/jobs/{job_id}", headers=auth(other))
    else:
        body = {"filename": "a.mp4", "content_type": "video/mp4", "size_bytes": 1}
        response = client.post("/v1/uploads", json=body, headers=auth(other))
    assert response.status_code in (200, 201)
    with Session(engine) as session:
        assert session.get(ApiKey, record.id).last_used_at is not None  # type: ignore[union-attr]
