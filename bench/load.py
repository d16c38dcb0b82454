"""Locust headless against the bench's stack while its workers convert what the users upload.

The users are tests/load/locustfile.py's: converting users (presign, PUT, create the job,
follow its events, download the MP3) and browsing users (list jobs, read their status).
Locust runs as a subprocess (it monkey-patches the standard library with gevent at import).
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import measure, profile
from bench.results import Config, Figure, Results
from bench.stack import Services
from tests.integration.conftest import BIN, ROOT

LOCUSTFILE = ROOT / "tests" / "load" / "locustfile.py"
P99_TARGET_MS = 100.0
WORKERS = 2
SPAWN_RATE = 10
# A request name of the API's own routes: "METHOD /path"; storage requests (presigned PUT and
# GET) and the journeys' custom events are named otherwise.
API_ROUTE = re.compile(r"^[A-Z]+ /")


@dataclass(frozen=True)
class RequestStats:
    type: str
    name: str
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    rps: float

    @property
    def judged(self) -> bool:
        """Counted for the p99 target: an API route, login excepted (its password hash is
        slow by design)."""
        return (
            self.type != "journey"
            and API_ROUTE.match(self.name) is not None
            and "login" not in self.name.lower()
        )


def _number(text: str) -> float:
    return float(text) if text not in ("", "N/A") else 0.0


def read_stats(path: Path) -> list[RequestStats]:
    """The rows of Locust's ``*_stats.csv``, without its Aggregated total."""
    with path.open() as stats_file:
        return [
            RequestStats(
                type=row["Type"],
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                p50_ms=_number(row["50%"]),
                p95_ms=_number(row["95%"]),
                p99_ms=_number(row["99%"]),
                max_ms=_number(row["Max Response Time"]),
                rps=_number(row["Requests/s"]),
            )
            for row in csv.DictReader(stats_file)
            if row["Name"] != "Aggregated"
        ]


def judge(stats: list[RequestStats], users: int, seconds: int) -> list[Figure]:
    """The two Locust figures: no failed request or journey; every judged route's p99."""
    failures = sum(s.failures for s in stats)
    total = sum(s.requests for s in stats if s.type != "journey")
    judged = [s for s in stats if s.judged]
    if not judged:
        raise RuntimeError("Locust recorded no request to an API route")
    worst = max(judged, key=lambda s: s.p99_ms)
    failed = [f"{s.name} ({s.failures})" for s in stats if s.failures]
    return [
        Figure(
            "locust_failures",
            f"Locust, {users} users for {seconds} s: failed requests and journeys",
            failures,
            total,
            failures / total if total else 0.0,
            "0 failed",
            failures == 0,
            "",
            f"{total} requests; failed: " + (", ".join(failed) if failed else "none"),
        ),
        Figure(
            "locust_p99",
            f"Locust, {users} users: highest p99 of the API routes (login excepted)",
            worst.p99_ms,
            P99_TARGET_MS,
            worst.p99_ms / P99_TARGET_MS,
            f"<= {P99_TARGET_MS:.0f} ms",
            worst.p99_ms <= P99_TARGET_MS,
            "ms",
            f"highest: {worst.name}; "
            + ", ".join(f"{s.name} {s.p99_ms:.0f}" for s in judged if s is not worst),
        ),
    ]


def _run(
    services: Services, workdir: Path, name: str, users: int, seconds: int
) -> tuple[Path, float]:
    """One headless Locust run against the stack, py-spy on the API if ``name`` says
    "profiled"; once it exited, its CSV prefix and the CPU seconds Locust used."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    key = services.http.headers.get("Authorization", "").removeprefix("Bearer ")
    if key:
        env["V2M_API_KEY"] = key
    prefix = workdir / name
    with (workdir / f"{name}.log").open("wb") as log:
        run = subprocess.Popen(
            [str(BIN / "locust"), "-f", str(LOCUSTFILE), "--headless"]
            + ["--host", services.stack.api_url, "--users", str(users)]
            + ["--spawn-rate", str(SPAWN_RATE), "--run-time", f"{seconds}s"]
            + ["--stop-timeout", "60", "--csv", str(prefix), "--only-summary"]
            + ["--loglevel", "WARNING"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        spy = None
        if name.endswith("profiled"):
            spy = profile.attach(services.api.popen.pid, seconds, workdir / f"{name}.pyspy")
        locust_cpu = _reap(run, seconds + 180)
        if spy is not None:
            _reap(spy, 60)
    if run.returncode not in (0, 1):  # 1: the run had failures, which the figures report
        tail = (workdir / f"{name}.log").read_text()[-3000:]
        raise RuntimeError(f"locust exited {run.returncode}: {tail}")
    return prefix, locust_cpu


def locust(services: Services, cfg: Config, results: Results, workdir: Path) -> None:
    """The measured run, then (if configured) a shorter one with py-spy on the API: py-spy
    takes about as much CPU as the API itself, so it never runs during the measured one."""
    users, seconds = cfg.locust_users, cfg.locust_seconds
    print(f"- Locust: {users} users for {seconds} s, {WORKERS} workers converting", flush=True)
    services.stop_workers()
    workers = services.start_workers(WORKERS)
    pids = {
        "api": services.api.popen.pid,
        "s3": services.s3_pid,
        "rabbitmq": measure.broker_pid() or 0,
    }

    def cpu() -> dict[str, float]:
        return {
            **{name: measure.cpu_s(pid) for name, pid in pids.items()},
            "workers": sum(measure.cpu_s(w.popen.pid) for w in workers),
            "ffmpeg and ffprobe": sum(measure.cpu_s(w.popen.pid, children=True) for w in workers),
        }

    before, started = cpu(), time.monotonic()
    prefix, locust_cpu = _run(services, workdir, "locust", users, seconds)
    results.load_wall_s = time.monotonic() - started
    results.load_cpu_s = {name: used - before[name] for name, used in cpu().items()}
    results.load_cpu_s["locust"] = locust_cpu
    stats = read_stats(Path(f"{prefix}_stats.csv"))
    results.load = [{**asdict(s), "judged": s.judged} for s in stats]
    for figure in judge(stats, users, seconds):
        results.add(figure)
    if cfg.profile_seconds:
        _run(services, workdir, "locust-profiled", users, cfg.profile_seconds)
        out = workdir / "locust-profiled.pyspy"
        if out.exists():
            title = f"the API under Locust ({users} users, {cfg.profile_seconds} s run of its own)"
            results.profiles[title] = profile.summarise_profile(out)


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait for a child (killed after ``timeout`` s); the CPU seconds it used, from wait4."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.2)
