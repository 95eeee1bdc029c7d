"""The Goldmane flow role: one stream job and its collector, when --goldmane-enabled.

Wired into the cluster (and demo) process. It adds no readiness check: Goldmane is optional
and a tech preview, so its absence must not take the exporter's other metrics out of service;
``calico_exporter_source_up{source="goldmane"}`` and the CalicoGoldmaneDown alert report it.
grpc is imported only here and below, so node and probe processes never load it.
"""

from __future__ import annotations

from exporter.app.cluster import Role
from exporter.config import FlowSettings
from exporter.model.telemetry import Telemetry


def build_flows_role(settings: FlowSettings, telemetry: Telemetry) -> Role:
    """The role for ``settings`` (an empty one when Goldmane is not enabled)."""
    if not settings.goldmane_enabled:
        return Role()
    from exporter.flows.counters import FlowCounters
    from exporter.flows.source import GoldmaneSource
    from exporter.flows.tls import ClientFiles
    from exporter.metrics.flows import FlowCollector

    counters = FlowCounters(max_series=settings.goldmane_max_series,
                            namespace_pairs=settings.goldmane_namespace_pairs)
    source = GoldmaneSource(
        address=settings.goldmane_address,
        server_name=settings.goldmane_server_name,
        files=ClientFiles(cert=settings.goldmane_cert_file, key=settings.goldmane_key_file,
                          ca=settings.goldmane_ca_file),
        counters=counters,
        mark=lambda ok: telemetry.mark("goldmane", "stream", ok),
        stall_timeout=settings.goldmane_stall_timeout,
    )
    return Role(jobs={"goldmane-flows": source.run}, collectors=[FlowCollector(counters)])
