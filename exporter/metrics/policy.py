"""Policy metrics: policies per kind, namespace and tier, the pods each policy selects, staged
policies and what they would replace, tiers in order, rule counts, pods isolated or not per
namespace and direction, network sets.

``kind`` is ``k8s`` (networking.k8s.io NetworkPolicy), ``calico`` (Calico NetworkPolicy),
``global`` (GlobalNetworkPolicy, namespace ``""``), ``staged``, ``staged_global``, ``staged_k8s``
(StagedNetworkPolicy, StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy) or ``cluster``
(policy.networking.k8s.io ClusterNetworkPolicy, namespace ``""``). ``policy`` and ``tier`` are
the name and tier Calico shows (:func:`exporter.model.policy.policy_name`): two policies of the
same name in two tiers are two series. Which pods count, what "selects" and "isolated" mean:
:mod:`exporter.policy.index` (in short: scheduled, non-hostNetwork, unfinished pods; a policy
selects a pod when its effective selector matches the pod's workload-endpoint labels; a pod is
isolated in a direction when an enforced policy applies to it there in a tier whose default action
is not Pass). Selectors that do not parse are counted in
``calico_exporter_invalid_objects_total{resource}`` and select nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import structlog
from prometheus_client.core import Metric

from exporter.metrics.spec import MetricSpec
from exporter.policy.index import PolicyIndex

log = structlog.get_logger(__name__)

POLICIES = MetricSpec(
    "calico_network_policies",
    "gauge",
    "Network policies per kind (k8s, calico, global, staged, staged_global, staged_k8s, "
    "cluster), namespace (\"\" for cluster-scoped kinds) and tier.",
    ("kind", "namespace", "tier"),
)
SELECTED_PODS = MetricSpec(
    "calico_network_policy_selected_pods",
    "gauge",
    "Pods with a Calico workload endpoint that the policy's selector matches; 0 means it selects "
    "nothing (a label typo, a selector that does not parse, or a staged Delete policy).",
    ("kind", "namespace", "policy", "tier"),
)
STAGED = MetricSpec(
    "calico_network_policy_staged_enforced_pods",
    "gauge",
    "Per staged policy and its stagedAction (Set, Delete, Learn, Ignore): pods selected today by "
    "the enforced policy of the same kind, namespace and name, which enforcing the staged policy "
    "would replace (Set) or remove (Delete); 0 when there is none.",
    ("kind", "namespace", "policy", "tier", "action"),
)
TIERS = MetricSpec(
    "calico_network_policy_tiers",
    "gauge",
    "1 per policy tier (Tier objects and Calico's built-in tiers), with its order; Felix "
    "evaluates tiers by ascending order.",
    ("tier", "order"),
)
RULES = MetricSpec(
    "calico_network_policy_rules",
    "gauge",
    "Rules of all policies of a kind, per direction (ingress, egress) and action (Allow, Deny, "
    "Log, Pass), as written; Kubernetes rules are all Allow.",
    ("kind", "direction", "action"),
)
PODS_ISOLATED = MetricSpec(
    "calico_pods_isolated",
    "gauge",
    "Pods with a Calico workload endpoint that an enforced policy applies to in the direction, "
    "in a tier whose default action is not Pass (unmatched traffic is dropped).",
    ("namespace", "direction"),
)
PODS_NOT_ISOLATED = MetricSpec(
    "calico_pods_not_isolated",
    "gauge",
    "Pods with a Calico workload endpoint that no enforced policy of a dropping tier applies to "
    "in the direction (unmatched traffic is allowed).",
    ("namespace", "direction"),
)
NETWORK_SETS = MetricSpec(
    "calico_network_sets",
    "gauge",
    "NetworkSets (kind calico) per namespace and GlobalNetworkSets (kind global, namespace \"\").",
    ("kind", "namespace"),
)

SPECS = (POLICIES, SELECTED_PODS, STAGED, TIERS, RULES, PODS_ISOLATED, PODS_NOT_ISOLATED,
         NETWORK_SETS)


def format_order(order: float) -> str:
    """A tier order as a label value: ``1000`` for integral orders, else Python's shortest
    round-tripping form (``100.5``)."""
    return str(int(order)) if order.is_integer() and abs(order) < 2**53 else repr(order)


class PolicyCollector:
    """Reads a :class:`PolicyIndex` per scrape; a failing family is logged and skipped."""

    def __init__(self, index: PolicyIndex) -> None:
        self._index = index

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        families: tuple[Callable[[], Iterator[Metric]], ...] = (
            self._policies,
            self._selected,
            self._staged,
            self._tiers,
            self._rules,
            self._isolation,
            self._network_sets,
        )
        for family in families:
            try:
                yield from list(family())
            except Exception:
                log.exception("collect_failed", collector="policy", family=family.__name__)

    def _policies(self) -> Iterator[Metric]:
        gauge = POLICIES.gauge()
        for (kind, namespace, tier), n in sorted(self._index.policy_counts().items()):
            gauge.add_metric([kind, namespace, tier], n)
        yield gauge

    def _selected(self) -> Iterator[Metric]:
        gauge = SELECTED_PODS.gauge()
        for item in sorted(self._index.selected_pods(),
                           key=lambda s: (s.kind, s.namespace, s.name, s.tier)):
            gauge.add_metric([item.kind, item.namespace, item.name, item.tier], item.pods)
        yield gauge

    def _staged(self) -> Iterator[Metric]:
        gauge = STAGED.gauge()
        for item in sorted(self._index.staged(),
                           key=lambda s: (s.kind, s.namespace, s.name, s.tier)):
            gauge.add_metric([item.kind, item.namespace, item.name, item.tier, item.action],
                             item.enforced_pods)
        yield gauge

    def _tiers(self) -> Iterator[Metric]:
        gauge = TIERS.gauge()
        for tier in self._index.tiers():
            if tier.exists and tier.order is not None:
                gauge.add_metric([tier.name, format_order(tier.order)], 1)
        yield gauge

    def _rules(self) -> Iterator[Metric]:
        gauge = RULES.gauge()
        for (kind, direction, action), n in sorted(self._index.rule_counts().items()):
            gauge.add_metric([kind, direction, action], n)
        yield gauge

    def _isolation(self) -> Iterator[Metric]:
        isolated, not_isolated = PODS_ISOLATED.gauge(), PODS_NOT_ISOLATED.gauge()
        for ns in sorted(self._index.isolation(), key=lambda s: s.namespace):
            isolated.add_metric([ns.namespace, "ingress"], ns.ingress_isolated)
            isolated.add_metric([ns.namespace, "egress"], ns.egress_isolated)
            not_isolated.add_metric([ns.namespace, "ingress"], ns.pods - ns.ingress_isolated)
            not_isolated.add_metric([ns.namespace, "egress"], ns.pods - ns.egress_isolated)
        yield isolated
        yield not_isolated

    def _network_sets(self) -> Iterator[Metric]:
        gauge = NETWORK_SETS.gauge()
        for (kind, namespace), n in sorted(self._index.network_set_counts().items()):
            gauge.add_metric([kind, namespace], n)
        yield gauge
