"""Renewing a lease on a background thread while a block of work runs."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from worker.context import JobContext

log = structlog.get_logger("worker")


@contextmanager
def renewing(ctx: JobContext, name: str, beat: Callable[[Session], object]) -> Iterator[None]:
    """Call ``beat(session)`` every heartbeat interval while the block runs."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(ctx.settings.heartbeat_interval_s):
            try:
                with Session(ctx.engine) as session:
                    beat(session)
            except SQLAlchemyError:
                log.warning("heartbeat_failed")

    thread = threading.Thread(  # in a copy of this context: its logs carry the job's ids
        target=contextvars.copy_context().run, args=(loop,), daemon=True, name=name
    )
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)
