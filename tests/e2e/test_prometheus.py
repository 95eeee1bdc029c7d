"""Issue 6 end to end with the real engines: a real Prometheus server (Debian ``prometheus``)
scrapes the exporter running against the simulated nke-lab and evaluates the bundled rules (only
``for`` shortened); every dashboard panel query, its variables filled with values that exist in
that Prometheus, returns data from it; every metric name a dashboard or rule uses is live there.

For the dashboards the stack is the demo exactly as ``make demo`` starts it (only its ports
moved): the cluster role, a probe agent and node mode for every simulated node (over the
simulated BIRD control sockets), all against the simulated nke-lab; Prometheus scrapes its main
endpoint as job ``calico-exporter`` and its node-mode endpoints as ``calico-exporter-node``.
Nothing is added to it: every panel must show data from what the demo itself runs (issue 15).
Rate windows ($__rate_interval = 30 s) are polled until they hold enough scrapes to show numbers.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import itertools
import json
import math
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.lab import start_lab, stop_lab
from tests.ops.helpers import DASHBOARDS, RULES_FILE, alert_rules, metric_names, optional_tool
from tests.ops.prom import Prometheus, free_port, run_prometheus, shorten_for

MASTER = "nke-dev01-89e792-master-0"
WORKER0 = "nke-dev01-89e792-worker-0"
MASTER_IP, WORKER0_IP = "192.168.102.102", "192.168.102.103"
JOB = "calico-exporter"
NODE_JOB = "calico-exporter-node"
BUILTINS = {"__rate_interval": "30s", "__interval": "15s", "__range": "5m",
            "__range_s": "300", "__range_ms": "300000"}
"""Grafana's built-in variables: windows long enough for rate() over 1 s scrapes and for the demo's
10 s probe interval."""
_VARIABLE = re.compile(r"\$\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[^}]*)?\}|\$([a-zA-Z_][a-zA-Z0-9_]*)"
                       r"|\[\[([a-zA-Z_][a-zA-Z0-9_]*)\]\]")
_REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALICO_EXPORTER_")}
    env.update(extra)
    return env


def _stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM by PID, SIGKILL after a grace period."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _wait_http(url: str, proc: subprocess.Popen[Any], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        assert time.monotonic() < deadline, f"{url} never answered\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


# --------------------------------------------------------------------------------------------
# Test 1: CalicoBGPPeerDown fires and resolves


def _peer_down(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["alertname"] == "CalicoBGPPeerDown"]


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_bgp_peer_down_alert_fires_and_resolves(tmp_path: Path) -> None:
    """A BGP session taken down fires CalicoBGPPeerDown for that peer; it resolves on return."""
    optional_tool("prometheus")
    rules = shorten_for(RULES_FILE, tmp_path / "rules.yaml", "1s")
    lab = await start_lab(tmp_path)
    try:
        async with run_prometheus(tmp_path / "prometheus", targets={JOB: [f"127.0.0.1:{lab.port}"]},
                                  rule_files=[rules]) as prom:
            async def all_sessions_up() -> bool:
                up = await prom.query(f'calico_bgp_peer_up{{job="{JOB}"}}')
                return len(up) == 6 and all(s["value"][1] == "1" for s in up)

            await prom.wait_for(all_sessions_up)
            seen = await _last_evaluation(prom)

            async def evaluated_since() -> bool:
                return await _last_evaluation(prom) != seen

            await prom.wait_for(evaluated_since)
            assert _peer_down(await prom.alerts()) == []

            lab.cluster.set_session(MASTER, WORKER0, up=False)

            async def firing() -> list[dict[str, Any]]:
                got = await prom.firing("CalicoBGPPeerDown")
                return got if len(got) >= 2 else []

            alerts = await prom.wait_for(firing)
            assert {(a["labels"]["node"], a["labels"]["peer_ip"]) for a in alerts} == {
                (MASTER, WORKER0_IP), (WORKER0, MASTER_IP)}
            for alert in alerts:
                labels = alert["labels"]
                assert labels["severity"] == "warning"
                assert (labels["ip_version"], labels["peer_type"]) == ("4", "NodeMesh")
                assert alert["annotations"]["summary"] == (
                    f"BGP peer {labels['peer_ip']} of node {labels['node']} is down.")
                assert alert["annotations"]["runbook_url"].endswith("#calicobgppeerdown")
            active = {(a["labels"]["node"], a["labels"]["peer_ip"])
                      for a in _peer_down(await prom.alerts())}
            assert active == {(MASTER, WORKER0_IP), (WORKER0, MASTER_IP)}, "other peers alert"

            lab.cluster.set_session(MASTER, WORKER0, up=True)

            async def resolved() -> bool:
                return _peer_down(await prom.alerts()) == []

            await prom.wait_for(resolved)
            assert await prom.query("calico_bgp_peer_up == 0") == []
    finally:
        await stop_lab(lab)


async def _last_evaluation(prom: Prometheus) -> str:
    """When the BGP rule group was last evaluated."""
    groups = (await prom.api("rules"))["groups"]
    return str(next(g for g in groups if g["name"] == "calico-exporter.bgp")["lastEvaluation"])


# --------------------------------------------------------------------------------------------
# The whole stack for the dashboard tests


@dataclass
class Stack:
    """The demo process and its log."""

    root: Path
    targets: dict[str, list[str]] = field(default_factory=dict)
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    apiserver: str = ""
    tls: ssl.SSLContext | None = None

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              ) -> tuple[subprocess.Popen[Any], Path]:
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc, log

    def start_demo(self) -> None:
        """`calico-exporter demo` with its settings as `make demo` has them, ports moved."""
        port, api_port = free_port(), free_port()
        env = _clean_env(CALICO_EXPORTER_LISTEN=f"127.0.0.1:{port}",
                         CALICO_EXPORTER_APISERVER_LISTEN=f"127.0.0.1:{api_port}",
                         CALICO_EXPORTER_NODE_LISTEN="127.0.0.1:0",
                         CALICO_EXPORTER_LOG_FORMAT="json")
        proc, log = self.spawn("demo", [sys.executable, "-m", "exporter", "demo"], env)
        _wait_http(f"http://127.0.0.1:{port}/readyz", proc, log)
        nodes = re.findall(r"(?:Node mode|\s)\s+http://(127\.0\.0\.1:\d+)/metrics  \(",
                           log.read_text())
        assert len(nodes) == 3, log.read_text()
        self.targets[NODE_JOB] = nodes
        banner = re.search(r"Kube API\s+(\S+)\s+\(an emulator; kubeconfig: (\S+)\)",
                           log.read_text())
        assert banner, log.read_text()
        self.apiserver = banner.group(1)
        kubeconfig = yaml.safe_load(Path(banner.group(2)).read_text())
        ca = kubeconfig["clusters"][0]["cluster"].get("certificate-authority-data")
        self.tls = ssl.create_default_context(
            cadata=base64.b64decode(ca).decode() if ca else None)
        self.targets[JOB] = [f"127.0.0.1:{port}"]

    def kube(self, method: str, path: str, body: dict[str, Any] | None = None) -> int:
        """One request to the demo's API emulator with its printed token, trusting the CA of the
        kubeconfig it printed."""
        req = urllib.request.Request(
            self.apiserver + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": "Bearer demo-token", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10, context=self.tls) as resp:
            return int(resp.status)

    def close(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The demo as `make demo` runs it, its main and node-mode endpoints as targets."""
    running = Stack(tmp_path_factory.mktemp("stack"))
    try:
        running.start_demo()
        yield running
    finally:
        running.close()


# --------------------------------------------------------------------------------------------
# Dashboards, read as Grafana reads them


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}: {self.expr}"


def _dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))]


DASHBOARD_BY_TITLE = {d["title"]: d for d in _dashboards()}


def _queries(dashboard: dict[str, Any]) -> list[Query]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels += [panel, *panel.get("panels", [])]
    return [Query(dashboard["title"], p["title"], t["refId"], t["expr"])
            for p in panels for t in p.get("targets", [])]


def _regex_escape(value: str) -> str:
    """Grafana's prometheusSpecialRegexEscape: a single value of a multi-value variable."""
    return _REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def _render(text: str, values: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return BUILTINS[name] if name in BUILTINS else values[name]
    return _VARIABLE.sub(sub, text)


def _label_values(definition: str) -> tuple[str, str]:
    """(series selector, label) of a ``label_values(selector, label)`` variable query."""
    m = re.fullmatch(r"label_values\((.*),\s*([a-zA-Z_]+)\)", definition)
    assert m, definition
    return m.group(1), m.group(2)


async def _assignments(prom: Prometheus, dashboard: dict[str, Any]) -> list[dict[str, str]]:
    """Every combination of real values of the dashboard's query variables, in order, each
    variable's values found by its own label_values query with the earlier ones filled (an
    empty variable with "All" gets its allValue, as Grafana sends it)."""
    combos: list[dict[str, str]] = [{}]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        selector, label = _label_values(variable["definition"])
        grown = []
        for combo in combos:
            found = await prom.api(f"label/{label}/values",
                                   **{"match[]": _render(selector, combo)})
            values = [_regex_escape(v) for v in found] or (
                [variable["allValue"]] if variable.get("includeAll") else [])
            grown += [{**combo, variable["name"]: v} for v in values]
        combos = grown
    return combos


def _has_data(result: list[dict[str, Any]]) -> bool:
    """A non-empty vector with at least one number (a NaN-only answer shows nothing)."""
    return any(not math.isnan(float(s["value"][1])) for s in result)


def _defaults(dashboard: dict[str, Any]) -> dict[str, str]:
    """The dashboard as it opens: every query variable on "All" (its allValue)."""
    return {v["name"]: v["allValue"] for v in dashboard["templating"]["list"]
            if v["type"] == "query"}


async def _failing(prom: Prometheus, pending: list[Query]) -> list[Query]:
    """The queries that show no data when their dashboard opens (variables on "All") or for every
    combination of real values of its variables."""
    still = []
    for title, group in itertools.groupby(pending, key=lambda q: q.dashboard):
        dashboard = DASHBOARD_BY_TITLE[title]
        combos = await _assignments(prom, dashboard)
        for query in group:
            shown = _has_data(await prom.query(_render(query.expr, _defaults(dashboard))))
            for combo in combos if shown else []:
                if _has_data(await prom.query(_render(query.expr, combo))):
                    break
            else:
                still.append(query)
    return still


NODE_MODE_ONLY = frozenset({"calico_bgp_peer_routes",
                            "calico_bgp_peer_state_change_timestamp_seconds"})
"""Series only node mode (BIRD's own output) has: CalicoNodeStatus carries neither; the demo
serves them from its node-mode endpoints."""


def _any(text: str) -> str:
    """``text`` with every dashboard variable matching anything."""
    return _render(text, collections.defaultdict(lambda: ".*"))


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_every_panel_query_returns_data(stack: Stack, tmp_path: Path) -> None:
    """Every panel query returns data, its variables on "All" and on some set of real values."""
    optional_tool("prometheus")
    queries = [q for d in DASHBOARD_BY_TITLE.values() for q in _queries(d)]
    assert len(DASHBOARD_BY_TITLE) == 5
    assert len(queries) > 40
    assert {n for q in queries for n in metric_names(_any(q.expr))} >= NODE_MODE_ONLY
    async with run_prometheus(tmp_path / "prometheus", targets=stack.targets) as prom:
        pending = queries
        deadline = time.monotonic() + 90
        while pending:
            pending = await _failing(prom, pending)
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        assert not pending, "panel queries without data:\n" + "\n".join(map(str, pending))


def _used_metric_names() -> dict[str, str]:
    """Metric name -> where a dashboard or an alert rule uses it."""
    used: dict[str, str] = {}
    for dashboard in DASHBOARD_BY_TITLE.values():
        for query in _queries(dashboard):
            for name in metric_names(_any(query.expr)):
                used.setdefault(name, f"{query.dashboard} / {query.panel}")
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                selector = _label_values(variable["definition"])[0]
                for name in metric_names(_any(selector)):
                    used.setdefault(name, f"{dashboard['title']} / variable {variable['name']}")
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, f"alert {rule['alert']}")
    return used


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_every_used_metric_name_is_live(stack: Stack, tmp_path: Path) -> None:
    """Every metric name a dashboard or alert rule uses has series in the live Prometheus."""
    optional_tool("prometheus")
    used = _used_metric_names()
    assert {"calico_bgp_peer_up", "calico_probe_latency_seconds_bucket", "up"} <= set(used)
    assert set(used) >= NODE_MODE_ONLY
    pattern = "|".join(sorted(used))
    async with run_prometheus(tmp_path / "prometheus", targets=stack.targets) as prom:
        async def missing() -> dict[str, str]:
            live = await prom.query(f'count by (__name__) ({{__name__=~"{pattern}"}})')
            gone = set(used) - {s["metric"]["__name__"] for s in live}
            return {n: used[n] for n in sorted(gone)}

        deadline = time.monotonic() + 60
        while True:
            absent = await missing()
            if not absent or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        assert not absent, f"used but never exported: {absent}"


GOLDMANE_DOC = Path(__file__).parents[2] / "docs" / "goldmane.md"
FLOW_POLICY_SERIES = ('{__name__=~"calico_policy_flow_connections_total|'
                      'calico_policy_staged_flow_connections_total|'
                      'calico_policy_staged_flow_changed_connections_total", policy!~"__.*"}')
ON = "(kind, namespace, tier, policy)"


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_flow_families_join_the_policy_families(stack: Stack, tmp_path: Path) -> None:
    """Prometheus joins the demo's flow families with calico_network_policy_selected_pods on
    {kind,namespace,tier,policy}: docs/goldmane.md's query (the policies that denied traffic,
    with the pods they select) finds custom-deny-egress and its 5 guestbook pods, and no flow
    series that names a policy is left out of the join, whatever its kind."""
    optional_tool("prometheus")
    doc_query = re.search(r"```promql\n(.*?)```", GOLDMANE_DOC.read_text(), re.S)
    assert doc_query is not None
    async with run_prometheus(tmp_path / "prometheus", targets={JOB: stack.targets[JOB]}) as prom:
        async def joined() -> list[dict[str, Any]]:
            return await prom.query(f"count by {ON} ({FLOW_POLICY_SERIES}) and on {ON} "
                                    "calico_network_policy_selected_pods")

        async def every_kind() -> bool:
            kinds = {s["metric"]["kind"] for s in await joined()}
            return kinds >= {"k8s", "calico", "global", "cluster", "staged"}

        await prom.wait_for(every_kind, timeout=120)
        left_out = await prom.query(f"count by {ON} ({FLOW_POLICY_SERIES}) unless on {ON} "
                                    "calico_network_policy_selected_pods")
        assert left_out == []

        async def denied() -> list[dict[str, Any]]:
            return await prom.query(doc_query.group(1))

        result = await prom.wait_for(denied, timeout=60)
        assert {(s["metric"]["kind"], s["metric"]["namespace"], s["metric"]["tier"],
                 s["metric"]["policy"], s["value"][1]) for s in result} == {
            ("calico", "guestbook", "default", "custom-deny-egress", "5")}


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_first_invalid_object_shows_in_the_health_dashboard(stack: Stack,
                                                                  tmp_path: Path) -> None:
    """An object that fails to parse while Prometheus scrapes shows in "Invalid objects (1h)"."""
    optional_tool("prometheus")
    panel = next(q for q in _queries(DASHBOARD_BY_TITLE["Calico exporter health"])
                 if q.panel == "Invalid objects (1h)")
    series = ('calico_exporter_invalid_objects_total'
              f'{{job="{JOB}", resource=~"globalnetworkpolicies.*"}}')
    async with run_prometheus(tmp_path / "prometheus", targets={JOB: stack.targets[JOB]}) as prom:
        async def scrapes(expr: str, n: int) -> bool:
            got = await prom.query(f"count_over_time({expr}[1m]) >= {n}")
            return bool(got)

        await prom.wait_for(lambda: scrapes(f'up{{job="{JOB}"}}', 3))
        assert all(s["value"][1] == "0" for s in await prom.query(series)), "none invalid yet"
        assert stack.kube("POST", "/apis/crd.projectcalico.org/v1/globalnetworkpolicies", {
            "apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "broken-global-selector"},
            "spec": {"selector": "role in {", "types": ["Ingress"]}}) == 201
        defaults = _defaults(DASHBOARD_BY_TITLE[panel.dashboard])

        async def panel_shows_it() -> bool:
            shown = await prom.query(_render(panel.expr, defaults))
            return bool(shown) and float(shown[0]["value"][1]) >= 1

        await prom.wait_for(panel_shows_it)
