"""Leaked addresses, orphaned handles and workload endpoints, driven by store events and a clock."""

from __future__ import annotations

from tests.ipam.ipam_reference import block, pod_attrs, pool
from tests.ipam.world import FakeClock, World, raw_pod

GRACE = 300.0


def _world() -> World:
    world = World(grace=GRACE, clock=FakeClock())
    world.put_pool(pool("pool-a", "10.10.0.0/24", 28))
    world.put_pool(pool("pool-v6", "fd00:10::/120", 124))
    return world


def _block(*pods: tuple[int, str, str], cidr: str = "10.10.0.0/28",
           node: str = "n1") -> dict[str, object]:
    return block(cidr, f"host:{node}", {
        ordinal: (f"k8s-pod-network.{name}", pod_attrs(pod_node, "app", name))
        for ordinal, name, pod_node in pods
    })


def test_deleted_pod_leaks_after_grace_and_clears_on_release() -> None:
    """A pod deleted without release counts as leaked only past the grace period, 0 once freed."""
    world = _world()
    world.put_pod(raw_pod("app", "p0", node="n1", ips=("10.10.0.0",)))
    world.put_pod(raw_pod("app", "p1", node="n2", ips=("10.10.0.1",)))
    world.put_block(_block((0, "p0", "n1"), (1, "p1", "n2")))
    assert world.state.snapshot().leaked == {}

    world.delete_pod("app", "p1")
    assert world.state.leaks.suspects() == 1
    world.clock.advance(GRACE)
    assert world.state.snapshot().leaked == {}
    world.clock.advance(1)
    assert world.state.snapshot().leaked == {("pool-a", "n2"): 1}

    world.put_block(_block((0, "p0", "n1")))  # the address is released
    assert world.state.snapshot().leaked == {}
    assert world.state.leaks.suspects() == 0


def test_recreated_pod_with_other_ip_leaks_the_old_address() -> None:
    """A pod of the same name holding another IP makes the old allocation leaked (IPv6 too)."""
    world = _world()
    world.put_pod(raw_pod("app", "p0", node="n1", ips=("10.10.0.0", "fd00:10::")))
    world.put_block(_block((0, "p0", "n1")))
    world.put_block(_block((0, "p0", "n1"), cidr="fd00:10::/124"))
    world.delete_pod("app", "p0")
    world.put_pod(raw_pod("app", "p0", node="n1"))  # recreated, no IP yet: not suspect
    assert world.state.leaks.suspects() == 0
    world.put_pod(raw_pod("app", "p0", node="n1", ips=("10.10.0.5", "fd00:10::5")))
    assert world.state.leaks.suspects() == 2
    world.clock.advance(GRACE + 1)
    assert world.state.snapshot().leaked == {("pool-a", "n1"): 1, ("pool-v6", "n1"): 1}


def test_allocation_seen_after_its_pod_was_deleted_is_dated_from_the_deletion() -> None:
    """Pod deletion times are remembered, so a late block event does not restart the clock."""
    world = _world()
    world.put_pod(raw_pod("app", "p0", node="n1", ips=("10.10.0.0",)))
    world.delete_pod("app", "p0")
    world.clock.advance(GRACE - 10)
    world.put_block(_block((0, "p0", "n1")))
    world.clock.advance(11)
    assert world.state.snapshot().leaked == {("pool-a", "n1"): 1}


def test_never_seen_pod_is_dated_from_first_sight() -> None:
    """An allocation naming a pod the exporter never saw leaks a grace period after first sight."""
    world = _world()
    world.put_block(_block((3, "ghost", "n2")))
    world.clock.advance(GRACE + 1)
    assert world.state.snapshot().leaked == {("pool-a", "n2"): 1}


def test_tunnel_and_loadbalancer_addresses_are_never_leaked() -> None:
    """Allocations whose attributes name no pod are not leak candidates."""
    world = _world()
    world.put_block(block("10.10.0.0/28", "host:n1", {
        0: ("ipip-tunnel-addr-n1", {"node": "n1", "type": "ipipTunnelAddress"}),
        1: ("lb", {"namespace": "default", "service": "web", "type": "LoadBalancer"}),
    }))
    world.clock.advance(GRACE * 10)
    assert world.state.snapshot().leaked == {}


def test_block_deletion_forgets_its_suspects() -> None:
    """Deleting the block of a leaked allocation drops the leak."""
    world = _world()
    world.put_block(_block((0, "ghost", "n1")))
    world.clock.advance(GRACE + 1)
    assert world.state.snapshot().leaked == {("pool-a", "n1"): 1}
    world.delete_block("10-10-0-0-28")
    assert world.state.snapshot().leaked == {}


def _handle(handle_id: str, blocks: dict[str, int]) -> dict[str, object]:
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMHandle",
            "metadata": {"name": handle_id.lower()},
            "spec": {"handleID": handle_id, "block": blocks, "deleted": False}}


def test_handle_without_allocations_is_orphaned_after_grace() -> None:
    """A handle holding nothing counts as orphaned past the grace period, 0 once it holds again."""
    world = _world()
    world.put_block(_block((0, "p0", "n1")))
    world.put_handle(_handle("k8s-pod-network.p0", {"10.10.0.0/28": 1}))
    world.put_handle(_handle("k8s-pod-network.empty", {"10.10.0.0/28": 1}))
    world.clock.advance(GRACE + 1)
    assert world.state.snapshot().orphaned_handles == 1
    world.put_block(_block((0, "p0", "n1"), (1, "empty", "n1")))
    assert world.state.snapshot().orphaned_handles == 0
    world.put_block(_block((1, "empty", "n1")))  # p0's address released, handle kept
    world.clock.advance(GRACE + 1)
    assert world.state.snapshot().orphaned_handles == 1
    world.handles.delete(("", "k8s-pod-network.p0"))
    assert world.state.snapshot().orphaned_handles == 0


def test_workload_endpoints_per_node() -> None:
    """Running, non-hostNetwork pods with an IP in a pool count, per node; pool changes apply."""
    world = _world()
    world.put_pod(raw_pod("a", "v4", node="n1", ips=("10.10.0.1",)))
    world.put_pod(raw_pod("a", "v6", node="n2", ips=("fd00:10::1",)))
    world.put_pod(raw_pod("a", "dual", node="n2", ips=("10.10.0.2", "fd00:10::2")))
    world.put_pod(raw_pod("a", "host", node="n1", ips=("192.168.1.1",), host_network=True))
    world.put_pod(raw_pod("a", "pending", node="n1", phase="Pending"))
    world.put_pod(raw_pod("a", "done", node="n1", ips=("10.10.0.3",), phase="Succeeded"))
    world.put_pod(raw_pod("a", "other", node="n3", ips=("10.50.0.1",)))
    assert world.state.snapshot().workload_endpoints == {"n1": 1, "n2": 2}

    world.put_pool(pool("pool-other", "10.50.0.0/16"))
    assert world.state.snapshot().workload_endpoints == {"n1": 1, "n2": 2, "n3": 1}
    world.delete_pool("pool-v6")
    assert world.state.snapshot().workload_endpoints == {"n1": 1, "n2": 1, "n3": 1}
    world.delete_pod("a", "v4")
    world.put_pod(raw_pod("a", "dual", node="n2", ips=("10.10.0.2",), phase="Failed"))
    assert world.state.snapshot().workload_endpoints == {"n3": 1}


def test_updating_an_orphaned_handle_keeps_its_age() -> None:
    """A rewrite of an empty handle does not restart its grace period."""
    world = _world()
    world.put_handle(_handle("k8s-pod-network.empty", {"10.10.0.0/28": 1}))
    world.clock.advance(GRACE - 1)
    world.put_handle(_handle("k8s-pod-network.empty", {"10.10.0.0/28": 2}))
    world.clock.advance(2)
    assert world.state.snapshot().orphaned_handles == 1
