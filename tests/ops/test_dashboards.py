"""The Grafana dashboards: generated JSON is current and sane (ids, layout, datasource, variables),
every panel query parses with promtool once its variables are filled, and reads only metrics and
labels the exporter declares."""

from __future__ import annotations

import json
import re
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.helpers import (
    DASHBOARDS,
    PROMETHEUS_SYNTHETIC,
    TARGET_LABELS,
    counter_series,
    declared_series,
    metric_names,
    optional_tool,
    rated_series,
    run,
    selectors,
)

FILES = sorted(DASHBOARDS.glob("*.json"))
DS = {"type": "prometheus", "uid": "${datasource}"}
BUILTIN_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[^}]*)?\}|\$([a-zA-Z_][a-zA-Z0-9_]*)"
                       r"|\[\[([a-zA-Z_][a-zA-Z0-9_]*)\]\]")


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _queries(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of the dashboard."""
    return [(p, t) for p in _panels(dashboard) for t in p.get("targets", [])]


def _fill(expr: str) -> str:
    """The expression as Prometheus would get it: built-ins get a duration, variables a regex."""
    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return BUILTIN_VARIABLES.get(name, ".*")
    return _VARIABLE.sub(value, expr)


def _variable_selectors(dashboard: dict[str, Any]) -> list[str]:
    """The series selector inside each ``label_values(selector, label)`` variable query."""
    out = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*),\s*[a-zA-Z_]+\)", variable["definition"])
            assert inner, variable["definition"]
            out.append(inner.group(1))
    return out


def _variable_names(text: str) -> set[str]:
    return {a or b or c for a, b, c in _VARIABLE.findall(text)}


@pytest.fixture(params=FILES, ids=[p.stem for p in FILES])
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _load(request.param)


def test_dashboards_are_generated_and_current() -> None:
    """grafana/generate.py --check finds the committed JSON equal to what it builds, and it builds
    the five dashboards."""
    result = run(sys.executable, "grafana/generate.py", "--check")
    assert result.returncode == 0, result.stderr
    titles = {_load(p)["title"] for p in FILES}
    assert titles == {"Calico BGP", "Calico IPAM", "Calico Policy", "Calico Probes",
                      "Calico exporter health"}


def test_dashboard_uids_are_unique() -> None:
    """No two dashboards share a uid (Grafana would overwrite one with the other)."""
    uids = [_load(p)["uid"] for p in FILES]
    assert len(uids) == len(set(uids))


def test_dashboard_has_the_required_fields(dashboard: dict[str, Any]) -> None:
    """uid, title, schemaVersion, time range and a string refresh are present."""
    assert 0 < len(dashboard["uid"]) <= 40
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert set(dashboard["time"]) == {"from", "to"}
    assert isinstance(dashboard["refresh"], str)


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    """Every panel has an id, unique within its dashboard."""
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_without_overlap(dashboard: dict[str, Any]) -> None:
    """Every gridPos lies within 24 columns and no two panels overlap."""
    boxes = []
    for p in dashboard["panels"]:
        pos = p["gridPos"]
        assert min(pos["x"], pos["y"]) >= 0, p["title"]
        assert min(pos["w"], pos["h"]) > 0, p["title"]
        assert pos["x"] + pos["w"] <= 24, f"{p['title']} is wider than the grid"
        boxes.append((p["title"], pos))
    for (ta, a), (tb, b) in combinations(boxes, 2):
        apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                 or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])
        assert apart, f"panels {ta!r} and {tb!r} overlap"


def test_every_panel_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    """A datasource variable exists and every panel and query uses it."""
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DS, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DS, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DS, variable["name"]


def test_every_referenced_variable_is_defined(dashboard: dict[str, Any]) -> None:
    """Every $variable in queries, titles and variable queries is defined (or a Grafana built-in),
    and every dashboard offers the optional cluster variable."""
    variables = dashboard["templating"]["list"]
    defined = {v["name"] for v in variables} | set(BUILTIN_VARIABLES)
    texts = [t["expr"] for _, t in _queries(dashboard)]
    texts += [p["title"] for p in _panels(dashboard)]
    texts += [v["definition"] for v in variables if v["type"] == "query"]
    for text in texts:
        missing = _variable_names(text) - defined
        assert not missing, f"undefined variables {sorted(missing)} in {text!r}"
    cluster = next(v for v in variables if v["name"] == "cluster")
    assert cluster["includeAll"] is True
    assert cluster["allValue"] == ".*"


def test_panel_queries_parse_with_promtool(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """Every panel query and variable query, with variables filled, is valid PromQL to promtool
    (written as recording rules and checked with promtool check rules)."""
    promtool = optional_tool("promtool")
    rules = []
    for panel, target in _queries(dashboard):
        rules.append({"record": f"dashboard:panel{panel['id']}:{target['refId']}",
                      "expr": _fill(target["expr"])})
    for i, selector in enumerate(_variable_selectors(dashboard)):
        rules.append({"record": f"dashboard:variable{i}", "expr": _fill(selector)})
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": dashboard["uid"], "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_queries_read_only_declared_metrics_and_labels(dashboard: dict[str, Any]) -> None:
    """Every metric a panel or variable reads is one the exporter declares (or a series Prometheus
    adds to every target), every label it filters on exists on that metric, and rate() and
    increase() only see counters."""
    known = {**declared_series(), **PROMETHEUS_SYNTHETIC}
    exprs = [_fill(t["expr"]) for _, t in _queries(dashboard)]
    exprs += [_fill(selector) for selector in _variable_selectors(dashboard)]
    for expr in exprs:
        missing = metric_names(expr) - set(known)
        assert not missing, f"undeclared metrics {sorted(missing)} in {expr}"
        for metric, matchers in selectors(expr):
            for label, _, _ in matchers:
                assert label in set(known[metric]) | TARGET_LABELS, f"{metric} has no {label}"
        for series in rated_series(expr):
            assert series in counter_series(), f"rate() over gauge {series} in {expr}"


def test_variable_labels_exist_on_their_metric(dashboard: dict[str, Any]) -> None:
    """label_values(metric, label) names a label the metric has (else the variable is empty)."""
    known = {**declared_series(), **PROMETHEUS_SYNTHETIC}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*).*,\s*([a-zA-Z_]+)\)",
                         variable["definition"])
        assert m, variable["definition"]
        metric, label = m.groups()
        assert label in set(known[metric]) | TARGET_LABELS, f"{metric} has no label {label}"
