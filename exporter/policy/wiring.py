"""Builds the policy index over the watch stores; the cluster role calls :func:`wire_policy_index`.

Each store, its resource (``exporter.kube.resources``) and the parser its informer uses:

- ``pods``: ``PODS``, ``model.core.parse_pod``;
- ``namespaces``: ``NAMESPACES``, ``model.core.parse_namespace``;
- ``k8s_policies``: ``K8S_NETWORK_POLICIES``, ``model.policy.parse_k8s_network_policy``;
- ``calico_policies``: ``CALICO_NETWORK_POLICIES``, ``model.policy.parse_calico_network_policy``;
- ``global_policies``: ``GLOBAL_NETWORK_POLICIES``, ``model.policy.parse_global_network_policy``;
- ``network_sets``: ``NETWORK_SETS``, ``model.policy.parse_network_set``;
- ``global_network_sets``: ``GLOBAL_NETWORK_SETS``, ``model.policy.parse_global_network_set``.
"""

from __future__ import annotations

from exporter.kube.store import Store
from exporter.model.core import Namespace, Pod
from exporter.model.policy import CalicoPolicy, K8sNetworkPolicy, NetworkSet
from exporter.model.telemetry import Telemetry
from exporter.policy.index import PolicyIndex


def wire_policy_index(
    *,
    pods: Store[Pod],
    namespaces: Store[Namespace],
    k8s_policies: Store[K8sNetworkPolicy],
    calico_policies: Store[CalicoPolicy],
    global_policies: Store[CalicoPolicy],
    network_sets: Store[NetworkSet],
    global_network_sets: Store[NetworkSet],
    telemetry: Telemetry,
) -> PolicyIndex:
    """A PolicyIndex subscribed to every store (objects already stored are replayed into it)."""
    index = PolicyIndex(telemetry=telemetry)
    namespaces.subscribe(index.on_namespace)
    k8s_policies.subscribe(index.on_k8s_policy)
    calico_policies.subscribe(index.on_calico_policy)
    global_policies.subscribe(index.on_global_policy)
    network_sets.subscribe(index.on_network_set)
    global_network_sets.subscribe(index.on_global_network_set)
    pods.subscribe(index.on_pod)
    return index
