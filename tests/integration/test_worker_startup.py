"""Worker start-up: the schema is brought to head by a child process (python -m shared.migrate),
so Alembic never loads in the worker; a failed migration stops the worker with a clear log."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from shared.db import MIGRATIONS
from tests.integration.conftest import Stack, new_stack, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def bare_stack(
    tmp_path_factory: pytest.TempPathFactory, amqp_url: str, s3_endpoint: str
) -> Iterator[Stack]:
    """A stack whose API never starts: nothing else migrates its database."""
    stack = new_stack(tmp_path_factory, amqp_url, s3_endpoint)
    yield stack
    stack.close()


def test_worker_alone_brings_a_new_database_to_head(bare_stack: Stack) -> None:
    # Given an empty SQLite database and no API
    db_path = bare_stack.env["V2M_DATABASE_URL"].removeprefix("sqlite:///")
    # When a worker starts
    worker = bare_stack.start_worker()
    # Then it consumes, and the schema is at the newest migration
    assert worker.events("consuming")
    with sqlite3.connect(db_path) as db:
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert version == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert {"job", "upload"} <= tables


def test_worker_exits_when_the_migration_fails(bare_stack: Stack) -> None:
    # Given a database the migration cannot open
    proc = bare_stack._spawn(
        "worker-bad-db",
        [sys.executable, "-m", "worker"],
        {"V2M_DATABASE_URL": "sqlite:////nonexistent-dir/v2m/video2mp3.db"},
    )
    # When the worker starts, then it stops with status 1, says why, and never consumes
    wait_for(lambda: proc.popen.poll() is not None, 60, "the worker to exit")
    assert proc.popen.returncode == 1
    assert proc.events("migration_failed")
    assert not proc.events("consuming")


def test_processes_starting_together_migrate_a_new_sqlite_database_once(tmp_path: Path) -> None:
    # Given a new SQLite database and four processes starting at the same moment
    # (uvicorn --workers and workers do this on `make run`)
    db_path = tmp_path / "fresh.db"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("V2M_")},
        "V2M_DATABASE_URL": f"sqlite:///{db_path}",
        "V2M_S3_CREATE_BUCKET": "false",  # the schema alone: no S3 server here
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "shared.migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(4)
    ]
    # Then every one succeeds and the schema is at head
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    with sqlite3.connect(db_path) as db:
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == ScriptDirectory(str(MIGRATIONS)).get_current_head()
