"""The fast /metrics renderer gives prometheus-client's bytes, in both formats, and is served."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.openmetrics.exposition import generate_latest as om_latest

from exporter.metrics.bgp import BGPCollector
from exporter.metrics.exposition import render
from exporter.metrics.registry import build_registry
from exporter.metrics.self import SelfCollector
from exporter.model.bgp import NodeBGP
from exporter.model.nodestatus import parse_node_status
from exporter.model.telemetry import Telemetry
from tests.e2e.lab import start_lab, stop_lab

DOCS_SAMPLE = (Path(__file__).parent / "data"
               / "caliconodestatus-docs-ipv4-mesh-one-peer-opensent.yaml")


class Odd:
    """Families that exercise escaping, value formatting and the general renderer."""

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily("odd_gauge", 'help with \\ backslash, "quotes"\nand a newline',
                              labels=["z", "a", "m"])
        g.add_metric(['q"uote', "back\\slash", "new\nline"], 1.0)
        g.add_metric(["", "plain", "x"], 0)
        for i, v in enumerate((2, -3.5, 1e21, 1.5e-7, math.inf, -math.inf, math.nan, 1700000000,
                               12345678901234567890, True)):
            g.add_metric([str(i), "v", "w"], v)
        yield g
        yield GaugeMetricFamily("odd_unlabelled", "no labels", value=7)
        yield GaugeMetricFamily("odd_empty", "no samples", labels=["a"])
        c = CounterMetricFamily("odd_requests", "a counter", labels=["code"])
        c.add_metric(["200"], 10)
        c.add_metric(["500"], 0.5)
        yield c
        yield CounterMetricFamily("odd_created", "with created", value=3, created=1700000000.5)
        t = GaugeMetricFamily("odd_stamped", "with a timestamp", labels=["a"])
        t.add_metric(["b"], 1, timestamp=1700000000.25)
        yield t
        h = HistogramMetricFamily("odd_seconds", "a histogram", labels=["op"])
        h.add_metric(["get"], [("0.1", 1), ("1.0", 3), ("+Inf", 4)], 2.5)
        yield h
        yield InfoMetricFamily("odd_build", "an info", value={"version": "1.2"})
        yield StateSetMetricFamily("odd_state", "a state set", value={"a": True, "b": False})
        u = GaugeMetricFamily("odd_bytes", "with a unit", unit="bytes")
        u.add_metric([], 5)
        yield u


def _bgp(node: str) -> NodeBGP:
    raw = yaml.safe_load(DOCS_SAMPLE.read_text())
    raw = copy.deepcopy(raw)
    raw["metadata"]["name"] = node
    raw["spec"]["node"] = node
    return parse_node_status(raw).bgp


def test_same_bytes_as_prometheus_client() -> None:
    """Text and OpenMetrics output equal prometheus-client's, also after BGP nodes change."""
    telemetry = Telemetry()
    telemetry.watch_events[("pods", "ADDED")] += 3
    telemetry.source_up["kubernetes"] = True
    nodes = [_bgp("node-a"), _bgp("node-b"), _bgp("node-c")]
    registry = build_registry([BGPCollector(lambda: list(nodes)), Odd(),
                               SelfCollector(telemetry)])
    for _ in range(2):  # the second pass reads the per-node cache
        assert render(registry, False) == generate_latest(registry)
        assert render(registry, True) == om_latest(registry)
        assert render(registry, True, "2.0.0") == om_latest(registry, version="2.0.0")
    changed = dataclasses.replace(nodes[1], last_updated=1.0)
    nodes[1:] = [changed, _bgp("node-d")]  # one node changed, one gone, one new
    assert render(registry, False) == generate_latest(registry)
    nodes[0] = _bgp("node-a")  # an equal snapshot in a new object
    assert render(registry, True) == om_latest(registry)
    nodes.clear()
    assert render(registry, False) == generate_latest(registry)


@pytest.mark.parametrize(("accept", "content_type", "tail"), [
    (None, "text/plain; version=0.0.4; charset=utf-8", ""),
    ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
     "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",  # what Prometheus 2.42 sends
     "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
     "# EOF\n"),
])
async def test_served(tmp_path: Path, accept: str | None, content_type: str, tail: str) -> None:
    """/metrics of a running exporter answers in the negotiated format, compressed when asked."""
    lab = await start_lab(tmp_path)
    try:
        headers = {"Accept": accept} if accept else {}
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{lab.port}/metrics", headers=headers) as resp:
            body = await resp.text()
            assert resp.headers["Content-Type"] == content_type
            assert resp.headers.get("Content-Encoding") in ("gzip", "deflate")
        assert "# TYPE calico_bgp_peer_state gauge\n" in body
        assert body.endswith(tail or "\n")
        assert body.count("# EOF") == (1 if tail else 0)
    finally:
        await stop_lab(lab)


class Frozen:
    """The families of other collectors, collected once: every collect() gives the same ones."""

    def __init__(self, *collectors: object) -> None:
        self._families = [f for c in collectors for f in c.collect()]  # type: ignore[attr-defined]

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def test_runtime_families_render_like_prometheus_client() -> None:
    """The process_* and python_gc_* families prometheus-client collects come out of the fast
    renderer as prometheus-client renders them, in both formats."""
    from exporter.metrics.self import runtime_collectors

    frozen = Frozen(*runtime_collectors())
    names = {f.name for f in frozen.collect()}
    assert {"process_resident_memory_bytes", "process_cpu_seconds", "process_open_fds",
            "process_start_time_seconds", "python_gc_collections"} <= names
    registry = build_registry([frozen, SelfCollector(Telemetry())])
    assert render(registry, False) == generate_latest(registry)
    assert render(registry, True) == om_latest(registry)


def test_runtime_names_do_not_clash() -> None:
    """No family the exporter declares has a runtime family's name or prefix, and the runtime
    families are all distinct, so one registry never holds a name twice."""
    import importlib

    from exporter.metrics.self import RUNTIME_PREFIXES, runtime_collectors
    from tools.metrics_doc import MODULES

    ours = [s.name for m in MODULES
            for s in importlib.import_module(f"exporter.metrics.{m}").SPECS]
    runtime = [f.name for c in runtime_collectors() for f in c.collect()]
    assert len(runtime) == len(set(runtime))
    assert all(n.startswith(RUNTIME_PREFIXES) for n in runtime)
    assert not [n for n in ours if n.startswith(RUNTIME_PREFIXES)]
