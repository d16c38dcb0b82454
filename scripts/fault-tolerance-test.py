"""Submit a batch of jobs to a live stack while injecting faults; check nothing is lost.

Runs against `make run` (which restarts workers that die). Prints a table and exits
non-zero unless no job was lost, duplicated or left stuck (and, with --crash-loop, the
job that crashes every worker ended failed).

    .venv/bin/python scripts/fault-tolerance-test.py --jobs 50
    .venv/bin/python scripts/fault-tolerance-test.py --faults kill          # workers only
    .venv/bin/python scripts/fault-tolerance-test.py --faults db --max-faults 1 --db-outage 30 \\
        --db-stop "pg_ctlcluster 15 main stop" --db-start "pg_ctlcluster 15 main start"
    .venv/bin/python scripts/fault-tolerance-test.py --jobs 5 --faults kill --crash-loop

Faults (--faults, comma-separated, one picked at random at each tick):
  kill    SIGKILL of a random worker of this stack (a `python -m worker` process whose
          V2M_QUEUE_NAME is this stack's queue)
  broker  a restart of the RabbitMQ application (`rabbitmqctl stop_app` … `start_app`;
          override with --broker-stop/--broker-start)
  db      the database stopped for --db-outage seconds (PostgreSQL stacks; --db-stop and
          --db-start are required), longer than the broker's delivery-limit give-backs
--crash-loop adds one job whose worker is SIGKILLed each time one runs it (found as the
parent of the ffmpeg reading that job's file): it must end failed (the delivery limit),
never loop or stay queued.

Credentials: the API key in V2M_API_KEY, otherwise the one `make run` keeps in
.run/dev-api-key. A 429 waits for its Retry-After; a 5xx during an outage is retried with
the same Idempotency-Key. Every request goes to the given API on this machine only.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.config import get_settings  # noqa: E402
from shared.storage import Storage  # noqa: E402

FAULTS = ("kill", "broker", "db")


@dataclass
class Run:
    tag: str
    queue: str
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> job id
    refused: int = 0  # 5xx answers retried
    limited: int = 0  # 429 answers waited out
    faults: Counter[str] = field(default_factory=Counter)


class ApiRefused(RuntimeError):
    """An answer no retry can fix (401, 404 on a route, 422…): the run stops and says why."""


def api_key() -> str:
    key = os.environ.get("V2M_API_KEY", "").strip()
    stored = ROOT / ".run" / "dev-api-key"
    if not key and stored.is_file():
        key = stored.read_text().strip()
    if not key:
        raise SystemExit(
            "no API key: set V2M_API_KEY (python -m api.admin create-key EMAIL makes one) "
            "or start `make run`, which keeps its key in .run/dev-api-key"
        )
    return key


def wait_out(resp: httpx.Response, run: Run) -> bool:
    """Sleep through a 429 (its Retry-After) or a 5xx (an outage); False for anything else."""
    if resp.status_code == 429:
        run.limited += 1
        time.sleep(float(resp.headers.get("Retry-After", "1")))
        return True
    if resp.status_code >= 500:
        run.refused += 1
        time.sleep(1.0)
        return True
    return False


def make_media(directory: Path, seconds: int) -> Path:
    path = directory / f"ft-{seconds}s.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"]
        + ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds)]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(path)],
        check=True,
    )
    return path


def submit(api: httpx.Client, media: Path, run: Run, key: str, deadline: float) -> None:
    """Upload and create one job, retrying through outages with the same Idempotency-Key."""
    upload_id: str | None = None
    while time.monotonic() < deadline:
        try:
            if upload_id is None:
                grant = api.post(
                    "/v1/uploads",
                    json={
                        "filename": f"{key}.mp4",
                        "content_type": "video/mp4",
                        "size_bytes": media.stat().st_size,
                    },
                )
                if wait_out(grant, run):
                    continue
                if grant.status_code != 201:
                    raise ApiRefused(f"POST /v1/uploads: {grant.status_code} {grant.text[:300]}")
                body = grant.json()
                put = httpx.put(
                    body["url"], content=media.read_bytes(), headers=body["headers"], timeout=60
                )
                put.raise_for_status()
                upload_id = body["upload_id"]
            resp = api.post(
                "/v1/jobs", json={"upload_id": upload_id}, headers={"Idempotency-Key": key}
            )
            if resp.status_code == 202:
                run.accepted[key] = resp.json()["id"]
                return
            if not wait_out(resp, run):
                raise ApiRefused(f"POST /v1/jobs: {resp.status_code} {resp.text[:300]}")
        except (httpx.TransportError, httpx.HTTPStatusError, OSError):
            time.sleep(1.0)
    raise RuntimeError(f"job {key} could not be submitted before the deadline")


def job_state(api: httpx.Client, job_id: str, run: Run) -> dict[str, Any] | None:
    """The job's body, {"status": "lost"} when the API no longer knows it, None if unclear."""
    try:
        resp = api.get(f"/v1/jobs/{job_id}")
    except httpx.TransportError:
        return None
    if resp.status_code == 404:
        return {"status": "lost"}
    if wait_out(resp, run):
        return None
    if resp.status_code != 200:
        raise ApiRefused(f"GET /v1/jobs/{job_id}: {resp.status_code} {resp.text[:300]}")
    body: dict[str, Any] = resp.json()
    return body


def listed_since(api: httpx.Client, since: str, run: Run) -> list[dict[str, Any]]:
    """Every job listed, newest first, down to the first one created before `since`."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        resp = api.get("/v1/jobs", params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        if wait_out(resp, run):
            continue
        if resp.status_code != 200:
            raise ApiRefused(f"GET /v1/jobs: {resp.status_code} {resp.text[:300]}")
        page = resp.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor or any(str(j["created_at"]) < since for j in page["items"]):
            return items


def error_code(job: dict[str, Any]) -> str:
    error = job.get("error")
    return str(error.get("code")) if isinstance(error, dict) else "?"


def worker_pids(queue: str) -> list[int]:
    """`python -m worker` processes consuming `queue` (other stacks' workers are left alone)."""
    out = subprocess.run(
        ["pgrep", "-f", r"python.* -m worker$"], capture_output=True, text=True
    ).stdout
    candidates = [int(pid) for pid in out.split()]
    if not Path("/proc").is_dir():
        return candidates  # no /proc (macOS): every worker on the machine
    pids = []
    for pid in candidates:
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue  # exited meanwhile
        env = dict(v.split("=", 1) for v in raw.decode(errors="replace").split("\0") if "=" in v)
        if env.get("V2M_QUEUE_NAME", queue) == queue:
            pids.append(pid)
    return pids


def kill_workers(run: Run, pids: list[int], fault: str) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            run.faults[fault] += 1
        except ProcessLookupError:
            pass


def chaos(run: Run, stop: threading.Event, args: argparse.Namespace, rng: random.Random) -> None:
    injected = 0
    while not stop.wait(rng.uniform(args.min_interval, args.max_interval)):
        if args.max_faults and injected >= args.max_faults:
            return
        fault = rng.choice(args.faults)
        if fault in ("broker", "db"):
            start, stop_cmd, outage = (
                (args.broker_start, args.broker_stop, rng.uniform(1, 4))
                if fault == "broker"
                else (args.db_start, args.db_stop, args.db_outage)
            )
            subprocess.run(shlex.split(stop_cmd), capture_output=True, check=True)
            stop.wait(outage)
            subprocess.run(shlex.split(start), capture_output=True, check=True)
            run.faults["broker restarted" if fault == "broker" else "database stopped"] += 1
            injected += 1
        elif pids := worker_pids(run.queue):
            kill_workers(run, [rng.choice(pids)], "worker killed (SIGKILL)")
            injected += 1


def crash_loop(run: Run, key: str, stop: threading.Event) -> None:
    """SIGKILL the worker that runs the crash job, each time one runs it.

    The job's ffmpeg reads a URL that names the uploaded file (`<key>.mp4`), so its parent
    is the worker holding the job; the other workers and their jobs are left alone.
    """
    while not stop.wait(0.1):
        out = subprocess.run(
            ["pgrep", "-f", f"ffmpeg .*{key}\\.mp4"], capture_output=True, text=True
        ).stdout
        for pid in (int(p) for p in out.split()):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            parent = int(status.split("PPid:")[1].split()[0])
            kill_workers(run, [p for p in worker_pids(run.queue) if p == parent], "crash-loop kill")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--durations", default="5,20,60", help="seconds of the inputs, one picked per job"
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds for everything to finish"
    )
    parser.add_argument("--faults", default="kill,broker", help=f"some of {','.join(FAULTS)}")
    parser.add_argument("--no-broker-restarts", dest="broker_restarts", action="store_false")
    parser.add_argument(
        "--max-faults", type=int, default=0, help="stop injecting after N (0: no cap)"
    )
    parser.add_argument("--min-interval", type=float, default=2.0)
    parser.add_argument("--max-interval", type=float, default=6.0)
    parser.add_argument("--broker-stop", default="rabbitmqctl stop_app")
    parser.add_argument("--broker-start", default="rabbitmqctl start_app")
    parser.add_argument("--db-stop", default="")
    parser.add_argument("--db-start", default="")
    parser.add_argument(
        "--db-outage", type=float, default=30.0, help="seconds the database is down"
    )
    parser.add_argument("--crash-loop", action="store_true")
    args = parser.parse_args()
    args.faults = [
        f for f in args.faults.split(",") if f and (args.broker_restarts or f != "broker")
    ]
    if not args.faults or set(args.faults) - set(FAULTS):
        parser.error(f"--faults takes one or more of {','.join(FAULTS)}")
    commands = {
        "broker": (args.broker_stop, args.broker_start),
        "db": (args.db_stop, args.db_start),
    }
    for fault in set(args.faults) & set(commands):
        for command in commands[fault]:
            if not command or not shutil.which(shlex.split(command)[0]):
                parser.error(
                    f"the {fault} fault needs --{fault}-stop/--{fault}-start commands on PATH"
                )
    if not args.api.startswith(("http://127.", "http://localhost", "http://[::1]")):
        parser.error("this script only targets a stack on this machine")
    return args


def main() -> int:
    args = parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    settings = get_settings()
    run = Run(tag=f"ft{uuid.uuid4().hex[:6]}", queue=settings.queue_name)
    crash_key = f"{run.tag}-crash"
    since = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    deadline = time.monotonic() + args.timeout
    headers = {"Authorization": f"Bearer {api_key()}"}
    with (
        tempfile.TemporaryDirectory() as tmp,
        httpx.Client(base_url=args.api, timeout=30, headers=headers) as api,
    ):
        media = [make_media(Path(tmp), int(s)) for s in args.durations.split(",")]
        stop = threading.Event()
        threads = [threading.Thread(target=chaos, args=(run, stop, args, rng), daemon=True)]
        started = time.monotonic()
        if args.crash_loop:
            # a long input, so its ffmpeg runs long enough to be seen and its worker killed
            submit(api, make_media(Path(tmp), 600), run, crash_key, deadline)
            threads.append(
                threading.Thread(target=crash_loop, args=(run, crash_key, stop), daemon=True)
            )
        for thread in threads:
            thread.start()
        for i in range(args.jobs):
            submit(api, rng.choice(media), run, f"{run.tag}-{i}", deadline)
        # Follow every accepted job to the end, faults still going on meanwhile.
        final: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline and len(final) < len(run.accepted):
            for key, job_id in list(run.accepted.items()):
                if key not in final and (job := job_state(api, job_id, run)) is not None:
                    if job["status"] in ("completed", "failed", "lost"):
                        final[key] = job
            time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        listing = listed_since(api, since, run)

    # Duplicates: more than one job for one submission, or more than one MP3 for one job.
    per_file = Counter(
        j["input"]["filename"] for j in listing if str(j["input"]["filename"]).startswith(run.tag)
    )
    storage = Storage(settings)
    listed = storage.client.list_objects(storage.bucket, prefix="outputs/", recursive=True)
    keys = [o.object_name or "" for o in listed]
    per_job = Counter(k.split("/")[-1].split(".")[0] for k in keys)
    crash = final.pop(crash_key, None) if args.crash_loop else None
    completed = [k for k, j in final.items() if j["status"] == "completed"]
    failed = Counter(error_code(j) for j in final.values() if j["status"] == "failed")
    lost = [k for k, j in final.items() if j["status"] == "lost"]
    stuck = [k for k in run.accepted if k not in final and k != crash_key]
    duplicates = sum(n - 1 for n in per_file.values() if n > 1) + sum(
        per_job[run.accepted[k]] - 1 for k in completed if per_job[run.accepted[k]] > 1
    )
    missing_mp3 = [k for k in completed if per_job[run.accepted[k]] == 0]
    crash_outcome = "" if crash is None else f"{crash['status']} {error_code(crash)}"

    rows: list[tuple[str, object]] = [
        ("submitted", args.jobs),
        ("accepted (202)", len(run.accepted) - (crash_key in run.accepted)),
        ("refused with 5xx and retried", run.refused),
        ("limited with 429 and waited", run.limited),
        ("completed", len(completed)),
        *[(f"failed: {code}", n) for code, n in sorted(failed.items())],
        ("duplicates", duplicates),
        ("lost", len(lost) + len(missing_mp3)),
        ("stuck", len(stuck)),
        *([("crash-loop job", crash_outcome or "stuck")] if args.crash_loop else []),
        *[(f"fault: {name}", n) for name, n in sorted(run.faults.items())],
        ("elapsed (s)", round(elapsed, 1)),
        ("seed", seed),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'figure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    crash_ok = not args.crash_loop or crash_outcome.startswith("failed")
    return 0 if crash_ok and not (lost or missing_mp3 or stuck or duplicates) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ApiRefused as exc:
        sys.exit(f"error: the API refused the run: {exc}")
