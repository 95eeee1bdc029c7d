"""The incremental policy index: which pods each policy selects, how many enforced policies isolate
each pod per direction, and the tiers the policies are in.

Pods counted (the ones Calico makes a workload endpoint for): scheduled (``spec.nodeName`` set),
not ``hostNetwork``, and not finished (phase ``Succeeded``, ``Failed`` or ``Completed``). A pod
being deleted still counts until it is gone or finished, as its endpoint stays until then.

A policy *selects* a pod when its effective selector (:mod:`exporter.policy.effective`) matches
the pod's endpoint labels (:class:`~exporter.policy.effective.EndpointLabels`). Kinds: Kubernetes
NetworkPolicy, Calico NetworkPolicy and GlobalNetworkPolicy, their staged variants, and
ClusterNetworkPolicy. A policy whose selector does not parse is counted once per version in
``Telemetry.invalid`` (resource: its plural) and selects nothing; so does a policy with a rule
selector that does not parse only for the count, its selection is unaffected. Untracked
(``doNotTrack``) and ``preDNAT`` GlobalNetworkPolicies select no pods: Felix applies them to host
endpoints only.

Staged policies are selected as Felix selects them (it evaluates them for flow logs, never
enforces them): ``stagedAction`` ``Set``, ``Learn`` and ``Ignore`` all reach Felix as the staged
policy, ``Delete`` never does (the libcalico-go update processors return no value for it,
``updateprocessors/staged*processor.go`` at v3.32.1): a staged Delete policy selects nothing; it
stands for the removal of the enforced policy of the same kind, namespace and name, whose
selection :meth:`PolicyIndex.staged` reports.

A pod is *isolated* in a direction when Felix drops, at the end of some tier, what no policy of
that tier allowed: when at least one **enforced** policy applies to it in that direction in a
tier whose default action is not ``Pass`` (``felix/rules/endpoints.go``: the end-of-tier drop is
rendered only for a tier with a non-staged policy and a default action other than Pass). Staged
policies never isolate; neither do policies of the ``kube-admin`` and ``kube-baseline`` tiers
(default Pass) nor of any tier set to Pass.

Tiers: the watched Tier objects; the built-in tiers Calico creates and protects (``default``,
``kube-admin``, ``kube-baseline``, :data:`~exporter.model.policy.BUILTIN_TIERS`) with their
built-in order and action while their object is not seen (``default`` always; the other two when
a policy is in them). A policy in a tier that does not exist is kept, as Felix keeps it: Felix's
``PolicySorter`` gives such a tier no order and sorts it after every existing tier, and its empty
default action renders the end-of-tier drop (felix v3.32.1 ``calc/policy_sorter.go``
``TierLess``, ``calc/policy_resolver.go``, ``rules/endpoints.go``), so the policy selects and
isolates as in a Deny tier. Once the tiers have been listed, each such policy is logged and
counted in ``Telemetry.invalid`` (once, until its tier appears).

Names: each policy is shown by its v3 name and tier (:func:`~exporter.model.policy.policy_name`).
While kube-controllers migrates pre-v3.32 stored names, two stored objects can briefly have the
same kind, namespace, tier and name; they are one series, that of the object whose stored name is
its v3 name (the migrated copy), else of the smallest stored name.

Every event touches only what it can change:

- a pod event re-evaluates that pod against the policies of its namespace and the global ones
  (nothing when only fields other than labels and service account changed, or only labels that
  no selector of those policies reads: the index counts the label names each scope's selectors
  read);
- a policy event re-evaluates that policy over the pods of its namespace (all pods for a global
  kind) and only when its effective selector or isolating directions changed;
- a namespace label change re-evaluates that namespace's pods against the policies whose
  selectors read ``pcns.*`` labels (namespaced ones of that namespace and global ones);
- a service account created, relabelled or deleted re-evaluates the pods of its namespace that run
  as it against the policies whose selectors read ``pcsa.*`` labels;
- a tier event re-counts isolation only for the pods selected by that tier's policies whose
  isolating directions changed.

Pods are indexed by namespace; per pod the index keeps the pod, the tuple of policies selecting
it and two counters. All methods run synchronously on the event-loop thread (Store subscribers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain

import structlog

from exporter.kube.resources import (
    CALICO_NETWORK_POLICIES,
    CLUSTER_NETWORK_POLICIES,
    GLOBAL_NETWORK_POLICIES,
    K8S_NETWORK_POLICIES,
    STAGED_GLOBAL_NETWORK_POLICIES,
    STAGED_K8S_NETWORK_POLICIES,
    STAGED_NETWORK_POLICIES,
)
from exporter.model import ObjectKey
from exporter.model.core import Namespace, Pod, ServiceAccount
from exporter.model.policy import (
    ACTIONS,
    BUILTIN_TIERS,
    DEFAULT_TIER,
    DIRECTIONS,
    GLOBAL_KINDS,
    POLICY_KINDS,
    STAGED_KINDS,
    CalicoPolicy,
    ClusterNetworkPolicy,
    Direction,
    K8sNetworkPolicy,
    NetworkSet,
    PolicyKind,
    StagedAction,
    Tier,
    TierAction,
)
from exporter.model.telemetry import Telemetry
from exporter.policy.effective import (
    NAMESPACE_PREFIX,
    SERVICE_ACCOUNT_PREFIX,
    AnyPolicy,
    EndpointLabels,
    PolicySelectorError,
    effective_selector,
    rule_selector_errors,
)
from exporter.policy.selector import Predicate, SelectorCache, SelectorError

log = structlog.get_logger(__name__)

FINISHED_PHASES = frozenset({"Succeeded", "Failed", "Completed"})

PolicyKey = tuple[PolicyKind, str, str]
"""(kind, namespace, stored name); namespace "" for global kinds."""
SeriesKey = tuple[PolicyKind, str, str, str]
"""(kind, namespace, tier, name as Calico shows it): one per-policy series."""

_EMPTY: Mapping[str, str] = {}
_KINDS: dict[str, PolicyKind] = {kind: kind for kind in POLICY_KINDS}
_RESOURCE: dict[PolicyKind, str] = {
    "k8s": K8S_NETWORK_POLICIES.name,
    "calico": CALICO_NETWORK_POLICIES.name,
    "global": GLOBAL_NETWORK_POLICIES.name,
    "staged": STAGED_NETWORK_POLICIES.name,
    "staged_global": STAGED_GLOBAL_NETWORK_POLICIES.name,
    "staged_k8s": STAGED_K8S_NETWORK_POLICIES.name,
    "cluster": CLUSTER_NETWORK_POLICIES.name,
}


def counted(pod: Pod) -> bool:
    """Whether Calico gives this pod a workload endpoint (and so whether policy can apply)."""
    return bool(pod.node) and not pod.host_network and pod.phase not in FINISHED_PHASES


class _Policy:
    """One policy as the index holds it (mutable, identity-compared)."""

    __slots__ = (
        "accounts_dependent",
        "applies_egress",
        "applies_ingress",
        "egress",
        "enforced",
        "errors",
        "ingress",
        "key",
        "labels",
        "missing_tier",
        "name",
        "namespace_dependent",
        "predicate",
        "rules",
        "selected",
        "selector",
        "staged_action",
        "tier",
    )

    def __init__(self, key: PolicyKey) -> None:
        self.key = key
        self.name = key[2]
        self.tier = ""
        self.enforced = key[0] not in STAGED_KINDS
        self.staged_action: StagedAction | None = None
        self.applies_ingress = False
        """Its types include Ingress."""
        self.applies_egress = False
        self.ingress = False
        """It isolates on ingress: enforced, applies on ingress, in a tier that drops."""
        self.egress = False
        self.selector = ""
        """The effective selector text ("" when invalid)."""
        self.predicate: Predicate | None = None
        self.labels: frozenset[str] = frozenset()
        """The label names the effective selector reads."""
        self.namespace_dependent = False
        """The selector reads pcns.* labels: namespace label changes can change the result."""
        self.accounts_dependent = False
        """The selector reads pcsa.* labels: service account changes can change the result."""
        self.selected = 0
        self.rules: tuple[tuple[Direction, str, int], ...] = ()
        self.errors: tuple[str, ...] = ()
        self.missing_tier = False
        """Counted as being in a tier that does not exist (until its tier appears)."""

    @property
    def series(self) -> SeriesKey:
        return (self.key[0], self.key[1], self.tier, self.name)


class _PodEntry:
    """A counted pod: the pod, the policies selecting it, how many isolate it per direction."""

    __slots__ = ("egress", "ingress", "pod", "policies")

    def __init__(self, pod: Pod) -> None:
        self.pod = pod
        self.policies: tuple[_Policy, ...] = ()
        self.ingress = 0
        self.egress = 0


@dataclass(frozen=True, slots=True)
class SelectedPods:
    """How many counted pods one policy selects."""

    kind: PolicyKind
    namespace: str
    name: str
    """The name Calico shows."""
    tier: str
    pods: int


@dataclass(frozen=True, slots=True)
class StagedPolicy:
    """A staged policy, its action, and what the enforced policy it would set or delete selects."""

    kind: PolicyKind
    namespace: str
    name: str
    tier: str
    action: StagedAction
    enforced_pods: int
    """Pods selected by the enforced policy of the same kind, namespace and name (0 if none)."""


@dataclass(frozen=True, slots=True)
class TierInfo:
    """One tier in Felix's order, with the default action Felix applies at its end."""

    name: str
    order: float | None
    """None only for a tier that does not exist."""
    default_action: TierAction
    exists: bool
    """A Tier object or a built-in tier; False for a tier only named by policies."""


def tier_sort_key(tier: TierInfo) -> tuple[bool, bool, float, str]:
    """Felix's ``TierLess``: existing tiers first, then by order (no order last), then name."""
    return (not tier.exists, tier.order is None, tier.order or 0.0, tier.name)


@dataclass(frozen=True, slots=True)
class NamespaceIsolation:
    """Counted pods of one namespace, and how many are isolated per direction."""

    namespace: str
    pods: int
    ingress_isolated: int
    egress_isolated: int


def _preferred(policies: list[_Policy]) -> _Policy:
    """Of stored objects shown under one name: the one stored under that name, else the first."""
    return min(policies, key=lambda p: (p.key[2] != p.name, p.key[2]))


class PolicyIndex:
    """Policies, tiers, namespaces, service accounts and pods, with selection kept exact by
    incremental updates."""

    def __init__(self, *, telemetry: Telemetry, cache: SelectorCache | None = None) -> None:
        self._telemetry = telemetry
        self._cache = cache if cache is not None else SelectorCache()
        self._pods: dict[str, dict[str, _PodEntry]] = {}
        """namespace -> pod name -> entry."""
        self._namespace_labels: dict[str, Mapping[str, str]] = {}
        self._accounts: dict[str, dict[str, Mapping[str, str]]] = {}
        """namespace -> service account name -> its labels (existing service accounts only)."""
        self._policies: dict[PolicyKey, _Policy] = {}
        self._namespaced: dict[str, dict[PolicyKey, _Policy]] = {}
        """namespace -> its namespaced policies (Kubernetes, Calico, staged)."""
        self._global: dict[PolicyKey, _Policy] = {}
        self._read: dict[str | None, Counter[str]] = {}
        """namespace (None: global policies) -> label names its policies' selectors read."""
        self._isolation: dict[str, list[int]] = {}
        """namespace -> [pods, ingress isolated, egress isolated]."""
        self._tiers: dict[str, Tier] = {}
        """Tier objects by name."""
        self._tiers_synced = False
        self._tier_policies: dict[str, dict[PolicyKey, _Policy]] = {}
        self._series: dict[SeriesKey, list[_Policy]] = {}
        self._by_name: dict[tuple[PolicyKind, str, str], list[_Policy]] = {}
        """(kind, namespace, name as shown) -> policies (a staged policy's enforced target)."""
        self._policy_counts: Counter[tuple[PolicyKind, str, str]] = Counter()
        self._rule_counts: Counter[tuple[PolicyKind, Direction, str]] = Counter()
        self._network_sets: Counter[tuple[str, str]] = Counter()

    # ----------------------------------------------------------------------------------------
    # Store subscribers

    def on_namespace(self, key: ObjectKey, old: Namespace | None, new: Namespace | None) -> None:
        name = key[1]
        labels = new.labels if new is not None else _EMPTY
        before = self._namespace_labels.get(name, _EMPTY)
        if new is not None:
            self._namespace_labels[name] = labels
        else:
            self._namespace_labels.pop(name, None)
        if labels == before:
            return
        pods = self._pods.get(name)
        if not pods:
            return
        candidates = [
            p
            for p in chain(self._namespaced.get(name, {}).values(), self._global.values())
            if p.namespace_dependent and p.predicate is not None
        ]
        if not candidates:
            return
        for entry in pods.values():
            self._recheck(entry, candidates)

    def on_service_account(self, key: ObjectKey, old: ServiceAccount | None,
                           new: ServiceAccount | None) -> None:
        namespace, name = key
        accounts = self._accounts.get(namespace)
        before = accounts.get(name) if accounts is not None else None
        if new is not None:
            if accounts is None:
                accounts = self._accounts[namespace] = {}
            accounts[name] = new.labels
        elif accounts is not None:
            accounts.pop(name, None)
            if not accounts:
                del self._accounts[namespace]
        after = new.labels if new is not None else None
        if after == before and (after is None) == (before is None):
            return
        pods = self._pods.get(namespace)
        if not pods:
            return
        candidates = [
            p
            for p in chain(self._namespaced.get(namespace, {}).values(), self._global.values())
            if p.accounts_dependent and p.predicate is not None
        ]
        if not candidates:
            return
        for entry in pods.values():
            if entry.pod.service_account == name:
                self._recheck(entry, candidates)

    def on_pod(self, key: ObjectKey, old: Pod | None, new: Pod | None) -> None:
        namespace, name = key
        pods = self._pods.get(namespace)
        entry = pods.get(name) if pods is not None else None
        if new is None or not counted(new):
            if entry is not None:
                self._remove_pod(entry)
            return
        if entry is not None:
            previous = entry.pod
            entry.pod = new
            if previous.service_account == new.service_account and (
                previous.labels == new.labels
                or not self._reads_change(namespace, previous.labels, new.labels)
            ):
                return
        else:
            entry = _PodEntry(new)
            if pods is None:
                pods = self._pods[namespace] = {}
            pods[name] = entry
            self._namespace_stats(namespace)[0] += 1
        self._evaluate_pod(entry)

    def _reads_change(self, namespace: str, old: Mapping[str, str],
                      new: Mapping[str, str]) -> bool:
        """Whether a label that differs between ``old`` and ``new`` is read by a selector of a
        policy of ``namespace`` or of a global policy (only then can the selection change)."""
        scoped = self._read.get(namespace)
        everywhere = self._read.get(None)
        if not scoped and not everywhere:
            return False
        changed = [k for k, v in old.items() if new.get(k) != v]
        changed.extend(k for k in new if k not in old)
        return any((scoped is not None and k in scoped)
                   or (everywhere is not None and k in everywhere) for k in changed)

    def _count_reads(self, policy: _Policy, sign: int) -> None:
        scope = None if policy.key[0] in GLOBAL_KINDS else policy.key[1]
        read = self._read.get(scope)
        if read is None:
            read = self._read[scope] = Counter()
        for label in policy.labels:
            read[label] += sign
            if read[label] <= 0:
                del read[label]
        if not read:
            del self._read[scope]

    def on_k8s_policy(
        self, key: ObjectKey, old: K8sNetworkPolicy | None, new: K8sNetworkPolicy | None
    ) -> None:
        self._on_policy(("k8s", key[0], key[1]), new)

    def on_calico_policy(
        self, key: ObjectKey, old: CalicoPolicy | None, new: CalicoPolicy | None
    ) -> None:
        self._on_policy(("calico", key[0], key[1]), new)

    def on_global_policy(
        self, key: ObjectKey, old: CalicoPolicy | None, new: CalicoPolicy | None
    ) -> None:
        self._on_policy(("global", "", key[1]), new)

    def on_staged_policy(
        self, key: ObjectKey, old: CalicoPolicy | None, new: CalicoPolicy | None
    ) -> None:
        self._on_policy(("staged", key[0], key[1]), new)

    def on_staged_global_policy(
        self, key: ObjectKey, old: CalicoPolicy | None, new: CalicoPolicy | None
    ) -> None:
        self._on_policy(("staged_global", "", key[1]), new)

    def on_staged_k8s_policy(
        self, key: ObjectKey, old: K8sNetworkPolicy | None, new: K8sNetworkPolicy | None
    ) -> None:
        self._on_policy(("staged_k8s", key[0], key[1]), new)

    def on_cluster_policy(
        self, key: ObjectKey, old: ClusterNetworkPolicy | None, new: ClusterNetworkPolicy | None
    ) -> None:
        self._on_policy(("cluster", "", key[1]), new)

    def on_tier(self, key: ObjectKey, old: Tier | None, new: Tier | None) -> None:
        name = key[1]
        if new is not None:
            self._tiers[name] = new
        else:
            self._tiers.pop(name, None)
        isolates = self._tier_isolates(name)
        for policy in list(self._tier_policies.get(name, {}).values()):
            old_ingress, old_egress = policy.ingress, policy.egress
            policy.ingress = policy.enforced and policy.applies_ingress and isolates
            policy.egress = policy.enforced and policy.applies_egress and isolates
            if (policy.ingress, policy.egress) != (old_ingress, old_egress):
                self._retype(policy, old_ingress, old_egress)
            self._check_tier(policy)

    def tiers_synced(self) -> None:
        """The tiers have been listed: from now on a policy in a missing tier is counted."""
        self._tiers_synced = True
        for policy in self._policies.values():
            self._check_tier(policy)

    def on_network_set(
        self, key: ObjectKey, old: NetworkSet | None, new: NetworkSet | None
    ) -> None:
        if old is not None:
            self._network_sets[("calico", key[0])] -= 1
        if new is not None:
            self._network_sets[("calico", key[0])] += 1
        self._network_sets = +self._network_sets

    def on_global_network_set(
        self, key: ObjectKey, old: NetworkSet | None, new: NetworkSet | None
    ) -> None:
        if old is not None:
            self._network_sets[("global", "")] -= 1
        if new is not None:
            self._network_sets[("global", "")] += 1
        self._network_sets = +self._network_sets

    # ----------------------------------------------------------------------------------------
    # Readers (for the collector and for tests)

    def policy_counts(self) -> dict[tuple[PolicyKind, str, str], int]:
        """(kind, namespace, tier) -> number of policies (as Calico shows them)."""
        return dict(self._policy_counts)

    def rule_counts(self) -> dict[tuple[PolicyKind, Direction, str], int]:
        """(kind, direction, action) -> number of rules, zero entries included."""
        counts: dict[tuple[PolicyKind, Direction, str], int] = {
            (kind, direction, action): 0
            for kind in POLICY_KINDS
            for direction in DIRECTIONS
            for action in ACTIONS
        }
        for key, n in self._rule_counts.items():
            counts[key] = counts.get(key, 0) + n
        return counts

    def selected_pods(self) -> list[SelectedPods]:
        """One entry per policy as Calico shows it (kind, namespace, tier, name)."""
        out = []
        for (kind, namespace, tier, name), members in list(self._series.items()):
            policy = members[0] if len(members) == 1 else _preferred(members)
            out.append(SelectedPods(kind, namespace, name, tier, policy.selected))
        return out

    def staged(self) -> list[StagedPolicy]:
        """Every staged policy (as Calico shows it) with what its enforced counterpart selects."""
        out = []
        for (kind, namespace, tier, name), members in list(self._series.items()):
            target = STAGED_KINDS.get(kind)
            if target is None:
                continue
            policy = members[0] if len(members) == 1 else _preferred(members)
            enforced = self._by_name.get((target, namespace, name))
            pods = _preferred(enforced).selected if enforced else 0
            out.append(StagedPolicy(kind, namespace, name, tier,
                                    policy.staged_action or "Set", pods))
        return out

    def tiers(self) -> list[TierInfo]:
        """Every tier in Felix's order: Tier objects, built-in tiers (``default`` always, the
        others when a policy is in them), then tiers that policies name but that do not exist."""
        found: dict[str, TierInfo] = {
            t.name: TierInfo(t.name, t.order, t.default_action, True)
            for t in list(self._tiers.values())
        }
        for name in chain((DEFAULT_TIER,), list(self._tier_policies)):
            if name in found:
                continue
            builtin = BUILTIN_TIERS.get(name)
            found[name] = (TierInfo(name, builtin.order, builtin.default_action, True)
                           if builtin is not None else TierInfo(name, None, "Deny", False))
        return sorted(found.values(), key=tier_sort_key)

    def isolation(self) -> list[NamespaceIsolation]:
        return [
            NamespaceIsolation(ns, stats[0], stats[1], stats[2])
            for ns, stats in list(self._isolation.items())
            if stats[0] > 0
        ]

    def network_set_counts(self) -> dict[tuple[str, str], int]:
        """(kind ``calico`` or ``global``, namespace) -> number of network sets."""
        return dict(self._network_sets)

    def policy_keys(self) -> list[PolicyKey]:
        return list(self._policies)

    def shown(self, kind: str, namespace: str, stored: str) -> tuple[str, str] | None:
        """(tier, name as Calico shows it) of the policy of ``kind`` stored as ``stored`` in
        ``namespace`` ("" for the cluster-scoped kinds): the tier and policy labels of its
        ``calico_network_policy_*`` series. None when there is none."""
        known = _KINDS.get(kind)
        policy = None if known is None else self._policies.get((known, namespace, stored))
        return None if policy is None else (policy.tier, policy.name)

    def selected_count(self, key: PolicyKey) -> int:
        """How many counted pods a policy selects (0 when unknown)."""
        policy = self._policies.get(key)
        return 0 if policy is None else policy.selected

    def policy_selector(self, key: PolicyKey) -> str | None:
        """The effective selector of a policy ("" when it does not parse; None if unknown)."""
        policy = self._policies.get(key)
        return None if policy is None else policy.selector

    def selected_by(self, key: PolicyKey) -> set[ObjectKey]:
        """Keys of the pods a policy selects (scans its scope; for tests and debugging)."""
        policy = self._policies.get(key)
        if policy is None:
            return set()
        return {(e.pod.namespace, e.pod.name) for e in self._scope(policy) if policy in e.policies}

    def policies_of(self, namespace: str, name: str) -> set[PolicyKey]:
        """Keys of the policies selecting a pod (empty when the pod is not counted)."""
        entry = self._pods.get(namespace, {}).get(name)
        return set() if entry is None else {p.key for p in entry.policies}

    def directions_of(self, namespace: str, name: str) -> tuple[int, int] | None:
        """(policies isolating on ingress, on egress) a pod; None when it is not counted."""
        entry = self._pods.get(namespace, {}).get(name)
        return None if entry is None else (entry.ingress, entry.egress)

    def pod_count(self) -> int:
        return sum(len(pods) for pods in self._pods.values())

    # ----------------------------------------------------------------------------------------
    # Tiers

    def _tier_isolates(self, name: str) -> bool:
        """Whether Felix drops at the end of this tier: any action but Pass, and a missing
        tier's empty action, render the end-of-tier drop."""
        tier = self._tiers.get(name) or BUILTIN_TIERS.get(name)
        return tier is None or tier.default_action != "Pass"

    def _check_tier(self, policy: _Policy) -> None:
        """Count a policy in a tier that does not exist, once, after the tiers are listed."""
        if policy.tier in self._tiers or policy.tier in BUILTIN_TIERS:
            policy.missing_tier = False
            return
        if policy.missing_tier or not self._tiers_synced:
            return
        policy.missing_tier = True
        kind, namespace, stored = policy.key
        self._telemetry.invalid(
            _RESOURCE[kind],
            reason=f"spec.tier: tier {policy.tier!r} does not exist (Felix still enforces the "
                   "policy, in a tier after every existing one that drops what it does not "
                   "allow)",
            name=f"{namespace}/{stored}" if namespace else stored,
        )

    # ----------------------------------------------------------------------------------------
    # Policies

    def _on_policy(self, key: PolicyKey, new: AnyPolicy | None) -> None:
        policy = self._policies.get(key)
        if policy is not None:
            self._count_policy(policy, -1)
            self._count_reads(policy, -1)
            self._unregister(policy)
        if new is None:
            if policy is not None:
                self._drop_policy(policy)
            return
        if policy is None:
            policy = _Policy(key)
            self._policies[key] = policy
            if key[0] in GLOBAL_KINDS:
                self._global[key] = policy
            else:
                self._namespaced.setdefault(key[1], {})[key] = policy
            changed = True
        else:
            changed = False
        old_ingress, old_egress = policy.ingress, policy.egress
        selector, predicate, labels, errors = self._compile(new)
        if errors and errors != policy.errors:
            for error in errors:
                self._telemetry.invalid(
                    _RESOURCE[key[0]], reason=error, name=f"{key[1]}/{key[2]}" if key[1] else key[2]
                )
        policy.errors = errors
        policy.name = new.name
        policy.tier = new.tier
        policy.staged_action = new.staged_action
        policy.applies_ingress = new.ingress
        policy.applies_egress = new.egress
        isolates = policy.enforced and self._tier_isolates(new.tier)
        policy.ingress = isolates and new.ingress
        policy.egress = isolates and new.egress
        changed = changed or (
            selector != policy.selector
            or (predicate is None) != (policy.predicate is None)
            or policy.ingress != old_ingress
            or policy.egress != old_egress
        )
        policy.rules = tuple((r.direction, r.action, r.count) for r in new.rules)
        policy.selector = selector
        policy.predicate = predicate
        policy.labels = labels
        policy.namespace_dependent = any(label.startswith(NAMESPACE_PREFIX) for label in labels)
        policy.accounts_dependent = any(
            label.startswith(SERVICE_ACCOUNT_PREFIX) for label in labels)
        self._register(policy)
        self._count_policy(policy, +1)
        self._count_reads(policy, +1)
        self._check_tier(policy)
        if changed:
            self._reselect(policy, old_ingress, old_egress)

    def _compile(
        self, new: AnyPolicy
    ) -> tuple[str, Predicate | None, frozenset[str], tuple[str, ...]]:
        """(effective selector, predicate, labels read, errors) of a policy."""
        errors: list[str] = []
        selector = ""
        predicate: Predicate | None = None
        labels: frozenset[str] = frozenset()
        try:
            text = effective_selector(new, self._cache)
            compiled = self._cache.parse(text)
        except PolicySelectorError as err:
            errors.append(str(err))
        except SelectorError as err:
            errors.append(f"effective selector: {err}")
        else:
            selector = compiled.text
            # Untracked and pre-DNAT GNPs only ever apply to host endpoints; a staged Delete
            # policy never reaches Felix.
            inert = (new.staged_action == "Delete"
                     or (isinstance(new, CalicoPolicy) and new.host_endpoints_only))
            predicate = None if inert else compiled.predicate
            labels = compiled.labels
        if isinstance(new, CalicoPolicy):
            errors.extend(str(err) for err in rule_selector_errors(new, self._cache))
        return selector, predicate, labels, tuple(errors)

    def _register(self, policy: _Policy) -> None:
        """Add a policy to its series, its name and its tier."""
        series = policy.series
        members = self._series.get(series)
        if members is None:
            self._series[series] = [policy]
            self._policy_counts[(series[0], series[1], series[2])] += 1
        else:
            members.append(policy)
            log.warning("policy_name_shared", kind=series[0], namespace=series[1],
                        tier=series[2], policy=series[3],
                        stored_names=sorted(p.key[2] for p in members))
        self._by_name.setdefault((series[0], series[1], series[3]), []).append(policy)
        self._tier_policies.setdefault(policy.tier, {})[policy.key] = policy

    def _unregister(self, policy: _Policy) -> None:
        series = policy.series
        members = self._series[series]
        members.remove(policy)
        if not members:
            del self._series[series]
            counts = self._policy_counts
            counts[(series[0], series[1], series[2])] -= 1
            if counts[(series[0], series[1], series[2])] <= 0:
                del counts[(series[0], series[1], series[2])]
        by_name = self._by_name[(series[0], series[1], series[3])]
        by_name.remove(policy)
        if not by_name:
            del self._by_name[(series[0], series[1], series[3])]
        in_tier = self._tier_policies[policy.tier]
        del in_tier[policy.key]
        if not in_tier:
            del self._tier_policies[policy.tier]

    def _count_policy(self, policy: _Policy, sign: int) -> None:
        kind = policy.key[0]
        rules = self._rule_counts
        for direction, action, n in policy.rules:
            rules[(kind, direction, action)] += sign * n
            if rules[(kind, direction, action)] <= 0:
                del rules[(kind, direction, action)]

    def _drop_policy(self, policy: _Policy) -> None:
        if policy.selected:
            for entry in self._scope(policy):
                if policy in entry.policies:
                    self._set_policies(
                        entry,
                        tuple(p for p in entry.policies if p is not policy),
                        entry.ingress - policy.ingress,
                        entry.egress - policy.egress,
                    )
        del self._policies[policy.key]
        kind, namespace, _ = policy.key
        if kind in GLOBAL_KINDS:
            del self._global[policy.key]
        else:
            namespaced = self._namespaced[namespace]
            del namespaced[policy.key]
            if not namespaced:
                del self._namespaced[namespace]

    def _scope(self, policy: _Policy) -> Iterable[_PodEntry]:
        if policy.key[0] in GLOBAL_KINDS:
            return chain.from_iterable(pods.values() for pods in self._pods.values())
        return self._pods.get(policy.key[1], {}).values()

    def _retype(self, policy: _Policy, old_ingress: bool, old_egress: bool) -> None:
        """A policy's isolating directions changed (not its selection): re-count its pods."""
        if not policy.selected:
            return
        for entry in self._scope(policy):
            if policy in entry.policies:
                self._set_policies(entry, entry.policies,
                                   entry.ingress - old_ingress + policy.ingress,
                                   entry.egress - old_egress + policy.egress)

    def _reselect(self, policy: _Policy, old_ingress: bool, old_egress: bool) -> None:
        """Re-evaluate one policy over its scope; its isolating directions may have changed."""
        predicate = policy.predicate
        if predicate is None and not policy.selected:
            return
        namespace_labels = self._namespace_labels
        accounts = self._accounts
        for entry in self._scope(policy):
            was = policy in entry.policies
            pod = entry.pod
            now = predicate is not None and predicate(
                EndpointLabels(
                    pod.labels,
                    namespace=pod.namespace,
                    service_account=pod.service_account,
                    namespace_labels=namespace_labels.get(pod.namespace, _EMPTY),
                    accounts=accounts,
                ).get
            )
            if not was and not now:
                continue
            ingress = entry.ingress - (old_ingress if was else 0) + (policy.ingress if now else 0)
            egress = entry.egress - (old_egress if was else 0) + (policy.egress if now else 0)
            if was and now:
                policies = entry.policies
            elif was:
                policies = tuple(p for p in entry.policies if p is not policy)
                policy.selected -= 1
            else:
                policies = (*entry.policies, policy)
                policy.selected += 1
            self._set_policies(entry, policies, ingress, egress)

    # ----------------------------------------------------------------------------------------
    # Pods

    def _labels_of(self, pod: Pod) -> EndpointLabels:
        return EndpointLabels(
            pod.labels,
            namespace=pod.namespace,
            service_account=pod.service_account,
            namespace_labels=self._namespace_labels.get(pod.namespace, _EMPTY),
            accounts=self._accounts,
        )

    def _candidates(self, namespace: str) -> Iterator[_Policy]:
        return chain(self._namespaced.get(namespace, {}).values(), self._global.values())

    def _evaluate_pod(self, entry: _PodEntry) -> None:
        """Re-evaluate one pod against every policy that can select it."""
        get = self._labels_of(entry.pod).get
        matched = tuple(
            p
            for p in self._candidates(entry.pod.namespace)
            if p.predicate is not None and p.predicate(get)
        )
        before = entry.policies
        if matched == before:
            return
        for p in before:
            if p not in matched:
                p.selected -= 1
        for p in matched:
            if p not in before:
                p.selected += 1
        self._set_policies(
            entry,
            matched,
            sum(p.ingress for p in matched),
            sum(p.egress for p in matched),
        )

    def _recheck(self, entry: _PodEntry, candidates: list[_Policy]) -> None:
        """Re-evaluate one pod against some policies (whose directions did not change)."""
        get = self._labels_of(entry.pod).get
        policies = entry.policies
        ingress, egress = entry.ingress, entry.egress
        for p in candidates:
            was = p in policies
            now = p.predicate is not None and p.predicate(get)
            if was == now:
                continue
            if now:
                policies = (*policies, p)
                p.selected += 1
                ingress += p.ingress
                egress += p.egress
            else:
                policies = tuple(q for q in policies if q is not p)
                p.selected -= 1
                ingress -= p.ingress
                egress -= p.egress
        if policies is not entry.policies:
            self._set_policies(entry, policies, ingress, egress)

    def _remove_pod(self, entry: _PodEntry) -> None:
        for p in entry.policies:
            p.selected -= 1
        self._set_policies(entry, (), 0, 0)
        namespace = entry.pod.namespace
        pods = self._pods[namespace]
        del pods[entry.pod.name]
        if not pods:
            del self._pods[namespace]
        stats = self._isolation[namespace]
        stats[0] -= 1
        if stats[0] == 0:
            del self._isolation[namespace]

    def _namespace_stats(self, namespace: str) -> list[int]:
        stats = self._isolation.get(namespace)
        if stats is None:
            stats = self._isolation[namespace] = [0, 0, 0]
        return stats

    def _set_policies(
        self, entry: _PodEntry, policies: tuple[_Policy, ...], ingress: int, egress: int
    ) -> None:
        stats = self._isolation[entry.pod.namespace]
        if (entry.ingress > 0) != (ingress > 0):
            stats[1] += 1 if ingress > 0 else -1
        if (entry.egress > 0) != (egress > 0):
            stats[2] += 1 if egress > 0 else -1
        entry.policies = policies
        entry.ingress = ingress
        entry.egress = egress
