"""Our metrics themselves: names, labels, what the worker records, and the API reporting
correctly from several uvicorn processes (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY, Metric

import api.metrics
import worker.metrics as wm
from tests.integration.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_LABELS = re.compile(r"(^|_)(id|job_id|user_id|upload_id|request_id|key|filename)$")


def our_families() -> list[Metric]:
    assert api.metrics.REQUESTS and wm.JOBS_FINISHED  # both registered
    return [f for f in REGISTRY.collect() if f.name.startswith("v2m_")]


def sample_value(name: str, labels: dict[str, str] | None = None) -> float:
    value = REGISTRY.get_sample_value(name, labels or {})
    return value or 0.0


def test_names_are_prefixed_in_base_units_and_counters_end_in_total() -> None:
    for family in our_families():
        assert re.fullmatch(r"v2m_(api|worker|notifier)_[a-z0-9_]+", family.name), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_factor")), family.name


def test_no_label_can_hold_a_job_user_or_request_id() -> None:
    declared = {
        name: tuple(getattr(collector, "_labelnames", ()))
        for name, collector in REGISTRY._names_to_collectors.items()
        if name.startswith("v2m_")
    }
    assert "v2m_worker_jobs_finished_total" in declared
    for name, labels in declared.items():
        for label in labels:
            assert not FORBIDDEN_LABELS.search(label), f"{name}{{{label}}}"


def test_series_that_rates_depend_on_exist_before_the_first_event() -> None:
    # A counter that appears at 1 hides its first increment from rate()/increase().
    assert (
        REGISTRY.get_sample_value(
            "v2m_worker_jobs_finished_total", {"outcome": "completed", "code": ""}
        )
        is not None
    )
    for code in (
        "no_audio_stream",
        "unsupported_media",
        "resource_limit",
        "timeout",
        "retries_exhausted",
    ):
        labels = {"outcome": "failed", "code": code}
        assert REGISTRY.get_sample_value("v2m_worker_jobs_finished_total", labels) is not None
    assert (
        REGISTRY.get_sample_value("v2m_api_jobs_created_total", {"outcome": "created"}) is not None
    )


def test_worker_records_speed_bytes_and_exit_codes() -> None:
    before = {
        "media": sample_value("v2m_worker_media_seconds_total"),
        "rtf": sample_value("v2m_worker_realtime_factor_count"),
        "rtf_sum": sample_value("v2m_worker_realtime_factor_sum"),
        "in": sample_value("v2m_worker_input_bytes_total"),
        "out": sample_value("v2m_worker_output_bytes_total"),
        "exit": sample_value(
            "v2m_worker_ffmpeg_exits_total", {"tool": "ffmpeg", "exit_code": "-9"}
        ),
    }

    wm.record_transcode(media_s=120.0, wall_s=2.0)
    wm.record_transcode(media_s=None, wall_s=1.0)  # unknown length: time only
    wm.record_completed(input_bytes=1000, output_bytes=300)
    wm.record_exit("ffmpeg", -9)

    assert sample_value("v2m_worker_media_seconds_total") - before["media"] == pytest.approx(120.0)
    assert sample_value("v2m_worker_realtime_factor_count") - before["rtf"] == 1
    assert sample_value("v2m_worker_realtime_factor_sum") - before["rtf_sum"] == pytest.approx(60.0)
    assert sample_value("v2m_worker_input_bytes_total") - before["in"] == 1000
    assert sample_value("v2m_worker_output_bytes_total") - before["out"] == 300
    exits = sample_value("v2m_worker_ffmpeg_exits_total", {"tool": "ffmpeg", "exit_code": "-9"})
    assert exits - before["exit"] == 1


def test_worker_metrics_server_serves_metrics_and_health() -> None:
    port = free_port()
    server = wm.serve_health(port, lambda: True, concurrency=3)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        server.shutdown()
        server.server_close()

    assert "v2m_worker_concurrency 3.0" in text
    assert re.search(
        r'^v2m_worker_build_info\{python_version="[^"]+",version="[^"]+"\} 1\.0$', text, re.M
    )
    assert "process_resident_memory_bytes" in text
    assert health.status_code == 200


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_api_under_several_uvicorn_workers_reports_every_request(tmp_path: Path) -> None:
    # Given an API served by two uvicorn processes in prometheus-client's multiprocess mode
    multiproc = tmp_path / "prometheus-multiproc"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("V2M_")},
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "V2M_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "V2M_S3_CREATE_BUCKET": "false",
        "V2M_LOG_FORMAT": "json",
        "V2M_FRONTEND_DIR": str(tmp_path / "no-frontend"),
    }
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def both_up() -> bool:
            pids = {p.name.rsplit("_", 1)[-1] for p in multiproc.glob("*.db")}
            try:
                ok = httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
            return ok and len(pids) >= 2

        wait_for(both_up, 30, "two API processes to serve")
        baseline = httpx.get(f"{base}/metrics", timeout=5).text
        start = _metric(baseline, "v2m_api_requests_total", route="/healthz")

        # When requests arrive on fresh connections (the kernel spreads them over both)
        for _ in range(40):
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200

        # Then every scrape, whichever process answers it, counts all of them
        for _ in range(6):
            text = httpx.get(f"{base}/metrics", timeout=5).text
            assert _metric(text, "v2m_api_requests_total", route="/healthz") - start == 40
            assert _metric(text, "v2m_api_request_duration_seconds_count", route="/healthz") >= 40
        # ...and reports build info once and process metrics for each live process.
        assert len(re.findall(r"^v2m_api_build_info\{", text, re.M)) == 1
        pids = set(re.findall(r'^process_resident_memory_bytes\{pid="(\d+)"\}', text, re.M))
        assert len(pids) == 2, text
        counter_files = {p.name for p in multiproc.glob("counter_*.db")}
        assert len(counter_files) == 2, counter_files
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    assert proc.returncode == 0, (tmp_path / "api.log").read_text()[-2000:]


@pytest.mark.parametrize("module", ["api/metrics.py", "worker/metrics.py"])
def test_metrics_modules_document_their_process_model(module: str) -> None:
    text = (ROOT / module).read_text()
    assert "registry" in text.split('"""')[1]
