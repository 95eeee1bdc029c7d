"""Builds the policy index over the watch stores; the cluster role calls :func:`wire_policy_index`.

Each store of :class:`PolicyStores`, its resource (``exporter.kube.resources``) and the parser its
informer uses:

- ``pods``: ``PODS``, ``model.core.parse_pod``;
- ``namespaces``: ``NAMESPACES``, ``model.core.parse_namespace``;
- ``service_accounts``: ``SERVICE_ACCOUNTS``, ``model.core.parse_service_account``;
- ``tiers``: ``TIERS``, ``model.policy.parse_tier``;
- ``k8s_policies``: ``K8S_NETWORK_POLICIES``, ``model.policy.parse_k8s_network_policy``;
- ``calico_policies``: ``CALICO_NETWORK_POLICIES``, ``model.policy.parse_calico_network_policy``;
- ``global_policies``: ``GLOBAL_NETWORK_POLICIES``, ``model.policy.parse_global_network_policy``;
- ``staged_policies``: ``STAGED_NETWORK_POLICIES``, ``model.policy.parse_staged_network_policy``;
- ``staged_global_policies``: ``STAGED_GLOBAL_NETWORK_POLICIES``,
  ``model.policy.parse_staged_global_network_policy``;
- ``staged_k8s_policies``: ``STAGED_K8S_NETWORK_POLICIES``,
  ``model.policy.parse_staged_k8s_network_policy``;
- ``cluster_policies``: ``CLUSTER_NETWORK_POLICIES``, ``model.policy.parse_cluster_network_policy``;
- ``network_sets``: ``NETWORK_SETS``, ``model.policy.parse_network_set``;
- ``global_network_sets``: ``GLOBAL_NETWORK_SETS``, ``model.policy.parse_global_network_set``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporter.kube.store import Store
from exporter.model.core import Namespace, Pod, ServiceAccount
from exporter.model.policy import (
    CalicoPolicy,
    ClusterNetworkPolicy,
    K8sNetworkPolicy,
    NetworkSet,
    Tier,
)
from exporter.model.telemetry import Telemetry
from exporter.policy.index import PolicyIndex


@dataclass
class PolicyStores:
    """The stores the policy index reads (each written by its own watch)."""

    pods: Store[Pod] = field(default_factory=lambda: Store("pods"))
    namespaces: Store[Namespace] = field(default_factory=lambda: Store("namespaces"))
    service_accounts: Store[ServiceAccount] = field(
        default_factory=lambda: Store("serviceaccounts"))
    tiers: Store[Tier] = field(default_factory=lambda: Store("tiers"))
    k8s_policies: Store[K8sNetworkPolicy] = field(
        default_factory=lambda: Store("networkpolicies"))
    calico_policies: Store[CalicoPolicy] = field(
        default_factory=lambda: Store("networkpolicies"))
    global_policies: Store[CalicoPolicy] = field(
        default_factory=lambda: Store("globalnetworkpolicies"))
    staged_policies: Store[CalicoPolicy] = field(
        default_factory=lambda: Store("stagednetworkpolicies"))
    staged_global_policies: Store[CalicoPolicy] = field(
        default_factory=lambda: Store("stagedglobalnetworkpolicies"))
    staged_k8s_policies: Store[K8sNetworkPolicy] = field(
        default_factory=lambda: Store("stagedkubernetesnetworkpolicies"))
    cluster_policies: Store[ClusterNetworkPolicy] = field(
        default_factory=lambda: Store("clusternetworkpolicies"))
    network_sets: Store[NetworkSet] = field(default_factory=lambda: Store("networksets"))
    global_network_sets: Store[NetworkSet] = field(
        default_factory=lambda: Store("globalnetworksets"))


def wire_policy_index(stores: PolicyStores, *, telemetry: Telemetry) -> PolicyIndex:
    """A PolicyIndex subscribed to every store (objects already stored are replayed into it).

    Tiers come first so that every policy meets its tier; pods last, so that a replay evaluates
    each pod once against every policy."""
    index = PolicyIndex(telemetry=telemetry)
    stores.tiers.subscribe(index.on_tier)
    stores.namespaces.subscribe(index.on_namespace)
    stores.service_accounts.subscribe(index.on_service_account)
    stores.k8s_policies.subscribe(index.on_k8s_policy)
    stores.calico_policies.subscribe(index.on_calico_policy)
    stores.global_policies.subscribe(index.on_global_policy)
    stores.staged_policies.subscribe(index.on_staged_policy)
    stores.staged_global_policies.subscribe(index.on_staged_global_policy)
    stores.staged_k8s_policies.subscribe(index.on_staged_k8s_policy)
    stores.cluster_policies.subscribe(index.on_cluster_policy)
    stores.network_sets.subscribe(index.on_network_set)
    stores.global_network_sets.subscribe(index.on_global_network_set)
    stores.pods.subscribe(index.on_pod)
    stores.tiers.when_synced(index.tiers_synced)
    return index
