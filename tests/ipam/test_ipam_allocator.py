"""The simulated cluster's Calico-like IPAM, against the real emulator's in-process API."""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Any

import pytest

from exporter.model.ipam import parse_blockaffinity, parse_ipamblock, parse_ipamhandle
from exporter.sim.apiserver import ApiServer
from exporter.sim.ipam import (
    IpamAllocator,
    IpamError,
    IpamExhausted,
    affinity_name,
    hostname_hash,
)
from tests.ipam.ipam_reference import reference, samples

CALICO = "crd.projectcalico.org/v1"


def _api(*pools: dict[str, Any]) -> ApiServer:
    api = ApiServer()
    for spec in pools:
        name = spec.pop("name")
        api.create({"apiVersion": CALICO, "kind": "IPPool", "metadata": {"name": name},
                    "spec": spec})
    return api


def _small_pool(**extra: Any) -> dict[str, Any]:
    """A /26 pool of four /28 blocks."""
    return {"name": "small", "cidr": "10.30.0.0/26", "blockSize": 28, **extra}


def _blocks(api: ApiServer) -> dict[str, dict[str, Any]]:
    return {b["spec"]["cidr"]: b for b in api.list("ipamblocks")}


def _fill(ipam: IpamAllocator, node: str, count: int, *, prefix: str = "p",
          versions: tuple[int, ...] = (4,)) -> list[list[str]]:
    return [
        ipam.assign(namespace="ns", pod=f"{prefix}-{node}-{i}", node=node,
                    container_id=f"{prefix}{node}{i}", ip_versions=versions)
        for i in range(count)
    ]


def _owner_of(api: ApiServer, ip: str) -> tuple[str, dict[str, Any]]:
    """(block affinity, attributes) of an allocated address, read from the raw blocks."""
    address = ipaddress.ip_address(ip)
    for b in api.list("ipamblocks"):
        net = ipaddress.ip_network(b["spec"]["cidr"])
        if address in net:
            index = b["spec"]["allocations"][int(address) - int(net.network_address)]
            assert index is not None, f"{ip} is not allocated"
            return b["spec"].get("affinity", ""), b["spec"]["attributes"][index]
    raise AssertionError(f"{ip} is in no block")


def test_first_pod_claims_a_block_with_affinity_and_handle() -> None:
    """The first pod on a node claims a block: IPAMBlock, confirmed BlockAffinity, IPAMHandle."""
    api = _api(_small_pool())
    ipam = IpamAllocator(api)
    (ip,) = ipam.assign(namespace="web", pod="front-1", node="node-a", container_id="abc")
    (cidr, raw), = _blocks(api).items()
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    assert raw["metadata"]["name"] == cidr.replace(".", "-").replace("/", "-")
    block = parse_ipamblock(raw)
    assert (block.host, block.size, block.allocated) == ("node-a", 16, 1)
    owner = block.owners[0]
    assert (owner.handle, owner.node, owner.namespace, owner.pod) == (
        "k8s-pod-network.abc", "node-a", "web", "front-1")
    assert raw["spec"]["attributes"][0]["secondary"]["timestamp"].endswith(" +0000 UTC")
    (aff_raw,) = api.list("blockaffinities")
    affinity = parse_blockaffinity(aff_raw)
    assert (affinity.node, affinity.state, affinity.deleted) == ("node-a", "confirmed", False)
    assert aff_raw["spec"]["deleted"] == "false"
    meta = aff_raw["metadata"]
    assert meta["name"] == affinity_name("node-a", cidr) == f"node-a-{raw['metadata']['name']}"
    assert meta["labels"]["projectcalico.org/hostname-hash"] == hostname_hash("node-a")
    (handle_raw,) = api.list("ipamhandles")
    handle = parse_ipamhandle(handle_raw)
    assert (handle.handle_id, dict(handle.blocks)) == ("k8s-pod-network.abc", {cidr: 1})
    assert ipam.handle_of("web", "front-1") == "k8s-pod-network.abc"


def test_fill_then_second_block_then_borrow_then_exhausted() -> None:
    """Affine block first, another block when full, borrow when the pool has no free block."""
    api = _api(_small_pool())
    ipam = IpamAllocator(api)
    a_ips = _fill(ipam, "node-a", 17)
    a_blocks = {c for c, b in _blocks(api).items() if b["spec"]["affinity"] == "host:node-a"}
    assert len(a_blocks) == 2  # 16 + 1
    _fill(ipam, "node-b", 20)  # claims the last two blocks
    assert len(_blocks(api)) == 4
    # node-c finds no free block: it borrows, from a block affine to another node
    (c_ip,) = _fill(ipam, "node-c", 1)[0]
    affinity, attrs = _owner_of(api, c_ip)
    assert affinity in ("host:node-a", "host:node-b")
    assert attrs["secondary"]["node"] == "node-c"
    assert not any(
        a["spec"]["node"] == "node-c" for a in api.list("blockaffinities"))
    # the remaining 64 - 17 - 20 - 1 = 26 addresses are all borrowable, then it is over
    _fill(ipam, "node-c", 26, prefix="q")
    with pytest.raises(IpamExhausted, match="no free address"):
        _fill(ipam, "node-c", 1, prefix="r")
    assert len(set(a_ips[0]) | {c_ip}) == 2
    figures = reference(api.list("ippools"), api.list("ipamblocks"))
    assert figures.pool_allocated["small"] == 64
    assert figures.borrowed[("node-c", "small")] == 27


def test_strict_affinity_never_borrows() -> None:
    """With strictAffinity a node without a free block of its own gets IpamExhausted."""
    api = _api(_small_pool())
    ipam = IpamAllocator(api, strict_affinity=True)
    for node in ("n1", "n2", "n3", "n4"):
        _fill(ipam, node, 1)
    with pytest.raises(IpamExhausted, match="strictAffinity"):
        _fill(ipam, "n5", 1)


def test_release_frees_the_ordinal_compacts_attributes_and_deletes_the_handle() -> None:
    """release() frees the address (appended to unallocated), drops the attribute and handle."""
    api = _api(_small_pool())
    ipam = IpamAllocator(api)
    ips = _fill(ipam, "node-a", 3)
    before = _blocks(api)
    (cidr,) = before
    ipam.release(namespace="ns", pod="p-node-a-0")
    spec = _blocks(api)[cidr]["spec"]
    net = ipaddress.ip_network(cidr)
    ordinal = int(ipaddress.ip_address(ips[0][0])) - int(net.network_address)
    assert spec["allocations"][ordinal] is None
    assert spec["unallocated"][-1] == ordinal
    assert [a["secondary"]["pod"] for a in spec["attributes"]] == ["p-node-a-1", "p-node-a-2"]
    assert parse_ipamblock(_blocks(api)[cidr]).allocated == 2
    assert spec["sequenceNumber"] > before[cidr]["spec"]["sequenceNumber"]
    handles = {h["metadata"]["name"] for h in api.list("ipamhandles")}
    assert "k8s-pod-network.pnode-a0" not in handles
    assert ipam.handle_of("ns", "p-node-a-0") is None
    ipam.release(namespace="ns", pod="p-node-a-0")  # a second CNI DEL is a no-op
    # the freed ordinal is handed out last
    nxt = _fill(ipam, "node-a", 1, prefix="z")[0][0]
    assert nxt != ips[0][0]


def test_leak_keeps_the_allocation() -> None:
    """leak() forgets the pod but its address, attribute and handle stay allocated."""
    api = _api(_small_pool())
    ipam = IpamAllocator(api)
    ((ip,),) = _fill(ipam, "node-a", 1)
    ipam.leak(namespace="ns", pod="p-node-a-0")
    ipam.release(namespace="ns", pod="p-node-a-0")  # nothing left to release for that pod
    _, attrs = _owner_of(api, ip)
    assert attrs["secondary"]["pod"] == "p-node-a-0"
    assert [h["spec"]["handleID"] for h in api.list("ipamhandles")] == ["k8s-pod-network.pnode-a0"]
    ipam.release_handle("k8s-pod-network.pnode-a0")  # what Calico's GC would do
    assert api.list("ipamhandles") == []
    assert parse_ipamblock(api.list("ipamblocks")[0]).allocated == 0


def test_requested_addresses_claim_or_borrow_like_assign_ip() -> None:
    """Fixed IPs claim their block for the node, or are taken in another node's block."""
    api = _api({"name": "default", "cidr": "172.20.0.0/16", "blockSize": 26})
    ipam = IpamAllocator(api)
    ipam.claim_block(node="worker-1", cidr="172.20.116.128/26")
    ipam.claim_block(node="worker-1", cidr="172.20.116.128/26")  # idempotent
    assert ipam.assign(namespace="a", pod="x", node="worker-1", container_id="1",
                       requested=("172.20.116.140",)) == ["172.20.116.140"]
    assert ipam.assign(namespace="a", pod="y", node="worker-0", container_id="2",
                       requested=("172.20.188.73",)) == ["172.20.188.73"]
    assert _blocks(api)["172.20.188.64/26"]["spec"]["affinity"] == "host:worker-0"
    # worker-0 asks for an address in worker-1's block: it is borrowed
    ipam.assign(namespace="a", pod="z", node="worker-0", container_id="3",
                requested=("172.20.116.129",))
    assert _owner_of(api, "172.20.116.129")[0] == "host:worker-1"
    with pytest.raises(IpamError, match="already allocated"):
        ipam.assign(namespace="a", pod="w", node="worker-0", container_id="4",
                    requested=("172.20.116.140",))
    with pytest.raises(IpamError, match="not in any IP pool"):
        ipam.assign(namespace="a", pod="v", node="worker-0", container_id="5",
                    requested=("10.0.0.1",))
    with pytest.raises(IpamError, match="already claimed"):
        ipam.claim_block(node="worker-0", cidr="172.20.116.128/26")
    with pytest.raises(IpamError, match="not a block"):
        ipam.claim_block(node="worker-0", cidr="172.20.1.0/24")


def test_dual_stack_assigns_one_address_per_family_and_rolls_back() -> None:
    """ip_versions (4, 6) gives one address of each; a failure in the second frees the first."""
    api = _api({"name": "v4", "cidr": "10.244.0.0/16"},
               {"name": "v6", "cidr": "fd00:10:244::/124", "blockSize": 124})
    ipam = IpamAllocator(api)
    v4, v6 = ipam.assign(namespace="a", pod="p", node="n1", container_id="c",
                         ip_versions=(4, 6))
    assert ipaddress.ip_address(v4).version == 4
    assert ipaddress.ip_address(v6).version == 6
    (handle,) = api.list("ipamhandles")
    assert len(handle["spec"]["block"]) == 2
    _fill(ipam, "n1", 15, versions=(6,))  # the single /124 v6 block is now full
    with pytest.raises(IpamExhausted, match="IPv6"):
        ipam.assign(namespace="a", pod="q", node="n1", container_id="d", ip_versions=(4, 6))
    assert ipam.handle_of("a", "q") is None
    v4_blocks = [b for b in api.list("ipamblocks") if ":" not in b["spec"]["cidr"]]
    assert sum(parse_ipamblock(b).allocated for b in v4_blocks) == 1  # only pod p's address
    ipam.release(namespace="a", pod="p")
    assert sum(parse_ipamblock(b).allocated for b in api.list("ipamblocks")) == 15


def test_pool_eligibility() -> None:
    """Disabled, manual-only and !all() pools and the wrong allowedUses are not auto-assigned."""
    api = _api(
        {"name": "a-disabled", "cidr": "10.1.0.0/24", "disabled": True},
        {"name": "b-manual", "cidr": "10.2.0.0/24", "nodeSelector": "!all()"},
        {"name": "c-tunnel", "cidr": "10.3.0.0/24", "allowedUses": ["Tunnel"]},
        {"name": "d-manual-mode", "cidr": "10.4.0.0/24", "assignmentMode": "Manual"},
        {"name": "e-ok", "cidr": "10.5.0.0/24", "allowedUses": ["Workload"]},
    )
    ipam = IpamAllocator(api)
    ((ip,),) = _fill(ipam, "n1", 1)
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.5.0.0/24")
    tunnel = ipam.assign_tunnel(node="n1", kind="vxlan")
    assert ipaddress.ip_address(tunnel) in ipaddress.ip_network("10.3.0.0/24")
    affinity, attrs = _owner_of(api, tunnel)
    assert affinity == "host:n1"
    assert attrs == {"handle_id": "vxlan-tunnel-addr-n1",
                     "secondary": {"node": "n1", "type": "vxlanTunnelAddress"}}
    ipam.release_tunnel(node="n1", kind="vxlan")
    assert _owner_of(api, ip)[1]["secondary"]["pod"] == "p-n1-0"
    with pytest.raises(IpamError, match="unknown tunnel"):
        ipam.assign_tunnel(node="n1", kind="gre")


def test_nodes_start_at_different_blocks() -> None:
    """Each node's first block comes from a start point hashed from its name."""
    api = _api({"name": "big", "cidr": "10.0.0.0/16"})
    ipam = IpamAllocator(api)
    for node in ("alpha", "beta", "gamma", "delta"):
        _fill(ipam, node, 1)
    owners = Counter(b["spec"]["affinity"] for b in api.list("ipamblocks"))
    assert owners == {f"host:{n}": 1 for n in ("alpha", "beta", "gamma", "delta")}
    assert len({b["spec"]["cidr"] for b in api.list("ipamblocks")}) == 4


def test_long_node_names_give_valid_affinity_names() -> None:
    """A BlockAffinity name stays under 253 characters with a hash suffix, as Calico does."""
    node = "n" * 250
    name = affinity_name(node, "10.0.0.0/26")
    assert len(name) < 253
    assert name.startswith("n" * 10)
    assert "-10-0-0-0-26-" in name
    assert affinity_name(node, "10.0.0.0/26") != affinity_name("n" * 249 + "m", "10.0.0.0/26")


def test_hostname_hash_matches_the_upstream_fixture() -> None:
    """The hostname-hash label equals the one computed for Calico's migrate-IPAM fixture."""
    (_, affinity) = samples("ipamhandle-and-affinity-calicoctl-migrateipam-test.yaml")
    labels = affinity["metadata"]["labels"]
    assert hostname_hash(affinity["spec"]["node"]) == labels["projectcalico.org/hostname-hash"]
    assert affinity_name("etcdNodeName", "192.168.201.0/26") == affinity["metadata"]["name"]


def test_malformed_block_in_the_api_is_skipped() -> None:
    """A block Calico could not parse (bad CIDR) does not stop assignment from the pool."""
    api = _api(_small_pool())
    api.create({"apiVersion": CALICO, "kind": "IPAMBlock", "metadata": {"name": "bad"},
                "spec": {"cidr": "10.30.0.300/28", "allocations": [], "unallocated": [],
                         "attributes": [], "strictAffinity": False}})
    ((ip,),) = _fill(IpamAllocator(api), "n1", 1)
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.30.0.0/26")


def test_timestamp_attribute_is_go_time_string() -> None:
    """The timestamp attribute reads like Go's time.Time.String() in UTC (zeros trimmed)."""
    api = _api(_small_pool())
    ipam = IpamAllocator(api, clock=lambda: 1_700_000_000.5)
    ((ip,),) = _fill(ipam, "n1", 1)
    assert _owner_of(api, ip)[1]["secondary"]["timestamp"] == "2023-11-14 22:13:20.5 +0000 UTC"
