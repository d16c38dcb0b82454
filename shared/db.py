"""Engine factory and session helpers (SQLite by default, PostgreSQL in deployments)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from shared import models, segments  # noqa: F401  (registers the tables on SQLModel.metadata)
from shared.config import Settings


def make_engine(settings: Settings) -> Engine:
    if settings.is_sqlite:
        engine = create_engine(
            settings.database_url,
            connect_args={"check_same_thread": False, "timeout": 30},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets the API read while a worker writes progress.
            cur.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL keeps the database consistent after a crash and skips an
            # fsync per commit (a power cut may lose the last transactions, not corrupt).
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(settings.database_url, pool_pre_ping=True, pool_size=10, max_overflow=20)


_SQLITE_WRITE_LOCKS: WeakKeyDictionary[Engine, threading.Lock] = WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def _sqlite_write_lock(engine: Engine) -> threading.Lock:
    with _LOCKS_LOCK:
        lock = _SQLITE_WRITE_LOCKS.get(engine)
        if lock is None:
            lock = _SQLITE_WRITE_LOCKS[engine] = threading.Lock()
        return lock


@contextmanager
def write_transaction(session: Session) -> Iterator[Session]:
    """One write transaction on `session`: committed on success, rolled back on error.

    On SQLite, a read-then-write (check a limit, then insert) must hold the database's
    write lock from its first read, or another process may write in between: the
    transaction starts with BEGIN IMMEDIATE. Threads of this process queue on a lock
    first, so they wait for each other in order instead of in SQLite's busy handler,
    which polls with sleeps of up to 100 ms. PostgreSQL needs neither; callers lock the
    rows they check (`SELECT … FOR UPDATE`).
    """
    session.commit()  # whatever the session read before starts no write transaction
    engine = session.get_bind()
    if not isinstance(engine, Engine) or engine.dialect.name != "sqlite":
        with session.begin():
            yield session
        return
    with _sqlite_write_lock(engine), session.begin():
        dbapi_conn: Any = session.connection().connection.dbapi_connection
        if not dbapi_conn.in_transaction:
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        yield session


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 0x76326D33  # any constant: one advisory lock for every process


def create_tables(engine: Engine) -> None:
    """Tables straight from the models: for throw-away test databases only."""
    SQLModel.metadata.create_all(engine)


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock file beside a SQLite database file, held across processes."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration. Safe to call from many processes at once
    (the API's uvicorn workers and the worker all start with it): on PostgreSQL they
    queue on an advisory lock, on SQLite on a lock file beside the database, and the
    ones that come after find the schema at head and do nothing."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _sqlite_file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
