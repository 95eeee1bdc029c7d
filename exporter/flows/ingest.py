"""The hot path: one Goldmane ``FlowResult`` in, its contribution to the counters out.

Two pure pieces, tested on recorded and constructed messages without any network:

- :func:`attribute` adds one flow to a :class:`~exporter.flows.counters.Delta`: the enforced
  policy that decided it, the staged policies it traversed, whether the staged policies would
  change its verdict, and its namespace pair. It returns why the flow was dropped, if it was.
- :class:`WindowTracker` applies Goldmane's streaming contract (``docs/goldmane.md``): results
  arrive window by window (each a 15-second aggregation bucket, every flow key of it once, with
  that window's counters only); a window is summed into a pending delta and committed when the
  stream moves to another window, or after a quiet moment; a window seen twice on one connection
  is dropped; windows before the point the connection resumed from are dropped. When the stream
  breaks, the pending window is discarded and :attr:`WindowTracker.resume_from` says where the
  next connection must start (``FlowStreamRequest.start_time_gte``), so a reconnect neither
  loses nor double counts a window.

Labels (``docs/goldmane.md`` has the table): ``kind`` is the exporter's policy kind (the words
``calico_network_policy_selected_pods`` uses, ``exporter.model.policy.POLICY_KINDS``) for Goldmane's
``PolicyKind``, plus ``profile``, ``admin`` and ``baseline_admin`` (Calico 3.30-3.31's
AdminNetworkPolicy kinds, reserved since 3.32) and ``unknown``; ``policy`` is the name Goldmane
reports, which is the name Calico stores (Felix's ``model.PolicyKey``, v3.32.1
felix/calc/policy_lookup_cache.go ``setFlowLogPolicyName``), converted as Calico converts a stored
name when nothing else is known (:func:`~exporter.model.policy.determine_policy_name`);
:class:`~exporter.flows.counters.FlowCounters` replaces it with the name and tier the policy
watches show, when it is given a lookup (the cluster role's policy index).

Which hit decided: Felix reports, per flow, the enforced policy trace in evaluation order (one
hit per tier traversed: ``pass`` hits, then the hit whose action became the flow's action;
``policy_index`` is the position; felix/collector/flowlog/types.go ``newPolicySet``). The
deciding hit is the highest-indexed enforced hit whose action equals the flow's action (the
highest-indexed hit at all if none does). An ``EndOfTier`` hit carries the policy that selected
the endpoint in ``trigger`` (goldmane/proto/methods.go ``HitFromString``): it is exported as
``policy="__end_of_tier__"`` with the tier, and the trigger's kind and namespace; a ``Profile``
hit (no policy applied) as ``policy="__profile__"`` (Goldmane reports profiles with an empty
tier). Staged hits come from the pending trace (Felix's evaluation with staged policies
enforced): every hit of a staged kind, and every end-of-tier hit a staged policy triggered.
"""

from __future__ import annotations

from collections.abc import Iterable

from exporter.flows.counters import Delta, FlowCounters, PolicyKey
from exporter.goldmane import api_pb2 as pb
from exporter.model.policy import determine_policy_name

END_OF_TIER = "__end_of_tier__"
PROFILE = "__profile__"

ADMIN_NETWORK_POLICY = 7
BASELINE_ADMIN_NETWORK_POLICY = 8
"""PolicyKind values of Calico 3.30 and 3.31's api.proto (Kubernetes AdminNetworkPolicy and
BaselineAdminNetworkPolicy); v3.32.1 reserves them (ClusterNetworkPolicy replaced both), so the
generated module has no names for them, but a Goldmane of 3.30 or 3.31 sends them."""

KINDS: dict[int, str] = {
    pb.CalicoNetworkPolicy: "calico",
    pb.GlobalNetworkPolicy: "global",
    pb.NetworkPolicy: "k8s",
    pb.StagedNetworkPolicy: "staged",
    pb.StagedGlobalNetworkPolicy: "staged_global",
    pb.StagedKubernetesNetworkPolicy: "staged_k8s",
    pb.ClusterNetworkPolicy: "cluster",
    pb.Profile: "profile",
    ADMIN_NETWORK_POLICY: "admin",
    BASELINE_ADMIN_NETWORK_POLICY: "baseline_admin",
}
"""Goldmane's PolicyKind -> our ``kind`` label: for every kind the policy watches know, the
exact word ``calico_network_policy_selected_pods`` uses (``POLICY_KINDS``), so the families join
on ``{kind,namespace,tier,policy}``. EndOfTier is not here: it takes its trigger's kind."""
STAGED_KINDS = frozenset({pb.StagedNetworkPolicy, pb.StagedGlobalNetworkPolicy,
                          pb.StagedKubernetesNetworkPolicy})
TIERED_NAME_KINDS = frozenset({pb.CalicoNetworkPolicy, pb.GlobalNetworkPolicy,
                               pb.StagedNetworkPolicy, pb.StagedGlobalNetworkPolicy})
"""Kinds whose stored names Calico up to v3.31 prefixed with their tier (``default.x``), and whose
names Calico converts (:func:`~exporter.model.policy.determine_policy_name`)."""
ACTIONS: dict[int, str] = {pb.Allow: "allow", pb.Deny: "deny", pb.Pass: "pass"}
DIRECTIONS: dict[int, str] = {pb.Src: "egress", pb.Dst: "ingress"}
KNOWN_ENDPOINT_TYPES = frozenset({pb.WorkloadEndpoint, pb.HostEndpoint, pb.NetworkSet,
                                  pb.Network})
UNKNOWN = "unknown"

_ALLOW, _DENY = pb.Allow, pb.Deny
_EOT, _PROFILE, _WEP, _SRC, _DST = pb.EndOfTier, pb.Profile, pb.WorkloadEndpoint, pb.Src, pb.Dst


def _kind(kind: int, counters: FlowCounters) -> str:
    label = KINDS.get(kind)
    if label is None:
        counters.unknown_values["kind"] += 1
        return UNKNOWN
    return label


def _action(action: int, counters: FlowCounters) -> str:
    label = ACTIONS.get(action)
    if label is None:
        counters.unknown_values["action"] += 1
        return UNKNOWN
    return label


def _policy_name(hit: pb.PolicyHit) -> str:
    if hit.kind in TIERED_NAME_KINDS:
        return determine_policy_name(hit.name, hit.tier)
    return hit.name


def hit_labels(hit: pb.PolicyHit, direction: str, counters: FlowCounters) -> PolicyKey:
    """The per-policy label set of one hit (the action is the hit's own)."""
    action = _action(hit.action, counters)
    kind = hit.kind
    if kind == _EOT:
        trigger = hit.trigger
        trigger_kind = _kind(trigger.kind, counters) if hit.HasField("trigger") else UNKNOWN
        return (hit.tier, trigger_kind, trigger.namespace, END_OF_TIER, action, direction)
    if kind == _PROFILE:
        return (hit.tier, "profile", hit.namespace, PROFILE, action, direction)
    return (hit.tier, _kind(kind, counters), hit.namespace, _policy_name(hit), action,
            direction)


def _is_staged(hit: pb.PolicyHit) -> bool:
    if hit.kind == _EOT:
        return hit.HasField("trigger") and hit.trigger.kind in STAGED_KINDS
    return hit.kind in STAGED_KINDS


def deciding_hit(hits: Iterable[pb.PolicyHit], action: int) -> pb.PolicyHit | None:
    """The highest-indexed hit with the flow's action, else the highest-indexed hit."""
    best: pb.PolicyHit | None = None
    best_any: pb.PolicyHit | None = None
    for hit in hits:
        if best_any is None or hit.policy_index >= best_any.policy_index:
            best_any = hit
        if hit.action == action and (best is None or hit.policy_index >= best.policy_index):
            best = hit
    return best if best is not None else best_any


def attribute(flow: pb.Flow, delta: Delta, counters: FlowCounters) -> str | None:
    """Add one flow to ``delta``; return the drop reason, or None when it was counted.

    A dropped flow adds nothing, except ``no_policy_hit``, which still counts in the namespace
    pairs (it has a verdict, only no policy to name).
    """
    conns = flow.num_connections_started
    packets = flow.packets_in + flow.packets_out
    nbytes = flow.bytes_in + flow.bytes_out
    if not (conns or packets or nbytes or flow.num_connections_completed
            or flow.num_connections_live):
        return "zero_counters"
    if (conns < 0 or packets < 0 or nbytes < 0 or flow.packets_in < 0 or flow.bytes_in < 0
            or not flow.HasField("Key")):
        return "invalid"
    key = flow.Key
    action = key.action
    reporter = key.reporter
    direction = DIRECTIONS.get(reporter)
    if direction is None:
        counters.unknown_values["reporter"] += 1
        direction = UNKNOWN
    if action not in ACTIONS:
        counters.unknown_values["action"] += 1
    delta.flows += 1

    if counters.namespace_pairs:
        dest_type = key.dest_type
        if dest_type not in KNOWN_ENDPOINT_TYPES:
            counters.unknown_values["dest_type"] += 1
        # Count a connection once: the destination reports what reached it; the source's report
        # counts only where the destination will not report (it denied, or the destination is
        # not a Calico workload).
        if reporter != _SRC or action == _DENY or dest_type != _WEP:
            pair = (key.source_namespace, key.dest_namespace, ACTIONS.get(action, UNKNOWN))
            delta.pairs[pair] = delta.pairs.get(pair, 0) + conns

    trace = key.policies
    pending = trace.pending_policies
    if pending:
        _staged(pending, action, direction, conns, delta, counters)

    hit = deciding_hit(trace.enforced_policies, action)
    if hit is None:
        return "no_policy_hit"
    labels = hit_labels(hit, direction, counters)
    total = delta.policy.get(labels)
    if total is None:
        delta.policy[labels] = [conns, packets, nbytes]
    else:
        total[0] += conns
        total[1] += packets
        total[2] += nbytes
    return None


def _staged(pending: Iterable[pb.PolicyHit], action: int, direction: str, conns: int,
            delta: Delta, counters: FlowCounters) -> None:
    seen: set[PolicyKey] = set()
    last_staged: pb.PolicyHit | None = None
    for hit in pending:
        if not _is_staged(hit):
            continue
        labels = hit_labels(hit, direction, counters)
        if labels not in seen:
            seen.add(labels)
            delta.staged[labels] = delta.staged.get(labels, 0) + conns
        if last_staged is None or hit.policy_index >= last_staged.policy_index:
            last_staged = hit
    if last_staged is None or action not in (_ALLOW, _DENY):
        return
    final: pb.PolicyHit | None = None
    for hit in pending:
        if hit.action in (_ALLOW, _DENY) and (final is None
                                              or hit.policy_index >= final.policy_index):
            final = hit
    if final is not None and final.action != action:
        responsible = final if _is_staged(final) else last_staged
        labels = hit_labels(responsible, direction, counters)
        labels = (*labels[:4], ACTIONS[final.action], direction)
        delta.staged_changed[labels] = delta.staged_changed.get(labels, 0) + conns


class WindowTracker:
    """Goldmane's stream contract for one connection, over counters that outlive it.

    ``resume_from`` is the start time the connection asked for (None: "now", no backfill).
    Windows starting before it were counted before and are dropped.
    """

    __slots__ = ("_closed", "_counters", "_current", "_current_committed", "_duplicate",
                 "_floor", "_pending", "_pending_end", "_resume_from")

    CLOSED_KEEP = 300
    """Windows remembered for duplicate detection: more than Goldmane's 242-bucket ring."""

    def __init__(self, counters: FlowCounters, *, resume_from: int | None) -> None:
        self._counters = counters
        self._resume_from = resume_from
        self._floor = resume_from
        self._closed: set[int] = set()
        self._current: int | None = None
        self._current_committed = False
        self._duplicate = False
        self._pending = Delta()
        self._pending_end = 0

    @property
    def pending(self) -> bool:
        """Whether flows are summed but not committed yet."""
        return not self._pending.empty()

    @property
    def resume_from(self) -> int | None:
        """Where the next connection must resume: the end of the last committed window."""
        return self._floor

    def receive(self, result: pb.FlowResult) -> str | None:
        """Count one FlowResult (pending until its window is committed); the drop reason."""
        counters = self._counters
        counters.received += 1
        flow = result.flow
        start = flow.start_time
        if start != self._current:
            if self._resume_from is not None and start < self._resume_from:
                return self._drop("already_counted")
            self._switch(start, flow.end_time)
        if self._duplicate:
            return self._drop("duplicate_window")
        if self._current_committed:
            # The window was committed after a quiet moment and more of it came: count directly.
            delta = Delta()
            reason = attribute(flow, delta, counters)
            counters.commit(delta, new_window=False)
        else:
            reason = attribute(flow, self._pending, counters)
        if reason is not None:
            counters.dropped[reason] += 1
        return reason

    def receive_all(self, results: Iterable[pb.FlowResult]) -> None:
        for result in results:
            self.receive(result)

    def _drop(self, reason: str) -> str:
        self._counters.dropped[reason] += 1
        return reason

    def _switch(self, start: int, end: int) -> None:
        """The stream moved to another window: the previous one is complete."""
        if self._current is not None:
            self._close()
        if start in self._closed:
            self._current, self._duplicate, self._current_committed = start, True, True
            return
        self._current, self._duplicate, self._current_committed = start, False, False
        self._pending = Delta()
        self._pending_end = end

    def _close(self) -> None:
        assert self._current is not None
        if not self._duplicate:
            self.quiet()
            self._closed.add(self._current)
            if len(self._closed) > 2 * self.CLOSED_KEEP:
                self._closed = set(sorted(self._closed)[-self.CLOSED_KEEP:])

    def quiet(self) -> None:
        """Nothing arrived for a moment: the window being received is complete, commit it.

        Goldmane sends a window's flows in one burst at its rollover, so a pause means the
        burst is over. Committing now makes the counters current without waiting for the next
        window; flows of the same window that still come are counted directly.
        """
        if self._current is None or self._current_committed or self._duplicate:
            return
        self._counters.commit(self._pending)
        self._pending = Delta()
        self._current_committed = True
        end = self._pending_end
        if self._floor is None or end > self._floor:
            self._floor = end

    def abandon(self) -> None:
        """The stream broke: forget the uncommitted window (it is sent again on resume)."""
        self._pending = Delta()
        self._current = None
