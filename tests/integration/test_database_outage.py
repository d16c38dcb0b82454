"""The database with the real parts: an outage that outlasts the queue's delivery limit,
two copies of one message, and dead letters of jobs that have not finished."""

from __future__ import annotations

import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pika
import pytest
from sqlalchemy import update
from sqlmodel import Session, col, create_engine

from shared.db import migrate
from shared.models import Job, JobStatus, Upload, User
from shared.queue import JobMessage, delivery_limit
from shared.storage import Storage
from tests.integration.conftest import Stack, StackFactory, wait_for
from tests.integration.postgres import DedicatedPostgres
from tests.unit.conftest import make_settings
from worker.context import JobContext
from worker.handlers import claim
from worker.outcome import Action, Outcome

pytestmark = pytest.mark.integration


@pytest.fixture
def own_postgres() -> Iterator[DedicatedPostgres]:
    # Not under pytest's basetemp, which is private to root: the cluster runs as postgres.
    with tempfile.TemporaryDirectory(prefix="v2m-postgres-") as workdir:
        cluster = DedicatedPostgres(Path(workdir))
        cluster.init()
        try:
            yield cluster
        finally:
            try:
                cluster.stop()
            except Exception:
                pass


def test_queued_job_completes_after_a_database_outage_longer_than_the_delivery_limit(
    make_stack: StackFactory, sample: Callable[[str], Path], own_postgres: DedicatedPostgres
) -> None:
    # Given a worker that holds a delivered, unclaimed job's message (frozen before it
    # could claim it), on a database of the test's own
    stack = make_stack(workers=1, database_url=own_postgres.url, max_attempts="3")
    worker = stack.procs[-1]
    upload_id = stack.upload(sample("mp3_audio"), "song.mp3", "audio/mpeg")
    worker.popen.send_signal(signal.SIGSTOP)
    try:
        job = stack.create_job(upload_id)
        # When the database stops, and stays down for longer than the give-backs the
        # queue's delivery limit allows (give-backs a second apart would spend it in seconds)
        own_postgres.stop()
    finally:
        worker.popen.send_signal(signal.SIGCONT)
    limit = delivery_limit(make_settings(max_attempts=3))
    wait_for(
        lambda: bool(worker.events("database_unavailable")), 30, "the claim to meet the outage"
    )
    threading.Event().wait(4 * (limit + 1))
    own_postgres.start()

    # Then the job completes once the database is back, and nothing was dead-lettered
    final = stack.wait_finished(job["id"], timeout=120)
    assert final["status"] == "completed", final
    assert stack.queue_counts(f"{stack.queue}.dlq")[0] == 0
    assert stack.output_keys() == [stack.output_key(job["id"])]


def add_job(session: Session, suffix: str) -> Job:
    user = session.get(User, "owner-1") or User(id="owner-1", email="owner@example.com")
    upload = Upload(
        id=f"upload-{suffix}",
        owner_id=user.id,
        key=f"uploads/{suffix}/a.mp4",
        filename="a.mp4",
        content_type="video/mp4",
        size_bytes=10,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    job = Job(
        owner_id=user.id,
        upload_id=upload.id,
        input_key=upload.key,
        input_filename=upload.filename,
        input_size_bytes=upload.size_bytes,
    )
    for row in (user, upload, job):  # in foreign-key order
        session.add(row)
        session.flush()
    session.commit()
    return job


def test_two_copies_of_one_message_never_run_the_job_at_once(postgres_url: str) -> None:
    # Given a queued job and two copies of its message (the publisher resent it after an
    # unclear failure), delivered to two workers at the same moment
    engine = create_engine(postgres_url)
    try:
        migrate(engine)
        with Session(engine, expire_on_commit=False) as session:
            job = add_job(session, "race")
        ctx = JobContext(
            settings=make_settings(database_url=postgres_url),
            engine=engine,
            storage=cast(Storage, None),
        )
        message = JobMessage(job_id=job.id, token=job.dispatch_token)
        start = threading.Barrier(8)
        results: list[Job | Outcome] = []

        def deliver() -> None:
            start.wait()
            results.append(claim(message, ctx))

        threads = [threading.Thread(target=deliver) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        # Then exactly one claims it; the other copies are acked as duplicates
        claimed = [r for r in results if isinstance(r, Job)]
        assert len(results) == 8 and len(claimed) == 1
        assert [r for r in results if not isinstance(r, Job)] == [Outcome(Action.ACK)] * 7
        with Session(engine) as session:
            row = session.get(Job, job.id)
            assert row is not None and (row.status, row.attempts) == (JobStatus.processing, 1)
    finally:
        engine.dispose()


def test_replay_sends_dead_letters_of_queued_jobs_again_and_keeps_those_still_running(
    make_stack: StackFactory, sample: Callable[[str], Path]
) -> None:
    # Given two jobs whose messages were dead-lettered: one still queued (its claims met a
    # database outage), one running again (the reaper put it back and a worker took it)
    stack = make_stack(workers=0)
    waiting = stack.create_job(stack.upload(sample("mp3_audio"), "a.mp3", "audio/mpeg"))
    running = stack.create_job(stack.upload(sample("mp3_audio"), "b.mp3", "audio/mpeg"))
    engine = create_engine(stack.env["V2M_DATABASE_URL"])
    try:
        with Session(engine) as session:
            session.execute(
                update(Job).where(col(Job.id) == running["id"]).values(status=JobStatus.processing)
            )
            session.commit()
            tokens = {
                j.id: j.dispatch_token
                for j in (session.get(Job, waiting["id"]), session.get(Job, running["id"]))
                if j
            }
        move_to_dead_letters(stack)

        # When an operator replays every dead letter
        out = stack.run_module("worker.dlq", "replay", "--all")

        # Then the queued job is sent again (new token), the running one's letter stays
        assert f"replayed {waiting['id']}" in out
        assert f"left {running['id']}" in out
        with Session(engine) as session:
            after = session.get(Job, waiting["id"])
            assert after is not None and after.dispatch_token != tokens[waiting["id"]]
            assert after.status == JobStatus.queued and after.published_at is not None
        assert stack.queue_counts(f"{stack.queue}.dlq")[0] == 1
        assert queued_tokens(stack) == {waiting["id"]: after.dispatch_token}
    finally:
        engine.dispose()


def _channel(
    stack: Stack,
) -> tuple[pika.BlockingConnection, pika.adapters.blocking_connection.BlockingChannel]:
    conn = pika.BlockingConnection(pika.URLParameters(stack.env["V2M_AMQP_URL"]))
    return conn, conn.channel()


def move_to_dead_letters(stack: Stack) -> None:
    """Every message of the work queue moved to its dead-letter queue, as the delivery
    limit would."""
    conn, channel = _channel(stack)
    try:
        while True:
            method, _props, body = channel.basic_get(stack.queue, auto_ack=True)
            if method is None:
                return
            channel.basic_publish("", f"{stack.queue}.dlq", body)
    finally:
        conn.close()


def queued_tokens(stack: Stack) -> dict[str, str | None]:
    """job id → token of every message in the work queue (taken off it)."""
    conn, channel = _channel(stack)
    found: dict[str, str | None] = {}
    try:
        while True:
            method, _props, body = channel.basic_get(stack.queue, auto_ack=True)
            if method is None:
                return found
            message = JobMessage.decode(body)
            found[message.job_id] = message.token
    finally:
        conn.close()
