"""Prometheus configuration and rules: promtool accepts them, the unit tests pass, every
alert is complete and documented, and Compose, `make monitor` and Kubernetes agree."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring import catalog

ROOT = catalog.ROOT
K8S_OPERATOR = ROOT / "k8s" / "components" / "prometheus-operator"
JOBS = {"api", "worker", "rabbitmq", "rabbitmq-queues"}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_promtool_accepts_the_config_and_its_rule_files(promtool: str, config: str) -> None:
    result = run([promtool, "check", "config", str(catalog.PROMETHEUS_DIR / config)])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", *map(str, catalog.RULE_FILES)])

    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    assert catalog.RULE_TESTS, "no promtool tests in monitoring/prometheus/tests"

    result = run([promtool, "test", "rules", *map(str, catalog.RULE_TESTS)])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _alert_tests() -> list[dict[str, Any]]:
    cases = []
    for path in catalog.RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            cases += group.get("alert_rule_test", [])
    return cases


@pytest.mark.parametrize("alert", [a["alert"] for a in catalog.alerts()])
def test_every_alert_is_unit_tested_firing_and_silent(alert: str) -> None:
    cases = [c for c in _alert_tests() if c["alertname"] == alert]

    assert any(c["exp_alerts"] for c in cases), f"no promtool case where {alert} fires"
    assert any(not c["exp_alerts"] for c in cases), f"no promtool case where {alert} is silent"


@pytest.mark.parametrize("alert", catalog.alerts(), ids=lambda a: a["alert"])
def test_every_alert_has_for_severity_and_a_documented_runbook(alert: dict[str, Any]) -> None:
    assert alert["alert"].startswith("V2M")
    assert alert.get("for"), "an alert without `for:` pages on a single bad scrape"
    assert alert["labels"]["severity"] in {"critical", "warning"}
    annotations = alert["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    path, _, anchor = annotations["runbook_url"].partition("#")
    assert path == "docs/OPERATIONS.md"
    assert anchor == alert["alert"].lower()
    assert anchor in catalog.operations_anchors(), f"docs/OPERATIONS.md has no #{anchor}"


def test_recording_rules_follow_the_level_metric_operation_convention() -> None:
    for name in catalog.recorded_names():
        assert name.startswith("v2m:") and name.count(":") == 2, name


def test_kubernetes_prometheus_rule_is_the_same_rules() -> None:
    doc = yaml.safe_load((K8S_OPERATOR / "rules.yaml").read_text())

    assert doc["kind"] == "PrometheusRule"
    assert doc["spec"]["groups"] == catalog.rule_groups(), (
        "k8s/components/prometheus-operator/rules.yaml differs from monitoring/prometheus/"
        "*.rules.yml: copy the groups of both files into its spec.groups"
    )
    kustomization = yaml.safe_load((K8S_OPERATOR / "kustomization.yaml").read_text())
    assert "rules.yaml" in kustomization["resources"]


def _config(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((catalog.PROMETHEUS_DIR / name).read_text())
    return loaded


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_configs_use_the_job_names_the_rules_select_on(config: str) -> None:
    jobs = {job["job_name"]: job for job in _config(config)["scrape_configs"]}

    assert set(jobs) >= JOBS
    detailed = jobs["rabbitmq-queues"]
    assert detailed["metrics_path"] == "/metrics/detailed"
    assert set(detailed["params"]["family"]) == {"queue_coarse_metrics", "queue_consumer_count"}
    assert [f"{p}.rules.yml" for p in ("recording", "alert")] == _config(config)["rule_files"]


def test_compose_config_scrapes_the_services_the_compose_file_runs() -> None:
    jobs = {job["job_name"]: job for job in _config("prometheus.yml")["scrape_configs"]}

    assert jobs["api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["worker"]["dns_sd_configs"] == [
        {"names": ["worker"], "type": "A", "port": 9100, "refresh_interval": "15s"}
    ]
    assert jobs["rabbitmq"]["static_configs"][0]["targets"] == ["rabbitmq:15692"]
    assert jobs["storage"]["static_configs"][0]["targets"] == ["storage:9001"]


def test_kubernetes_monitors_give_the_same_job_names() -> None:
    docs = {
        (d["kind"], d["metadata"]["name"]): d
        for d in yaml.safe_load_all((K8S_OPERATOR / "monitors.yaml").read_text())
    }

    # ServiceMonitor jobs are named after their Service: api, rabbitmq.
    assert docs[("PodMonitor", "worker")]["spec"]["jobLabel"] == "app.kubernetes.io/name"
    rabbit = docs[("ServiceMonitor", "rabbitmq")]["spec"]["endpoints"]
    assert [e["path"] for e in rabbit] == ["/metrics", "/metrics/detailed"]
    assert rabbit[1]["params"]["family"] == ["queue_coarse_metrics", "queue_consumer_count"]
    assert {"targetLabel": "job", "replacement": "rabbitmq-queues"} in rabbit[1]["relabelings"]


def test_rabbitmq_prometheus_plugin_is_enabled_everywhere() -> None:
    plugins = (ROOT / "k8s" / "base" / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_prometheus" in plugins  # Compose mounts the same file
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "rabbitmq-plugins enable --quiet rabbitmq_prometheus" in bootstrap


def test_make_monitor_runs_the_local_config_with_debian_prometheus() -> None:
    makefile = (ROOT / "Makefile").read_text()
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()

    assert "monitor: install\n\t@scripts/bootstrap.sh monitor" in makefile
    assert "config=monitoring/prometheus/prometheus.local.yml" in bootstrap
    assert "apt_install prometheus" in bootstrap
    assert "curl" not in bootstrap and "wget" not in bootstrap  # no downloaded binaries
    local = _config("prometheus.local.yml")
    workers = next(j for j in local["scrape_configs"] if j["job_name"] == "worker")
    target_file = Path(workers["file_sd_configs"][0]["files"][0])
    assert (catalog.PROMETHEUS_DIR / target_file).resolve() == (
        ROOT / ".run" / "prometheus" / "workers.json"
    )
