"""The reaper: stale leases put back, orphaned jobs published, unused uploads removed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared import job_transitions, jobs
from shared.errors import QueueError, StorageError
from shared.models import Job, JobStatus, Upload, as_utc
from shared.queue import Publisher, delivery_limit
from shared.storage import Storage
from tests.fakes import FakePublisher, FakeStorage
from tests.unit.conftest import add_upload, make_settings
from worker.reaper import Reaper


def ago(**delta: float) -> datetime:
    """A moment before now, taken when the test runs (not when the module is imported)."""
    return datetime.now(UTC) - timedelta(**delta)


def make_reaper(engine: Engine, storage: FakeStorage, publisher: FakePublisher) -> Reaper:
    settings = make_settings(job_lease_s=60, unpublished_after_s=60, unclaimed_after_s=600)
    return Reaper(settings, engine, cast(Storage, storage), cast(Publisher, publisher))


def add_job(engine: Engine, upload_id: str, **values: object) -> Job:
    with Session(engine, expire_on_commit=False) as session:
        upload = add_upload(
            session=session,
            upload_id=upload_id,
            owner_id="owner-1",
            key=f"uploads/{upload_id}/a.mp4",
            filename="a.mp4",
            content_type="video/mp4",
            size_bytes=10,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
        job = jobs.insert_job(
            session=session, upload=upload, options={}, idempotency_key=None, request_hash=None
        )
        if values:
            session.execute(update(Job).where(Job.id == job.id).values(**values))  # type: ignore[arg-type]
            session.commit()
        return job


def read(engine: Engine, job_id: str) -> Job:
    with Session(engine) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_processing_job_with_a_lapsed_lease_is_put_back_with_a_new_token(
    engine: Engine, storage: FakeStorage, publisher: FakePublisher
) -> None:
    stale = add_job(
        engine,
        "u1",
        status=JobStatus.processing,
        updated_at=ago(hours=2),
        published_at=ago(hours=2),
    )
    fresh = add_job(engine, "u2", status=JobStatus.processing, published_at=ago(hours=2))

    counts = make_reaper(engine, storage, publisher).run_once()

    assert counts["stale"] == 1
    after = read(engine, stale.id)
    assert after.status == JobStatus.queued and after.dispatch_token != stale.dispatch_token
    assert after.published_at is not None
    assert [(m.job_id, m.token) for m in publisher.messages] == [(stale.id, after.dispatch_token)]
    assert read(engine, fresh.id).status == JobStatus.processing  # its lease is still valid


def test_queued_job_never_published_is_published(
    engine: Engine, storage: FakeStorage, publisher: FakePublisher
) -> None:
    orphan = add_job(engine, "u1", updated_at=ago(hours=2))  # published_at stays NULL
    published = add_job(engine, "u2", updated_at=ago(minutes=1), published_at=ago(minutes=1))
    just_created = add_job(engine, "u3")

    counts = make_reaper(engine, storage, publisher).run_once()

    assert counts["unpublished"] == 1
    assert publisher.job_ids == [orphan.id]
    assert read(engine, orphan.id).published_at is not None
    assert read(engine, published.id).dispatch_token == published.dispatch_token
    assert read(engine, just_created.id).published_at is None  # too young to call orphaned


def test_queued_job_whose_message_was_lost_is_published_again_under_its_token(
    engine: Engine, storage: FakeStorage, publisher: FakePublisher
) -> None:
    # Given a job published two hours ago and never claimed (its message dead-lettered
    # while the database was down), one waiting a minute, one back in the queue for a retry
    lost = add_job(engine, "u1", updated_at=ago(hours=2), published_at=ago(hours=2))
    waiting = add_job(engine, "u2", updated_at=ago(minutes=1), published_at=ago(minutes=1))
    retrying = add_job(
        engine, "u3", updated_at=ago(minutes=1), published_at=ago(hours=2), attempts=1
    )
    reaper = make_reaper(engine, storage, publisher)

    counts = reaper.run_once()

    # Then only the lost one is sent again, under its own token: should its first message
    # still be in the queue after all, the copy that arrives second is a duplicate
    assert counts["unclaimed"] == 1
    assert [(m.job_id, m.token) for m in publisher.messages] == [(lost.id, lost.dispatch_token)]
    after = read(engine, lost.id)
    assert after.status == JobStatus.queued and after.dispatch_token == lost.dispatch_token
    published_at = as_utc(after.published_at)
    assert published_at is not None and published_at > ago(minutes=1)
    for job in (waiting, retrying):
        assert as_utc(read(engine, job.id).published_at) == as_utc(job.published_at)
    # And the next pass leaves it alone: it was just published
    assert reaper.run_once()["unclaimed"] == 0
    assert len(publisher.messages) == 1


def test_job_that_kills_every_worker_ends_failed_with_worker_crashed(
    engine: Engine, storage: FakeStorage, publisher: FakePublisher
) -> None:
    # Given a job whose every run dies with its worker: each delivery starts an attempt,
    # then the lease lapses
    job = add_job(engine, "u1", published_at=ago(hours=2))
    reaper = make_reaper(engine, storage, publisher)
    limit = delivery_limit(reaper.settings)
    for _ in range(3 * limit):  # far more passes than it may take
        current = read(engine, job.id)
        if current.status == JobStatus.failed:
            break
        with Session(engine) as session:
            assert job_transitions.start_attempt(
                session=session, job_id=job.id, token=current.dispatch_token
            )
            session.execute(update(Job).where(Job.id == job.id).values(updated_at=ago(hours=2)))  # type: ignore[arg-type]
            session.commit()
        # When the reaper finds its lease lapsed
        reaper.run_once()

    # Then it is put back until it has been started as often as the queue delivers a
    # message, and then fails for good instead of looping
    final = read(engine, job.id)
    assert (final.status, final.error_code) == (JobStatus.failed, "worker_crashed")
    assert final.attempts == limit
    assert len(publisher.messages) == limit - 1
    assert final.finished_at is not None


def test_failed_publish_leaves_the_job_for_the_next_pass(
    engine: Engine, storage: FakeStorage, publisher: FakePublisher
) -> None:
    orphan = add_job(engine, "u1", updated_at=ago(hours=2))
    publisher.fail = True
    reaper = make_reaper(engine, storage, publisher)
    with pytest.raises(QueueError):
        reaper.run_once()
    assert read(engine, orphan.id).published_at is None
    publisher.fail = False
    with Session(engine) as session:
        session.execute(update(Job).where(Job.id == orphan.id).values(updated_at=ago(hours=2)))  # type: ignore[arg-type]
        session.commit()
    reaper.run_once()
    assert publisher.job_ids == [orphan.id]


def test_expired_unused_uploads_are_deleted_but_used_ones_kept(
    engine: Engine, storage: FakeStorage, publisher: FakePublisher
) -> None:
    used = add_job(engine, "used")
    with Session(engine) as session:
        add_upload(
            session=session,
            upload_id="idle",
            owner_id="owner-1",
            key="uploads/idle/a.mp4",
            filename="a.mp4",
            content_type="video/mp4",
            size_bytes=3,
            expires_at=ago(hours=2),
        )
        session.execute(update(Upload).where(Upload.id == "used").values(expires_at=ago(hours=2)))  # type: ignore[arg-type]
        session.commit()
    storage.put("uploads/idle/a.mp4", b"abc")
    storage.put("uploads/used/a.mp4", b"0123456789")

    counts = make_reaper(engine, storage, publisher).run_once()

    assert counts["uploads_removed"] == 1
    assert "uploads/idle/a.mp4" not in storage.objects
    assert "uploads/used/a.mp4" in storage.objects
    with Session(engine) as session:
        assert session.get(Upload, "idle") is None
        assert session.get(Upload, used.upload_id) is not None


def test_message_with_an_old_token_is_acked_without_running(
    engine: Engine, storage: FakeStorage, publisher: FakePublisher
) -> None:
    from shared.queue import JobMessage
    from worker.context import JobContext
    from worker.handlers import handle
    from worker.outcome import Action

    job = add_job(
        engine,
        "u1",
        status=JobStatus.processing,
        updated_at=ago(hours=2),
        published_at=ago(hours=2),
    )
    make_reaper(engine, storage, publisher).run_once()
    ctx = JobContext(settings=make_settings(), engine=engine, storage=cast(Storage, storage))

    outcome = handle(JobMessage(job_id=job.id, token=job.dispatch_token), ctx)

    assert outcome.action is Action.ACK
    after = read(engine, job.id)
    assert after.status == JobStatus.queued and after.attempts == 0


def test_abandoned_multipart_uploads_are_aborted_with_or_without_a_row(
    engine: Engine, storage: FakeStorage, publisher: FakePublisher
) -> None:
    # Given an expired multipart upload with a row, one without (orphaned), one recent
    recorded = storage.create_multipart("uploads/o/rec/a.mp4", content_type="video/mp4")
    orphan = storage.create_multipart("uploads/o/orphan/a.mp4", content_type="video/mp4")
    recent = storage.create_multipart("uploads/o/recent/a.mp4", content_type="video/mp4")
    for upload_id in (recorded, orphan):
        storage.multipart[upload_id].initiated = ago(days=2)
    with Session(engine) as session:
        upload = add_upload(
            session=session,
            upload_id="rec",
            owner_id="owner-1",
            key="uploads/o/rec/a.mp4",
            filename="a.mp4",
            content_type="video/mp4",
            size_bytes=3,
            expires_at=ago(hours=1),
        )
        upload.multipart_id = recorded
        session.add(upload)
        session.commit()

    # When the reaper runs
    counts = make_reaper(engine, storage, publisher).run_once()

    # Then both old ones are aborted, the recent one is left, and the row is gone
    assert set(storage.multipart) == {recent}
    assert counts["uploads_removed"] == 1
    with Session(engine) as session:
        assert session.get(Upload, "rec") is None


def test_a_server_without_the_multipart_listing_leaves_the_other_steps_running(
    engine: Engine, storage: FakeStorage, publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(prefix: str) -> list[object]:
        raise StorageError("Object storage refused a request.")

    monkeypatch.setattr(storage, "multipart_uploads", refuse)
    with Session(engine) as session:
        add_upload(
            session=session,
            upload_id="idle",
            owner_id="owner-1",
            key="uploads/idle/a.mp4",
            filename="a.mp4",
            content_type="video/mp4",
            size_bytes=3,
            expires_at=ago(hours=2),
        )

    counts = make_reaper(engine, storage, publisher).run_once()

    assert counts["multipart_aborted"] == 0 and counts["uploads_removed"] == 1
