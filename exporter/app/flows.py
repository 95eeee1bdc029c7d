"""The Goldmane flow role: one stream job and its collector, when --goldmane-enabled.

Wired into the cluster (and demo) process. It adds no readiness check: Goldmane is optional
and a tech preview, so its absence must not take the exporter's other metrics out of service;
``calico_exporter_source_up{source="goldmane"}`` and the CalicoGoldmaneDown alert report it.
grpc is imported only here and below, so node and probe processes never load it.

In the demo, :func:`demo_goldmane` runs the simulator's Goldmane stand-in fed with the lab's
flows, and the role consumes it like a real one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.app.cluster import Role
from exporter.config import FlowSettings
from exporter.model.telemetry import Telemetry

if TYPE_CHECKING:
    from exporter.policy.index import PolicyIndex
    from exporter.sim.apiserver import ApiServer


def build_flows_role(settings: FlowSettings, telemetry: Telemetry, *,
                     policies: PolicyIndex | None = None) -> Role:
    """The role for ``settings`` (an empty one when Goldmane is not enabled). With the cluster
    role's ``policies``, the per-policy series carry the tier and name its policy series show
    (``calico_network_policy_selected_pods``), so the two join."""
    if not settings.goldmane_enabled:
        return Role()
    from exporter.flows.counters import FlowCounters
    from exporter.flows.source import GoldmaneSource
    from exporter.flows.tls import ClientFiles
    from exporter.metrics.flows import FlowCollector

    counters = FlowCounters(max_series=settings.goldmane_max_series,
                            namespace_pairs=settings.goldmane_namespace_pairs,
                            names=None if policies is None else policies.shown)
    source = GoldmaneSource(
        address=settings.goldmane_address,
        server_name=settings.goldmane_server_name,
        files=ClientFiles(cert=settings.goldmane_cert_file, key=settings.goldmane_key_file,
                          ca=settings.goldmane_ca_file),
        counters=counters,
        read=settings.goldmane_read,
        mark=lambda ok: telemetry.mark("goldmane", "stream", ok),
        stall_timeout=settings.goldmane_stall_timeout,
    )
    return Role(jobs={"goldmane-flows": source.run}, collectors=[FlowCollector(counters)])


@asynccontextmanager
async def demo_goldmane(api: ApiServer, directory: Path, *, settings: FlowSettings,
                        interval: int = 15) -> AsyncIterator[FlowSettings]:
    """The demo's Goldmane: the stand-in on loopback over mutual TLS (certificates made for
    this run in ``directory``), fed every ``interval`` seconds with the flows of the simulated
    lab's conversations, their verdicts from the policies ``api`` holds now
    (``exporter.sim.flowfeed``); yields ``settings`` pointed at it (the read mode, series cap and
    stall timeout stay the user's; the namespace pairs are on, so the demo shows every family)."""
    import asyncio
    import dataclasses

    from exporter.sim.flowfeed import DEMO_CONVERSATIONS, FlowFeed
    from exporter.sim.goldmane import GoldmaneStandIn
    from exporter.sim.tls import self_signed

    server_cert, server_key = self_signed("goldmane", ("localhost", "127.0.0.1"))
    client_cert, client_key = self_signed("calico-exporter", ("calico-exporter",), client=True)
    files = {"goldmane-ca.crt": server_cert, "tls.crt": client_cert, "tls.key": client_key}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    gm = GoldmaneStandIn(server_cert=server_cert, server_key=server_key, client_ca=client_cert,
                         interval=interval, keep_ledger=False)
    port = await gm.start("127.0.0.1", 0)
    feed = FlowFeed(api, DEMO_CONVERSATIONS)

    async def run_feed() -> None:
        while True:
            gm.ingest(feed.window())
            gm.rollover()
            await asyncio.sleep(interval)

    for _ in range(4):  # a minute of history, so the exporter's first poll finds windows
        gm.ingest(feed.window())
        gm.rollover()

    task = asyncio.create_task(run_feed(), name="demo-goldmane-feed")
    try:
        yield dataclasses.replace(
            settings, goldmane_enabled=True, goldmane_address=f"127.0.0.1:{port}",
            goldmane_server_name="", goldmane_cert_file=str(directory / "tls.crt"),
            goldmane_key_file=str(directory / "tls.key"),
            goldmane_ca_file=str(directory / "goldmane-ca.crt"), goldmane_namespace_pairs=True)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await gm.stop()
