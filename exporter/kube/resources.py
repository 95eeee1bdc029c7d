"""The Kubernetes resource types the exporter reads or writes, as constants.

A :class:`Resource` knows its API path; the scope (cluster or namespaced) follows the real API
and, for Calico, the ``scope`` of the CRDs in ``exporter/sim/crds/``.
"""

from __future__ import annotations

from dataclasses import dataclass

CALICO_GROUP = "crd.projectcalico.org"


@dataclass(frozen=True, slots=True)
class Resource:
    """One API resource type: group ("" for the core group), version, plural, kind, scope."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def name(self) -> str:
        """The label value used in self-metrics, as kubectl names it: ``pods`` for the core
        group, else ``<plural>.<group>`` (both groups have ``networkpolicies``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, name: str | None = None, *, namespace: str | None = None) -> str:
        """The URL path of the collection (all namespaces when namespace is None) or one object."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
PODS = Resource("", "v1", "pods", "Pod", namespaced=True)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount", namespaced=True)
K8S_NETWORK_POLICIES = Resource(
    "networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", namespaced=True
)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
CLUSTER_NETWORK_POLICIES = Resource(
    "policy.networking.k8s.io", "v1alpha2", "clusternetworkpolicies", "ClusterNetworkPolicy",
    namespaced=False,
)
CALICO_NODE_STATUSES = Resource(
    CALICO_GROUP, "v1", "caliconodestatuses", "CalicoNodeStatus", namespaced=False
)
IPPOOLS = Resource(CALICO_GROUP, "v1", "ippools", "IPPool", namespaced=False)
IPAM_BLOCKS = Resource(CALICO_GROUP, "v1", "ipamblocks", "IPAMBlock", namespaced=False)
BLOCK_AFFINITIES = Resource(
    CALICO_GROUP, "v1", "blockaffinities", "BlockAffinity", namespaced=False
)
IPAM_HANDLES = Resource(CALICO_GROUP, "v1", "ipamhandles", "IPAMHandle", namespaced=False)
CALICO_NETWORK_POLICIES = Resource(
    CALICO_GROUP, "v1", "networkpolicies", "NetworkPolicy", namespaced=True
)
GLOBAL_NETWORK_POLICIES = Resource(
    CALICO_GROUP, "v1", "globalnetworkpolicies", "GlobalNetworkPolicy", namespaced=False
)
NETWORK_SETS = Resource(CALICO_GROUP, "v1", "networksets", "NetworkSet", namespaced=True)
GLOBAL_NETWORK_SETS = Resource(
    CALICO_GROUP, "v1", "globalnetworksets", "GlobalNetworkSet", namespaced=False
)
TIERS = Resource(CALICO_GROUP, "v1", "tiers", "Tier", namespaced=False)
STAGED_NETWORK_POLICIES = Resource(
    CALICO_GROUP, "v1", "stagednetworkpolicies", "StagedNetworkPolicy", namespaced=True
)
STAGED_GLOBAL_NETWORK_POLICIES = Resource(
    CALICO_GROUP, "v1", "stagedglobalnetworkpolicies", "StagedGlobalNetworkPolicy",
    namespaced=False,
)
STAGED_K8S_NETWORK_POLICIES = Resource(
    CALICO_GROUP, "v1", "stagedkubernetesnetworkpolicies", "StagedKubernetesNetworkPolicy",
    namespaced=True,
)
