"""shared.job_transitions: a late or duplicate worker never moves a finished job."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared import job_transitions, jobs, listing, uploads
from shared.errors import ConflictError, NotFoundError
from shared.models import Job, JobStatus
from tests.unit.conftest import add_upload


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def new_job(session: Session, upload_id: str = "u1") -> str:
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
    return job.id


def read(engine: Engine, job_id: str) -> Job:
    with Session(engine) as fresh:
        job = fresh.get(Job, job_id)
        assert job is not None
        fresh.expunge(job)
        return job


def complete(session: Session, job_id: str) -> bool:
    return job_transitions.complete(
        session=session,
        job_id=job_id,
        output_key=f"outputs/{job_id}.mp3",
        size_bytes=100,
        duration_s=1.0,
        bitrate_kbps=128,
    )


def finished(session: Session, how: str) -> str:
    job_id = new_job(session, upload_id=f"u-{how}")
    job_transitions.start_attempt(session=session, job_id=job_id)
    if how == "completed":
        assert complete(session, job_id)
    else:
        assert job_transitions.fail(
            session=session, job_id=job_id, code="unsupported_media", message="Bad."
        )
    return job_id


def test_start_attempt_marks_processing_and_counts(session: Session, engine: Engine) -> None:
    job_id = new_job(session)

    first = job_transitions.start_attempt(session=session, job_id=job_id)
    job_transitions.requeue_for_retry(
        session=session, job_id=job_id, code="storage_unavailable", message="x"
    )
    second = job_transitions.start_attempt(session=session, job_id=job_id)

    assert first is not None and second is not None
    job = read(engine, job_id)
    assert job.status == JobStatus.processing
    assert job.attempts == 2
    assert job.started_at is not None
    assert job.error_code is None  # cleared for the new attempt


@pytest.mark.parametrize("how", ["completed", "failed"])
def test_start_attempt_returns_none_for_a_finished_job(
    session: Session, engine: Engine, how: str
) -> None:
    job_id = finished(session, how)
    before = read(engine, job_id)

    assert job_transitions.start_attempt(session=session, job_id=job_id) is None

    after = read(engine, job_id)
    assert (after.status, after.attempts, after.progress) == (
        before.status,
        before.attempts,
        before.progress,
    )


def test_start_attempt_of_unknown_job_is_none(session: Session) -> None:
    assert job_transitions.start_attempt(session=session, job_id="nope") is None


@pytest.mark.parametrize("how", ["completed", "failed"])
def test_complete_never_moves_a_finished_job(session: Session, engine: Engine, how: str) -> None:
    job_id = finished(session, how)
    before = read(engine, job_id)

    moved = job_transitions.complete(
        session=session,
        job_id=job_id,
        output_key="outputs/other.mp3",
        size_bytes=1,
        duration_s=0.1,
        bitrate_kbps=None,
    )

    assert moved is False
    after = read(engine, job_id)
    assert (after.status, after.output_key, after.finished_at) == (
        before.status,
        before.output_key,
        before.finished_at,
    )


@pytest.mark.parametrize("how", ["completed", "failed"])
def test_fail_never_moves_a_finished_job(session: Session, engine: Engine, how: str) -> None:
    job_id = finished(session, how)
    before = read(engine, job_id)

    moved = job_transitions.fail(
        session=session, job_id=job_id, code="retries_exhausted", message="Late."
    )

    assert moved is False
    after = read(engine, job_id)
    assert (after.status, after.error_code) == (before.status, before.error_code)


def test_complete_and_fail_move_an_active_job(session: Session, engine: Engine) -> None:
    done, broken = new_job(session, "u-a"), new_job(session, "u-b")
    job_transitions.start_attempt(session=session, job_id=done)

    assert complete(session, done) is True
    assert job_transitions.fail(
        session=session, job_id=broken, code="unsupported_media", message="Bad."
    )
    assert read(engine, done).status == JobStatus.completed
    assert read(engine, done).progress == 100
    assert read(engine, broken).status == JobStatus.failed


def test_fail_keeps_messages_within_the_column(session: Session, engine: Engine) -> None:
    job_id = new_job(session)

    job_transitions.fail(session=session, job_id=job_id, code="x", message="m" * 5000)

    message = read(engine, job_id).error_message
    assert message is not None and len(message) == 1024


@pytest.mark.parametrize(
    ("given", "stored"), [(-5, 0), (0, 0), (42, 42), (99, 99), (100, 99), (250, 99)]
)
def test_set_progress_is_clamped_to_0_99(
    session: Session, engine: Engine, given: int, stored: int
) -> None:
    job_id = new_job(session)
    job_transitions.start_attempt(session=session, job_id=job_id)

    job_transitions.set_progress(session=session, job_id=job_id, progress=given)

    assert read(engine, job_id).progress == stored


def test_set_progress_is_ignored_unless_processing(session: Session, engine: Engine) -> None:
    queued = new_job(session, "u-q")
    done = finished(session, "completed")

    job_transitions.set_progress(session=session, job_id=queued, progress=50)
    job_transitions.set_progress(session=session, job_id=done, progress=50)

    assert read(engine, queued).progress == 0
    assert read(engine, done).progress == 100


def test_requeue_only_moves_a_processing_job(session: Session, engine: Engine) -> None:
    done = finished(session, "completed")

    job_transitions.requeue_for_retry(session=session, job_id=done, code="x", message="Late retry.")

    assert read(engine, done).status == JobStatus.completed


def test_second_job_for_an_upload_is_a_conflict(session: Session) -> None:
    new_job(session, "u1")
    upload = uploads.get_upload(session=session, upload_id="u1")

    with pytest.raises(ConflictError) as error:
        jobs.insert_job(
            session=session, upload=upload, options={}, idempotency_key=None, request_hash=None
        )

    assert error.value.code == "upload_already_used"


def test_missing_rows_raise_not_found_with_their_codes(session: Session) -> None:
    with pytest.raises(NotFoundError) as job_error:
        jobs.get_job(session=session, job_id="nope")
    with pytest.raises(NotFoundError) as upload_error:
        uploads.get_upload(session=session, upload_id="nope")

    assert (job_error.value.code, upload_error.value.code) == ("job_not_found", "upload_not_found")


def test_cursor_round_trips(session: Session) -> None:
    job = jobs.get_job(session=session, job_id=new_job(session))

    created, job_id = listing.decode_cursor(listing.encode_cursor(job))

    assert job_id == job.id
    assert created.tzinfo is not None
