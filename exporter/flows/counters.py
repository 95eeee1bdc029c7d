"""The flow counters: totals per policy series, what was dropped and why, and the series cap.

:class:`FlowCounters` is the state the Goldmane stream loop (``exporter.flows.source``) owns and
the collector (``exporter.metrics.flows``) reads at scrape time. Every value only ever grows:
a window's flows are first summed into a :class:`Delta` and then added in one step
(:meth:`FlowCounters.commit`), so a window that is abandoned half-way (the stream broke) leaves
no trace and is counted once when it is sent again.

Label vocabulary (``docs/goldmane.md`` has the full table):

- ``kind``: the exporter's policy kinds, the words of ``calico_network_policy_selected_pods``
  (``k8s``, ``calico``, ``global``, ``staged``, ``staged_global``, ``staged_k8s``, ``cluster``),
  and ``profile``; ``admin`` and ``baseline_admin`` from a Goldmane of Calico 3.30 or 3.31;
  ``unknown`` for a kind this version does not know (a newer Calico).
- ``tier``, ``policy``: with a :data:`PolicyNames` lookup (the cluster role's policy index), the
  tier and the name the policy watches show for the policy Goldmane names, so the families join
  with ``calico_network_policy_selected_pods`` on ``{kind,namespace,tier,policy}``; without one,
  or for a policy the lookup does not know, Goldmane's tier and name (``exporter.flows.ingest``).
- ``action``: ``allow``, ``deny``, ``pass``, or ``unknown``. ``direction``: ``egress`` for flows
  reported by the source (the source endpoint's egress policies decided), ``ingress`` for those
  reported by the destination.

Cardinality: every table is capped at ``max_series`` label sets; a label set that would exceed
it is counted under ``policy="__other__"`` (``source_namespace="__other__"`` for namespace
pairs) with empty tier, kind and namespace, keeping action and direction. Label sets are never
evicted: a counter must not go backwards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

K = TypeVar("K", bound=tuple[str, ...])

PolicyKey = tuple[str, str, str, str, str, str]
"""(tier, kind, namespace, policy, action, direction): the labels of the per-policy families."""
PairKey = tuple[str, str, str]
"""(source_namespace, destination_namespace, action)."""

OTHER = "__other__"

PolicyNames = Callable[[str, str, str], tuple[str, str] | None]
"""(kind, namespace, stored name) -> (tier, name as Calico shows it) of a policy the exporter
watches; None when it knows none stored under that name."""

DROP_REASONS = (
    "zero_counters",
    "invalid",
    "no_policy_hit",
    "already_counted",
    "duplicate_window",
)
"""Why a received flow was not counted in the per-policy families (a bounded set):

- ``zero_counters``: every counter is 0 (stale flows Felix re-emitted, calico#13185).
- ``invalid``: no key, or a negative counter.
- ``no_policy_hit``: no enforced policy hit to attribute it to (counted in the namespace pairs).
- ``already_counted``: its window started before the point this connection resumed from: the
  window was counted before a reconnect, or Goldmane restarted and re-aggregated flows it had
  already streamed (its new windows straddle the old ones).
- ``duplicate_window``: a second copy of a window already received on this connection (a
  rollover racing a new stream's backfill in Goldmane).
"""

RECONNECT_REASONS = ("tls", "unavailable", "stalled", "certificate_changed", "credentials",
                     "ended")
"""Reconnect reasons exported as 0 from the start (so increase() sees the first one); any other
gRPC status code appears, lowercased, when it first happens."""

UNKNOWN_FIELDS = ("action", "reporter", "kind", "dest_type")
"""Enum fields whose values are checked; an unknown value (a newer Calico) is counted here and
exported as ``unknown`` rather than crashing or dropping the flow."""


@dataclass(slots=True)
class Delta:
    """Sums of one window (or of a test's batch) before they are committed."""

    policy: dict[PolicyKey, list[int]] = field(default_factory=dict)
    """[connections started, packets, bytes] per enforced deciding policy."""
    staged: dict[PolicyKey, int] = field(default_factory=dict)
    """Connections started per staged policy hit (pending trace)."""
    staged_changed: dict[PolicyKey, int] = field(default_factory=dict)
    """Connections whose verdict the staged policies would change, per staged policy."""
    pairs: dict[PairKey, int] = field(default_factory=dict)
    """Connections started per (source namespace, destination namespace, final action)."""
    flows: int = 0
    """Flows summed into this delta."""

    def empty(self) -> bool:
        return self.flows == 0


@dataclass(slots=True)
class FlowCounters:
    """Process-lifetime totals from Goldmane; written only by the stream loop."""

    max_series: int = 10_000
    """Most label sets per table; more are counted under ``__other__``."""
    namespace_pairs: bool = False
    """Whether the namespace-pair family is computed at all (off by default: cardinality)."""
    names: PolicyNames | None = None
    """Where committed label sets take the tier and name of the policy as the policy watches
    show it (see :meth:`named`); None keeps Goldmane's."""

    policy: dict[PolicyKey, list[int]] = field(default_factory=dict)
    staged: dict[PolicyKey, int] = field(default_factory=dict)
    staged_changed: dict[PolicyKey, int] = field(default_factory=dict)
    pairs: dict[PairKey, int] = field(default_factory=dict)

    received: int = 0
    """FlowResults read from the stream, whatever became of them."""
    dropped: Counter[str] = field(default_factory=Counter)
    """reason -> flows received but not counted in the per-policy families (DROP_REASONS)."""
    unknown_values: Counter[str] = field(default_factory=Counter)
    """enum field -> values this version does not know (UNKNOWN_FIELDS)."""
    reconnects: Counter[str] = field(default_factory=Counter)
    """reason -> stream (re)connections after a failure, stall or certificate change."""
    windows: int = 0
    """Windows committed (each Goldmane aggregation window counts once)."""

    def __post_init__(self) -> None:
        for reason in DROP_REASONS:
            self.dropped[reason] += 0
        for name in UNKNOWN_FIELDS:
            self.unknown_values[name] += 0
        for reason in RECONNECT_REASONS:
            self.reconnects[reason] += 0

    def commit(self, delta: Delta, *, new_window: bool = True) -> None:
        """Add a window's sums to the totals (capped); the only way totals change.

        ``new_window`` is False for late flows of a window that was already committed."""
        cap = self.max_series
        named = self.named if self.names is not None else _same
        for key, (conns, packets, nbytes) in delta.policy.items():
            key = named(key)
            total = self.policy.get(key)
            if total is None:
                if len(self.policy) >= cap:
                    key = _other_policy(key)
                total = self.policy.setdefault(key, [0, 0, 0])
            total[0] += conns
            total[1] += packets
            total[2] += nbytes
        _add_capped(self.staged, delta.staged, cap, _other_policy, named)
        _add_capped(self.staged_changed, delta.staged_changed, cap, _other_policy, named)
        _add_capped(self.pairs, delta.pairs, cap, _other_pair, _same)
        if new_window:
            self.windows += 1

    def named(self, key: PolicyKey) -> PolicyKey:
        """``key`` with the tier and name the policy watches show for the policy it names.

        Goldmane names a policy as Calico stores it, and a Goldmane of Calico 3.30 or 3.31 (its
        ``HitFromString``) also drops the ``<tier>.`` every stored Calico policy name carried
        then: the lookup tries the name, then ``<tier>.<name>``. Once per label set and window
        (never per flow). Markers (``__end_of_tier__``, ``__profile__``) stay as they are."""
        names = self.names
        tier, kind, namespace, name = key[0], key[1], key[2], key[3]
        if names is None or name.startswith("__"):
            return key
        found = names(kind, namespace, name)
        if found is None and tier:
            found = names(kind, namespace, f"{tier}.{name}")
        if found is None or (found[0], found[1]) == (tier, name):
            return key
        return (found[0], kind, namespace, found[1], key[4], key[5])


def _other_policy(key: PolicyKey) -> PolicyKey:
    return ("", "", "", OTHER, key[4], key[5])


def _other_pair(key: PairKey) -> PairKey:
    return (OTHER, OTHER, key[2])


def _same(key: K) -> K:
    return key


def _add_capped(total: dict[K, int], delta: dict[K, int], cap: int,
                other: Callable[[K], K], named: Callable[[K], K]) -> None:
    for key, n in delta.items():
        key = named(key)
        if key not in total and len(total) >= cap:
            key = other(key)
        total[key] = total.get(key, 0) + n


__all__ = ["DROP_REASONS", "OTHER", "RECONNECT_REASONS", "UNKNOWN_FIELDS", "Delta",
           "FlowCounters", "PairKey", "PolicyKey", "PolicyNames"]
