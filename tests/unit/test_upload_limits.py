"""Upload limits under concurrency: one write transaction per upload (lock the owner,
check the limits, insert), and SQLite write transactions that hold the lock from their
start."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared import limits, services, users
from shared.db import write_transaction
from shared.errors import RateLimitError
from shared.models import User, utcnow
from shared.schemas import UploadCreate
from shared.storage import Storage
from tests.fakes import FakeStorage
from tests.unit.conftest import make_settings


def new_user(engine: Engine, **quota: int) -> User:
    with Session(engine, expire_on_commit=False) as session:
        user = users.create_user(session=session, email="ada@example.com")
        for name, value in quota.items():
            setattr(user, name, value)
        session.add(user)
        session.commit()
        return user


def upload(engine: Engine, user: User, size_bytes: int = 10) -> RateLimitError | None:
    """One POST /v1/uploads as the route makes it: its own session, one transaction."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            services.create_upload(
                session=session,
                storage=cast(Storage, FakeStorage()),
                settings=make_settings(),
                user=user,
                upload_in=UploadCreate(
                    filename="a.mp4", content_type="video/mp4", size_bytes=size_bytes
                ),
            )
        except RateLimitError as exc:
            return exc
    return None


def test_concurrent_uploads_never_pass_the_per_minute_limit(file_engine: Engine) -> None:
    # Given a user allowed 3 uploads a minute
    user = new_user(file_engine, uploads_per_minute=3)

    # When 6 arrive at once
    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(lambda _: upload(file_engine, user), range(6)))

    # Then exactly 3 are recorded and the others refused with a time to come back
    refused = [o for o in outcomes if o is not None]
    assert len(refused) == 3
    assert all(1 <= o.retry_after_s <= 60 for o in refused)
    with file_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM upload")).scalar() == 3
    with Session(file_engine) as session:
        usage = limits.upload_usage(session=session, owner_id=user.id, now=utcnow())
    assert (usage.recent_count, usage.window_bytes) == (3, 30)


def test_concurrent_uploads_never_pass_the_daily_volume(file_engine: Engine) -> None:
    user = new_user(file_engine, bytes_per_day=25)

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda _: upload(file_engine, user, 10), range(4)))

    assert sum(o is None for o in outcomes) == 2


def test_upload_counts_leave_the_minute_window_but_stay_in_the_days(
    file_engine: Engine,
) -> None:
    user = new_user(file_engine)
    now = utcnow()
    with Session(file_engine) as session, write_transaction(session):
        limits.count_upload(session=session, owner_id=user.id, size_bytes=100, now=now)
    with Session(file_engine) as session:
        later = limits.upload_usage(
            session=session, owner_id=user.id, now=now + timedelta(seconds=61)
        )
        next_day = limits.upload_usage(
            session=session, owner_id=user.id, now=now + timedelta(days=1, minutes=2)
        )
    assert (later.recent_count, later.window_bytes) == (0, 100)
    assert (next_day.recent_count, next_day.window_bytes) == (0, 0)


def test_sqlite_write_transaction_holds_the_write_lock_from_its_start(
    file_engine: Engine, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "v.db", timeout=0)
    with Session(file_engine) as session, write_transaction(session):
        session.execute(text("SELECT 1"))  # a read only, so far
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")  # another process cannot write in between
    other.execute("BEGIN IMMEDIATE")  # free again once committed
    other.rollback()
    other.close()


def test_sqlite_write_transactions_of_one_process_take_turns(file_engine: Engine) -> None:
    events: list[str] = []
    inside = threading.Event()

    def first() -> None:
        with Session(file_engine) as session, write_transaction(session):
            events.append("first begins")
            inside.set()
            time.sleep(0.2)
            events.append("first ends")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait()
    with Session(file_engine) as session, write_transaction(session):
        events.append("second begins")
    thread.join()
    assert events == ["first begins", "first ends", "second begins"]


def test_a_failed_write_transaction_leaves_nothing(file_engine: Engine) -> None:
    user = new_user(file_engine)
    with Session(file_engine) as session, pytest.raises(RuntimeError):
        with write_transaction(session):
            limits.count_upload(session=session, owner_id=user.id, size_bytes=5, now=utcnow())
            raise RuntimeError("fails before the commit")
    with Session(file_engine) as session:
        usage = limits.upload_usage(session=session, owner_id=user.id, now=utcnow())
    assert usage.recent_count == 0
