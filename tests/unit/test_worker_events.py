"""The worker publishes a job event once, after the job's outcome is stored."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from sqlalchemy.engine import Engine

from shared.errors import MediaError, StorageError
from shared.events import event_id
from shared.models import JobStatus
from shared.queue import Publisher
from shared.storage import Storage
from tests.fakes import FakePublisher, FakeStorage
from tests.unit.conftest import make_settings
from tests.unit.test_handlers import (
    deliver,
    input_stored,  # noqa: F401 (a fixture)
    load,
    make_job,
    raising,
    succeeding,
    use_convert,
)
from worker.context import JobContext
from worker.outcome import Action


@pytest.fixture
def events() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def ctx(tmp_path: Path, engine: Engine, storage: FakeStorage, events: FakePublisher) -> JobContext:
    return JobContext(
        settings=make_settings(max_attempts=2, tmp_dir=str(tmp_path)),
        engine=engine,
        storage=cast(Storage, storage),
        events=cast(Publisher, events),
    )


def test_completed_job_publishes_job_completed_with_a_stable_id(
    ctx: JobContext, engine: Engine, events: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    use_convert(monkeypatch, succeeding)

    deliver(job_id, ctx)

    job = load(engine, job_id)
    assert job.status == JobStatus.completed
    assert [(e.type, e.job_id) for e in events.events] == [("job.completed", job_id)]
    assert events.events[0].id == event_id(job_id, job.dispatch_token, "job.completed")


def test_permanently_failed_job_publishes_job_failed(
    ctx: JobContext, engine: Engine, events: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    use_convert(monkeypatch, raising(MediaError("No audio.", code="no_audio_stream")))

    deliver(job_id, ctx)

    assert [(e.type, e.job_id) for e in events.events] == [("job.failed", job_id)]


@pytest.mark.usefixtures("input_stored")
def test_retry_publishes_nothing_until_the_last_attempt_fails(
    ctx: JobContext, engine: Engine, events: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    use_convert(monkeypatch, raising(StorageError("Storage is down.")))

    assert deliver(job_id, ctx, attempt=1).action is Action.RETRY
    assert events.events == []
    assert deliver(job_id, ctx, attempt=2).action is Action.DEAD_LETTER
    assert [e.type for e in events.events] == ["job.failed"]


def test_redelivered_finished_job_publishes_no_second_event(
    ctx: JobContext, engine: Engine, events: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    use_convert(monkeypatch, succeeding)
    deliver(job_id, ctx)

    deliver(job_id, ctx)

    assert len(events.events) == 1


def test_broker_down_when_publishing_still_settles_the_message(
    ctx: JobContext, engine: Engine, events: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    use_convert(monkeypatch, succeeding)
    events.fail = True

    assert deliver(job_id, ctx).action is Action.ACK
    assert load(engine, job_id).status == JobStatus.completed
