"""Shared helpers of the operability tests: paths, tools, the exporter's declared metrics, and a
small PromQL reader (metric names, selectors, the labels an alert expression keeps)."""

from __future__ import annotations

import importlib
import pkgutil
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import exporter.metrics
from exporter.metrics.spec import MetricSpec

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "deploy" / "prometheus" / "calico-exporter.rules.yaml"
PROMETHEUS_RULE = ROOT / "deploy" / "base" / "prometheusrule.yaml"
CHART = ROOT / "deploy" / "helm" / "calico-exporter"
DASHBOARDS = ROOT / "grafana" / "dashboards"
PROMTOOL_TESTS = Path(__file__).resolve().parent / "promtool"
RUNBOOK_URL = "https://github.com/calico-exporter/calico-exporter/blob/main/docs/runbooks.md#"

PROMETHEUS_SYNTHETIC = {
    "up": (),
    "scrape_duration_seconds": (),
    "scrape_samples_scraped": (),
    "scrape_samples_post_metric_relabeling": (),
    "scrape_series_added": (),
}
"""Series Prometheus itself attaches to every target: allowed in rules and dashboards."""

TARGET_LABELS = frozenset({"cluster", "job", "instance", "namespace", "pod", "service",
                           "endpoint", "container"})
"""Labels a scrape may attach to every series (ServiceMonitor target labels, an external or
relabelled ``cluster``)."""


# --------------------------------------------------------------------------------------------
# Tools


def tool(name: str) -> str | None:
    """The tool from the venv's bin (helm, hadolint, kubernetes-validate), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def optional_tool(name: str) -> str:
    """A tool ``make test`` installs (promtool, prometheus, helm): skip cleanly when missing."""
    path = tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed (make test installs it)")
    return path


def required_tool(name: str) -> str:
    """A tool that is always there (kubectl, hadolint, kubernetes-validate): fail when missing."""
    path = tool(name)
    assert path is not None, f"{name} not found in the venv or on PATH"
    return path


def run(*argv: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=120, check=False)


# --------------------------------------------------------------------------------------------
# The exporter's declared metrics


def specs() -> Iterator[MetricSpec]:
    """Every MetricSpec of every ``exporter.metrics`` module's SPECS."""
    for info in pkgutil.iter_modules(exporter.metrics.__path__):
        module = importlib.import_module(f"exporter.metrics.{info.name}")
        yield from getattr(module, "SPECS", ())


def declared_series() -> dict[str, tuple[str, ...]]:
    """Series name -> label names the exporter can expose (histograms expanded)."""
    out: dict[str, tuple[str, ...]] = {}
    for spec in specs():
        if spec.type == "histogram":
            out[spec.name + "_bucket"] = (*spec.labels, "le")
            out[spec.name + "_sum"] = spec.labels
            out[spec.name + "_count"] = spec.labels
        else:
            out[spec.name] = spec.labels
    return out


def counter_series() -> set[str]:
    """Series names rate() and increase() may be applied to."""
    out: set[str] = set()
    for spec in specs():
        if spec.type == "counter":
            out.add(spec.name)
        elif spec.type == "histogram":
            out |= {spec.name + "_bucket", spec.name + "_sum", spec.name + "_count"}
    return out


# --------------------------------------------------------------------------------------------
# PromQL, read just enough


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan"}
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"")
_RATE = re.compile(r"\b(?:rate|irate|increase)\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (identifiers that are not functions, keywords, label
    names in groupings or numbers)."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        word = m.group(0)
        if word.lower() in _KEYWORDS or text[m.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(metric, [(label, op, value)]) for every ``metric{...}`` selector of an expression."""
    return [(m.group(1), _MATCHER.findall(m.group(2))) for m in _SELECTOR.finditer(expr)]


def rated_series(expr: str) -> list[str]:
    """Series names passed to rate(), irate() or increase()."""
    return _RATE.findall(expr)


def kept_labels(expr: str) -> set[str]:
    """Labels the result of an alert expression carries, for the shapes our rules use: a leading
    ``agg by (...)`` keeps those labels; ``absent(...)`` keeps its equality matchers; a leading
    plain selector keeps the metric's labels plus target labels (``and``/``unless`` keep the
    left-hand side's labels)."""
    text = expr.strip()
    m = re.match(r"(?:sum|min|max|avg|count)\s+by\s*\(([^)]*)\)", text)
    if m:
        return {label.strip() for label in m.group(1).split(",") if label.strip()}
    if text.startswith("absent("):
        return {label for _, matchers in selectors(text) for label, op, _ in matchers
                if op == "="}
    m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", text)
    assert m, f"unsupported alert expression shape: {expr}"
    labels = {**PROMETHEUS_SYNTHETIC, **declared_series()}.get(m.group(1), ())
    return set(labels) | TARGET_LABELS


# --------------------------------------------------------------------------------------------
# Rules


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return groups


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]
