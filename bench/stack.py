"""The system under test: an S3 server (`rclone serve s3`), the API and workers as separate
processes.

Reuses the integration tests' Stack (an API and workers on their own queue, bucket and
SQLite database against the machine's RabbitMQ); adds what a benchmark needs on top:
starting several workers at once, a throttling proxy, reading job rows without going
through the API (polling the API would take CPU from the encode being timed), and memory
and temp-disk sampling of a worker and its ffmpeg.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx

if TYPE_CHECKING:
    import pytest

from bench.media import Input
from tests.integration.conftest import (
    AMQP_URL,
    Proc,
    Stack,
    free_port,
    new_stack,
    start_s3,
    wait_for,
)

NO_LIMITS = {
    "uploads_per_minute": "100000000",
    "max_active_jobs": "1000000",
    "bytes_per_day": str(10**15),
    "events_streams_per_user": "1000",  # Locust's users share one API key
}


class _Dirs:
    """What new_stack needs of pytest's tmp_path_factory."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def mktemp(self, name: str) -> Path:
        path = self.base / name
        path.mkdir(parents=True, exist_ok=False)
        return path


def auth_headers(env: dict[str, str]) -> dict[str, str]:
    """V2M_API_KEY from the environment, else the stack's own development key, if any."""
    key = os.environ.get("V2M_API_KEY") or env.get("V2M_DEV_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


@dataclass
class JobRow:
    id: str
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    output_size_bytes: int | None
    error_code: str | None

    @property
    def e2e_s(self) -> float:
        assert self.finished_at is not None
        return (self.finished_at - self.created_at).total_seconds()


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).replace(tzinfo=None)


class Services:
    """rclone's S3 server + an API + workers; ``close()`` stops everything it started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.s3_port = free_port()
        (workdir / "s3").mkdir()
        self.procs.append(start_s3(workdir / "s3", self.s3_port, workdir / "rclone.log"))
        self.s3_url = f"http://127.0.0.1:{self.s3_port}"
        # Per-user limits (if the API has them) would turn a load test into a test of them.
        self.stack: Stack = new_stack(
            cast("pytest.TempPathFactory", _Dirs(workdir)), AMQP_URL, self.s3_url, **NO_LIMITS
        )
        self.stack.start_api()
        self.http = httpx.Client(
            base_url=self.stack.api_url, timeout=120, headers=auth_headers(self.stack.env)
        )
        self.db_path = self.stack.env["V2M_DATABASE_URL"].removeprefix("sqlite:///")
        self._db: sqlite3.Connection | None = None

    # ------------------------------------------------------------------ processes

    @property
    def s3_pid(self) -> int:
        return self.procs[0].pid

    @property
    def api(self) -> Proc:
        return next(p for p in self.stack.procs if p.name == "api")

    @property
    def workers(self) -> list[Proc]:
        return [
            p for p in self.stack.procs if p.name.startswith("worker") and p.popen.poll() is None
        ]

    def start_workers(self, n: int, **env: str) -> list[Proc]:
        """Start ``n`` workers at once (not one after another) and wait until all consume."""
        started = []
        base = sum(1 for p in self.stack.procs if p.name.startswith("worker"))
        for i in range(n):
            port = free_port()
            proc = self.stack._spawn(
                f"worker-{base + i}",
                [sys.executable, "-m", "worker"],
                {"V2M_WORKER_METRICS_PORT": str(port), **env},
            )
            proc.metrics_port = port
            started.append(proc)
        for proc in started:
            wait_for(
                lambda p=proc: bool(p.events("consuming")) or p.popen.poll() is not None,  # type: ignore[misc]
                60,
                "a worker to consume",
            )
            assert proc.popen.poll() is None, proc.log_path.read_text()[-3000:]
        return started

    def stop_workers(self) -> None:
        for proc in self.workers:
            proc.stop(signal.SIGTERM, timeout=60)

    def start_proxy(self, rate_mb_s: float) -> str:
        port = free_port()
        proxy = subprocess.Popen(
            [sys.executable, "-m", "bench.throttle", "--listen", str(port)]
            + ["--target", f"127.0.0.1:{self.s3_port}", "--rate-mb-s", str(rate_mb_s)],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
        )
        assert proxy.stdout is not None
        assert proxy.stdout.readline().strip() == b"listening"
        self.procs.append(proxy)
        return f"http://127.0.0.1:{port}"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.http.close()
        self.stack.close()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    # ------------------------------------------------------------------ the user's flow

    def upload(self, inp: Input) -> str:
        resp = self.http.post(
            "/v1/uploads",
            json={
                "filename": inp.filename,
                "content_type": inp.content_type,
                "size_bytes": inp.size_bytes,
            },
        )
        assert resp.status_code == 201, resp.text
        grant = resp.json()
        with inp.path.open("rb") as body:
            put = httpx.put(grant["url"], content=body, headers=grant["headers"], timeout=600)
        assert put.status_code == 200, put.text
        upload_id: str = grant["upload_id"]
        return upload_id

    def create_job(self, upload_id: str, options: dict[str, Any] | None = None) -> str:
        resp = self.http.post("/v1/jobs", json={"upload_id": upload_id, "options": options or {}})
        assert resp.status_code == 202, resp.text
        job_id: str = resp.json()["id"]
        return job_id

    # ------------------------------------------------------------------ reading job rows

    def row(self, job_id: str) -> JobRow:
        if self._db is None:
            self._db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        cur = self._db.execute(
            "SELECT id, status, created_at, started_at, finished_at, output_size_bytes,"
            " error_code FROM job WHERE id = ?",
            (job_id,),
        )
        found = cur.fetchone()
        assert found is not None, job_id
        created = _ts(found[2])
        assert created is not None
        return JobRow(found[0], found[1], created, _ts(found[3]), _ts(found[4]), found[5], found[6])

    def wait(self, job_ids: list[str], timeout: float = 900, poll_s: float = 0.05) -> list[JobRow]:
        """Wait until every job has finished (polls of the database, read-only).

        Times come from the rows' own timestamps (server clocks), so the poll interval
        only decides when the bench notices; a coarse one keeps its CPU off the two cores
        the job and storage share."""
        deadline = time.monotonic() + timeout
        pending = list(job_ids)
        while pending:
            pending = [j for j in pending if self.row(j).status not in ("completed", "failed")]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} jobs not finished")
            if pending:
                time.sleep(poll_s)
        rows = [self.row(j) for j in job_ids]
        failed = [r for r in rows if r.status != "completed"]
        assert not failed, failed
        return rows


class Sampler:
    """Polls a worker every few ms: its RSS, its children's peak RSS, its temp dir's size.

    Reads /proc directly (statm, status, task/*/children): a few syscalls per sample, so
    the sampling itself takes next to no CPU from the job being measured.
    """

    def __init__(self, pid: int, tmp_dir: Path, interval_s: float = 0.005) -> None:
        self.pid = pid
        self.tmp_dir = tmp_dir
        self.interval_s = interval_s
        self.page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.reset()
        self._thread.start()

    def reset(self) -> None:
        self.worker_peak = 0
        self.children_peak = 0
        self.sum_peak = 0
        self.tmp_peak = 0

    def _children(self) -> list[int]:
        pids: list[int] = []
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                with (
                    contextlib.suppress(OSError),
                    open(f"/proc/{self.pid}/task/{tid}/children") as f,
                ):
                    pids.extend(int(p) for p in f.read().split())
        return pids

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with open(f"/proc/{self.pid}/statm") as statm:
                    worker = int(statm.read().split()[1]) * self.page
            except OSError:
                continue
            children = sum(_hwm(pid) for pid in self._children() if _has_exec(pid, self.pid))
            self.worker_peak = max(self.worker_peak, worker)
            self.children_peak = max(self.children_peak, children)
            self.sum_peak = max(self.sum_peak, worker + children)
            self.tmp_peak = max(self.tmp_peak, _tree_bytes(self.tmp_dir))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _has_exec(pid: int, parent: int) -> bool:
    """True once a child runs its own program. Between fork and exec a child is a copy
    of the worker sharing its pages, and its VmHWM repeats the worker's peak: counted,
    it would add the worker's memory twice."""
    try:
        return os.readlink(f"/proc/{pid}/exe") != os.readlink(f"/proc/{parent}/exe")
    except OSError:
        return False


def _hwm(pid: int) -> int:
    """Peak RSS (VmHWM) of a process in bytes; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_bytes(path: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    total += _tree_bytes(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_size
    return total


@contextlib.contextmanager
def sampling(services: Services) -> Iterator[Sampler]:
    (worker,) = services.workers
    sampler = Sampler(worker.popen.pid, Path(services.stack.env["V2M_TMP_DIR"]))
    try:
        yield sampler
    finally:
        sampler.stop()
