"""Retention: expired or deleted MP3s answer 410 and say so, the reaper deletes MP3s past
their date and the inputs of finished jobs, a missing input fails its job for good."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast

from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from shared import job_transitions, retention
from shared.errors import GoneError, MediaError, StorageError
from shared.models import Job
from shared.storage import Storage
from tests.fakes import FakeStorage
from tests.unit.conftest import UploadFactory, make_settings
from tests.unit.test_api_jobs import finish, post_job
from worker.retention import missing_input, sweep

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

NOW = datetime.now(UTC)


def set_job(engine: Engine, job_id: str, **values: object) -> None:
    with Session(engine) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))  # type: ignore[arg-type]
        session.commit()


def read(engine: Engine, job_id: str) -> Job:
    with Session(engine) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def run_sweep(engine: Engine, storage: FakeStorage, now: datetime = NOW) -> dict[str, int]:
    with Session(engine) as session:
        return sweep(
            session=session, storage=cast(Storage, storage), settings=make_settings(), now=now
        )


# --------------------------------------------------------------------------- API


def test_download_of_an_output_past_its_date_is_410_output_expired_and_the_job_says_so(
    client: TestClient, uploaded: UploadFactory, engine: Engine, storage: FakeStorage
) -> None:
    # Given a completed job whose retention ended a minute ago (the MP3 not yet reaped)
    job_id = post_job(client, uploaded()).json()["id"]
    finish(engine, job_id, storage, expires_at=NOW - timedelta(minutes=1))

    # When the MP3 is asked for
    response = client.get(f"/v1/jobs/{job_id}/download", follow_redirects=False)

    # Then it is 410 output_expired, never a redirect, and the job reports it expired
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "output_expired"
    assert "7 days" in response.json()["error"]["message"]
    output = client.get(f"/v1/jobs/{job_id}").json()["output"]
    assert output["expired"] is True and output["size_bytes"] == 3000


def test_download_of_a_deleted_output_is_410_and_marks_the_job_expired(
    client: TestClient, uploaded: UploadFactory, engine: Engine, storage: FakeStorage
) -> None:
    job_id = post_job(client, uploaded()).json()["id"]
    finish(engine, job_id, storage)
    assert client.get(f"/v1/jobs/{job_id}").json()["output"]["expired"] is False

    storage.delete(f"outputs/{job_id}.mp3")  # gone before its date
    response = client.get(f"/v1/jobs/{job_id}/download", follow_redirects=False)

    assert response.status_code == 410
    assert response.json()["error"]["code"] == "output_expired"
    assert client.get(f"/v1/jobs/{job_id}").json()["output"]["expired"] is True
    assert read(engine, job_id).output_expired_at is not None


def test_expired_jobs_stay_listed(
    client: TestClient, uploaded: UploadFactory, engine: Engine, storage: FakeStorage
) -> None:
    job_id = post_job(client, uploaded()).json()["id"]
    finish(engine, job_id, storage, expires_at=NOW - timedelta(days=1))
    run_sweep(engine, storage)

    items = client.get("/v1/jobs").json()["items"]

    assert [(j["id"], j["status"], j["output"]["expired"]) for j in items] == [
        (job_id, "completed", True)
    ]


def test_openapi_says_how_long_a_download_lasts(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    download = spec["paths"]["/v1/jobs/{job_id}/download"]["get"]
    assert "V2M_OUTPUT_RETENTION_DAYS" in download["description"]
    assert "410" in download["responses"]
    output = spec["components"]["schemas"]["JobOutput"]["properties"]
    assert "7 days" in output["expires_at"]["description"]
    assert "output_expired" in output["expired"]["description"]


# --------------------------------------------------------------------------- reaper


def test_sweep_deletes_outputs_past_their_date_and_marks_them_keeping_the_rows(
    client: TestClient, uploaded: UploadFactory, engine: Engine, storage: FakeStorage
) -> None:
    old = post_job(client, uploaded()).json()["id"]
    fresh = post_job(client, uploaded()).json()["id"]
    finish(engine, old, storage, expires_at=NOW - timedelta(seconds=1))
    finish(engine, fresh, storage, expires_at=NOW + timedelta(days=1))

    counts = run_sweep(engine, storage)

    assert counts["outputs_expired"] == 1
    assert f"outputs/{old}.mp3" not in storage.objects
    assert f"outputs/{fresh}.mp3" in storage.objects
    assert read(engine, old).output_expired_at is not None
    assert read(engine, fresh).output_expired_at is None
    assert run_sweep(engine, storage)["outputs_expired"] == 0  # once only


def test_sweep_removes_inputs_of_completed_and_permanently_failed_jobs_only(
    client: TestClient, uploaded: UploadFactory, engine: Engine, storage: FakeStorage
) -> None:
    completed, failed, dead, queued = (post_job(client, uploaded()).json() for _ in range(4))
    finish(engine, completed["id"], storage)
    with Session(engine) as session:
        for job, code in ((failed, "unsupported_media"), (dead, "retries_exhausted")):
            job_transitions.start_attempt(session=session, job_id=job["id"])
            job_transitions.fail(session=session, job_id=job["id"], code=code, message="No.")
    keys = {j["id"]: read(engine, j["id"]).input_key for j in (completed, failed, dead, queued)}
    assert all(key in storage.objects for key in keys.values())

    counts = run_sweep(engine, storage)

    # The completed and the permanently failed job's inputs are gone; a dead-lettered
    # job's input waits out the replay window, and a queued job's input is untouched.
    assert counts["inputs_removed"] == 2
    gone = {job_id for job_id, key in keys.items() if key not in storage.objects}
    assert gone == {completed["id"], failed["id"]}
    assert read(engine, completed["id"]).input_removed_at is not None
    assert read(engine, dead["id"]).input_removed_at is None

    # Once the retention period has passed, the dead-lettered job's input goes too
    later = NOW + timedelta(days=8)
    assert run_sweep(engine, storage, now=later)["inputs_removed"] == 1
    assert keys[dead["id"]] not in storage.objects
    assert keys[queued["id"]] in storage.objects


def test_reaper_pass_applies_retention(
    client: TestClient, uploaded: UploadFactory, engine: Engine, storage: FakeStorage
) -> None:
    from shared.queue import Publisher
    from tests.fakes import FakePublisher
    from worker.reaper import Reaper

    job_id = post_job(client, uploaded()).json()["id"]
    finish(engine, job_id, storage, expires_at=NOW - timedelta(seconds=1))
    reaper = Reaper(
        make_settings(), engine, cast(Storage, storage), cast(Publisher, FakePublisher())
    )

    counts = reaper.run_once()

    assert counts["outputs_expired"] == 1 and counts["inputs_removed"] == 1
    assert read(engine, job_id).output_expired_at is not None


# --------------------------------------------------------------------------- rules


def test_lifecycle_rule_expires_outputs_after_whole_days_rounded_up() -> None:
    week = retention.lifecycle_rule(make_settings())
    assert week["Filter"] == {"Prefix": "outputs/"} and week["Expiration"] == {"Days": 7}
    assert retention.lifecycle_rule(make_settings(output_retention_days=0.001))["Expiration"] == {
        "Days": 1
    }
    assert retention.lifecycle_rule(make_settings(output_retention_days=2.5))["Expiration"] == {
        "Days": 3
    }


def test_completed_output_expires_retention_days_after_completion() -> None:
    settings = make_settings(output_retention_days=2)
    assert retention.output_expires_at(settings, NOW) == NOW + timedelta(days=2)


# --------------------------------------------------------------------------- missing input


def test_storage_error_on_a_missing_input_becomes_permanent_input_missing(
    storage: FakeStorage,
) -> None:
    read_failed = StorageError("The input could not be read from storage.", detail="404")

    failure = missing_input(read_failed, "uploads/u/1/a.mp4", cast(Storage, storage))

    assert isinstance(failure, GoneError)
    assert failure.code == "input_missing" and not failure.retryable


def test_storage_error_on_a_present_input_stays_retryable(storage: FakeStorage) -> None:
    storage.put("uploads/u/1/a.mp4", b"data")
    outage = StorageError("The input could not be read from storage.")
    assert missing_input(outage, "uploads/u/1/a.mp4", cast(Storage, storage)) is outage
    storage.fail = True  # storage down: the stat cannot tell, so the error stands
    assert missing_input(outage, "uploads/u/1/b.mp4", cast(Storage, storage)) is outage
    media = MediaError("Not media.")
    assert missing_input(media, "uploads/u/1/b.mp4", cast(Storage, storage)) is media


# --------------------------------------------------------------------------- migration


def test_migration_gives_earlier_mp3s_the_retention_of_new_ones(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from shared.config import get_settings
    from shared.db import MIGRATIONS, make_engine

    # Given a database at the revision before retention, with one completed job
    engine = make_engine(make_settings(database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    finished = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
        conn.execute(
            text(
                "INSERT INTO account (id, email, is_active, created_at) "
                "VALUES ('a1', 'ada@example.com', 1, :at)"
            ),
            {"at": finished},
        )
        conn.execute(
            text(
                "INSERT INTO upload (id, owner_id, key, filename, content_type, size_bytes, "
                "created_at, expires_at) VALUES ('u1', 'a1', 'uploads/a1/u1/a.mp4', 'a.mp4', "
                "'video/mp4', 10, :at, :at)"
            ),
            {"at": finished},
        )
        conn.execute(
            text(
                "INSERT INTO job (id, owner_id, upload_id, dispatch_token, status, progress, "
                "attempts, created_at, updated_at, finished_at, input_key, input_filename, "
                "input_size_bytes, options, output_key, output_size_bytes) VALUES ('j1', 'a1', "
                "'u1', 't', 'completed', 100, 1, :at, :at, :at, 'uploads/a1/u1/a.mp4', "
                "'a.mp4', 10, '{}', 'outputs/a1/j1.mp3', 5)"
            ),
            {"at": finished},
        )

    # When it is brought to head
    get_settings.cache_clear()
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        get_settings.cache_clear()

    # Then the MP3 expires the retention period (7 days) after its job completed
    job = read(engine, "j1")
    engine.dispose()
    assert job.output_expires_at is not None
    assert job.output_expires_at.replace(tzinfo=UTC) == finished + timedelta(days=7)
    assert job.output_expired_at is None and job.input_removed_at is None
