"""worker.handlers: what the worker does with each message, with ffmpeg and S3 faked."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import structlog
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, create_engine
from structlog.testing import capture_logs

from shared import job_transitions, jobs
from shared.config import Settings
from shared.db import create_tables
from shared.errors import MediaError, StorageError, TransientTranscodeError
from shared.models import Job, JobStatus
from shared.options import JobOptions
from shared.queue import JobMessage, backoff_ms, delivery_limit
from shared.storage import Storage
from tests.fakes import FakeStorage
from tests.unit.conftest import add_upload, make_settings
from worker import convert, ffmpeg, handlers
from worker.context import JobContext
from worker.convert import ConvertResult, output_key
from worker.ffmpeg import loudness
from worker.handlers import handle
from worker.outcome import Action, Outcome

Convert = Callable[[str, str, JobOptions, JobContext], ConvertResult]


@pytest.fixture
def worker_settings(tmp_path: Path) -> Settings:
    return make_settings(max_attempts=3, tmp_dir=str(tmp_path))


@pytest.fixture
def ctx(worker_settings: Settings, engine: Engine, storage: FakeStorage) -> JobContext:
    return JobContext(settings=worker_settings, engine=engine, storage=cast(Storage, storage))


INPUT_KEY = "uploads/u/holiday.mov"


@pytest.fixture
def input_stored(storage: FakeStorage) -> None:
    """The job's input is in storage: a storage error is then an outage, not a lost file."""
    storage.put(INPUT_KEY, b"\0" * 4096, "video/quicktime")


def make_job(engine: Engine, *, options: dict[str, Any] | None = None, attempts: int = 0) -> str:
    with Session(engine, expire_on_commit=False) as session:
        upload = add_upload(
            session=session,
            upload_id=f"upload-{os.urandom(4).hex()}",
            owner_id="owner-1",
            key=INPUT_KEY,
            filename="holiday.mov",
            content_type="video/quicktime",
            size_bytes=4096,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
        job = jobs.insert_job(
            session=session,
            upload=upload,
            options=options or {},
            idempotency_key=None,
            request_hash=None,
        )
        if attempts:
            job.attempts = attempts
            session.add(job)
            session.commit()
        return job.id


def load(engine: Engine, job_id: str) -> Job:
    with Session(engine, expire_on_commit=False) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def deliver(job_id: str, ctx: JobContext, attempt: int = 1, token: str | None = None) -> Outcome:
    return handle(JobMessage(job_id=job_id, attempt=attempt, token=token), ctx)


def use_convert(monkeypatch: pytest.MonkeyPatch, convert: Convert) -> list[tuple[str, str]]:
    """Replace convert(); returns the (job_id, input_key) of every call."""
    calls: list[tuple[str, str]] = []

    def fake(
        job_id: str,
        input_key: str,
        options: JobOptions,
        ctx: JobContext,
        token: str | None = None,
        key: str | None = None,
        splitter: object = None,
    ) -> ConvertResult:
        calls.append((job_id, input_key))
        return convert(job_id, input_key, options, ctx)

    monkeypatch.setattr(handlers, "convert", fake)
    return calls


def raising(exc: Exception) -> Convert:
    def convert(*_args: Any) -> ConvertResult:
        raise exc

    return convert


def succeeding(job_id: str, _key: str, _options: JobOptions, _ctx: JobContext) -> ConvertResult:
    return ConvertResult(
        key=output_key(job_id),
        size_bytes=190_000,
        duration_s=9.987,
        bitrate_kbps=152,
        stream_copy=False,
    )


# --------------------------------------------------------------------------- routing


def test_unknown_job_goes_to_dead_letter(ctx: JobContext, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = use_convert(monkeypatch, succeeding)

    assert deliver("no-such-job", ctx) == Outcome(Action.DEAD_LETTER)
    assert calls == []


def test_redelivered_completed_job_is_acked_and_left_unchanged(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job that a worker already completed
    job_id = make_job(engine)
    calls = use_convert(monkeypatch, succeeding)
    assert deliver(job_id, ctx) == Outcome(Action.ACK)
    before = load(engine, job_id)

    # When its message is delivered again
    outcome = deliver(job_id, ctx)

    # Then it is acked without converting again or touching the row
    assert outcome == Outcome(Action.ACK)
    assert len(calls) == 1
    after = load(engine, job_id)
    assert after.status == JobStatus.completed
    assert (after.attempts, after.finished_at, after.output_key, after.updated_at) == (
        before.attempts,
        before.finished_at,
        before.output_key,
        before.updated_at,
    )


def test_redelivered_failed_job_is_acked_without_another_attempt(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    use_convert(monkeypatch, raising(MediaError("No audio.", code="no_audio_stream")))
    deliver(job_id, ctx)

    assert deliver(job_id, ctx) == Outcome(Action.ACK)
    assert load(engine, job_id).attempts == 1


def test_message_with_the_jobs_current_token_claims_and_completes_it(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    calls = use_convert(monkeypatch, succeeding)

    assert deliver(job_id, ctx, token=load(engine, job_id).dispatch_token) == Outcome(Action.ACK)

    assert len(calls) == 1
    after = load(engine, job_id)
    assert (after.status, after.attempts) == (JobStatus.completed, 1)


def test_message_with_an_old_token_is_acked_without_touching_the_job(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job that was re-dispatched (new token) after this message was published
    job_id = make_job(engine)
    calls = use_convert(monkeypatch, succeeding)
    before = load(engine, job_id)

    outcome = deliver(job_id, ctx, token="an-older-token")

    assert outcome == Outcome(Action.ACK)
    assert calls == []
    after = load(engine, job_id)
    assert (after.status, after.attempts, after.updated_at) == (
        JobStatus.queued,
        0,
        before.updated_at,
    )


TWO_HOURS_AGO = datetime.now(UTC) - timedelta(hours=2)


def set_job(engine: Engine, job_id: str, **values: Any) -> None:
    with Session(engine) as session:
        session.execute(update(Job).where(col(Job.id) == job_id).values(**values))
        session.commit()


def start_elsewhere(engine: Engine, job_id: str) -> str:
    """Another worker claims the job (as its first delivery would); its token."""
    token = load(engine, job_id).dispatch_token
    with Session(engine) as session:
        assert (
            job_transitions.start_attempt(session=session, job_id=job_id, token=token) is not None
        )
    return token


def test_second_copy_of_a_message_does_not_run_a_job_already_running(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job running under a token, and a second copy of its message (the publisher
    # resent it after an unclear failure)
    job_id = make_job(engine)
    token = start_elsewhere(engine, job_id)
    calls = use_convert(monkeypatch, succeeding)

    # When the copy is delivered, Then it is acked and the job is left to its run
    assert deliver(job_id, ctx, token=token) == Outcome(Action.ACK)
    assert calls == []
    after = load(engine, job_id)
    assert (after.status, after.attempts) == (JobStatus.processing, 1)


def test_redelivered_message_of_a_running_job_waits_for_that_run_instead_of_starting_another(
    storage: FakeStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job running elsewhere (its lease renewed), and its message redelivered here
    # (the broker lost the first worker's connection while that worker kept converting)
    engine = create_engine(f"sqlite:///{tmp_path / 'jobs.db'}")  # one connection per thread
    create_tables(engine)
    settings = make_settings(tmp_dir=str(tmp_path), heartbeat_interval_s=0.05, job_lease_s=60)
    ctx = JobContext(settings=settings, engine=engine, storage=cast(Storage, storage))
    job_id = make_job(engine)
    token = start_elsewhere(engine, job_id)
    calls = use_convert(monkeypatch, succeeding)
    message = JobMessage(job_id=job_id, token=token, redelivered=True)

    def first_run_finishes() -> None:
        time.sleep(0.3)
        with Session(engine) as session:
            job_transitions.complete(
                session=session,
                job_id=job_id,
                output_key="outputs/x.mp3",
                size_bytes=1,
                duration_s=1.0,
                bitrate_kbps=None,
                token=token,
            )

    finisher = threading.Thread(target=first_run_finishes)
    finisher.start()
    outcome = handle(message, ctx)
    finisher.join()

    # Then the job ran once: the copy is acked once the first run's outcome is recorded
    assert outcome == Outcome(Action.ACK)
    assert calls == []
    after = load(engine, job_id)
    assert (after.status, after.attempts) == (JobStatus.completed, 1)


def test_redelivered_message_takes_over_a_job_whose_lease_lapsed(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    token = start_elsewhere(engine, job_id)
    set_job(engine, job_id, updated_at=TWO_HOURS_AGO)  # its worker died: no renewal since
    calls = use_convert(monkeypatch, succeeding)

    outcome = handle(JobMessage(job_id=job_id, token=token, redelivered=True), ctx)

    assert outcome == Outcome(Action.ACK)
    assert len(calls) == 1
    after = load(engine, job_id)
    assert (after.status, after.attempts) == (JobStatus.completed, 2)


def test_job_started_as_often_as_the_delivery_limit_fails_with_worker_crashed(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job whose every run so far died with its worker (lease lapsed each time)
    limit = delivery_limit(ctx.settings)
    job_id = make_job(engine, attempts=limit)
    set_job(engine, job_id, status=JobStatus.processing, updated_at=TWO_HOURS_AGO)
    calls = use_convert(monkeypatch, succeeding)
    token = load(engine, job_id).dispatch_token

    # When the broker redelivers its message once more
    outcome = handle(JobMessage(job_id=job_id, token=token, redelivered=True), ctx)

    # Then it is not run again: it fails for good, and the message is acked
    assert outcome == Outcome(Action.ACK)
    assert calls == []
    after = load(engine, job_id)
    assert (after.status, after.error_code, after.attempts) == (
        JobStatus.failed,
        "worker_crashed",
        limit,
    )


@pytest.mark.parametrize("token", ["some-token", None], ids=["tokened", "legacy"])
def test_unknown_job_goes_to_dead_letter_with_or_without_a_token(
    token: str | None, ctx: JobContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = use_convert(monkeypatch, succeeding)

    assert deliver("no-such-job", ctx, token=token) == Outcome(Action.DEAD_LETTER)
    assert calls == []


def test_redelivered_completed_job_with_its_token_is_acked_and_not_converted_again(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    token = load(engine, job_id).dispatch_token
    calls = use_convert(monkeypatch, succeeding)
    assert deliver(job_id, ctx, token=token) == Outcome(Action.ACK)

    assert deliver(job_id, ctx, token=token) == Outcome(Action.ACK)

    assert len(calls) == 1
    assert load(engine, job_id).attempts == 1


# --------------------------------------------------------------------------- outcomes


def test_success_completes_the_job_with_its_output(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine, options={"bitrate_kbps": 160})
    seen: list[JobOptions] = []

    def convert(job_id: str, key: str, options: JobOptions, ctx: JobContext) -> ConvertResult:
        seen.append(options)
        assert load(engine, job_id).status == JobStatus.processing
        return succeeding(job_id, key, options, ctx)

    calls = use_convert(monkeypatch, convert)

    outcome = deliver(job_id, ctx)

    assert outcome == Outcome(Action.ACK)
    assert calls == [(job_id, "uploads/u/holiday.mov")]
    assert seen == [JobOptions(bitrate_kbps=160)]
    job = load(engine, job_id)
    assert job.status == JobStatus.completed
    assert job.progress == 100
    assert job.attempts == 1
    assert job.output_key == f"outputs/{job_id}.mp3"
    assert (job.output_size_bytes, job.output_duration_s, job.output_bitrate_kbps) == (
        190_000,
        9.987,
        152,
    )
    assert job.started_at is not None and job.finished_at is not None
    assert job.error_code is None


def test_permanent_media_error_fails_the_job_and_acks(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    use_convert(
        monkeypatch,
        raising(MediaError("The file has no audio track to convert.", code="no_audio_stream")),
    )

    outcome = deliver(job_id, ctx)

    assert outcome == Outcome(Action.ACK)
    job = load(engine, job_id)
    assert job.status == JobStatus.failed
    assert job.error_code == "no_audio_stream"
    assert job.error_message == "The file has no audio track to convert."
    assert job.attempts == 1
    assert job.finished_at is not None


@pytest.mark.parametrize(
    ("error", "code"),
    [(ffmpeg.resource_limit("killed"), "resource_limit"), (ffmpeg.timed_out(1500), "timeout")],
    ids=["memory", "timeout"],
)
def test_conversion_out_of_memory_or_time_fails_once_without_a_retry(
    error: MediaError,
    code: str,
    ctx: JobContext,
    engine: Engine,
    fake_ffmpeg: dict[str, Any],
    storage: FakeStorage,
) -> None:
    # Given a conversion that ffmpeg cannot finish within its memory or time limit
    fake_ffmpeg["fail"] = error
    job_id = make_job(engine)

    outcome = deliver(job_id, ctx)

    # Then the job fails at once with that code, and the message is acked, not retried
    assert outcome == Outcome(Action.ACK)
    job = load(engine, job_id)
    assert (job.status, job.error_code, job.attempts) == (JobStatus.failed, code, 1)
    assert storage.objects == {}


@pytest.mark.parametrize("previous_attempts", [0, 1])
def test_retryable_error_before_the_last_attempt_schedules_a_retry(
    ctx: JobContext,
    engine: Engine,
    worker_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    previous_attempts: int,
    input_stored: None,
) -> None:
    # Given a job on an attempt below max_attempts (3)
    job_id = make_job(engine, attempts=previous_attempts)
    attempt = previous_attempts + 1
    use_convert(monkeypatch, raising(StorageError("The input could not be read from storage.")))

    # When storage fails during the conversion
    outcome = deliver(job_id, ctx, attempt=attempt)

    # Then it goes to the retry queue for this attempt, with a jittered delay
    assert outcome.action is Action.RETRY
    assert outcome.retry_attempt == attempt
    ceiling = backoff_ms(worker_settings, attempt)
    assert ceiling * 3 // 4 <= outcome.delay_ms <= ceiling
    # and the job waits in the queue again, keeping the last error for operators
    job = load(engine, job_id)
    assert job.status == JobStatus.queued
    assert job.progress == 0
    assert job.attempts == attempt
    assert job.error_code == "storage_unavailable"
    assert job.finished_at is None


def test_retry_delays_stay_within_the_jitter_window(
    ctx: JobContext,
    engine: Engine,
    worker_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    input_stored: None,
) -> None:
    use_convert(monkeypatch, raising(StorageError("Storage is down.")))
    ceiling = backoff_ms(worker_settings, 1)

    delays = {deliver(make_job(engine), ctx).delay_ms for _ in range(20)}

    assert all(ceiling * 3 // 4 <= d <= ceiling for d in delays)
    assert len(delays) > 1  # jittered, not a constant


def test_retryable_error_on_the_last_attempt_fails_and_dead_letters(
    ctx: JobContext,
    engine: Engine,
    worker_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    input_stored: None,
) -> None:
    job_id = make_job(engine, attempts=worker_settings.max_attempts - 1)
    use_convert(monkeypatch, raising(StorageError("The input could not be read from storage.")))

    outcome = deliver(job_id, ctx, attempt=worker_settings.max_attempts)

    assert outcome == Outcome(Action.DEAD_LETTER)
    job = load(engine, job_id)
    assert job.status == JobStatus.failed
    assert job.error_code == "retries_exhausted"
    assert job.attempts == worker_settings.max_attempts
    assert job.error_message is not None
    assert "could not be read from storage" in job.error_message


def test_a_job_whose_input_is_gone_fails_at_once_with_input_missing(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a job whose input object is no longer in storage (nothing was stored)
    job_id = make_job(engine)
    use_convert(monkeypatch, raising(StorageError("The input could not be read from storage.")))

    # When a worker runs it and ffmpeg cannot read the input
    outcome = deliver(job_id, ctx)

    # Then the job fails for good on its first attempt, saying why
    assert outcome == Outcome(Action.ACK)
    job = load(engine, job_id)
    assert (job.status, job.error_code, job.attempts) == (JobStatus.failed, "input_missing", 1)
    assert job.error_message is not None and "no longer in storage" in job.error_message


def test_interrupted_transcode_is_retried(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    use_convert(monkeypatch, raising(TransientTranscodeError("Stopped by a signal.")))

    assert deliver(job_id, ctx).action is Action.RETRY


def test_unexpected_exception_is_logged_with_traceback_and_retried(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    use_convert(monkeypatch, raising(RuntimeError("boom at /srv/app/secret.py")))

    with capture_logs() as logs:
        outcome = deliver(job_id, ctx)

    assert outcome.action is Action.RETRY
    crashed = [e for e in logs if e["event"] == "job_crashed"]
    assert len(crashed) == 1
    assert crashed[0]["log_level"] == "error"
    assert crashed[0].get("exc_info") is True
    job = load(engine, job_id)
    assert job.status == JobStatus.queued
    assert job.error_code == "internal_error"
    assert job.error_message is not None and "secret.py" not in job.error_message


def test_each_failure_is_logged_once(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    use_convert(monkeypatch, raising(MediaError("Not media.", detail="stderr tail")))

    with capture_logs() as logs:
        deliver(job_id, ctx)

    failures = [e for e in logs if e["event"].startswith("job_") and e["event"] != "job_started"]
    assert [e["event"] for e in failures] == ["job_failed"]
    assert failures[0]["log_level"] == "info"
    assert failures[0]["code"] == "unsupported_media"


def test_database_outage_gives_the_message_back(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = make_job(engine)
    monkeypatch.setattr("worker.handlers.time.sleep", lambda _s: None)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE job")

    assert deliver(job_id, ctx) == Outcome(Action.REQUEUE)


# --------------------------------------------------------------------------- stopping, leases


def test_job_delivered_while_the_worker_stops_is_given_back_untouched(
    ctx: JobContext, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = use_convert(monkeypatch, succeeding)
    job_id = make_job(engine)
    ctx.stopping.set()

    assert deliver(job_id, ctx) == Outcome(Action.REQUEUE)

    assert calls == []
    job = load(engine, job_id)
    assert (job.status, job.attempts) == (JobStatus.queued, 0)


def test_a_failed_lease_renewal_is_logged_with_the_jobs_ids(
    storage: FakeStorage, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(heartbeat_interval_s=0.01, tmp_dir=str(tmp_path))
    ctx = JobContext(settings=settings, engine=engine, storage=cast(Storage, storage))

    def unreachable(**_kw: Any) -> bool:
        raise OperationalError("UPDATE job", {}, Exception("database is locked"))

    monkeypatch.setattr(job_transitions, "heartbeat", unreachable)
    with (
        capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs,
        structlog.contextvars.bound_contextvars(job_id="job-1"),
        handlers.lease(ctx, "job-1", token="t"),
    ):
        deadline = time.monotonic() + 10
        while not any(e["event"] == "heartbeat_failed" for e in logs):
            assert time.monotonic() < deadline, "no renewal was attempted"
            time.sleep(0.01)

    failed = [e for e in logs if e["event"] == "heartbeat_failed"]
    assert failed[0]["job_id"] == "job-1"


# --------------------------------------------------------------------------- convert()


def probe_result(
    *, audio: bool = True, codec: str = "aac", duration: float = 10.0
) -> ffmpeg.ProbeResult:
    streams = [ffmpeg.AudioStream(index=0, codec=codec, channels=2, sample_rate=44100)]
    return ffmpeg.ProbeResult(
        format_name="mp3" if codec == "mp3" else "mov,mp4,m4a,3gp,3g2,mj2",
        duration_s=duration,
        bit_rate=128_000,
        audio=streams if audio else [],
    )


@pytest.fixture
def fake_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace ffprobe and ffmpeg: the input is described as ``state["input"]`` (AAC), the
    run writes 5000 bytes; that MP3 has no Xing header, so the output is ffprobed too."""
    state: dict[str, Any] = {
        "input": probe_result(),
        "argv": [],
        "fail": None,
        "fail_once": None,
        "probed": [],
        "measured": [],
    }

    def probe(_bin: str, url: str, **_kw: Any) -> ffmpeg.ProbeResult:
        state["probed"].append(url)
        if url.startswith("http"):  # the input, through its presigned URL
            result: ffmpeg.ProbeResult = state["input"]
            return result
        return probe_result(codec="mp3", duration=9.99)

    def run_transcode(
        argv: list[str],
        *,
        on_progress: Callable[[int], None],
        **_kw: Any,
    ) -> ffmpeg.Transcoded:
        state["argv"].append(argv)
        Path(argv[-1]).write_bytes(b"\xff" * 5000)
        on_progress(42)
        if state["fail_once"] is not None:
            error, state["fail_once"] = state["fail_once"], None
            raise error
        if state["fail"] is not None:
            raise state["fail"]
        return ffmpeg.Transcoded(stderr_tail=[])

    def measure(_bin: str, url: str, _workdir: Path, **_kw: Any) -> ffmpeg.Loudness:
        state["measured"].append(url)
        return ffmpeg.Loudness(integrated_lufs=-18.5, range_lu=4.0, true_peak_db=-2.25)

    monkeypatch.setattr(ffmpeg, "probe", probe)
    monkeypatch.setattr(ffmpeg, "run_transcode", run_transcode)
    monkeypatch.setattr(loudness, "measure", measure)
    return state


def leftovers(settings: Settings) -> list[str]:
    assert settings.tmp_dir is not None
    return [p.name for p in Path(settings.tmp_dir).iterdir() if p.name.startswith("v2m-job-")]


def start(engine: Engine, job_id: str) -> None:
    with Session(engine) as session:
        assert job_transitions.start_attempt(session=session, job_id=job_id) is not None


def test_convert_uploads_the_mp3_and_removes_its_temp_dir(
    ctx: JobContext,
    engine: Engine,
    storage: FakeStorage,
    worker_settings: Settings,
    fake_ffmpeg: dict[str, Any],
) -> None:
    job_id = make_job(engine)
    start(engine, job_id)

    result = convert.convert(job_id, "uploads/u/holiday.mov", JobOptions(), ctx)

    assert result.key == f"outputs/{job_id}.mp3"
    assert result.size_bytes == 5000
    assert result.duration_s == pytest.approx(9.99)
    assert result.bitrate_kbps == 128
    assert not result.stream_copy
    stored = storage.objects[result.key]
    assert (len(stored.data), stored.content_type) == (5000, "audio/mpeg")
    [argv] = fake_ffmpeg["argv"]
    assert argv[argv.index("-i") + 1].startswith("http://s3.internal.test/")
    assert fake_ffmpeg["probed"][0] == argv[argv.index("-i") + 1]  # ffprobe read it first
    assert load(engine, job_id).progress == 42
    assert leftovers(worker_settings) == []
    # the output's loudness is measured from the local file, not the input
    assert result.loudness == ffmpeg.Loudness(-18.5, 4.0, -2.25)
    assert [Path(url).name for url in fake_ffmpeg["measured"]] == ["out.mp3"]


def test_convert_of_a_file_without_audio_fails_with_no_audio_stream(
    ctx: JobContext, engine: Engine, worker_settings: Settings, fake_ffmpeg: dict[str, Any]
) -> None:
    fake_ffmpeg["input"] = probe_result(audio=False)

    with pytest.raises(MediaError) as error:
        convert.convert(make_job(engine), "uploads/u/silent.mp4", JobOptions(), ctx)

    assert error.value.code == "no_audio_stream"
    assert not error.value.retryable
    assert fake_ffmpeg["argv"] == []  # refused from ffprobe's description: ffmpeg never ran
    assert leftovers(worker_settings) == []


def test_convert_refuses_an_input_over_the_duration_limit_before_ffmpeg_runs(
    ctx: JobContext, engine: Engine, fake_ffmpeg: dict[str, Any]
) -> None:
    fake_ffmpeg["input"] = probe_result(duration=ctx.settings.max_media_duration_s + 1)

    with pytest.raises(MediaError) as error:
        convert.convert(make_job(engine), "uploads/u/lecture.m4a", JobOptions(), ctx)

    assert error.value.code == "media_too_long"
    assert fake_ffmpeg["argv"] == []


def test_convert_removes_its_temp_dir_when_ffmpeg_fails(
    ctx: JobContext,
    engine: Engine,
    storage: FakeStorage,
    worker_settings: Settings,
    fake_ffmpeg: dict[str, Any],
) -> None:
    fake_ffmpeg["fail"] = TransientTranscodeError("Killed.")

    with pytest.raises(TransientTranscodeError):
        convert.convert(make_job(engine), "uploads/u/holiday.mov", JobOptions(), ctx)

    assert leftovers(worker_settings) == []
    assert storage.objects == {}


def test_convert_stream_copies_mp3_input_with_default_options(
    ctx: JobContext, engine: Engine, fake_ffmpeg: dict[str, Any]
) -> None:
    fake_ffmpeg["input"] = probe_result(codec="mp3")

    result = convert.convert(make_job(engine), "uploads/u/song.mp3", JobOptions(), ctx)

    assert result.stream_copy
    [argv] = fake_ffmpeg["argv"]
    assert "copy" in argv


def test_convert_encodes_when_ffmpeg_refuses_the_copy(
    ctx: JobContext, engine: Engine, fake_ffmpeg: dict[str, Any]
) -> None:
    fake_ffmpeg["input"] = probe_result(codec="mp3")
    fake_ffmpeg["fail_once"] = ffmpeg.CopyNotPossible("The input's audio is not MP3.")

    result = convert.convert(make_job(engine), "uploads/u/song.mp3", JobOptions(), ctx)

    assert not result.stream_copy
    copied, converted = fake_ffmpeg["argv"]
    assert "copy" in copied and "libmp3lame" in converted


def test_a_misnamed_mp3_is_encoded_without_trying_a_copy(
    ctx: JobContext, engine: Engine, fake_ffmpeg: dict[str, Any]
) -> None:
    # ffprobe says AAC, whatever the name says
    result = convert.convert(make_job(engine), "uploads/u/actually-aac.mp3", JobOptions(), ctx)

    assert not result.stream_copy
    [argv] = fake_ffmpeg["argv"]
    assert "libmp3lame" in argv and "copy" not in argv


def test_an_input_shorter_than_the_trim_start_fails_trim_out_of_range(
    ctx: JobContext, engine: Engine, fake_ffmpeg: dict[str, Any]
) -> None:
    options = JobOptions.model_validate({"trim": {"start_s": 12}})  # the input is 10 s

    with pytest.raises(MediaError) as error:
        convert.convert(make_job(engine), "uploads/u/holiday.mov", options, ctx)

    assert error.value.code == "trim_out_of_range"
    assert not error.value.retryable
    assert fake_ffmpeg["argv"] == []


def test_output_of_another_format_is_stored_under_its_extension_and_type(
    ctx: JobContext, engine: Engine, storage: FakeStorage, fake_ffmpeg: dict[str, Any]
) -> None:
    job_id = make_job(engine)

    result = convert.convert(job_id, "uploads/u/holiday.mov", JobOptions(format="flac"), ctx)

    assert result.key == f"outputs/{job_id}.flac"
    assert storage.objects[result.key].content_type == "audio/flac"
    [argv] = fake_ffmpeg["argv"]
    assert argv[-1].endswith("out.flac") and "flac" == argv[argv.index("-f") + 1]


def test_convert_refuses_when_storage_is_down(
    ctx: JobContext, engine: Engine, storage: FakeStorage, fake_ffmpeg: dict[str, Any]
) -> None:
    storage.fail = True

    with pytest.raises(StorageError):
        convert.convert(make_job(engine), "uploads/u/holiday.mov", JobOptions(), ctx)
