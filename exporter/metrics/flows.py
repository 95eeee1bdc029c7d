"""Flow metrics from Calico's Goldmane: per-policy connections, packets and bytes, staged hits.

Attribution, label values and the cap are :mod:`exporter.flows.counters` and
:mod:`exporter.flows.ingest`; why the Flows API is the source and how the counters stay exact
across reconnects and restarts: ``docs/goldmane.md``. Series are bounded by policies
(``--goldmane-max-series``), never by pods, IPs or ports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import structlog
from prometheus_client.core import Metric

from exporter.flows.counters import FlowCounters
from exporter.metrics.spec import MetricSpec

log = structlog.get_logger(__name__)

_POLICY_LABELS = ("tier", "kind", "namespace", "policy", "action", "direction")

CONNECTIONS = MetricSpec(
    "calico_policy_flow_connections_total", "counter",
    "Connections started, from Goldmane's flows, by the enforced policy that decided them "
    "(policy __end_of_tier__: no rule of the tier matched; __profile__: no policy applied; "
    "__other__: over --goldmane-max-series); direction egress when the source reported it, "
    "ingress when the destination did.",
    _POLICY_LABELS,
)
PACKETS = MetricSpec(
    "calico_policy_flow_packets_total", "counter",
    "Packets (in and out, as the reporting endpoint counts them) of the flows a policy decided.",
    _POLICY_LABELS,
)
BYTES = MetricSpec(
    "calico_policy_flow_bytes_total", "counter",
    "Bytes (in and out, as the reporting endpoint counts them) of the flows a policy decided.",
    _POLICY_LABELS,
)
STAGED_CONNECTIONS = MetricSpec(
    "calico_policy_staged_flow_connections_total", "counter",
    "Connections started that traversed a staged policy, by the action it would take "
    "(Goldmane's pending policy trace); end-of-tier hits a staged policy triggered have policy "
    "__end_of_tier__ and its kind.",
    _POLICY_LABELS,
)
STAGED_CHANGED = MetricSpec(
    "calico_policy_staged_flow_changed_connections_total", "counter",
    "Connections whose verdict would change if the staged policies were enforced, by the staged "
    "policy responsible and the verdict it would give (deny: traffic allowed today that it "
    "would deny).",
    _POLICY_LABELS,
)
NAMESPACE_CONNECTIONS = MetricSpec(
    "calico_namespace_flow_connections_total", "counter",
    "Connections started by source and destination namespace and final action, each connection "
    "once (off by default: --goldmane-namespace-pairs).",
    ("source_namespace", "destination_namespace", "action"),
)
RECEIVED = MetricSpec(
    "calico_exporter_goldmane_flows_received_total", "counter",
    "Flow results read from Goldmane (one per flow key and 15-second window with --goldmane-read "
    "stream, one per flow key and poll with poll).",
)
DROPPED = MetricSpec(
    "calico_exporter_goldmane_flows_dropped_total", "counter",
    "Flow results not counted in the per-policy families, by reason: zero_counters (stale "
    "all-zero flows), invalid, no_policy_hit, already_counted (a window counted before a "
    "reconnect or a Goldmane restart), duplicate_window.",
    ("reason",),
)
UNKNOWN_VALUES = MetricSpec(
    "calico_exporter_goldmane_unknown_values_total", "counter",
    "Enum values this exporter does not know (a newer Calico), by field (action, reporter, kind, "
    "dest_type); the flow is still counted, with the label value unknown.",
    ("field",),
)
RECONNECTS = MetricSpec(
    "calico_exporter_goldmane_reconnects_total", "counter",
    "Goldmane stream connections that ended and were retried, by reason: tls, unavailable, "
    "stalled, certificate_changed, credentials, ended, or a gRPC status code.",
    ("reason",),
)
WINDOWS = MetricSpec(
    "calico_exporter_goldmane_windows_total", "counter",
    "Batches of flows committed: Goldmane aggregation windows (15 s each) with --goldmane-read "
    "stream, polls that returned flows with poll.",
)

SPECS = (CONNECTIONS, PACKETS, BYTES, STAGED_CONNECTIONS, STAGED_CHANGED, NAMESPACE_CONNECTIONS,
         RECEIVED, DROPPED, UNKNOWN_VALUES, RECONNECTS, WINDOWS)


class FlowCollector:
    """Reads a :class:`FlowCounters` per scrape; a failing family is logged and skipped."""

    def __init__(self, counters: FlowCounters) -> None:
        self._c = counters

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        families: tuple[Callable[[], Iterator[Metric]], ...] = (
            self._policy, self._staged, self._pairs, self._self)
        for family in families:
            try:
                yield from family()
            except Exception:
                log.exception("collect_failed", family=family.__name__)

    def _policy(self) -> Iterator[Metric]:
        conns, packets, nbytes = CONNECTIONS.counter(), PACKETS.counter(), BYTES.counter()
        for key, (c, p, b) in sorted(self._c.policy.items()):
            labels = list(key)
            conns.add_metric(labels, c)
            packets.add_metric(labels, p)
            nbytes.add_metric(labels, b)
        yield conns
        yield packets
        yield nbytes

    def _staged(self) -> Iterator[Metric]:
        staged = STAGED_CONNECTIONS.counter()
        for key, n in sorted(self._c.staged.items()):
            staged.add_metric(list(key), n)
        yield staged
        changed = STAGED_CHANGED.counter()
        for key, n in sorted(self._c.staged_changed.items()):
            changed.add_metric(list(key), n)
        yield changed

    def _pairs(self) -> Iterator[Metric]:
        if not self._c.namespace_pairs:
            return
        pairs = NAMESPACE_CONNECTIONS.counter()
        for key, n in sorted(self._c.pairs.items()):
            pairs.add_metric(list(key), n)
        yield pairs

    def _self(self) -> Iterator[Metric]:
        c = self._c
        received = RECEIVED.counter()
        received.add_metric([], c.received)
        yield received
        dropped = DROPPED.counter()
        for reason, n in sorted(c.dropped.items()):
            dropped.add_metric([reason], n)
        yield dropped
        unknown = UNKNOWN_VALUES.counter()
        for name, n in sorted(c.unknown_values.items()):
            unknown.add_metric([name], n)
        yield unknown
        reconnects = RECONNECTS.counter()
        for reason, n in sorted(c.reconnects.items()):
            reconnects.add_metric([reason], n)
        yield reconnects
        windows = WINDOWS.counter()
        windows.add_metric([], c.windows)
        yield windows
