"""Parsing of IPPool, IPAMBlock, BlockAffinity and IPAMHandle, on upstream samples and bad data."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from exporter.model import ParseError
from exporter.model.ipam import (
    cidr_to_name,
    parse_blockaffinity,
    parse_ipamblock,
    parse_ipamhandle,
    parse_ippool,
)
from tests.ipam.ipam_reference import block, pod_attrs, pool, samples


def test_ipamblock_sample_parses_with_upstream_counts() -> None:
    """The kube-controllers /30 block: 4 addresses, 2 in use by two pods on node-1."""
    (raw,) = samples("ipamblock-kube-controllers-migration-test.yaml")
    parsed = parse_ipamblock(raw)
    assert parsed.name == "10-0-0-0-30" == cidr_to_name(raw["spec"]["cidr"])
    assert parsed.cidr == ipaddress.ip_network("10.0.0.0/30")
    assert (parsed.size, parsed.allocated, parsed.host, parsed.deleted) == (4, 2, "node-1", False)
    assert [(ordinal, o.handle, o.namespace, o.pod, o.node)
            for ordinal, o in parsed.allocations()] == [
        (0, "k8s-pod-network.abc123", "default", "nginx-abc123", "node-1"),
        (1, "k8s-pod-network.def456", "kube-system", "coredns-def456", "node-1"),
    ]
    assert str(parsed.address(1)) == "10.0.0.1"


def test_blockaffinity_samples_parse_with_calico_defaults() -> None:
    """All 7 confd affinities parse; an empty state reads as confirmed, empty deleted as false."""
    docs = samples("blockaffinities-confd-kdd-mock.yaml")
    parsed = [parse_blockaffinity(d) for d in docs]
    assert len(parsed) == 7
    assert [p.state for p in parsed] == [
        "confirmed", "pending", "confirmed", "confirmed", "confirmed", "confirmed", "confirmed"
    ]
    assert not any(p.deleted for p in parsed)
    assert [p.type for p in parsed] == ["host"] * 6 + ["virtual"]
    assert parsed[5].cidr == ipaddress.ip_network("10.2.0.1/32")


def test_ipamhandle_and_affinity_sample_parse() -> None:
    """The calicoctl migrate fixture: a tunnel handle holding one address, a string deleted."""
    handle_raw, affinity_raw = samples("ipamhandle-and-affinity-calicoctl-migrateipam-test.yaml")
    handle = parse_ipamhandle(handle_raw)
    assert handle.handle_id == "ipip-tunnel-addr-etcdNodeName"
    assert handle.name == handle.handle_id.lower()
    assert dict(handle.blocks) == {"192.168.201.0/26": 1}
    affinity = parse_blockaffinity(affinity_raw)
    assert (affinity.node, affinity.state, affinity.deleted) == ("etcdNodeName", "confirmed", False)


def test_ippool_docs_sample_parses_with_defaults() -> None:
    """The docs pool has no blockSize (26) and no vxlanMode (Never)."""
    (raw,) = samples("ippool-docs-sample.yaml")
    parsed = parse_ippool(raw)
    assert parsed.name == "my.ippool-1"
    assert (parsed.block_size, parsed.ipip_mode, parsed.vxlan_mode) == (26, "CrossSubnet", "Never")
    assert (parsed.nat_outgoing, parsed.disabled) == (True, False)
    assert parsed.allowed_uses == ("Workload", "Tunnel")
    assert (parsed.size, parsed.blocks_capacity, parsed.block_addresses) == (65536, 1024, 64)


@pytest.mark.parametrize(("cidr", "block_size", "expected"), [
    ("fd00:10:244::/64", None, 122),
    ("fd00:10:244::/64", 0, 122),
    ("10.0.0.0/16", 0, 26),
    ("10.0.0.0/26", 28, 28),
])
def test_ippool_block_size_defaults(cidr: str, block_size: int | None, expected: int) -> None:
    """A missing or zero blockSize is 26 for IPv4 and 122 for IPv6."""
    assert parse_ippool(pool("p", cidr, block_size)).block_size == expected


def test_ipv6_block_parses() -> None:
    """A /122 IPv6 block has 64 addresses and its ordinals map to IPv6 addresses."""
    raw = block("fd00:10:244::40/122", "host:n1", {3: ("h", pod_attrs("n1", "ns", "p"))})
    parsed = parse_ipamblock(raw)
    assert (parsed.size, parsed.allocated) == (64, 1)
    assert str(parsed.address(3)) == "fd00:10:244::43"


def test_virtual_and_missing_affinity() -> None:
    """virtual: affinities have no host node; a block without affinity has neither."""
    virtual = parse_ipamblock(block("10.0.0.0/30", "virtual:load-balancer", {}))
    assert (virtual.host, virtual.virtual) == ("", True)
    orphan = parse_ipamblock(block("10.0.0.4/30", None, {}))
    assert (orphan.host, orphan.virtual, orphan.affinity) == ("", False, "")


@pytest.mark.parametrize("value", [True, "true", "True", "1", "t"])
def test_deleted_objects_are_flagged(value: Any) -> None:
    """deleted: true (bool or ParseBool string) flags the object; its contents are not checked."""
    raw = block("10.0.0.0/30", "host:n1", {}, deleted=value)
    raw["spec"]["allocations"] = [0, 0, 0, 0, 0]  # would be malformed if it were live
    assert parse_ipamblock(raw).deleted
    (aff,) = samples("blockaffinities-confd-kdd-mock.yaml")[:1]
    aff["spec"]["deleted"] = value
    assert parse_blockaffinity(aff).deleted
    (handle, _) = samples("ipamhandle-and-affinity-calicoctl-migrateipam-test.yaml")
    handle["spec"]["deleted"] = value
    assert parse_ipamhandle(handle).deleted


def _broken(mutate: Any) -> dict[str, Any]:
    raw = block("10.0.0.0/30", "host:n1", {0: ("h0", pod_attrs("n1", "a", "p0")),
                                            1: ("h1", pod_attrs("n1", "a", "p1"))})
    raw = copy.deepcopy(raw)
    mutate(raw["spec"])
    return raw


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda s: s.update(cidr="10.0.0.300/30"), "not a CIDR"),
    (lambda s: s.update(cidr="10.0.0.1/30"), "not a CIDR"),
    (lambda s: s.update(cidr="not-a-cidr"), "not a CIDR"),
    (lambda s: s["allocations"].append(None), "5 entries"),
    (lambda s: s.update(allocations=s["allocations"][:3]), "3 entries"),
    (lambda s: s["allocations"].__setitem__(2, 7), "points at attribute 7"),
    (lambda s: s["allocations"].__setitem__(2, -1), "not an attribute index"),
    (lambda s: s["allocations"].__setitem__(2, True), "not an attribute index"),
    (lambda s: s["unallocated"].append(2), "not a free ordinal"),
    (lambda s: s["unallocated"].append(0), "not a free ordinal"),
    (lambda s: s["unallocated"].append(9), "not a free ordinal"),
    (lambda s: s["unallocated"].pop(), "lists 1 free ordinals"),
    (lambda s: s.update(attributes=[{"handle_id": 3}, {}]), "bad handle_id"),
    (lambda s: s.update(allocations="nope"), "not a list"),
    (lambda s: s.update(deleted="maybe"), "not a boolean"),
    (lambda s: s.pop("cidr"), "not a CIDR"),
])
def test_malformed_blocks_raise(mutate: Any, reason: str) -> None:
    """Bad CIDRs, wrong allocation lengths, dangling indexes, inconsistent unallocated: errors."""
    with pytest.raises(ParseError, match=reason):
        parse_ipamblock(_broken(mutate))


@pytest.mark.parametrize(("raw", "reason"), [
    (pool("p", "10.0.0.0/33"), "not a CIDR"),
    (pool("p", "10.0.0.0/16", 12), "outside /16../32"),
    (pool("p", "10.0.0.0/16", 33), "outside"),
    (pool("p", "10.0.0.0/16", "26"), "not an integer"),
    (pool("p", "10.0.0.0/16", natOutgoing="yes"), "not a boolean"),
    ({"metadata": {"name": "p"}}, "spec missing"),
    ({"spec": {"cidr": "10.0.0.0/16"}}, "metadata.name"),
])
def test_malformed_pools_raise(raw: dict[str, Any], reason: str) -> None:
    """Pools with bad CIDRs or block sizes outside [prefix, bits] are rejected."""
    with pytest.raises(ParseError, match=reason):
        parse_ippool(raw)


def test_malformed_affinity_and_handle_raise() -> None:
    """An affinity without node or with a bad CIDR, a handle without handleID: errors."""
    (aff,) = samples("blockaffinities-confd-kdd-mock.yaml")[:1]
    with pytest.raises(ParseError, match=r"spec\.node"):
        parse_blockaffinity({**aff, "spec": {**aff["spec"], "node": ""}})
    with pytest.raises(ParseError, match="not a CIDR"):
        parse_blockaffinity({**aff, "spec": {**aff["spec"], "cidr": "10.0.0.0/40"}})
    (handle, _) = samples("ipamhandle-and-affinity-calicoctl-migrateipam-test.yaml")
    with pytest.raises(ParseError, match="handleID"):
        parse_ipamhandle({**handle, "spec": {"block": {}}})
    with pytest.raises(ParseError, match=r"spec\.block"):
        parse_ipamhandle({**handle, "spec": {"handleID": "h", "block": {"10.0.0.0/26": "1"}}})


# The conditions kube-controllers' IP pool controller writes (projectcalico/calico master 87c1590,
# kube-controllers/pkg/controllers/ippool/pool_controller.go reconcileConditions, and the
# conditions of pool_controller_unit_test.go): type Allocatable, True/OK for an active pool,
# False with PoolDisabled, Terminating or CIDROverlap otherwise.
CONDITIONS = [
    ("True", "OK", "IPPool is available for IP allocation.", True),
    ("False", "PoolDisabled", "IPPool.Spec.Disabled is true", False),
    ("False", "Terminating", "IPPool is being deleted", False),
    ("False", "CIDROverlap",
     "CIDR overlaps another pool; disabled to prevent IP allocation conflicts.", False),
]


@pytest.mark.parametrize(("status", "reason", "message", "usable"), CONDITIONS,
                         ids=[c[1] for c in CONDITIONS])
def test_ippool_allocatable_condition(status: str, reason: str, message: str,
                                      usable: bool) -> None:
    """A v3 pool whose Allocatable condition is False is not usable (clientv3 filterIPPool on
    master skips it); True, another condition type, or no status at all means usable."""
    raw = {**pool("p", "192.168.0.0/16"), "apiVersion": "projectcalico.org/v3"}
    assert parse_ippool(raw).usable
    condition = {"type": "Allocatable", "status": status, "reason": reason, "message": message,
                 "lastTransitionTime": "2026-08-01T00:00:00Z"}
    other = {**condition, "type": "Ready", "status": "False"}
    assert parse_ippool({**raw, "status": {"conditions": [other, condition]}}).usable is usable
    assert parse_ippool({**raw, "status": {"conditions": [other]}}).usable


def test_ippool_malformed_status_raises() -> None:
    """A status or conditions of the wrong shape is an invalid object (Go would not decode it)."""
    raw = pool("p", "192.168.0.0/16")
    with pytest.raises(ParseError, match="status"):
        parse_ippool({**raw, "status": "ok"})
    with pytest.raises(ParseError, match=r"status\.conditions"):
        parse_ippool({**raw, "status": {"conditions": {"type": "Allocatable"}}})
