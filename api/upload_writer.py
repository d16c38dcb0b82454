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
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy.engine import Connection, Engine
from starlette.concurrency import run_in_threadpool

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


@dataclass
class _Request:
    upload: NewUpload
    user: AuthUser
    future: asyncio.Future[None]


@dataclass
class UploadWriter:
    settings: Settings
    max_batch: int = 256
    _pending: list[_Request] = field(default_factory=list)
    _flusher: asyncio.Task[None] | None = None
    _pruned: dict[str, float] = field(default_factory=dict)

    async def record(self, *, engine: Engine, upload: NewUpload, user: AuthUser) -> None:
        """Check the owner's limits and insert the upload; RateLimitError if refused."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(upload, user, future))
        if self._flusher is None or self._flusher.done():
            # A task of its own, not this request's: a client that hangs up must not
            # strand the uploads queued behind it.
            self._flusher = asyncio.create_task(self._flush(engine))
        await future

    async def _flush(self, engine: Engine) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                outcomes = await run_in_threadpool(self._write_batch, engine, batch)
            except Exception as exc:  # the database failed the whole batch
                outcomes = [exc] * len(batch)
            for request, outcome in zip(batch, outcomes, strict=True):
                if request.future.done():  # the request was cancelled
                    continue
                if outcome is None:
                    request.future.set_result(None)
                else:
                    request.future.set_exception(outcome)

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
