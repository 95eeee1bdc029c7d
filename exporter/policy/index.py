"""The incremental policy index: which pods each policy selects, and how many policies apply to
each pod per direction.

Pods counted (the ones Calico makes a workload endpoint for): scheduled (``spec.nodeName`` set),
not ``hostNetwork``, and not finished (phase ``Succeeded``, ``Failed`` or ``Completed``). A pod
being deleted still counts until it is gone or finished, as its endpoint stays until then.

A policy *selects* a pod when its effective selector (:mod:`exporter.policy.effective`) matches
the pod's endpoint labels (:class:`~exporter.policy.effective.EndpointLabels`); it *applies* to
the pod in each direction listed in its types. A pod is *isolated* in a direction when at least
one policy applies to it in that direction. A policy whose selector does not parse is counted
once per version in ``Telemetry.invalid`` (resource: its plural) and selects nothing; so does a
policy with a rule selector that does not parse only for the count, its selection is unaffected.
Untracked (``doNotTrack``) and ``preDNAT`` GlobalNetworkPolicies select no pods: Felix applies
them to host endpoints only.

Every event touches only what it can change:

- a pod event re-evaluates that pod against the policies of its namespace and the global ones
  (nothing when only fields other than labels and service account changed, or only labels that
  no selector of those policies reads: the index counts the label names each scope's selectors
  read);
- a policy event re-evaluates that policy over the pods of its namespace (all pods for a
  GlobalNetworkPolicy) and only when its effective selector or types changed;
- a namespace label change re-evaluates that namespace's pods against the policies whose
  selectors read ``pcns.*`` labels (namespaced ones of that namespace and global ones).

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
    GLOBAL_NETWORK_POLICIES,
    K8S_NETWORK_POLICIES,
)
from exporter.model import ObjectKey
from exporter.model.core import Namespace, Pod
from exporter.model.policy import (
    ACTIONS,
    DIRECTIONS,
    CalicoPolicy,
    Direction,
    K8sNetworkPolicy,
    NetworkSet,
    PolicyKind,
)
from exporter.model.telemetry import Telemetry
from exporter.policy.effective import (
    NAMESPACE_PREFIX,
    EndpointLabels,
    PolicySelectorError,
    effective_selector,
    rule_selector_errors,
)
from exporter.policy.selector import Predicate, SelectorCache, SelectorError

log = structlog.get_logger(__name__)

FINISHED_PHASES = frozenset({"Succeeded", "Failed", "Completed"})

PolicyKey = tuple[PolicyKind, str, str]
"""(kind, namespace, stored name); namespace "" for global policies."""

_EMPTY: Mapping[str, str] = {}
_RESOURCE: dict[PolicyKind, str] = {
    "k8s": K8S_NETWORK_POLICIES.name,
    "calico": CALICO_NETWORK_POLICIES.name,
    "global": GLOBAL_NETWORK_POLICIES.name,
}


def counted(pod: Pod) -> bool:
    """Whether Calico gives this pod a workload endpoint (and so whether policy can apply)."""
    return bool(pod.node) and not pod.host_network and pod.phase not in FINISHED_PHASES


class _Policy:
    """One policy as the index holds it (mutable, identity-compared)."""

    __slots__ = (
        "egress",
        "errors",
        "ingress",
        "key",
        "labels",
        "name",
        "namespace_dependent",
        "predicate",
        "rules",
        "selected",
        "selector",
        "tier",
    )

    def __init__(self, key: PolicyKey) -> None:
        self.key = key
        self.name = key[2]
        self.tier = ""
        self.ingress = False
        self.egress = False
        self.selector = ""
        """The effective selector text ("" when invalid)."""
        self.predicate: Predicate | None = None
        self.labels: frozenset[str] = frozenset()
        """The label names the effective selector reads."""
        self.namespace_dependent = False
        """The selector reads pcns.* labels: namespace label changes can change the result."""
        self.selected = 0
        self.rules: tuple[tuple[Direction, str, int], ...] = ()
        self.errors: tuple[str, ...] = ()


class _PodEntry:
    """A counted pod: the pod, the policies selecting it, how many apply per direction."""

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
    """Display name (tier prefix stripped)."""
    tier: str
    pods: int


@dataclass(frozen=True, slots=True)
class NamespaceIsolation:
    """Counted pods of one namespace, and how many are isolated per direction."""

    namespace: str
    pods: int
    ingress_isolated: int
    egress_isolated: int


class PolicyIndex:
    """Policies, namespaces and pods, with selection kept exact by incremental updates."""

    def __init__(self, *, telemetry: Telemetry, cache: SelectorCache | None = None) -> None:
        self._telemetry = telemetry
        self._cache = cache if cache is not None else SelectorCache()
        self._pods: dict[str, dict[str, _PodEntry]] = {}
        """namespace -> pod name -> entry."""
        self._namespace_labels: dict[str, Mapping[str, str]] = {}
        self._policies: dict[PolicyKey, _Policy] = {}
        self._namespaced: dict[str, dict[PolicyKey, _Policy]] = {}
        """namespace -> its Kubernetes and Calico policies."""
        self._global: dict[PolicyKey, _Policy] = {}
        self._read: dict[str | None, Counter[str]] = {}
        """namespace (None: global policies) -> label names its policies' selectors read."""
        self._isolation: dict[str, list[int]] = {}
        """namespace -> [pods, ingress isolated, egress isolated]."""
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
        scope = None if policy.key[0] == "global" else policy.key[1]
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
        """(kind, namespace, tier) -> number of policies."""
        return dict(self._policy_counts)

    def rule_counts(self) -> dict[tuple[PolicyKind, Direction, str], int]:
        """(kind, direction, action) -> number of rules, zero entries included."""
        counts: dict[tuple[PolicyKind, Direction, str], int] = {
            (kind, direction, action): 0
            for kind in ("k8s", "calico", "global")
            for direction in DIRECTIONS
            for action in ACTIONS
        }
        for key, n in self._rule_counts.items():
            counts[key] = counts.get(key, 0) + n
        return counts

    def selected_pods(self) -> list[SelectedPods]:
        return [
            SelectedPods(p.key[0], p.key[1], p.name, p.tier, p.selected)
            for p in list(self._policies.values())
        ]

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
        """(policies applying on ingress, on egress) to a pod; None when it is not counted."""
        entry = self._pods.get(namespace, {}).get(name)
        return None if entry is None else (entry.ingress, entry.egress)

    def pod_count(self) -> int:
        return sum(len(pods) for pods in self._pods.values())

    # ----------------------------------------------------------------------------------------
    # Policies

    def _on_policy(self, key: PolicyKey, new: CalicoPolicy | K8sNetworkPolicy | None) -> None:
        policy = self._policies.get(key)
        if policy is not None:
            self._count_policy(policy, -1)
            self._count_reads(policy, -1)
        if new is None:
            if policy is not None:
                self._drop_policy(policy)
            return
        if policy is None:
            policy = _Policy(key)
            self._policies[key] = policy
            if key[0] == "global":
                self._global[key] = policy
            else:
                self._namespaced.setdefault(key[1], {})[key] = policy
            changed = True
            old_ingress = old_egress = False
        else:
            old_ingress, old_egress = policy.ingress, policy.egress
            changed = False
        selector, predicate, namespace_dependent, labels, errors = self._compile(new)
        if errors and errors != policy.errors:
            for error in errors:
                self._telemetry.invalid(
                    _RESOURCE[key[0]], reason=error, name=f"{key[1]}/{key[2]}" if key[1] else key[2]
                )
        policy.errors = errors
        changed = changed or (
            selector != policy.selector
            or (predicate is None) != (policy.predicate is None)
            or new.ingress != old_ingress
            or new.egress != old_egress
        )
        policy.name = new.name
        policy.tier = new.tier
        policy.rules = tuple((r.direction, r.action, r.count) for r in new.rules)
        policy.selector = selector
        policy.predicate = predicate
        policy.namespace_dependent = namespace_dependent
        policy.labels = labels
        policy.ingress = new.ingress
        policy.egress = new.egress
        self._count_policy(policy, +1)
        self._count_reads(policy, +1)
        if changed:
            self._reselect(policy, old_ingress, old_egress)

    def _compile(
        self, new: CalicoPolicy | K8sNetworkPolicy
    ) -> tuple[str, Predicate | None, bool, frozenset[str], tuple[str, ...]]:
        """(effective selector, predicate, reads pcns.*, labels read, errors) of a policy."""
        errors: list[str] = []
        selector = ""
        predicate: Predicate | None = None
        namespace_dependent = False
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
            # Untracked and pre-DNAT GNPs only ever apply to host endpoints.
            host_only = isinstance(new, CalicoPolicy) and new.host_endpoints_only
            predicate = None if host_only else compiled.predicate
            namespace_dependent = any(
                label.startswith(NAMESPACE_PREFIX) for label in compiled.labels
            )
            labels = compiled.labels
        if isinstance(new, CalicoPolicy):
            errors.extend(str(err) for err in rule_selector_errors(new, self._cache))
        return selector, predicate, namespace_dependent, labels, tuple(errors)

    def _count_policy(self, policy: _Policy, sign: int) -> None:
        kind, namespace, _ = policy.key
        counts = self._policy_counts
        counts[(kind, namespace, policy.tier)] += sign
        if counts[(kind, namespace, policy.tier)] <= 0:
            del counts[(kind, namespace, policy.tier)]
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
        if kind == "global":
            del self._global[policy.key]
        else:
            namespaced = self._namespaced[namespace]
            del namespaced[policy.key]
            if not namespaced:
                del self._namespaced[namespace]

    def _scope(self, policy: _Policy) -> Iterable[_PodEntry]:
        if policy.key[0] == "global":
            return chain.from_iterable(pods.values() for pods in self._pods.values())
        return self._pods.get(policy.key[1], {}).values()

    def _reselect(self, policy: _Policy, old_ingress: bool, old_egress: bool) -> None:
        """Re-evaluate one policy over its scope; its types may have changed."""
        predicate = policy.predicate
        if predicate is None and not policy.selected:
            return
        namespace_labels = self._namespace_labels
        for entry in self._scope(policy):
            was = policy in entry.policies
            pod = entry.pod
            now = predicate is not None and predicate(
                EndpointLabels(
                    pod.labels,
                    namespace=pod.namespace,
                    service_account=pod.service_account,
                    namespace_labels=namespace_labels.get(pod.namespace, _EMPTY),
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
        """Re-evaluate one pod against some policies (whose types did not change)."""
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
