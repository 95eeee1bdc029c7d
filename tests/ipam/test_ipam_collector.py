"""The IPAM collector's exposition through a real CollectorRegistry, checked by promtool."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.ipam import IpamState
from exporter.metrics.ipam import SPECS, IpamCollector
from tests.ipam.world import make_world, raw_pod


def _registry(state: IpamState) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(IpamCollector(state))
    return registry


def test_exposition_matches_reference() -> None:
    """Every family is exposed with the values of the reference count and the SPECS' labels."""
    world = make_world()
    world.put_pod(raw_pod("app", "a0", node="n1", ips=("10.10.0.0", "fd00:10::")))
    registry = _registry(world.state)
    ref = world.reference()
    get = registry.get_sample_value
    for pool, size in ref.pool_size.items():
        assert get("calico_ippool_size_addresses", {"pool": pool}) == size
        assert get("calico_ippool_allocated_addresses", {"pool": pool}) == ref.pool_allocated[pool]
        assert get("calico_ippool_blocks", {"pool": pool}) == ref.pool_blocks[pool]
        assert get("calico_ippool_blocks_capacity", {"pool": pool}) == ref.pool_capacity[pool]
        assert get("calico_ippool_utilization_ratio", {"pool": pool}) == (
            ref.pool_allocated[pool] / size)
    # blocks outside every pool: pool="" has counts but no size, ratio or info
    assert get("calico_ippool_allocated_addresses", {"pool": ""}) == 1
    assert get("calico_ippool_size_addresses", {"pool": ""}) is None
    for (pool, cidr, node), used in ref.block_allocated.items():
        labels = {"pool": pool, "block": cidr, "node": node}
        assert get("calico_ipam_block_allocated_addresses", labels) == used
        assert get("calico_ipam_block_size_addresses", labels) == ref.block_size[(pool, cidr, node)]
    for (node, pool), n in ref.node_allocated.items():
        assert get("calico_ipam_node_allocated_addresses", {"node": node, "pool": pool}) == n
    for (node, pool), n in ref.node_blocks.items():
        assert get("calico_ipam_node_blocks", {"node": node, "pool": pool}) == n
    keys = set(ref.node_allocated) | set(ref.node_blocks)
    for node, pool in keys:
        # one key set for the per-node families: borrowed and leaked show their zeros
        assert get("calico_ipam_borrowed_addresses", {"node": node, "pool": pool}) == (
            ref.borrowed[(node, pool)])
        assert get("calico_ipam_leaked_addresses", {"pool": pool, "node": node}) == 0
    assert get("calico_ippool_info", {
        "pool": "pool-v6", "cidr": "fd00:10::/120", "block_size": "124", "ipip_mode": "Never",
        "vxlan_mode": "Always", "nat_outgoing": "false", "disabled": "false",
        "usable": "true"}) == 1
    assert get("calico_ippool_info", {
        "pool": "pool-b", "cidr": "10.20.0.0/16", "block_size": "26", "ipip_mode": "Never",
        "vxlan_mode": "Never", "nat_outgoing": "false", "disabled": "false",
        "usable": "true"}) == 1
    assert get("calico_workload_endpoints", {"node": "n1"}) == 1
    assert get("calico_workload_endpoints", {"node": "n2"}) == 0
    assert get("calico_ipam_orphaned_handles", {}) == 0

    exposed = {f.name: f for f in text_string_to_metric_families(
        generate_latest(registry).decode())}
    for spec in SPECS:
        family = exposed[spec.name]
        assert (family.type, family.documentation) == (spec.type, spec.help)
        for sample in family.samples:
            assert set(sample.labels) == set(spec.labels), spec.name


def test_never_reuses_calico_names() -> None:
    """No family shares a name with kube-controllers' IPAM metrics (ipam_*)."""
    for spec in SPECS:
        assert spec.name.startswith(("calico_ippool_", "calico_ipam_", "calico_workload_"))
        assert not spec.name.startswith("ipam_")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_exposition() -> None:
    """promtool check metrics finds no problem in the IPAM exposition."""
    world = make_world()
    text = generate_latest(_registry(world.state))
    result = subprocess.run(["promtool", "check", "metrics"], input=text,
                            capture_output=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
