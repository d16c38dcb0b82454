"""A real Prometheus (Debian's binary) scraping a real stack: the API, a worker and the
local RabbitMQ's rabbitmq_prometheus endpoint, with our rule files loaded.

Real jobs run through the stack (two complete, two fail), then every expression of every
dashboard panel and every rule must parse and evaluate without error in that Prometheus,
and the key ones must return what the run produced: jobs completed, failures by error
code, request rates, and, once the worker is stopped and jobs wait, the queue depth and
the alerts that say nobody consumes.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.conftest import Proc, Stack, free_port, new_stack, port_open, wait_for
from tests.monitoring import catalog

pytestmark = pytest.mark.integration

SCRAPE_S = 1


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = at
        resp = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "success", f"{expr}\n{body}"
        assert not body.get("warnings"), f"{expr}\n{body['warnings']}"
        result: list[dict[str, Any]] = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return result

    def value(
        self, expr: str, at: float | None = None, labels: dict[str, str] | None = None
    ) -> float | None:
        for series in self.query(expr, at):
            if all(series["metric"].get(k) == v for k, v in (labels or {}).items()):
                return float(series["value"][1])
        return None

    def get(self, path: str) -> Any:
        body = httpx.get(f"{self.url}{path}", timeout=10).json()
        assert body["status"] == "success", body
        return body["data"]

    def wait_value(
        self,
        expr: str,
        check: Callable[[float | None], bool],
        what: str,
        labels: dict[str, str] | None = None,
    ) -> None:
        wait_for(lambda: check(self.value(expr, labels=labels)), 30, what, interval=0.5)


def prometheus_config(stack: Stack, worker: Proc, rabbitmq_port: int) -> dict[str, Any]:
    api_target = stack.api_url.removeprefix("http://")
    jobs = [
        ("api", "/metrics", api_target, None),
        ("worker", "/metrics", f"127.0.0.1:{worker.metrics_port}", None),
        ("rabbitmq", "/metrics", f"127.0.0.1:{rabbitmq_port}", None),
        (
            "rabbitmq-queues",
            "/metrics/detailed",
            f"127.0.0.1:{rabbitmq_port}",
            {"family": ["queue_coarse_metrics", "queue_consumer_count"]},
        ),
    ]
    scrape_configs: list[dict[str, Any]] = []
    for name, path, target, params in jobs:
        job: dict[str, Any] = {
            "job_name": name,
            "metrics_path": path,
            "static_configs": [{"targets": [target]}],
        }
        if params:
            job["params"] = params
        scrape_configs.append(job)
    return {
        "global": {
            "scrape_interval": f"{SCRAPE_S}s",
            "scrape_timeout": f"{SCRAPE_S}s",
            "evaluation_interval": f"{SCRAPE_S}s",
        },
        "rule_files": [str(path) for path in catalog.RULE_FILES],
        "scrape_configs": scrape_configs,
    }


@dataclass
class Run:
    """The stack, its Prometheus, and per scrape job the timestamps of the scrape that
    saw the baseline and of the one that saw the end of the measured jobs."""

    prom: Prometheus
    stack: Stack
    worker: Proc
    baseline: dict[str, float]
    end: dict[str, float]

    @property
    def measured_to(self) -> float:
        return max(self.end.values())


def last_scrapes(prom: Prometheus) -> dict[str, float]:
    return {s["metric"]["job"]: float(s["value"][1]) for s in prom.query("timestamp(up)")}


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
    amqp_url: str,
    s3_endpoint: str,
    ffmpeg_available: None,
    prometheus_bin: str,
    rabbitmq_metrics_port: int,
    sample: Callable[[str], Path],
) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("prometheus")
    stack = new_stack(tmp_path_factory, amqp_url, s3_endpoint)
    prom_proc: subprocess.Popen[bytes] | None = None
    try:
        stack.start_api()
        worker = stack.start_worker()
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(stack, worker, rabbitmq_metrics_port)))
        port = free_port()
        log = (workdir / "prometheus.log").open("wb")
        prom_proc = subprocess.Popen(
            [
                prometheus_bin,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(lambda: port_open(port) or prom_proc.poll() is not None, 30, "Prometheus")
        assert prom_proc.poll() is None, (workdir / "prometheus.log").read_text()
        prom = Prometheus(f"http://127.0.0.1:{port}")
        wait_for(
            lambda: httpx.get(f"{prom.url}/-/ready", timeout=2).status_code == 200,
            30,
            "Prometheus to be ready",
        )

        # Given one job converted before measuring, so every series a rate needs exists
        stack.convert(sample("mp4_h264_aac"), "warmup.mp4", "video/mp4")
        prom.wait_value(
            'sum(v2m_worker_jobs_finished_total{outcome="completed"})',
            lambda v: v == 1,
            "Prometheus to scrape the warm-up job",
        )
        prom.wait_value(
            'sum(v2m_api_requests_total{route="/v1/jobs", method="POST"})',
            lambda v: v == 1,
            "Prometheus to scrape the API after the warm-up job",
        )
        baseline = last_scrapes(prom)

        # When two jobs complete (one re-encoded, one stream-copied) and two fail
        text_file = workdir / "notes.mp4"
        text_file.write_text("not a video at all\n" * 50)
        for path, name, ctype in [
            (sample("mp4_h264_aac"), "clip.mp4", "video/mp4"),
            (sample("mp3_audio"), "song.mp3", "audio/mpeg"),
            (sample("no_audio"), "silent.mp4", "video/mp4"),
            (text_file, "notes.mp4", "video/mp4"),
        ]:
            stack.convert(path, name, ctype)

        # Then (once scraped) the counters Prometheus holds are the run's
        prom.wait_value(
            "sum(v2m_worker_jobs_finished_total)", lambda v: v == 5, "the last job's scrape"
        )
        prom.wait_value(
            'sum(v2m_api_requests_total{route="/v1/jobs", method="POST"})',
            lambda v: v == 5,
            "the API's last scrape",
        )
        yield Run(prom, stack, worker, baseline, last_scrapes(prom))
    finally:
        if prom_proc is not None:
            prom_proc.terminate()
            prom_proc.wait(timeout=20)
        stack.close()


def window_ms(run: Run, job: str) -> int:
    """From just before the baseline scrape to the end scrape of one scrape job: then
    rate() and increase() see exactly the measured jobs (they extrapolate only across
    the millisecond before the first sample)."""
    return math.ceil((run.end[job] - run.baseline[job]) * 1000) + 1


def about(value: float | None, expected: float) -> bool:
    return value is not None and abs(value - expected) < 0.05


# --------------------------------------------------------------------------- everything evaluates


def test_every_dashboard_query_evaluates_without_error(run: Run) -> None:
    for query in catalog.queries():
        expr = catalog.substitute(
            query.expr, rate_interval="30s", range_="5m", queue=run.stack.queue
        )
        run.prom.query(expr, at=run.measured_to)  # asserts success and no warnings


def test_every_dashboard_variable_finds_its_values(run: Run) -> None:
    for name, board in catalog.dashboards().items():
        for variable in catalog.variables(board).values():
            if variable["type"] != "query":
                continue
            selector, label = catalog.label_values_query(variable)
            expr = f"count by ({label}) ({catalog.substitute(selector)})"
            series = run.prom.query(expr, at=run.measured_to)
            assert series, f"{name}: ${variable['name']} finds nothing"
    overview = catalog.dashboards()["overview"]

    def values(variable: str) -> set[str]:
        selector, label = catalog.label_values_query(catalog.variables(overview)[variable])
        expr = f"count by ({label}) ({catalog.substitute(selector)})"
        return {s["metric"][label] for s in run.prom.query(expr)}

    api, worker = run.stack.api_url.removeprefix("http://"), f"127.0.0.1:{run.worker.metrics_port}"
    assert {api, worker} <= values("instance")
    assert run.stack.queue in values("queue")


def test_every_rule_evaluates_without_error_in_prometheus(run: Run) -> None:
    groups = run.prom.get("/api/v1/rules")["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}

    expected = {r.get("alert") or r["record"] for r in catalog.rules()}
    assert set(loaded) == expected
    for name, rule in loaded.items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
        assert not rule.get("lastError"), name
    for rule in catalog.rules():
        run.prom.query(rule["expr"], at=run.measured_to)


def test_every_rabbitmq_metric_we_rely_on_exists_on_a_real_broker(run: Run) -> None:
    names = set(run.prom.get("/api/v1/label/__name__/values"))

    assert catalog.rabbitmq_metric_names() <= names, sorted(catalog.rabbitmq_metric_names() - names)


def test_every_metric_of_ours_that_the_run_touched_is_scraped(run: Run) -> None:
    names = set(run.prom.get("/api/v1/label/__name__/values"))
    queried: set[str] = set()
    for query in catalog.queries():
        queried |= catalog.metric_names(catalog.substitute(query.expr))
    ours = {n for n in queried if n.startswith(("v2m_", "process_"))}
    # Retries only happen on transient failures, which this run has none of.
    assert ours - {"v2m_worker_retries_total"} <= names, sorted(ours - names)


# --------------------------------------------------------------------------- the run's values


def panel_expr(dashboard: str, title: str, ref_id: str = "A") -> str:
    for query in catalog.queries():
        if query.dashboard == dashboard and query.panel == title and query.ref_id == ref_id:
            return query.expr
    raise AssertionError(f"no panel {title!r} ({ref_id}) in {dashboard}")


def evaluate(run: Run, title: str, job: str, ref_id: str = "A") -> list[dict[str, Any]]:
    """A panel's query over the measured window of ``job``'s scrapes, evaluated at the
    end scrape."""
    window = f"{window_ms(run, job)}ms"
    expr = catalog.substitute(
        panel_expr("overview", title, ref_id),
        rate_interval=window,
        range_=window,
        queue=run.stack.queue,
    )
    return run.prom.query(expr, at=run.end[job])


def counts(run: Run, title: str, job: str, *labels: str) -> dict[tuple[str, ...], float]:
    """A rate panel's series as counts over the measured window, keyed by ``labels``."""
    seconds = window_ms(run, job) / 1000
    return {
        tuple(s["metric"].get(label, "") for label in labels): float(s["value"][1]) * seconds
        for s in evaluate(run, title, job)
    }


def test_jobs_completed_and_failed_panels_count_the_run(run: Run) -> None:
    (completed,) = evaluate(run, "Jobs completed", "worker")
    (failed,) = evaluate(run, "Jobs failed", "worker")

    assert about(float(completed["value"][1]), 2), completed
    assert about(float(failed["value"][1]), 2), failed


def test_failures_by_code_panel_names_each_failure(run: Run) -> None:
    by_code = counts(run, "Failures by error code", "worker", "code")

    assert about(by_code.pop(("no_audio_stream",)), 1), by_code
    assert about(by_code.pop(("unsupported_media",)), 1), by_code
    assert all(v == 0 for v in by_code.values()), by_code


def test_request_rate_panels_count_the_requests_made(run: Run) -> None:
    by_route = counts(run, "API requests by route and status", "api", "route", "status")

    assert about(by_route[("/v1/uploads", "2xx")], 4), by_route
    assert about(by_route[("/v1/jobs", "2xx")], 4), by_route
    assert by_route[("/v1/jobs/{job_id}", "2xx")] >= 4 - 0.05  # a poll or more per job
    (total,) = counts(run, "API requests", "api").values()
    assert about(total, sum(by_route.values())), (total, by_route)


def test_worker_panels_show_speed_bytes_and_exit_codes(run: Run) -> None:
    (realtime,) = evaluate(run, "Conversion real-time factor", "worker")
    assert float(realtime["value"][1]) > 1  # a 3 s clip converts in well under 3 s
    bytes_in = evaluate(run, "Bytes in and out", "worker")
    assert len(bytes_in) == 1 and float(bytes_in[0]["value"][1]) > 0
    exits = counts(run, "ffprobe / ffmpeg exits", "worker", "tool", "exit_code")
    # One encode and one stream copy, each output's loudness measured by a run of its own.
    assert about(exits[("ffmpeg", "0")], 4), exits
    # ffprobe describes each input once before ffmpeg runs: the two converted clips and
    # the silent film, whose probe shows no audio, so ffmpeg runs only for the two clips.
    assert about(exits[("ffprobe", "0")], 3), exits
    # The text file's failed probe starts its own series, too new for a rate.
    failed = run.prom.query('v2m_worker_ffmpeg_exits_total{exit_code!="0"}', at=run.end["worker"])
    assert {s["metric"]["tool"]: float(s["value"][1]) for s in failed} == {"ffprobe": 1.0}, failed


# --------------------------------------------------------------------------- queue and alerts


def test_queue_depth_and_no_consumer_alert_when_the_worker_is_gone(
    run: Run, sample: Callable[[str], Path]
) -> None:
    # Given the only worker stopped
    assert run.worker.stop(signal.SIGTERM, timeout=30) == 0
    # When three jobs are created
    for i in range(3):
        run.stack.create_job(run.stack.upload(sample("mp3_audio"), f"wait-{i}.mp3", "audio/mpeg"))
    queue = run.stack.queue

    # Then the queue depth panel shows them, against zero worker replicas
    depth = catalog.substitute(panel_expr("overview", "Queue depth"), queue=queue)
    run.prom.wait_value(depth, lambda v: v == 3, "the queue depth panel to show 3")
    replicas = catalog.substitute(
        panel_expr("overview", "Queue depth vs worker replicas", "B"), queue=queue
    )
    run.prom.wait_value(replicas, lambda v: v == 0, "the worker to be scraped as down")
    run.prom.wait_value(
        "v2m:queue_consumers:sum", lambda v: v == 0, "the consumers rule to see 0", {"queue": queue}
    )

    # ...and the alerts for it are pending (they fire after their `for:`)
    def pending() -> set[str]:
        alerts = run.prom.get("/api/v1/alerts")["alerts"]
        return {
            a["labels"]["alertname"]
            for a in alerts
            if a["labels"].get("queue") == queue
            or a["labels"].get("instance") == f"127.0.0.1:{run.worker.metrics_port}"
        }

    wait_for(
        lambda: {"V2MNoWorkerConsuming", "V2MWorkerScrapeDown"} <= pending(),
        30,
        "the no-consumer and scrape-down alerts to be pending",
        interval=0.5,
    )


def test_the_dashboard_renders_to_png_from_this_prometheus(run: Run, tmp_path: Path) -> None:
    # scripts/render_dashboard.py made docs/dashboard-overview.png the same way.
    out = tmp_path / "overview.png"
    result = subprocess.run(
        [
            sys.executable,
            str(catalog.ROOT / "scripts" / "render_dashboard.py"),
            f"--prometheus={run.prom.url}",
            f"--start={min(run.baseline.values()) - 30}",
            f"--end={run.measured_to}",
            f"--queue={run.stack.queue}",
            f"--scrape-interval={SCRAPE_S}",
            f"--out={out}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 50_000
