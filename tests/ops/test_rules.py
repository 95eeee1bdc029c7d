"""The alert rules: promtool accepts them in both shipped forms, unit tests cover every alert firing
and not firing, and each rule follows the conventions (names, severities, annotations, runbooks,
counters only under rate(), annotations only naming labels the expression keeps)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.helpers import (
    CHART,
    PROMETHEUS_RULE,
    PROMETHEUS_SYNTHETIC,
    PROMTOOL_TESTS,
    ROOT,
    RULES_FILE,
    RUNBOOK_URL,
    TARGET_LABELS,
    alert_rules,
    counter_series,
    declared_series,
    kept_labels,
    metric_names,
    optional_tool,
    rated_series,
    rule_groups,
    run,
    selectors,
)

RULES = alert_rules()
TEST_FILES = sorted(PROMTOOL_TESTS.glob("*.test.yaml"))


def _ids(rule: dict[str, Any]) -> str:
    return f"{rule['alert']}-{rule['labels']['severity']}"


def test_generated_rule_files_are_up_to_date() -> None:
    """deploy/generate.py --check finds every generated rules and dashboard file current."""
    result = run(sys.executable, "deploy/generate.py", "--check")
    assert result.returncode == 0, result.stderr


def test_promtool_accepts_the_plain_rules_file() -> None:
    """promtool check rules with every linter fatal is clean on the plain rules file."""
    promtool = optional_tool("promtool")
    result = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in result.stdout


def test_promtool_accepts_the_prometheusrule_spec(tmp_path: Path) -> None:
    """The PrometheusRule's spec, extracted into a rules file, passes promtool check rules."""
    promtool = optional_tool("promtool")
    spec = yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]
    extracted = tmp_path / "prometheusrule.rules.yaml"
    extracted.write_text(yaml.safe_dump(spec))
    result = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(extracted))
    assert result.returncode == 0, result.stdout + result.stderr


def test_all_shipped_forms_carry_the_same_rules() -> None:
    """The plain file, the PrometheusRule and the Helm chart's copy hold identical groups."""
    plain = yaml.safe_load(RULES_FILE.read_text())
    operator = yaml.safe_load(PROMETHEUS_RULE.read_text())
    chart = yaml.safe_load((CHART / "files" / "calico-exporter.rules.yaml").read_text())
    assert operator["kind"] == "PrometheusRule"
    assert operator["spec"] == plain == chart


@pytest.mark.parametrize("test_file", TEST_FILES, ids=[p.stem for p in TEST_FILES])
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    """Each promtool unit test file passes against the shipped rules."""
    promtool = optional_tool("promtool")
    result = run(promtool, "test", "rules", test_file.name, cwd=PROMTOOL_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def _cases() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            out.extend((path.name, case) for case in test.get("alert_rule_test", []))
    return out


@pytest.mark.parametrize("rule", RULES, ids=_ids)
def test_every_alert_is_tested_firing_and_silent(rule: dict[str, Any]) -> None:
    """Every rule (each severity of an alert) has a unit test where it fires, and its alert has
    one where it must stay silent."""
    cases = [case for _, case in _cases() if case["alertname"] == rule["alert"]]
    severity = rule["labels"]["severity"]
    firing = [a for case in cases for a in case.get("exp_alerts") or []
              if a["exp_labels"].get("severity") == severity]
    silent = [case for case in cases if not case.get("exp_alerts")]
    assert firing, f"no promtool test where {rule['alert']} ({severity}) fires"
    assert silent, f"no promtool test where {rule['alert']} stays silent"


def test_unit_tests_only_name_existing_alerts() -> None:
    """Every alertname in the unit tests is a rule of the rules file, and every rules file they
    load is the shipped one."""
    names = {rule["alert"] for rule in RULES}
    for file_name, case in _cases():
        assert case["alertname"] in names, f"{file_name}: unknown alert {case['alertname']}"
    for path in TEST_FILES:
        rule_files = yaml.safe_load(path.read_text())["rule_files"]
        assert [(PROMTOOL_TESTS / f).resolve() for f in rule_files] == [RULES_FILE]


@pytest.mark.parametrize("rule", RULES, ids=_ids)
def test_rule_follows_the_conventions(rule: dict[str, Any]) -> None:
    """CamelCase Calico name, critical, warning or info severity, exactly summary, description and
    runbook_url, the runbook URL of its section, and a plain `for` duration."""
    assert re.fullmatch(r"Calico[A-Z][A-Za-z]+", rule["alert"])
    assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
    assert rule["labels"] == {"severity": rule["labels"]["severity"]}
    assert rule["labels"]["severity"] in {"warning", "critical", "info"}
    assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
    assert rule["annotations"]["runbook_url"] == RUNBOOK_URL + rule["alert"].lower()
    assert re.fullmatch(r"\d+[mh]", rule["for"])


def _anchors(markdown: str) -> set[str]:
    """GitHub heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def test_every_runbook_url_has_its_section() -> None:
    """docs/runbooks.md has a section for every alert, with meaning, confirmation and action."""
    text = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = _anchors(text)
    for name in {rule["alert"] for rule in RULES}:
        assert name.lower() in anchors, f"docs/runbooks.md has no section {name}"
        section = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**Meaning.**", "**Confirm.**", "**What to do.**"):
            assert part in section, f"{name}: runbook section lacks {part}"


@pytest.mark.parametrize("rule", RULES, ids=_ids)
def test_rule_reads_only_declared_metrics(rule: dict[str, Any]) -> None:
    """Every metric a rule reads is one the exporter declares (or Prometheus' own `up`), and
    every label it matches on exists on that metric."""
    known = {**declared_series(), **PROMETHEUS_SYNTHETIC}
    missing = metric_names(rule["expr"]) - set(known)
    assert not missing, f"{rule['alert']} reads undeclared metrics {sorted(missing)}"
    for metric, matchers in selectors(rule["expr"]):
        for label, _, _ in matchers:
            assert label in set(known[metric]) | TARGET_LABELS, (
                f"{rule['alert']}: {metric} has no label {label}")


@pytest.mark.parametrize("rule", RULES, ids=_ids)
def test_rate_is_only_applied_to_counters(rule: dict[str, Any]) -> None:
    """rate(), irate() and increase() only see counters (never a gauge)."""
    for series in rated_series(rule["expr"]):
        assert series in counter_series(), f"{rule['alert']}: rate() over gauge {series}"


@pytest.mark.parametrize("rule", RULES, ids=_ids)
def test_annotations_only_name_labels_the_expression_keeps(rule: dict[str, Any]) -> None:
    """An annotation never names a label the expression aggregated away (it would render empty)."""
    used = set()
    for text in rule["annotations"].values():
        used |= set(re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", text))
    lost = used - kept_labels(rule["expr"])
    assert not lost, f"{rule['alert']} annotations name aggregated-away labels {sorted(lost)}"


def test_groups_have_unique_names() -> None:
    """Rule group names are unique (Prometheus refuses duplicates across a rules file)."""
    names = [group["name"] for group in rule_groups()]
    assert len(names) == len(set(names))
