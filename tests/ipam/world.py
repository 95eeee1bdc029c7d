"""A test world: real stores fed the way the watch loop feeds them, and the IPAM state on top.

``World`` keeps the raw objects it was given next to the stores, so a test can hand the same raw
objects to the reference computation in ``ipam_reference``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from exporter.config import IpamSettings
from exporter.ipam import IpamState, wire_ipam
from exporter.kube.store import Store
from exporter.model import RawObject, object_key
from exporter.model.core import Pod, parse_pod
from exporter.model.ipam import (
    BlockAffinity,
    IPAMBlock,
    IPAMHandle,
    IPPool,
    parse_blockaffinity,
    parse_ipamblock,
    parse_ipamhandle,
    parse_ippool,
)
from tests.ipam.ipam_reference import Reference, block, pod_attrs, pool, reference

T = TypeVar("T")


class FakeClock:
    """A settable clock (seconds) injected instead of time.monotonic."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def raw_pod(namespace: str, name: str, *, node: str, ips: tuple[str, ...] = (),
            phase: str = "Running", host_network: bool = False) -> RawObject:
    """A raw pod as the API serves it."""
    status: dict[str, Any] = {"phase": phase}
    if ips:
        status["podIP"] = ips[0]
        status["podIPs"] = [{"ip": ip} for ip in ips]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}"},
            "spec": {"nodeName": node, "hostNetwork": host_network},
            "status": status}


class World:
    """Real stores and the IPAM state wired to them."""

    def __init__(self, *, grace: float = 300.0, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.ippools: Store[IPPool] = Store("ippools")
        self.ipamblocks: Store[IPAMBlock] = Store("ipamblocks")
        self.affinities: Store[BlockAffinity] = Store("blockaffinities")
        self.handles: Store[IPAMHandle] = Store("ipamhandles")
        self.pods: Store[Pod] = Store("pods")
        self.raw_pools: dict[str, RawObject] = {}
        self.raw_blocks: dict[str, RawObject] = {}
        self.state: IpamState = wire_ipam(
            ippools=self.ippools, ipamblocks=self.ipamblocks, blockaffinities=self.affinities,
            ipamhandles=self.handles, pods=self.pods,
            settings=IpamSettings(leak_grace_period=grace), clock=self.clock,
        )
        self.ippools.replace({})  # as after the first LIST: the pool store is synced

    @staticmethod
    def _put(store: Store[T], raws: dict[str, RawObject] | None, raw: RawObject,
             parse: Callable[[RawObject], T]) -> None:
        if raws is not None:
            raws[raw["metadata"]["name"]] = raw
        store.upsert(object_key(raw), parse(raw))

    def put_pool(self, raw: RawObject) -> None:
        self._put(self.ippools, self.raw_pools, raw, parse_ippool)

    def put_block(self, raw: RawObject) -> None:
        self._put(self.ipamblocks, self.raw_blocks, raw, parse_ipamblock)

    def put_affinity(self, raw: RawObject) -> None:
        self._put(self.affinities, None, raw, parse_blockaffinity)

    def put_handle(self, raw: RawObject) -> None:
        self._put(self.handles, None, raw, parse_ipamhandle)

    def put_pod(self, raw: RawObject) -> None:
        self._put(self.pods, None, raw, parse_pod)

    def delete_pool(self, name: str) -> None:
        del self.raw_pools[name]
        self.ippools.delete(("", name))

    def delete_block(self, name: str) -> None:
        del self.raw_blocks[name]
        self.ipamblocks.delete(("", name))

    def delete_pod(self, namespace: str, name: str) -> None:
        self.pods.delete((namespace, name))

    def reference(self) -> Reference:
        return reference(list(self.raw_pools.values()), list(self.raw_blocks.values()))


POOLS = [
    pool("pool-a", "10.10.0.0/24", 28, natOutgoing=True),
    pool("pool-b", "10.20.0.0/16"),
    pool("pool-v6", "fd00:10::/120", 124, vxlanMode="Always"),
]


def lb_attrs(service: str) -> dict[str, str]:
    return {"namespace": "default", "service": service, "type": "LoadBalancer"}


BLOCKS = [
    # n1's block: five n1 pods, one pod of n2 (borrowed by n2), n1's tunnel, an LB address
    block("10.10.0.0/28", "host:n1", {
        **{i: (f"k8s-pod-network.a{i}", pod_attrs("n1", "app", f"a{i}")) for i in range(5)},
        5: ("k8s-pod-network.b5", pod_attrs("n2", "app", "b5")),
        6: ("ipip-tunnel-addr-n1", {"node": "n1", "type": "ipipTunnelAddress"}),
        9: ("lb-1", lb_attrs("web")),
    }),
    # n2's full block
    block("10.10.0.16/28", "host:n2", {
        i: (f"k8s-pod-network.c{i}", pod_attrs("n2", "app", f"c{i}")) for i in range(16)
    }),
    # a block without affinity lends everything with a node attribute
    block("10.10.0.32/28", None, {
        0: ("k8s-pod-network.d0", pod_attrs("n3", "app", "d0")),
        1: ("k8s-pod-network.d1", pod_attrs("n3", "app", "d1")),
        2: ("lb-2", lb_attrs("api")),
    }),
    # a virtual block never lends
    block("10.10.0.48/28", "virtual:load-balancer", {
        0: ("k8s-pod-network.e0", pod_attrs("n1", "app", "e0")),
        1: ("lb-3", lb_attrs("db")),
    }),
    # deleted: absent
    block("10.10.0.64/28", "host:n3", {0: ("x", pod_attrs("n3", "app", "gone"))}, deleted=True),
    # in no pool
    block("10.99.0.0/26", "host:n1", {0: ("k8s-pod-network.f0", pod_attrs("n1", "app", "f0"))}),
    # IPv6, with n2 borrowing from n1
    block("fd00:10::/124", "host:n1", {
        0: ("k8s-pod-network.a0", pod_attrs("n1", "app", "a0")),
        1: ("k8s-pod-network.a1", pod_attrs("n1", "app", "a1")),
        2: ("k8s-pod-network.a2", pod_attrs("n1", "app", "a2")),
        3: ("k8s-pod-network.b5", pod_attrs("n2", "app", "b5")),
    }),
    block("fd00:10::10/124", "host:n2", {
        0: ("k8s-pod-network.c0", pod_attrs("n2", "app", "c0")),
        1: ("k8s-pod-network.c1", pod_attrs("n2", "app", "c1")),
    }),
]


def make_world(**kwargs: Any) -> World:
    """The POOLS and BLOCKS above, loaded."""
    world = World(**kwargs)
    for raw in POOLS:
        world.put_pool(raw)
    for raw in BLOCKS:
        world.put_block(raw)
    return world
