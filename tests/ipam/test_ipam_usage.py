"""Pool, block and per-node figures equal a reference count made from the raw objects."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from structlog.testing import capture_logs

from exporter.config import IpamSettings
from exporter.ipam import IpamState, wire_ipam
from exporter.kube.store import Store
from exporter.model import RawObject, object_key
from exporter.model.ipam import IPAMBlock, IPPool, parse_ipamblock, parse_ippool
from tests.ipam.ipam_reference import Reference, block, pod_attrs, pool
from tests.ipam.world import POOLS, lb_attrs, make_world


def assert_matches(state: IpamState, ref: Reference) -> None:
    """Every figure of the snapshot equals the reference."""
    usage = state.snapshot().usage
    pools = {p.name: p for p in usage.pools}
    assert {n: p.allocated for n, p in pools.items()} == {
        n: ref.pool_allocated[n] for n in set(ref.pool_size) | set(ref.pool_allocated)
    }
    assert {n: p.blocks for n, p in pools.items()} == {
        n: ref.pool_blocks[n] for n in set(ref.pool_size) | set(ref.pool_blocks)
    }
    assert {n: p.size for n, p in pools.items() if p.pool} == ref.pool_size
    assert {n: p.pool.blocks_capacity for n, p in pools.items() if p.pool} == ref.pool_capacity
    for name, p in pools.items():
        if p.pool:
            assert p.utilization == ref.pool_allocated[name] / ref.pool_size[name]
    assert {(b.pool, b.cidr, b.node): b.allocated for b in usage.blocks} == ref.block_allocated
    assert {(b.pool, b.cidr, b.node): b.size for b in usage.blocks} == ref.block_size
    nodes = usage.nodes
    assert {k: v.allocated for k, v in nodes.items() if v.allocated} == dict(ref.node_allocated)
    assert {k: v.blocks for k, v in nodes.items() if v.blocks} == dict(ref.node_blocks)
    assert {k: v.borrowed for k, v in nodes.items() if v.borrowed} == dict(ref.borrowed)


def test_figures_match_reference_ipv4_and_ipv6() -> None:
    """Pool, block and (node, pool) figures, borrowed included, match the reference count."""
    world = make_world()
    ref = world.reference()
    assert_matches(world.state, ref)
    # spot-check the semantics the reference encodes
    assert ref.borrowed == {("n2", "pool-a"): 1, ("n3", "pool-a"): 2, ("n2", "pool-v6"): 1}
    assert ref.pool_allocated["pool-a"] == 8 + 16 + 3 + 2
    assert ref.pool_allocated[""] == 1


def test_block_outside_pools_counts_under_empty_pool_and_logs_once() -> None:
    """A block in no pool is under pool "" and logged once, however often it is scraped."""
    with capture_logs() as logs:
        world = make_world()
        for _ in range(3):
            world.state.snapshot()
    orphans = [e for e in logs if e["event"] == "ipam_block_outside_pools"]
    assert [e["block"] for e in orphans] == ["10.99.0.0/26"]
    pools = {p.name: p for p in world.state.snapshot().usage.pools}
    assert (pools[""].pool, pools[""].allocated, pools[""].blocks) == (None, 1, 1)


def test_pool_changes_move_blocks() -> None:
    """Adding a pool that contains an orphan block, or deleting one, re-assigns its blocks."""
    world = make_world()
    world.put_pool(pool("pool-c", "10.99.0.0/16", 26))
    assert_matches(world.state, world.reference())
    assert "" not in {p.name for p in world.state.snapshot().usage.pools}
    world.delete_pool("pool-a")
    assert_matches(world.state, world.reference())
    # a more specific pool wins over the wider one
    world.put_pool(pool("pool-wide", "10.0.0.0/8", 28))
    world.put_pool(pool("pool-a", "10.10.0.0/24", 28))
    assert_matches(world.state, world.reference())


def _random_block(rng: random.Random, cidr: str, nodes: list[str]) -> RawObject:
    size = 16 if ":" in cidr or cidr.endswith("/28") else 64
    affinity = rng.choice([f"host:{n}" for n in nodes] + [None, "virtual:load-balancer"])
    allocations: dict[int, tuple[str, dict[str, str]]] = {}
    for ordinal in rng.sample(range(size), rng.randrange(size + 1)):
        kind = rng.random()
        if kind < 0.8:
            node = rng.choice(nodes)
            allocations[ordinal] = (f"k8s-pod-network.{cidr}-{ordinal}",
                                    pod_attrs(node, "ns", f"p{ordinal}"))
        elif kind < 0.9:
            allocations[ordinal] = ("lb", lb_attrs("svc"))
        else:
            allocations[ordinal] = (f"tunnel-{ordinal}", {"node": rng.choice(nodes),
                                                          "type": "vxlanTunnelAddress"})
    return block(cidr, affinity, allocations)


def test_random_changes_keep_figures_exact() -> None:
    """After each of 300 random block and pool changes the figures still match the reference."""
    rng = random.Random(20261126)
    nodes = ["n1", "n2", "n3", "n4"]
    cidrs = [str(net) for net in ipaddress.ip_network("10.10.0.0/24").subnets(new_prefix=28)]
    cidrs += [str(net) for net in ipaddress.ip_network("fd00:10::/120").subnets(new_prefix=124)]
    cidrs += ["10.99.0.0/26", "10.20.0.64/26"]
    world = make_world()
    for _ in range(300):
        op = rng.random()
        if op < 0.75:
            cidr = rng.choice(cidrs)
            world.put_block(_random_block(rng, cidr, nodes))
        elif op < 0.9 and world.raw_blocks:
            world.delete_block(rng.choice(sorted(world.raw_blocks)))
        elif op < 0.95 and world.raw_pools:
            world.delete_pool(rng.choice(sorted(world.raw_pools)))
        else:
            raw = rng.choice(POOLS)
            world.put_pool(raw)
        assert_matches(world.state, world.reference())


def test_deleted_block_event_removes_it() -> None:
    """A block re-written with deleted: true disappears from every figure."""
    world = make_world()
    raw: dict[str, Any] = block("10.10.0.16/28", "host:n2", {}, deleted=True)
    world.put_block(raw)
    ref = world.reference()
    assert_matches(world.state, ref)
    assert ("n2", "pool-a") not in {k for k, v in ref.node_blocks.items() if v}


def test_orphan_blocks_are_not_logged_before_the_pools_are_listed() -> None:
    """Until the IPPool store has its first LIST, a block without pool is not reported as such."""
    pools: Store[IPPool] = Store("ippools")
    blocks: Store[IPAMBlock] = Store("ipamblocks")
    state = wire_ipam(ippools=pools, ipamblocks=blocks, blockaffinities=Store("blockaffinities"),
                      ipamhandles=Store("ipamhandles"), pods=Store("pods"),
                      settings=IpamSettings())
    raw = block("10.10.0.0/28", "host:n1", {})
    with capture_logs() as logs:
        blocks.upsert(object_key(raw), parse_ipamblock(raw))
        state.snapshot()
        assert logs == []
        pools.replace({("", "pool-a"): parse_ippool(POOLS[0])})
        state.snapshot()
        pools.delete(("", "pool-a"))
        state.snapshot()
    assert [e["event"] for e in logs] == ["ipam_block_outside_pools"]
