"""CalicoNodeStatus parsing and the BGP families built from it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics.bgp import BGPCollector
from exporter.metrics.registry import build_registry
from exporter.model import ParseError
from exporter.model.nodestatus import parse_node_status

DOCS_SAMPLE = (Path(__file__).parent / "data"
               / "caliconodestatus-docs-ipv4-mesh-one-peer-opensent.yaml")


def sample() -> dict:
    return yaml.safe_load(DOCS_SAMPLE.read_text())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class TestParse:
    def test_docs_sample(self) -> None:
        """The docs example parses into counts, three peers, agents and aggregated routes."""
        status = parse_node_status(sample())
        bgp = status.bgp
        assert status.node == "my-kadm-node-0"
        assert status.update_period == 10
        assert [(c.ip_version, c.established, c.not_established) for c in bgp.counts] == [
            (4, 2, 1), (6, 0, 0)]
        assert {(p.peer_ip, p.state) for p in bgp.peers} == {
            ("10.128.0.242", "Established"), ("10.128.0.200", "Established"),
            ("10.128.0.241", "OpenSent")}
        assert {(r.type, r.source_type, r.count) for r in bgp.routes} == {
            ("FIB", "Kernel", 1), ("FIB", "NodeMesh", 2), ("FIB", "Direct", 1)}
        assert [(a.ip_version, a.ready, a.router_id) for a in bgp.agents] == [
            (4, True, "10.128.0.240"), (6, True, "10.128.0.240")]
        assert bgp.agents[0].last_boot == 1634548999.0  # 2021-10-18 09:23:19 UTC

    def test_classes_not_requested_are_not_zero(self) -> None:
        """A class missing from spec.classes leaves its part empty instead of reporting zeros."""
        raw = sample()
        raw["spec"]["classes"] = ["BGP"]
        bgp = parse_node_status(raw).bgp
        assert bgp.routes == ()
        assert bgp.agents == ()
        assert bgp.counts

    def test_never_filled_status_is_empty(self) -> None:
        """A status whose lastUpdated is null was never collected: nothing is exported."""
        raw = sample()
        raw["status"]["lastUpdated"] = None
        bgp = parse_node_status(raw).bgp
        assert (bgp.counts, bgp.peers, bgp.routes, bgp.agents) == ((), (), (), ())

    def test_unknown_state(self) -> None:
        """An empty peer state (BIRD Down or Passive) is exported as Unknown."""
        raw = sample()
        raw["status"]["bgp"]["peersV4"][2]["state"] = ""
        states = {p.peer_ip: p.state for p in parse_node_status(raw).bgp.peers}
        assert states["10.128.0.241"] == "Unknown"

    @pytest.mark.parametrize(
        ("path", "value"),
        [(("spec", "node"), None), (("status", "bgp", "numberEstablishedV4"), -1),
         (("status", "agent", "birdV4", "lastBootTime"), "yesterday"),
         (("status", "lastUpdated"), "not a time")],
    )
    def test_malformed(self, path: tuple[str, ...], value: object) -> None:
        """Malformed fields raise ParseError instead of producing wrong numbers."""
        raw = sample()
        target = raw
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(ParseError):
            parse_node_status(raw)


class TestExposition:
    def test_bgp_families(self) -> None:
        """The collector exports the contract families with the docs sample's values."""
        bgp = parse_node_status(sample()).bgp
        text = generate_latest(build_registry([BGPCollector(lambda: [bgp])])).decode()
        got = samples(text)
        node = ("node", "my-kadm-node-0")
        assert got[("calico_bgp_peers", (("ip_version", "4"), node, ("state", "established")))] == 2
        assert got[("calico_bgp_peers",
                    (("ip_version", "4"), node, ("state", "not_established")))] == 1
        peer = (("ip_version", "4"), node, ("peer_ip", "10.128.0.241"), ("peer_type", "NodeMesh"))
        assert got[("calico_bgp_peer_up", peer)] == 0
        assert got[("calico_bgp_peer_state", (*peer, ("state", "OpenSent")))] == 1
        assert got[("calico_bgp_peer_state", (*peer, ("state", "Established")))] == 0
        assert got[("calico_bgp_routes", (("ip_version", "4"), node, ("source_type", "NodeMesh"),
                                          ("type", "FIB")))] == 2
        assert got[("calico_bird_ready", (("ip_version", "4"), node))] == 1
        assert got[("calico_node_status_last_updated_timestamp_seconds", (node,))] == 1634563323

    def test_promtool_check_metrics(self) -> None:
        """promtool finds nothing to report on the BGP and self exposition."""
        promtool = shutil.which("promtool")
        if promtool is None:
            pytest.skip("promtool not installed (make test installs Debian prometheus)")
        from exporter.metrics.self import SelfCollector
        from exporter.model.telemetry import Telemetry

        telemetry = Telemetry()
        telemetry.watch_events[("pods", "ADDED")] += 3
        telemetry.source_up["kubernetes"] = True
        bgp = parse_node_status(sample()).bgp
        registry = build_registry([BGPCollector(lambda: [bgp]), SelfCollector(telemetry)])
        result = subprocess.run([promtool, "check", "metrics"], input=generate_latest(registry),
                                capture_output=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
