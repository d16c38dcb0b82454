"""shared.segments on SQLite and PostgreSQL: the last segment is seen as last exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared import job_transitions, segments
from shared.db import make_engine, migrate
from shared.models import User
from tests.unit.conftest import make_settings
from tests.unit.test_job_states import new_job

pytestmark = pytest.mark.integration

SEGMENTS = 8


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'segments.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(make_settings(database_url=url))
    migrate(engine)
    yield engine
    engine.dispose()


def processing_job(engine: Engine) -> tuple[str, str]:
    with Session(engine, expire_on_commit=False) as session:
        session.add(User(id="owner-1", email="owner@example.com"))
        session.commit()
        job_id = new_job(session)
        started = job_transitions.start_attempt(session=session, job_id=job_id)
        assert started is not None
        return job_id, started.dispatch_token


def test_segments_finished_at_once_name_exactly_one_joiner(engine: Engine) -> None:
    # Given a job split into eight segments, each claimed by a worker of its own
    job_id, token = processing_job(engine)
    ranges = [segments.Range(i * 1152, (i + 1) * 1152) for i in range(SEGMENTS)]
    with Session(engine) as session:
        assert segments.create(
            session=session, job_id=job_id, token=token, ranges=ranges, sample_rate=44100
        )
    cutoff = datetime.now(UTC) - timedelta(minutes=1)
    for index in range(SEGMENTS):
        with Session(engine) as session:
            claimed = segments.start(
                session=session, job_id=job_id, index=index, token=token, lease_cutoff=cutoff
            )
            assert claimed is not None
    # When all eight finish at the same moment, and one finishes twice
    barrier = threading.Barrier(SEGMENTS + 1)
    counts: list[tuple[int, int] | None] = []
    lock = threading.Lock()

    def finish(index: int) -> None:
        result = segments.Result(f"parts/{index}", 0, [-20.0], 0.5)
        barrier.wait()
        with Session(engine) as session:
            got = segments.finish(
                session=session, job_id=job_id, index=index, token=token, result=result
            )
        with lock:
            counts.append(got)

    threads = [threading.Thread(target=finish, args=(i % SEGMENTS,)) for i in range(SEGMENTS + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Then each finish counted once, and exactly one saw the last
    done = sorted(c[0] for c in counts if c is not None)
    assert done == list(range(1, SEGMENTS + 1))
    assert counts.count(None) == 1
    assert [c for c in counts if c == (SEGMENTS, SEGMENTS)] == [(SEGMENTS, SEGMENTS)]
    with Session(engine) as session:
        rows = segments.all_of(session=session, job_id=job_id)
    assert {row.state for row in rows} == {segments.SegmentState.done}
