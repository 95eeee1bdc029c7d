"""BGP and BIRD families, from NodeBGP snapshots (CalicoNodeStatus or BIRD socket alike).

Most series of a large cluster are here (``calico_bgp_peer_state``: eight per BGP session), so
the collector also renders its own exposition text (``render``, used by ``/metrics``) and keeps
each node's rendered lines until that node's NodeBGP changes: an unchanged node costs a lookup
per scrape. ``collect()`` gives the same series as families, for any other consumer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from exporter.metrics.exposition import family_lines, header
from exporter.metrics.spec import MetricSpec
from exporter.model.bgp import BGP_PORT, PEER_STATES, BGPPeer, NodeBGP

log = structlog.get_logger(__name__)

PEER = ("node", "ip_version", "peer_ip", "peer_type")
PEER_PORT = ("peer_port",)
"""Added to a peer's series only when more than one session of the node (and IP version) goes
to the same peer IP, which confd allows for peers on different ports (``_port_N`` protocol
names). Every other peer keeps exactly the ``PEER`` labels, so adding it changes no series of
an ordinary cluster. The unsuffixed session of such a pair has ``peer_port="179"``."""

BGP_PEERS = MetricSpec(
    "calico_bgp_peers", "gauge",
    "BGP peers of a node by state (established or not_established), as BIRD counts them.",
    ("node", "ip_version", "state"),
)
BGP_PEER_UP = MetricSpec(
    "calico_bgp_peer_up", "gauge",
    "1 when the BGP session with this peer is Established, else 0.", PEER,
    optional_labels=PEER_PORT,
)
BGP_PEER_STATE = MetricSpec(
    "calico_bgp_peer_state", "gauge",
    "BGP session state of a peer as a state set: 1 for the current state, 0 for the others; "
    "Unknown covers BIRD's Down and Passive.",
    (*PEER, "state"), optional_labels=PEER_PORT,
)
BGP_ROUTES = MetricSpec(
    "calico_bgp_routes", "gauge",
    "Routes in a node's BIRD table by type (FIB: selected, RIB: alternative) and source.",
    ("node", "ip_version", "type", "source_type"),
)
BGP_PEER_ROUTES = MetricSpec(
    "calico_bgp_peer_routes", "gauge",
    "Routes imported from or exported to a BGP peer (node mode only).",
    (*PEER, "direction"), optional_labels=PEER_PORT,
)
BGP_PEER_STATE_CHANGE = MetricSpec(
    "calico_bgp_peer_state_change_timestamp_seconds", "gauge",
    "Unix time of the peer's last state change, from BIRD's since column (node mode only).",
    PEER, optional_labels=PEER_PORT,
)
BIRD_READY = MetricSpec(
    "calico_bird_ready", "gauge", "1 when the node's BIRD daemon answers and is ready.",
    ("node", "ip_version"),
)
BIRD_INFO = MetricSpec(
    "calico_bird_info", "gauge", "BIRD daemon version and router ID; always 1.",
    ("node", "ip_version", "version", "router_id"),
)
BIRD_LAST_BOOT = MetricSpec(
    "calico_bird_last_boot_timestamp_seconds", "gauge", "Unix time BIRD last started.",
    ("node", "ip_version"),
)
BIRD_LAST_RECONFIG = MetricSpec(
    "calico_bird_last_reconfiguration_timestamp_seconds", "gauge",
    "Unix time BIRD last reloaded its configuration.", ("node", "ip_version"),
)
NODE_STATUS_LAST_UPDATED = MetricSpec(
    "calico_node_status_last_updated_timestamp_seconds", "gauge",
    "Unix time calico-node last changed the node's CalicoNodeStatus; it moves only when the "
    "content changes, so it is not a heartbeat.",
    ("node",),
)

SPECS = (
    BGP_PEERS, BGP_PEER_UP, BGP_PEER_STATE, BGP_ROUTES, BGP_PEER_ROUTES, BGP_PEER_STATE_CHANGE,
    BIRD_READY, BIRD_INFO, BIRD_LAST_BOOT, BIRD_LAST_RECONFIG, NODE_STATUS_LAST_UPDATED,
)


class BGPCollector:
    """Yields the BGP families from ``source()``, a list of NodeBGP read at scrape time."""

    def __init__(self, source: Callable[[], Iterable[NodeBGP]]) -> None:
        self._source = source
        self._rendered: dict[str, tuple[NodeBGP, tuple[str, ...]]] = {}

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            nodes = list(self._source())
        except Exception:  # a collector must never break the scrape
            log.exception("collect_failed", collector="bgp")
            return
        yield from families(nodes)

    def render(self, openmetrics: bool) -> Iterator[str]:
        """The exposition text of ``collect()``, from per-node lines cached while the node's
        NodeBGP stays the same (same object, or an equal one)."""
        try:
            nodes = list(self._source())
        except Exception:  # a collector must never break the scrape
            log.exception("collect_failed", collector="bgp")
            return
        cache, fresh = self._rendered, {}
        columns: list[list[str]] = [[] for _ in FAMILY_SPECS]
        for bgp in nodes:
            hit = cache.get(bgp.node)
            if hit is not None and (hit[0] is bgp or hit[0] == bgp):
                chunks = hit[1]
            else:
                chunks = node_lines(bgp)
            fresh[bgp.node] = (bgp, chunks)
            for column, chunk in zip(columns, chunks, strict=True):
                if chunk:
                    column.append(chunk)
        self._rendered = fresh
        for spec, column in zip(FAMILY_SPECS, columns, strict=True):
            yield header(spec, openmetrics)
            yield from column


def node_lines(bgp: NodeBGP) -> tuple[str, ...]:
    """The sample lines of one node, one string per family of ``FAMILY_SPECS``."""
    out: list[str] = []
    for family in families([bgp]):
        lines = family_lines(family.samples, family.name)
        assert lines is not None, family.name  # plain gauges only
        out.append("".join(lines))
    return tuple(out)


def families(nodes: Iterable[NodeBGP]) -> list[GaugeMetricFamily]:
    peers, up, state, routes = (BGP_PEERS.gauge(), BGP_PEER_UP.gauge(), BGP_PEER_STATE.gauge(),
                                BGP_ROUTES.gauge())
    peer_routes, changed = BGP_PEER_ROUTES.gauge(), BGP_PEER_STATE_CHANGE.gauge()
    ready, info, boot, reconfig = (BIRD_READY.gauge(), BIRD_INFO.gauge(), BIRD_LAST_BOOT.gauge(),
                                   BIRD_LAST_RECONFIG.gauge())
    updated = NODE_STATUS_LAST_UPDATED.gauge()
    for bgp in nodes:
        node = bgp.node
        for c in bgp.counts:
            v = str(c.ip_version)
            peers.add_metric([node, v, "established"], c.established)
            peers.add_metric([node, v, "not_established"], c.not_established)
        shared = _shared_peer_ips(bgp.peers)
        seen: set[tuple[int, str, str, int | None]] = set()
        for p in bgp.peers:
            key = (p.ip_version, p.peer_ip, p.peer_type, p.port)
            if key in seen:
                continue  # the same session listed twice
            seen.add(key)
            labels = [node, str(p.ip_version), p.peer_ip, p.peer_type]
            if shared and (p.ip_version, p.peer_ip) in shared:
                _peer_with_port(p, labels, up, state, peer_routes, changed)
                continue
            up.add_metric(labels, 1.0 if p.established else 0.0)
            for s in PEER_STATES:
                state.add_metric([*labels, s], 1.0 if p.state == s else 0.0)
            if p.routes_imported is not None:
                peer_routes.add_metric([*labels, "imported"], p.routes_imported)
            if p.routes_exported is not None:
                peer_routes.add_metric([*labels, "exported"], p.routes_exported)
            if p.state_changed is not None:
                changed.add_metric(labels, p.state_changed)
        for r in bgp.routes:
            routes.add_metric([node, str(r.ip_version), r.type, r.source_type], r.count)
        for a in bgp.agents:
            v = str(a.ip_version)
            ready.add_metric([node, v], 1.0 if a.ready else 0.0)
            if a.version or a.router_id:
                info.add_metric([node, v, a.version, a.router_id], 1.0)
            if a.last_boot is not None:
                boot.add_metric([node, v], a.last_boot)
            if a.last_reconfig is not None:
                reconfig.add_metric([node, v], a.last_reconfig)
        if bgp.last_updated is not None:
            updated.add_metric([node], bgp.last_updated)
    return [peers, up, state, routes, peer_routes, changed, ready, info, boot, reconfig, updated]


def _shared_peer_ips(peers: tuple[BGPPeer, ...]) -> set[tuple[int, str]]:
    """(ip_version, peer_ip) of the IPs that sessions on more than one port go to."""
    if len({(p.ip_version, p.peer_ip) for p in peers}) == len(peers):
        return set()  # the usual case: one session per peer IP
    ports: dict[tuple[int, str], set[int | None]] = {}
    for p in peers:
        ports.setdefault((p.ip_version, p.peer_ip), set()).add(p.port)
    return {key for key, used in ports.items() if len(used) > 1}


def _peer_with_port(p: BGPPeer, values: list[str], up: GaugeMetricFamily,
                    state: GaugeMetricFamily, peer_routes: GaugeMetricFamily,
                    changed: GaugeMetricFamily) -> None:
    """The series of one session to a shared peer IP: the usual ones plus ``peer_port``.

    GaugeMetricFamily.add_metric takes the family's fixed label names, so these samples are
    appended directly (the exposition allows series with different label sets in a family)."""
    labels = dict(zip(PEER, values, strict=True))
    labels["peer_port"] = str(p.port or BGP_PORT)

    def add(family: GaugeMetricFamily, extra: dict[str, str], value: float) -> None:
        family.samples.append(Sample(family.name, {**labels, **extra}, value, None))

    add(up, {}, 1.0 if p.established else 0.0)
    for s in PEER_STATES:
        add(state, {"state": s}, 1.0 if p.state == s else 0.0)
    if p.routes_imported is not None:
        add(peer_routes, {"direction": "imported"}, p.routes_imported)
    if p.routes_exported is not None:
        add(peer_routes, {"direction": "exported"}, p.routes_exported)
    if p.state_changed is not None:
        add(changed, {}, p.state_changed)


FAMILY_SPECS = (
    BGP_PEERS, BGP_PEER_UP, BGP_PEER_STATE, BGP_ROUTES, BGP_PEER_ROUTES, BGP_PEER_STATE_CHANGE,
    BIRD_READY, BIRD_INFO, BIRD_LAST_BOOT, BIRD_LAST_RECONFIG, NODE_STATUS_LAST_UPDATED,
)
"""The specs of ``families()``, in its order."""
