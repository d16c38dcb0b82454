"""Grafana dashboards and provisioning, checked as files: every panel has a datasource, a
title and a unit, and every query parses and names only metrics that exist."""

from __future__ import annotations

from typing import Any

import promql_parser
import pytest
import yaml

from tests.monitoring import catalog

GRAFANA = catalog.ROOT / "monitoring" / "grafana"
DASHBOARDS = catalog.dashboards()
QUERIES = catalog.queries()
KNOWN = catalog.known_metric_names()


def test_the_overview_and_rabbitmq_dashboards_exist_with_unique_uids() -> None:
    assert {"overview", "rabbitmq"} <= set(DASHBOARDS)
    uids = [board["uid"] for board in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_has_a_datasource_a_title_a_unit_and_queries(name: str) -> None:
    board = DASHBOARDS[name]
    for panel in catalog.panels(board):
        title = panel.get("title", "")
        assert title.strip(), f"{name}: panel {panel.get('id')} has no title"
        assert panel.get("datasource") == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{name}: {title} has no unit"
        assert panel.get("description"), f"{name}: {title} has no description"
        assert panel["targets"], f"{name}: {title} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], title
            assert target["expr"].strip(), title


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_do_not_overlap(name: str) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in DASHBOARDS[name]["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{name}: {panel['title']} overlaps another panel"
        taken |= cells


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_variables_include_datasource_namespace_and_instance(name: str) -> None:
    variables = catalog.variables(DASHBOARDS[name])

    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var in ("namespace", "instance"):
        # "All" must also match series without the label (Compose has no namespace).
        assert variables[var]["includeAll"] and variables[var]["allValue"] == ".*", var
    used = " ".join(q.expr for q in QUERIES if q.dashboard == name)
    for var in variables:
        if var != "datasource":
            assert f"${var}" in used, f"{name}: variable ${var} is never used"


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q.dashboard}:{q.panel}:{q.ref_id}")
def test_every_query_parses_and_uses_only_existing_metrics(query: catalog.Query) -> None:
    expr = catalog.substitute(query.expr)

    names = catalog.metric_names(expr)

    assert names, f"{query.panel}: the query selects no metric"
    assert names <= KNOWN, f"{query.panel}: unknown metrics {sorted(names - KNOWN)}"


@pytest.mark.parametrize("rule", catalog.rules(), ids=lambda r: r.get("alert") or r["record"])
def test_every_rule_uses_only_existing_metrics(rule: dict[str, Any]) -> None:
    names = catalog.metric_names(rule["expr"])

    assert names <= KNOWN, f"unknown metrics {sorted(names - KNOWN)}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_variable_queries_use_only_existing_metrics(name: str) -> None:
    for variable in catalog.variables(DASHBOARDS[name]).values():
        if variable["type"] != "query":
            continue
        selector, _label = catalog.label_values_query(variable)
        names = catalog.metric_names(catalog.substitute(selector))
        assert names and names <= KNOWN, f"{name}: ${variable['name']}: {names - KNOWN}"


def test_the_metric_name_check_catches_a_misspelt_metric() -> None:
    names = catalog.metric_names('sum(rate(v2m_worker_jobs_finshed_total{code="x"}[5m]))')

    assert not names <= KNOWN
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(v2m_worker_jobs_finished_total[5m])")


def test_our_metrics_follow_the_naming_rules() -> None:
    ours = {n for n in catalog.registry_metric_names() if n.startswith("v2m_")}

    assert {"v2m_api_build_info", "v2m_worker_build_info"} <= ours
    for name in ours:
        assert not name.endswith(("_ms", "_milliseconds", "_kb", "_mb")), name


def test_provisioning_points_grafana_at_prometheus_and_the_mounted_dashboards() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/video2mp3.yml").read_text())

    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    # docker-compose.yaml mounts monitoring/grafana/dashboards there.
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    compose = (catalog.ROOT / "docker-compose.yaml").read_text()
    assert "./monitoring/grafana/dashboards:/etc/grafana/dashboards:ro" in compose
