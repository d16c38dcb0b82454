"""Reliability with the real parts: retries, crashes, a broker outage, hostile input."""

from __future__ import annotations

import http.server
import signal
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from shared.queue import delivery_limit
from tests.integration.broker import DedicatedBroker
from tests.integration.conftest import Stack, StackFactory, free_port, wait_for
from tests.unit.conftest import make_settings

pytestmark = pytest.mark.integration


def started_at(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


def dlq_tool(stack: Stack, *args: str) -> str:
    return stack.run_module("worker.dlq", *args)


def test_transient_failure_retries_with_growing_delays_then_dead_letters_and_replays(
    make_stack: StackFactory, sample: Callable[[str], Path]
) -> None:
    # Given a worker that cannot reach storage (a port nobody listens on)
    stack = make_stack(workers=0, retry_backoff_base_s="1.0", max_attempts="3")
    bad = stack.start_worker(
        V2M_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", V2M_S3_CREATE_BUCKET="false"
    )
    # When a job arrives
    job = stack.create_job(stack.upload(sample("short_clip"), "blink.mp4", "video/mp4"))
    final = stack.wait_finished(job["id"], timeout=60)
    # Then it was tried exactly three times, with doubling delays, then dead-lettered
    assert final["status"] == "failed"
    assert final["error"]["code"] == "retries_exhausted"
    assert final["attempts"] == 3
    starts = [started_at(e) for e in bad.events("job_started") if e.get("job_id") == job["id"]]
    assert len(starts) == 3
    first_gap, second_gap = starts[1] - starts[0], starts[2] - starts[1]
    assert 0.7 <= first_gap < second_gap, (first_gap, second_gap)
    assert second_gap >= 1.45
    wait_for(lambda: stack.queue_counts(f"{stack.queue}.dlq")[0] == 1, 10, "the dead letter")
    assert job["id"] in dlq_tool(stack, "list")
    # And once storage is back, replaying the dead letter converts the job
    bad.stop()
    stack.start_worker()
    assert f"replayed {job['id']}" in dlq_tool(stack, "replay", "--all")
    replayed = stack.wait_finished(job["id"])
    assert replayed["status"] == "completed" and replayed["attempts"] == 1
    assert stack.queue_counts(f"{stack.queue}.dlq")[0] == 0


def test_worker_killed_mid_encode_repeatedly_still_yields_one_mp3(
    make_stack: StackFactory, sample: Callable[[str], Path]
) -> None:
    # The redelivered message takes the job over once the killed run's lease lapses.
    stack = make_stack(workers=1, heartbeat_interval_s="1", job_lease_s="5")
    job = stack.create_job(stack.upload(sample("long_audio"), "lecture.m4a", "audio/mp4"))
    for round_no in range(3):
        worker = [p for p in stack.procs if p.name.startswith("worker")][-1]

        # Progress of this round's attempt, not what the killed one left behind.
        def this_round_started(attempt: int = round_no + 1) -> bool:
            got = stack.get_job(job["id"])
            return bool(got["attempts"] == attempt and got["progress"] > 0)

        wait_for(this_round_started, 60, f"progress in round {round_no}")
        worker.popen.send_signal(signal.SIGKILL)
        worker.popen.wait(timeout=10)
        stack.start_worker()
    final = stack.wait_finished(job["id"], timeout=120)
    assert final["status"] == "completed"
    assert final["attempts"] == 4
    assert stack.output_keys() == [stack.output_key(job["id"])]
    wait_for(lambda: not list((stack.workdir / "tmp").iterdir()), 10, "temp files to be removed")


def test_job_that_kills_every_worker_ends_failed_with_worker_crashed(
    make_stack: StackFactory, sample: Callable[[str], Path]
) -> None:
    # Given a job whose every run dies with its worker (SIGKILL mid-encode, a worker
    # started again each time, as an orchestrator would)
    settings = {"heartbeat_interval_s": "0.5", "job_lease_s": "3", "reaper_interval_s": "1"}
    stack = make_stack(workers=1, max_attempts="1", **settings)
    limit = delivery_limit(make_settings(max_attempts=1))
    job = stack.create_job(stack.upload(sample("long_audio"), "lecture.m4a", "audio/mp4"))
    for run in range(1, 3 * limit):
        worker = [p for p in stack.procs if p.name.startswith("worker")][-1]

        def running_or_failed(attempt: int = run) -> bool:
            got = stack.get_job(job["id"])
            return bool(
                got["status"] == "failed" or (got["attempts"] == attempt and got["progress"] > 0)
            )

        wait_for(running_or_failed, 60, f"run {run} to start")
        if stack.get_job(job["id"])["status"] == "failed":
            break
        worker.popen.send_signal(signal.SIGKILL)
        worker.popen.wait(timeout=10)
        stack.start_worker()

    # Then it ends failed with worker_crashed after as many runs as the queue's delivery
    # limit allows a message, rather than being put back for ever
    final = stack.wait_finished(job["id"], timeout=60)
    assert (final["status"], final["error"]["code"]) == ("failed", "worker_crashed"), final
    assert final["attempts"] == limit
    assert stack.output_keys() == []


def test_hung_worker_loses_its_lease_and_the_job_completes_elsewhere(
    make_stack: StackFactory, sample: Callable[[str], Path]
) -> None:
    # Given a worker that freezes mid-job (SIGSTOP: its broker connection stays open,
    # so RabbitMQ will not redeliver; only the lease can tell it is gone)
    lease = {"heartbeat_interval_s": "0.5", "job_lease_s": "3", "reaper_interval_s": "1"}
    stack = make_stack(workers=1, **lease)
    frozen = stack.procs[-1]
    job = stack.create_job(stack.upload(sample("long_audio"), "lecture.m4a", "audio/mp4"))
    wait_for(lambda: stack.get_job(job["id"])["progress"] > 0, 60, "the job to start")
    frozen.popen.send_signal(signal.SIGSTOP)
    try:
        # When another worker is around
        helper = stack.start_worker()
        # Then the stale job is put back and completed by it
        final = stack.wait_finished(job["id"], timeout=90)
        assert final["status"] == "completed"
        assert any(e.get("job_id") == job["id"] for e in helper.events("stale_job_requeued"))
    finally:
        frozen.popen.send_signal(signal.SIGCONT)
    # And the frozen worker, once thawed, does not overwrite the outcome
    wait_for(
        lambda: (
            bool(frozen.events("lease_lost_result_discarded"))
            or bool(frozen.events("stale_message_ignored"))
        ),
        60,
        "the thawed worker to notice it lost the job",
    )
    assert stack.get_job(job["id"]) == final
    assert stack.output_keys() == [stack.output_key(job["id"])]


@pytest.fixture
def broker() -> Iterator[DedicatedBroker]:
    # Not under pytest's basetemp: pytest makes that directory private to root at every
    # session start, and Debian's rabbitmq-server runs as the rabbitmq user.
    with tempfile.TemporaryDirectory(prefix="v2m-broker-") as workdir:
        node = DedicatedBroker(Path(workdir))
        node.start()
        try:
            yield node
        finally:
            node.stop()


def test_broker_outage_loses_no_accepted_job(
    make_stack: StackFactory, broker: DedicatedBroker, sample: Callable[[str], Path]
) -> None:
    stack = make_stack(workers=1, amqp_url=broker.url)
    worker = stack.procs[-1]
    first = stack.create_job(stack.upload(sample("long_audio"), "lecture.m4a", "audio/mp4"))
    wait_for(lambda: stack.get_job(first["id"])["progress"] > 0, 60, "the first job to run")

    # When RabbitMQ goes down mid-job
    broker.stop()
    wait_for(lambda: bool(worker.events("broker_connection_lost")), 30, "the worker to notice")
    # Then the worker stays alive for its liveness probe: its loop turns without a broker
    health = httpx.get(f"http://127.0.0.1:{worker.metrics_port}/healthz", timeout=5)
    assert health.status_code == 200, health.text
    upload_id = stack.upload(sample("short_clip"), "blink.mp4", "video/mp4")
    key = f"outage-{uuid.uuid4()}"
    with stack.client() as api:
        refused = api.post(
            "/v1/jobs", json={"upload_id": upload_id}, headers={"Idempotency-Key": key}
        )
        ready = api.get("/readyz")
        listed = api.get("/v1/jobs").json()
        status = api.get(f"/v1/jobs/{first['id']}")
    # Then job creation says so, and nothing half-created is left
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "queue_unavailable"
    assert [j["id"] for j in listed["items"]] == [first["id"]]
    # and the API stays ready: status reads are still served
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok"}
    assert status.status_code == 200 and status.json()["id"] == first["id"]

    # When it comes back
    broker.start()
    retried = stack.create_job(upload_id, idempotency_key=key)
    # Then both jobs complete, each with one MP3, and the worker reconnected by itself
    assert stack.wait_finished(first["id"], timeout=120)["status"] == "completed"
    assert stack.wait_finished(retried["id"], timeout=120)["status"] == "completed"
    assert sorted(stack.output_keys()) == sorted(
        [stack.output_key(first["id"]), stack.output_key(retried["id"])]
    )
    assert len(worker.events("consuming")) >= 2 and worker.events("broker_connection_lost")
    assert worker.popen.poll() is None


class CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        CountingHandler.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"#EXTM3U\n")

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def bait_server() -> Iterator[str]:
    """An HTTP server a hostile playlist points at; it must never be contacted."""
    CountingHandler.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def truncate(path: Path, dest: Path) -> Path:
    data = path.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def test_hostile_and_broken_inputs_fail_with_their_codes_and_leak_nothing(
    shared_stack: Stack, sample: Callable[[str], Path], tmp_path: Path, bait_server: str
) -> None:
    files: dict[str, tuple[Path, str]] = {}

    def write(name: str, text: str, code: str) -> None:
        path = tmp_path / name
        path.write_text(text)
        files[name] = (path, code)

    write(
        "passwd.mp4",
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
        "unsupported_media",
    )
    write(
        "remote.m3u8",
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{bait_server}/segment.ts\n#EXT-X-ENDLIST\n",
        "unsupported_media",
    )
    write("concat.mp4", "ffconcat version 1.0\nfile '/etc/passwd'\n", "unsupported_media")
    write("notes.mp4", "meeting notes, not a video\n" * 40, "unsupported_media")
    write("empty.mp4", "", "unsupported_media")
    files["cut-faststart.mp4"] = (
        truncate(sample("mp4_h264_aac_long"), tmp_path / "cut-faststart.mp4"),
        "input_truncated",
    )
    files["cut-moov-at-end.mp4"] = (
        truncate(sample("mp4_moov_at_end_long"), tmp_path / "cut-moov-at-end.mp4"),
        "input_truncated",
    )

    jobs = {
        name: shared_stack.create_job(shared_stack.upload(path, name, "video/mp4"))["id"]
        for name, (path, _) in files.items()
    }
    for name, job_id in jobs.items():
        final = shared_stack.wait_finished(job_id)
        assert final["status"] == "failed", (name, final)
        assert final["error"]["code"] == files[name][1], (name, final["error"])
        assert final["attempts"] == 1, name
        message = final["error"]["message"]
        assert "/" not in message and "ffmpeg" not in message.lower() and "root:" not in message
    assert CountingHandler.hits == []  # the playlist's URL was never fetched
    worker = next(p for p in shared_stack.procs if p.name.startswith("worker"))
    log_text = worker.log_path.read_text()
    assert "root:x:0:0" not in log_text
    assert not [
        k for k in shared_stack.output_keys() if any(k.endswith(f"{j}.mp3") for j in jobs.values())
    ]


def test_media_longer_than_the_limit_is_refused(
    make_stack: StackFactory, sample: Callable[[str], Path]
) -> None:
    stack = make_stack(workers=1, max_media_duration_s="600")
    job = stack.convert(sample("long_audio"), "lecture.m4a", "audio/mp4")
    assert job["status"] == "failed" and job["error"]["code"] == "media_too_long"
    assert "hours" in job["error"]["message"]


def test_conversion_over_ffmpegs_memory_limit_fails_once_with_resource_limit(
    make_stack: StackFactory, sample: Callable[[str], Path]
) -> None:
    # Given a worker whose ffmpeg may use far less memory than it needs
    stack = make_stack(workers=1, ffmpeg_memory_limit_mb="64", max_attempts="3")
    # When a job runs
    job = stack.convert(sample("short_clip"), "blink.mp4", "video/mp4")
    # Then it fails on its first attempt with resource_limit, and nothing is dead-lettered
    assert job["status"] == "failed", job
    assert (job["error"]["code"], job["attempts"]) == ("resource_limit", 1)
    assert stack.queue_counts(f"{stack.queue}.dlq")[0] == 0
