"""Policy metrics: policies per kind, namespace and tier, the pods each policy selects, rule counts,
pods isolated or not per namespace and direction, network sets.

``kind`` is ``k8s`` (networking.k8s.io NetworkPolicy), ``calico`` (Calico NetworkPolicy) or
``global`` (GlobalNetworkPolicy, namespace ``""``). ``policy`` is the policy name without the
``<tier>.`` prefix Calico stored up to v3.31. Which pods count, what "selects" and "isolated"
mean: :mod:`exporter.policy.index` (in short: scheduled, non-hostNetwork, unfinished pods; a
policy applies to a pod in the directions of its types when its effective selector matches the
pod's workload-endpoint labels). Selectors that do not parse are counted in
``calico_exporter_invalid_objects_total{resource}`` and select nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import structlog
from prometheus_client.core import Metric

from exporter.metrics.spec import MetricSpec
from exporter.policy.index import PolicyIndex

log = structlog.get_logger(__name__)

POLICIES = MetricSpec(
    "calico_network_policies",
    "gauge",
    "Network policies per kind (k8s, calico, global), namespace (\"\" for global) and tier.",
    ("kind", "namespace", "tier"),
)
SELECTED_PODS = MetricSpec(
    "calico_network_policy_selected_pods",
    "gauge",
    "Pods with a Calico workload endpoint that the policy's selector matches; 0 means it selects "
    "nothing (a label typo, or a selector that does not parse).",
    ("kind", "namespace", "policy"),
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
    "Pods with a Calico workload endpoint to which at least one policy applies in the direction.",
    ("namespace", "direction"),
)
PODS_NOT_ISOLATED = MetricSpec(
    "calico_pods_not_isolated",
    "gauge",
    "Pods with a Calico workload endpoint to which no policy applies in the direction.",
    ("namespace", "direction"),
)
NETWORK_SETS = MetricSpec(
    "calico_network_sets",
    "gauge",
    "NetworkSets (kind calico) per namespace and GlobalNetworkSets (kind global, namespace \"\").",
    ("kind", "namespace"),
)

SPECS = (POLICIES, SELECTED_PODS, RULES, PODS_ISOLATED, PODS_NOT_ISOLATED, NETWORK_SETS)


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
        # Two stored names can share a display name ("default.x" and "x" in tier default) while
        # a cluster migrates its policy names: sum them so that every series is unique.
        totals: Counter[tuple[str, str, str]] = Counter()
        for item in self._index.selected_pods():
            totals[(item.kind, item.namespace, item.name)] += item.pods
        gauge = SELECTED_PODS.gauge()
        for labels, n in sorted(totals.items()):
            gauge.add_metric(list(labels), n)
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
