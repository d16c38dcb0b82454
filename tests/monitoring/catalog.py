"""What the monitoring files contain: dashboard panels and their queries, rules, and the
metric names that may be queried.

The known metric names are built from three sources, never typed in by hand for our own
metrics:

- our registries: everything ``api.metrics``, ``worker.metrics`` and ``notifier.metrics``
  register in
  prometheus-client's default registry (which also holds the process_* and python_*
  collectors both components export);
- RabbitMQ: ``rabbitmq_metrics.txt`` beside this file, the names from RabbitMQ's
  rabbitmq_prometheus plugin that our rules and dashboards use, copied from the plugin's
  documentation (deps/rabbitmq_prometheus/metrics.md and metrics-detailed.md in the
  rabbitmq-server repository) and checked against a real broker's endpoints by
  test_live_prometheus.py;
- Prometheus itself: ``up`` and the other series every scrape adds, ``ALERTS``, and the
  recording rules' names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "monitoring" / "prometheus"
RULE_FILES = [PROMETHEUS_DIR / "recording.rules.yml", PROMETHEUS_DIR / "alert.rules.yml"]
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
DASHBOARD_DIR = ROOT / "monitoring" / "grafana" / "dashboards"
OPERATIONS_MD = ROOT / "docs" / "OPERATIONS.md"
RABBITMQ_METRICS = Path(__file__).with_name("rabbitmq_metrics.txt")

PROMETHEUS_BUILTIN = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
}


# --------------------------------------------------------------------------- dashboards


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref_id: str
    expr: str
    legend: str


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows are containers, not panels)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from (p for p in panel.get("panels", []) if p.get("type") != "row")
        else:
            yield panel


def queries() -> list[Query]:
    found = []
    for name, board in dashboards().items():
        for panel in panels(board):
            for target in panel.get("targets", []):
                found.append(
                    Query(
                        name,
                        panel["title"],
                        target["refId"],
                        target["expr"],
                        target.get("legendFormat", ""),
                    )
                )
    return found


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def label_values_query(variable: dict[str, Any]) -> tuple[str, str]:
    """(selector, label) of a Grafana ``label_values(selector, label)`` variable."""
    query = variable["query"]
    text = query["query"] if isinstance(query, dict) else query
    match = _LABEL_VALUES.match(text.strip())
    assert match, f"variable {variable['name']}: not a label_values() query: {text}"
    return match["selector"], match["label"]


def substitute(expr: str, *, rate_interval: str = "1m", range_: str = "1h", **values: str) -> str:
    """The PromQL Grafana would send: its interval variables and our template variables."""
    out = expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
    out = out.replace("$__interval", rate_interval)
    for name in ("namespace", "instance", "queue"):
        value = values.get(name, ".*")
        out = out.replace("${" + name + "}", value).replace("$" + name, value)
    assert "$" not in out.replace("$1", ""), f"unsubstituted variable in {out}"
    return out


# --------------------------------------------------------------------------- rules


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in RULE_FILES:
        groups += yaml.safe_load(path.read_text())["groups"]
    return groups


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


# --------------------------------------------------------------------------- metric names


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (a ``__name__`` regex of plain
    alternatives counts as each of them)."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.update(matcher.value.split("|"))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _series_names(family_name: str, kind: str) -> set[str]:
    suffixes = {
        "counter": ["_total", "_created"],
        "histogram": ["_bucket", "_sum", "_count", "_created"],
        "summary": ["", "_sum", "_count", "_created"],
        "info": ["_info"],
    }.get(kind, [""])
    return {family_name + suffix for suffix in suffixes}


def registry_metric_names() -> set[str]:
    """Every series name our code's registries can export (families without samples too)."""
    import api.metrics  # noqa: F401  (registers the API's metrics)
    import notifier.metrics  # noqa: F401  (registers the notifier's metrics)
    import worker.metrics  # noqa: F401  (registers the worker's metrics)

    names: set[str] = set()
    for family in REGISTRY.collect():
        names |= _series_names(family.name, family.type)
        names |= {sample.name for sample in family.samples}
    return names


def rabbitmq_metric_names() -> set[str]:
    lines = RABBITMQ_METRICS.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def known_metric_names() -> set[str]:
    return registry_metric_names() | rabbitmq_metric_names() | PROMETHEUS_BUILTIN | recorded_names()


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def operations_anchors() -> set[str]:
    return {
        github_anchor(line.lstrip("#"))
        for line in OPERATIONS_MD.read_text().splitlines()
        if line.startswith("#")
    }
