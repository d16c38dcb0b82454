"""A short headless Locust run of tests/load/locustfile.py against a real local stack.

Locust runs as a subprocess (it monkey-patches the standard library with gevent at import,
which must never happen inside the pytest process). The run fails on any failed request or
custom event, and every job the users created must have completed.
"""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import BIN, ROOT, StackFactory

pytestmark = pytest.mark.integration

LOCUSTFILE = ROOT / "tests" / "load" / "locustfile.py"
USERS, SPAWN_RATE, RUN_TIME_S = 10, 5, 30


def test_locust_smoke_run_has_no_failures_and_completes_every_job(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    # Given the real stack: API, two workers, RabbitMQ, rclone's S3 server, ffmpeg
    # (all users share the stack's one API key: per-user limits must not get in the way)
    stack = make_stack(
        workers=2,
        uploads_per_minute="100000",
        max_active_jobs="100000",
        bytes_per_day=str(10**15),
        events_streams_per_user=str(USERS),
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    key = stack.env.get("V2M_DEV_API_KEY")
    if key:
        env["V2M_API_KEY"] = key
    # When 10 users (converting and browsing) run for 30 s, headless
    run = subprocess.run(
        [str(BIN / "locust"), "-f", str(LOCUSTFILE), "--headless", "--host", stack.api_url]
        + ["--users", str(USERS), "--spawn-rate", str(SPAWN_RATE), "--run-time", f"{RUN_TIME_S}s"]
        + ["--stop-timeout", "90", "--csv", str(tmp_path / "locust"), "--only-summary"]
        + ["--loglevel", "WARNING"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIME_S + 150,
        check=False,
    )
    output = (run.stdout + run.stderr)[-6000:]
    # Then no request and no journey failed
    with (tmp_path / "locust_stats.csv").open() as stats_file:
        stats = {(r["Type"], r["Name"]): r for r in csv.DictReader(stats_file)}
    failures = {
        name: int(r["Failure Count"]) for name, r in stats.items() if name[1] != "Aggregated"
    }
    assert sum(failures.values()) == 0, (failures, output)
    assert run.returncode == 0, output
    # and the whole flow ran, more than once
    journeys = int(stats[("journey", "whole journey")]["Request Count"])
    assert journeys >= 5, (journeys, output)
    for name in ("upload", "queue wait", "conversion"):
        assert int(stats[("journey", name)]["Request Count"]) >= journeys, name
    assert int(stats[("GET", "GET /v1/jobs/{id}")]["Request Count"]) > 0
    # and every job that was created has completed
    jobs: list[dict[str, object]] = []
    with stack.client() as api:
        cursor = None
        while True:
            page = api.get(
                "/v1/jobs", params={"limit": 100, **({"cursor": cursor} if cursor else {})}
            )
            assert page.status_code == 200, page.text
            jobs += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if not cursor:
                break
    assert len(jobs) >= journeys
    assert {str(j["status"]) for j in jobs} == {"completed"}, [
        (j["id"], j["status"]) for j in jobs if j["status"] != "completed"
    ]
