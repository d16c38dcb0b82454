"""`python -m bench.writer_contention`: what a batch of upload rows costs the upload
writer's thread alone, and beside a busy thread of the same process.

The API's event loop and the upload writer's thread share one interpreter lock. Every
call into SQLite lets the lock go, and the writer then waits for it until the loop
releases it (at its next system call, or after the switch interval). This prints the
wall and CPU time of one batch in three settings: an idle process; beside a thread that
runs Python and makes a system call every ~10 µs, as an event loop does; and beside one
that only runs Python.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session

from api.upload_writer import UploadWriter, _Request
from shared import users
from shared.config import Settings
from shared.db import make_engine, migrate
from shared.jobs import NewUpload
from shared.models import new_id, utcnow
from shared.users import AuthUser

BATCH = 5
BATCHES = 300


def _busy(stop: threading.Event, syscalls: bool) -> None:
    fd = os.open(os.devnull, os.O_WRONLY)
    n = 0
    while not stop.is_set():
        for _ in range(200):  # about 10 µs of Python
            n += 1
        if syscalls:
            os.write(fd, b"x")
    os.close(fd)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="v2m-writer-"))
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'bench.db'}",
        uploads_per_minute=10**9,
        bytes_per_day=10**18,
    )
    engine = make_engine(settings)
    migrate(engine)
    with Session(engine, expire_on_commit=False) as session:
        user = AuthUser.of(users.create_user(session=session, email="bench@example.com"))
    writer = UploadWriter(settings)
    loop = asyncio.new_event_loop()

    def batch() -> list[_Request]:
        expires = utcnow() + timedelta(hours=1)
        return [
            _Request(
                NewUpload(new_id(), user.id, "uploads/k/a.mp4", "a.mp4", "video/mp4", 1, expires),
                user,
                engine,
                loop.create_future(),
            )
            for _ in range(BATCH)
        ]

    print(f"upload writer, batches of {BATCH} rows, SQLite (WAL), mean of {BATCHES}:")
    for name, busy in (
        ("alone", None),
        ("beside a loop-like thread (a system call every ~10 µs)", True),
        ("beside a thread that only runs Python", False),
    ):
        batches = [batch() for _ in range(BATCHES)]
        stop = threading.Event()
        other = threading.Thread(target=_busy, args=(stop, busy)) if busy is not None else None
        if other:
            other.start()
        wall = cpu = 0.0
        for requests in batches:
            started, cpu_started = time.perf_counter(), time.thread_time()
            writer._write_batch(engine, requests)
            wall += time.perf_counter() - started
            cpu += time.thread_time() - cpu_started
        stop.set()
        if other:
            other.join()
        print(
            f"  {name}: wall {wall / BATCHES * 1e6:.0f} µs, "
            f"writer CPU {cpu / BATCHES * 1e6:.0f} µs per batch"
        )
    engine.dispose()
    loop.close()
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
