"""Upload rows are written by group commit: one transaction for the uploads that arrive
while the previous one commits.

Each upload checks its owner's limits and is recorded in the same write transaction, so
the check holds across API processes (SQLite: BEGIN IMMEDIATE; PostgreSQL: the owners'
account rows are locked). A request awaits its own outcome, which is known only after
the commit: a 201 always means the row is in the database.

Batching is what keeps this cheap under load: the transaction, the usage query and the
tally update are paid once per owner per batch instead of once per request, and the
writes of one process never wait for each other in SQLite's busy handler. With one
request at a time it is one transaction per request, as before.

The writes run on a thread of the writer's own, started with the first upload and ended
after a second with nothing to write. The event loop appends to its queue and wakes it
only when it is idle; the thread settles a batch's futures with one call into their
loop. A hop through the shared threadpool per batch cost the loop several times that.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy.engine import Connection, Engine

from api import ratelimit
from shared import jobs
from shared.config import Settings
from shared.db import write_transaction
from shared.errors import RateLimitError
from shared.jobs import NewUpload, UploadUsage
from shared.models import utcnow
from shared.users import AuthUser

log = structlog.get_logger("api.uploads")

PRUNE_EVERY_S = 30.0
IDLE_EXIT_S = 1.0  # the thread ends after this long with nothing to write


@dataclass
class _Request:
    upload: NewUpload
    user: AuthUser
    engine: Engine
    future: asyncio.Future[None]


@dataclass
class UploadWriter:
    settings: Settings
    max_batch: int = 256
    _pending: list[_Request] = field(default_factory=list)
    _ready: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None
    _pruned: dict[str, float] = field(default_factory=dict)

    async def record(self, *, engine: Engine, upload: NewUpload, user: AuthUser) -> None:
        """Check the owner's limits and insert the upload; RateLimitError if refused."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # The lock is only ever held to move requests between lists: never across I/O.
        with self._ready:
            self._pending.append(_Request(upload, user, engine, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="upload-writer", daemon=True)
                self._thread.start()
            else:
                self._ready.notify()  # a no-op unless the thread waits for work
        await future

    def _run(self) -> None:
        try:
            while batch := self._next_batch():
                _settle(self._write_all(batch))
        finally:
            with self._ready:  # also when something unforeseen ended the thread
                if self._thread is threading.current_thread():
                    self._thread = None

    def _next_batch(self) -> list[_Request]:
        """The requests waiting, at most max_batch; none once idle for IDLE_EXIT_S."""
        with self._ready:
            if not self._pending:
                self._ready.wait(IDLE_EXIT_S)
            if not self._pending:
                self._thread = None  # under the lock: the next record() starts another
                return []
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            return batch

    def _write_all(self, batch: list[_Request]) -> list[tuple[_Request, Exception | None]]:
        by_engine: dict[Engine, list[_Request]] = {}
        for request in batch:
            by_engine.setdefault(request.engine, []).append(request)
        settled: list[tuple[_Request, Exception | None]] = []
        for engine, requests in by_engine.items():
            try:
                outcomes = self._write_batch(engine, requests)
            except Exception as exc:  # the database failed the whole batch
                outcomes = [exc] * len(requests)
            settled += zip(requests, outcomes, strict=True)
        return settled

    def _write_batch(self, engine: Engine, batch: list[_Request]) -> list[Exception | None]:
        try:
            return self._write(engine, batch)
        except Exception:
            if len(batch) == 1:
                raise
        # One bad upload must not fail the others: write each alone.
        log.warning("upload_batch_failed", size=len(batch), exc_info=True)
        outcomes: list[Exception | None] = []
        for request in batch:
            try:
                outcomes += self._write(engine, [request])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _write(self, engine: Engine, batch: list[_Request]) -> list[Exception | None]:
        owners = {r.user.id for r in batch}
        outcomes: list[Exception | None] = []
        accepted: list[NewUpload] = []
        with write_transaction(engine) as conn:
            jobs.lock_owners(conn=conn, owner_ids=owners)
            now = utcnow()
            usage: dict[str, UploadUsage] = {
                owner: jobs.upload_usage(conn=conn, owner_id=owner, now=now) for owner in owners
            }
            for request in batch:
                owner, size = request.user.id, request.upload.size_bytes
                try:
                    ratelimit.check_upload(
                        usage=usage[owner],
                        user=request.user,
                        settings=self.settings,
                        size_bytes=size,
                        now=now,
                    )
                except RateLimitError as exc:
                    outcomes.append(exc)
                    continue
                usage[owner] = usage[owner].plus(size, now)
                accepted.append(request.upload)
                outcomes.append(None)
            jobs.record_uploads(conn=conn, uploads=accepted, now=now)
            self._prune(conn, owners, now)
        return outcomes

    def _prune(self, conn: Connection, owners: set[str], now: datetime) -> None:
        """Now and then, drop tally buckets no window reaches any more."""
        now_s = now.timestamp()
        if len(self._pruned) > 10_000:
            self._pruned.clear()
        for owner in owners:
            if now_s - self._pruned.get(owner, 0.0) >= PRUNE_EVERY_S:
                jobs.prune_tally(conn=conn, owner_id=owner, now=now)
                self._pruned[owner] = now_s


def _settle(settled: list[tuple[_Request, Exception | None]]) -> None:
    """Hand each outcome to its request's loop (one call per loop, from the thread)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Request, Exception | None]]] = {}
    for request, outcome in settled:
        by_loop.setdefault(request.future.get_loop(), []).append((request, outcome))
    for loop, outcomes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(_set_outcomes, outcomes)


def _set_outcomes(settled: list[tuple[_Request, Exception | None]]) -> None:
    for request, outcome in settled:
        if request.future.done():  # the request was cancelled
            continue
        if outcome is None:
            request.future.set_result(None)
        else:
            request.future.set_exception(outcome)
