"""Submit a batch of jobs to a live stack while killing workers and restarting RabbitMQ.

Runs against `make run` (which restarts workers that die). Prints a table and exits
non-zero unless no job was lost, duplicated or left stuck.

    .venv/bin/python scripts/fault-tolerance-test.py --jobs 50
    .venv/bin/python scripts/fault-tolerance-test.py --no-broker-restarts   # workers only

Faults: SIGKILL of a random worker process (found by its command line), and a restart of
the RabbitMQ application (`rabbitmqctl stop_app` … `start_app`; override with
--broker-stop/--broker-start). Every request goes to the given API on this machine only.
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
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.config import get_settings  # noqa: E402
from shared.storage import Storage  # noqa: E402


@dataclass
class Run:
    tag: str
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> job id
    refused: int = 0
    faults: Counter[str] = field(default_factory=Counter)


def make_media(directory: Path, seconds: int) -> Path:
    path = directory / f"ft-{seconds}s.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=10",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            str(path),
        ],
        check=True,
    )
    return path


def submit(api: httpx.Client, media: Path, run: Run, index: int, deadline: float) -> None:
    """Upload and create one job, retrying through outages with the same Idempotency-Key."""
    key = f"{run.tag}-{index}"
    name = f"{run.tag}-{index}.mp4"
    upload_id: str | None = None
    while time.monotonic() < deadline:
        try:
            if upload_id is None:
                grant = api.post(
                    "/v1/uploads",
                    json={
                        "filename": name,
                        "content_type": "video/mp4",
                        "size_bytes": media.stat().st_size,
                    },
                )
                grant.raise_for_status()
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
            if resp.status_code == 503:
                run.refused += 1
                time.sleep(1.0)
                continue
            raise RuntimeError(f"unexpected {resp.status_code}: {resp.text[:200]}")
        except (httpx.HTTPError, OSError):
            time.sleep(1.0)
    raise RuntimeError(f"job {index} could not be submitted before the deadline")


def error_code(job: dict[str, object]) -> str:
    error = job.get("error")
    return str(error.get("code")) if isinstance(error, dict) else "?"


def worker_pids() -> list[int]:
    out = subprocess.run(
        ["pgrep", "-f", r"python.* -m worker$"], capture_output=True, text=True
    ).stdout
    return [int(pid) for pid in out.split()]


def chaos(run: Run, stop: threading.Event, args: argparse.Namespace, rng: random.Random) -> None:
    while not stop.wait(rng.uniform(args.min_interval, args.max_interval)):
        if args.broker_restarts and rng.random() < 0.25:
            subprocess.run(shlex.split(args.broker_stop), capture_output=True, check=True)
            stop.wait(rng.uniform(1, 4))
            subprocess.run(shlex.split(args.broker_start), capture_output=True, check=True)
            run.faults["broker restarted"] += 1
        else:
            pids = worker_pids()
            if pids:
                os.kill(rng.choice(pids), signal.SIGKILL)
                run.faults["worker killed (SIGKILL)"] += 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds for everything to finish"
    )
    parser.add_argument("--min-interval", type=float, default=2.0)
    parser.add_argument("--max-interval", type=float, default=6.0)
    parser.add_argument("--no-broker-restarts", dest="broker_restarts", action="store_false")
    parser.add_argument("--broker-stop", default="rabbitmqctl stop_app")
    parser.add_argument("--broker-start", default="rabbitmqctl start_app")
    args = parser.parse_args()
    for command in (args.broker_stop, args.broker_start) if args.broker_restarts else ():
        if not shutil.which(shlex.split(command)[0]):
            parser.error(
                f"{shlex.split(command)[0]!r} is not on PATH (see --broker-stop/--broker-start)"
            )
    if not args.api.startswith(("http://127.", "http://localhost", "http://[::1]")):
        parser.error("this script only targets a stack on this machine")

    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    run = Run(tag=f"ft{uuid.uuid4().hex[:6]}")
    deadline = time.monotonic() + args.timeout
    with tempfile.TemporaryDirectory() as tmp:
        media = [make_media(Path(tmp), s) for s in (5, 20, 60)]
        stop = threading.Event()
        chaos_thread = threading.Thread(target=chaos, args=(run, stop, args, rng), daemon=True)
        chaos_thread.start()
        started = time.monotonic()
        with httpx.Client(base_url=args.api, timeout=30) as api:
            for i in range(args.jobs):
                submit(api, rng.choice(media), run, i, deadline)
            # Follow every accepted job to the end, faults still going on meanwhile.
            final: dict[str, dict[str, object]] = {}
            while time.monotonic() < deadline and len(final) < len(run.accepted):
                for key, job_id in run.accepted.items():
                    if key in final:
                        continue
                    try:
                        resp = api.get(f"/v1/jobs/{job_id}")
                    except httpx.HTTPError:
                        continue
                    if resp.status_code == 404:
                        final[key] = {"status": "lost"}
                    elif resp.json()["status"] in ("completed", "failed"):
                        final[key] = resp.json()
                time.sleep(0.5)
            stop.set()
            chaos_thread.join()
            elapsed = time.monotonic() - started
            listing = api.get("/v1/jobs", params={"limit": 100}).json()

    # Duplicates: more than one job for one submission, or more than one MP3 for one job.
    ours = [j for j in listing["items"] if str(j["input"]["filename"]).startswith(run.tag)]
    per_file = Counter(j["input"]["filename"] for j in ours)
    storage = Storage(get_settings())
    keys = [
        o.object_name or ""
        for o in storage.client.list_objects(storage.bucket, prefix="outputs/", recursive=True)
    ]
    per_job = Counter(k.split("/")[-1].split(".")[0] for k in keys)
    completed = [k for k, j in final.items() if j.get("status") == "completed"]
    failed = Counter(error_code(j) for j in final.values() if j.get("status") == "failed")
    lost = [k for k, j in final.items() if j.get("status") == "lost"]
    stuck = [k for k in run.accepted if k not in final]
    duplicates = sum(n - 1 for n in per_file.values() if n > 1) + sum(
        per_job[run.accepted[k]] - 1 for k in completed if per_job[run.accepted[k]] > 1
    )
    missing_mp3 = [k for k in completed if per_job[run.accepted[k]] == 0]

    rows = [
        ("submitted", args.jobs),
        ("accepted (202)", len(run.accepted)),
        ("refused with 503 and retried", run.refused),
        ("completed", len(completed)),
        *[(f"failed: {code}", n) for code, n in sorted(failed.items())],
        ("duplicates", duplicates),
        ("lost", len(lost) + len(missing_mp3)),
        ("stuck", len(stuck)),
        *[(f"fault: {name}", n) for name, n in sorted(run.faults.items())],
        ("elapsed (s)", round(elapsed, 1)),
        ("seed", seed),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'figure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    return 0 if not (lost or missing_mp3 or stuck or duplicates) else 1


if __name__ == "__main__":
    sys.exit(main())
