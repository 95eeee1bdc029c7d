"""Workload endpoints per node: running, non-hostNetwork pods holding an IP inside a Calico pool.

Kept as running per-node totals from pod events; a pool change re-evaluates every pod (pools
change rarely, pods often), so a scrape only copies a small dict.
"""

from __future__ import annotations

from collections import Counter

from exporter.ipam.pools import NO_POOL, PoolIndex
from exporter.kube.store import Store
from exporter.model import ObjectKey
from exporter.model.core import Pod


class WorkloadEndpoints:
    """Per-node count of pods that Calico networks (a WorkloadEndpoint each)."""

    __slots__ = ("_counted", "_per_node", "_pods", "_pools")

    def __init__(self, pods: Store[Pod], pools: PoolIndex) -> None:
        self._pods = pods
        self._pools = pools
        self._counted: dict[ObjectKey, str] = {}
        """Counted pod -> the node it was counted on."""
        self._per_node: Counter[str] = Counter()

    def is_endpoint(self, pod: Pod) -> bool:
        """Running, not hostNetwork, scheduled, with at least one IP in some pool."""
        return (
            pod.phase == "Running"
            and not pod.host_network
            and bool(pod.node)
            and any(self._pools.pool_of_ip(ip) != NO_POOL for ip in pod.ips)
        )

    def on_pod(self, key: ObjectKey, old: Pod | None, new: Pod | None) -> None:
        """Store subscriber for the pod store."""
        if (old is not None and new is not None and old.ips == new.ips
                and old.phase == new.phase and old.node == new.node
                and old.host_network == new.host_network):
            return  # nothing is_endpoint reads changed (a pool change calls recompute)
        node = self._counted.pop(key, None)
        if node is not None:
            self._per_node[node] -= 1
            if not self._per_node[node]:
                del self._per_node[node]
        if new is not None and self.is_endpoint(new):
            self._counted[key] = new.node
            self._per_node[new.node] += 1

    def recompute(self) -> None:
        """Re-evaluate every pod (after a pool change)."""
        self._counted.clear()
        self._per_node.clear()
        for key, pod in self._pods.items():
            self.on_pod(key, None, pod)

    def per_node(self) -> dict[str, int]:
        """node -> workload endpoints (nodes without any are absent)."""
        return dict(self._per_node)
