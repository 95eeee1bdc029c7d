"""The Prometheus helper against the real server: it scrapes a fixed exposition served by a tiny
aiohttp app, answers queries, fires and resolves a shipped alert (only `for` shortened), stops by
PID, and reports a server that cannot start."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from tests.ops.helpers import RULES_FILE, optional_tool
from tests.ops.prom import PrometheusError, run_prometheus, shorten_for

HEADER = """# HELP calico_bgp_peer_up 1 when the BGP session with this peer is Established, else 0.
# TYPE calico_bgp_peer_up gauge
"""
PEER = 'calico_bgp_peer_up{{node="node-a",ip_version="4",peer_ip="{ip}",peer_type="NodeMesh"}} {v}'


class Exposition:
    """A /metrics endpoint whose peer 192.168.102.103 can be taken down and brought back."""

    def __init__(self) -> None:
        self.peer_up = 0

    async def metrics(self, _: web.Request) -> web.Response:
        body = HEADER + "\n".join([PEER.format(ip="192.168.102.103", v=self.peer_up),
                                   PEER.format(ip="192.168.102.104", v=1)]) + "\n"
        return web.Response(text=body, content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"})


@pytest.fixture
async def target() -> AsyncIterator[tuple[Exposition, str]]:
    exposition = Exposition()
    app = web.Application()
    app.router.add_get("/metrics", exposition.metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield exposition, f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_shorten_for_changes_only_for(tmp_path: Path) -> None:
    """shorten_for rewrites every rule's `for` and leaves everything else of the rules as is."""
    out = shorten_for(RULES_FILE, tmp_path / "rules.yaml", "1s")
    original = yaml.safe_load(RULES_FILE.read_text())
    short = yaml.safe_load(out.read_text())
    for group in original["groups"]:
        for rule in group["rules"]:
            rule["for"] = "1s"
    assert short == original


async def test_prometheus_scrapes_queries_and_fires_a_shipped_alert(
        tmp_path: Path, target: tuple[Exposition, str]) -> None:
    """Prometheus scrapes the exposition (up is 1, the peer series hold their values), the shipped
    CalicoBGPPeerDown fires for the down peer only, CalicoExporterDown does not fire once the
    target is known, CalicoBGPPeerDown resolves when the peer comes back, and the server is gone
    after the context exits."""
    optional_tool("prometheus")
    exposition, address = target
    rules = shorten_for(RULES_FILE, tmp_path / "rules.yaml", "0s")
    async with run_prometheus(tmp_path / "prometheus", targets={"calico-exporter": [address]},
                              rule_files=[rules]) as prom:
        up = await prom.wait_for(lambda: prom.query('up{job="calico-exporter"} == 1'))
        assert up[0]["metric"]["instance"] == address
        peers = await prom.wait_for(lambda: prom.query("calico_bgp_peer_up"))
        assert {p["metric"]["peer_ip"]: p["value"][1] for p in peers} == {
            "192.168.102.103": "0", "192.168.102.104": "1"}
        firing = await prom.wait_for(lambda: prom.firing("CalicoBGPPeerDown"))
        assert [a["labels"] for a in firing] == [{
            "alertname": "CalicoBGPPeerDown", "severity": "warning", "node": "node-a",
            "ip_version": "4", "peer_ip": "192.168.102.103", "peer_type": "NodeMesh"}]
        assert firing[0]["annotations"]["summary"] == (
            "BGP peer 192.168.102.103 of node node-a is down.")

        async def target_known() -> bool:  # absent() may fire on the very first evaluation
            return not await prom.firing("CalicoExporterDown")
        await prom.wait_for(target_known)

        exposition.peer_up = 1

        async def resolved() -> bool:
            return (await prom.query("min(calico_bgp_peer_up) == 1") != []
                    and await prom.firing("CalicoBGPPeerDown") == [])
        await prom.wait_for(resolved)
        pid = prom.pid
    assert prom.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_prometheus_that_cannot_start_is_reported(tmp_path: Path) -> None:
    """A rules file Prometheus rejects makes run_prometheus raise PrometheusError with the server's
    own log, and leaves no process behind."""
    optional_tool("prometheus")
    broken = tmp_path / "broken.rules.yaml"
    broken.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: sum(\n")
    with pytest.raises(PrometheusError, match=r"broken\.rules\.yaml"):
        async with run_prometheus(tmp_path / "prometheus", targets={"x": ["127.0.0.1:9"]},
                                  rule_files=[broken]):
            pass
