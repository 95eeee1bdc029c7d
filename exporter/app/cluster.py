"""The cluster role: watches, stores, the CalicoNodeStatus refresher and their collectors.

One process per cluster (a single-replica Deployment). It builds one Store and one Informer per
resource type it needs, shares the pod store between IPAM and policy, and hands every feature its
stores. Nothing here computes anything: it only wires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exporter.app.supervisor import Job
from exporter.config import Settings
from exporter.ipam import wire_ipam
from exporter.kube import resources as r
from exporter.kube.apigroups import CalicoApi
from exporter.kube.client import KubeApi
from exporter.kube.served import OptionalWatch
from exporter.kube.store import Store
from exporter.kube.watch import Informer
from exporter.metrics.bgp import BGPCollector
from exporter.metrics.ipam import IpamCollector
from exporter.metrics.policy import PolicyCollector
from exporter.metrics.registry import Collector
from exporter.model import RawObject
from exporter.model.core import parse_namespace, parse_node, parse_pod, parse_service_account
from exporter.model.ipam import parse_blockaffinity, parse_ipamblock, parse_ipamhandle, parse_ippool
from exporter.model.nodestatus import parse_node_status
from exporter.model.policy import (
    parse_calico_network_policy,
    parse_cluster_network_policy,
    parse_global_network_policy,
    parse_global_network_set,
    parse_k8s_network_policy,
    parse_network_set,
    parse_staged_global_network_policy,
    parse_staged_k8s_network_policy,
    parse_staged_network_policy,
    parse_tier,
)
from exporter.model.telemetry import Telemetry
from exporter.nodestatus.refresher import OWNED_SELECTOR, NodeStatusRefresher
from exporter.nodestatus.view import NodeStatusView
from exporter.policy.index import PolicyIndex
from exporter.policy.wiring import PolicyStores, wire_policy_index

STATUS_PAGE_SIZE = 20
"""LIST page size for CalicoNodeStatus: a status with the Routes class can carry thousands of
routes (about 150 kB of JSON at 1,000 routes), and a page is decoded whole before the parser
keeps only counts; 500 per page peaked at over 1 GB at 1,000 nodes (docs/performance.md)."""


@dataclass
class Role:
    """What a role contributes to the process: named jobs, collectors and a readiness check."""

    jobs: dict[str, Job] = field(default_factory=dict)
    collectors: list[Collector] = field(default_factory=list)
    stores: list[Store[Any]] = field(default_factory=list)
    checks: list[Callable[[], bool]] = field(default_factory=list)
    """Extra readiness conditions besides every store having synced."""

    def ready(self) -> bool:
        return (all(store.synced.is_set() for store in self.stores)
                and all(check() for check in self.checks))


@dataclass
class ClusterRole(Role):
    """The cluster role, with its policy index: the flow counters take the tier and name of a
    policy from it (``exporter.app.flows``)."""

    policies: PolicyIndex | None = None


class _Watches:
    """Creates one store and informer per resource, each exactly once."""

    def __init__(self, api: KubeApi, settings: Settings, telemetry: Telemetry, role: Role) -> None:
        self._api, self._settings, self._telemetry, self._role = api, settings, telemetry, role
        self.calico = CalicoApi(api, telemetry=telemetry,
                                configured=settings.kube.calico_api_group)
        """The one decision of Calico's API group every Calico watch and writer follows."""

    def add(self, resource: r.Resource, parse: Callable[[RawObject], Any], *,
            label_selector: str | None = None, page_size: int | None = None,
            optional: bool = False) -> Store[Any]:
        """``optional``: the API may not serve the resource (see ``kube.served``); a Calico one
        is looked for in the group ``calico`` chooses."""
        store: Store[Any] = Store(resource.name)
        informer = Informer(self._api, resource, parse=parse, store=store,
                            settings=self._settings.watch, telemetry=self._telemetry,
                            label_selector=label_selector, page_size=page_size,
                            calico=self.calico, optional=optional)
        job = OptionalWatch(self.calico, informer).run if optional else informer.run
        self._role.jobs[f"watch-{resource.name}"] = job
        self._role.stores.append(store)
        return store


def build_cluster_role(api: KubeApi, settings: Settings, telemetry: Telemetry) -> ClusterRole:
    """Wire every cluster-mode feature against one API connection."""
    role = ClusterRole()
    watches = _Watches(api, settings, telemetry, role)
    ns_settings = settings.node_status

    nodes = watches.add(r.NODES, parse_node)
    statuses = watches.add(
        r.CALICO_NODE_STATUSES, parse_node_status,
        label_selector=OWNED_SELECTOR if ns_settings.manage_node_status else None,
        page_size=min(settings.watch.list_page_size, STATUS_PAGE_SIZE),
    )
    if ns_settings.manage_node_status:
        refresher = NodeStatusRefresher(api, nodes=nodes, statuses=statuses,
                                        settings=ns_settings, watch=settings.watch,
                                        calico=watches.calico)
        role.jobs["node-status-refresher"] = refresher.run
    view = NodeStatusView(statuses=statuses, nodes=nodes, prefix=ns_settings.node_status_prefix)
    role.collectors.append(BGPCollector(view.snapshot))

    pods = watches.add(r.PODS, parse_pod)
    ipam = wire_ipam(
        ippools=watches.add(r.IPPOOLS, parse_ippool),
        ipamblocks=watches.add(r.IPAM_BLOCKS, parse_ipamblock),
        blockaffinities=watches.add(r.BLOCK_AFFINITIES, parse_blockaffinity),
        ipamhandles=watches.add(r.IPAM_HANDLES, parse_ipamhandle),
        pods=pods,
        settings=settings.ipam,
    )
    role.collectors.append(IpamCollector(ipam))

    # Tiers (Calico 3.29 on), staged policies (3.30 on) and ClusterNetworkPolicy (where its CRD
    # is installed, as Calico 3.32 does) are watched only where the API serves them.
    policy = wire_policy_index(PolicyStores(
        pods=pods,
        namespaces=watches.add(r.NAMESPACES, parse_namespace),
        service_accounts=watches.add(r.SERVICE_ACCOUNTS, parse_service_account),
        tiers=watches.add(r.TIERS, parse_tier, optional=True),
        k8s_policies=watches.add(r.K8S_NETWORK_POLICIES, parse_k8s_network_policy),
        calico_policies=watches.add(r.CALICO_NETWORK_POLICIES, parse_calico_network_policy),
        global_policies=watches.add(r.GLOBAL_NETWORK_POLICIES, parse_global_network_policy),
        staged_policies=watches.add(r.STAGED_NETWORK_POLICIES, parse_staged_network_policy,
                                    optional=True),
        staged_global_policies=watches.add(r.STAGED_GLOBAL_NETWORK_POLICIES,
                                           parse_staged_global_network_policy, optional=True),
        staged_k8s_policies=watches.add(r.STAGED_K8S_NETWORK_POLICIES,
                                        parse_staged_k8s_network_policy, optional=True),
        cluster_policies=watches.add(r.CLUSTER_NETWORK_POLICIES, parse_cluster_network_policy,
                                     optional=True),
        network_sets=watches.add(r.NETWORK_SETS, parse_network_set),
        global_network_sets=watches.add(r.GLOBAL_NETWORK_SETS, parse_global_network_set),
    ), telemetry=telemetry)
    role.collectors.append(PolicyCollector(policy))
    role.policies = policy
    return role
