"""Test helpers: raw Calico IPAM objects, and a straightforward reference computation over them.

The reference reads only raw dicts (as the API serves them) and recomputes every figure the
exporter exports, with plain loops, so tests compare the exporter against an independent count.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).parent / "data"
CALICO = "crd.projectcalico.org/v1"


def samples(filename: str) -> list[dict[str, Any]]:
    """The YAML documents of a sample file under tests/ipam/data."""
    return [doc for doc in yaml.safe_load_all((DATA / filename).read_text()) if doc]


def pool(name: str, cidr: str, block_size: int | None = None, **spec: Any) -> dict[str, Any]:
    """A raw IPPool."""
    body: dict[str, Any] = {"cidr": cidr, **spec}
    if block_size is not None:
        body["blockSize"] = block_size
    return {"apiVersion": CALICO, "kind": "IPPool", "metadata": {"name": name}, "spec": body}


def block(
    cidr: str,
    affinity: str | None,
    allocations: dict[int, tuple[str, dict[str, str]]],
    **extra: Any,
) -> dict[str, Any]:
    """A raw, consistent IPAMBlock: ``allocations`` maps ordinal -> (handle, secondary attrs)."""
    net = ipaddress.ip_network(cidr)
    size = 2 ** (net.max_prefixlen - net.prefixlen)
    attributes: list[dict[str, Any]] = []
    slots: list[int | None] = [None] * size
    for ordinal, (handle, secondary) in sorted(allocations.items()):
        entry = {"handle_id": handle, "secondary": secondary}
        if entry not in attributes:
            attributes.append(entry)
        slots[ordinal] = attributes.index(entry)
    spec: dict[str, Any] = {
        "cidr": cidr,
        "allocations": slots,
        "unallocated": [i for i in range(size) if slots[i] is None],
        "attributes": attributes,
        "strictAffinity": False,
        **extra,
    }
    if affinity is not None:
        spec["affinity"] = affinity
    name = cidr.replace(".", "-").replace(":", "-").replace("/", "-")
    return {"apiVersion": CALICO, "kind": "IPAMBlock", "metadata": {"name": name}, "spec": spec}


def pod_attrs(node: str, namespace: str, pod: str) -> dict[str, str]:
    return {"node": node, "namespace": namespace, "pod": pod,
            "timestamp": "2026-01-01 00:00:00.000000000 +0000 UTC"}


@dataclass
class Reference:
    """Every figure, recomputed from raw objects."""

    pool_size: dict[str, int] = field(default_factory=dict)
    pool_allocated: Counter[str] = field(default_factory=Counter)
    pool_blocks: Counter[str] = field(default_factory=Counter)
    pool_capacity: dict[str, int] = field(default_factory=dict)
    block_allocated: dict[tuple[str, str, str], int] = field(default_factory=dict)
    block_size: dict[tuple[str, str, str], int] = field(default_factory=dict)
    node_allocated: Counter[tuple[str, str]] = field(default_factory=Counter)
    node_blocks: Counter[tuple[str, str]] = field(default_factory=Counter)
    borrowed: Counter[tuple[str, str]] = field(default_factory=Counter)


def reference(pools: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> Reference:
    """Recompute the IPAM figures from raw IPPools and IPAMBlocks (deleted blocks skipped)."""
    ref = Reference()
    nets = []
    for p in pools:
        net = ipaddress.ip_network(p["spec"]["cidr"])
        bs = p["spec"].get("blockSize") or (26 if net.version == 4 else 122)
        nets.append((p["metadata"]["name"], net))
        ref.pool_size[p["metadata"]["name"]] = 2 ** (net.max_prefixlen - net.prefixlen)
        ref.pool_capacity[p["metadata"]["name"]] = 2 ** (bs - net.prefixlen)
    for b in blocks:
        spec = b["spec"]
        if spec.get("deleted") in (True, "true"):
            continue
        net = ipaddress.ip_network(spec["cidr"])
        size = 2 ** (net.max_prefixlen - net.prefixlen)
        used = size - len(spec["unallocated"])
        affinity = spec.get("affinity") or ""
        owner = affinity[len("host:"):] if affinity.startswith("host:") else ""
        virtual = affinity.startswith("virtual:")
        containing = [
            (name, pnet) for name, pnet in nets
            if pnet.version == net.version
            and int(pnet.network_address) <= int(net.network_address)
            and int(net.broadcast_address) <= int(pnet.broadcast_address)
        ]
        containing.sort(key=lambda item: (-item[1].prefixlen, item[0]))
        pool_name = containing[0][0] if containing else ""
        ref.pool_allocated[pool_name] += used
        ref.pool_blocks[pool_name] += 1
        ref.block_allocated[(pool_name, spec["cidr"], owner)] = used
        ref.block_size[(pool_name, spec["cidr"], owner)] = size
        ref.node_blocks[(owner, pool_name)] += 1
        for index in spec["allocations"]:
            if index is None:
                continue
            node = (spec["attributes"][index].get("secondary") or {}).get("node", "")
            ref.node_allocated[(node, pool_name)] += 1
            if node and not virtual and node != owner:
                ref.borrowed[(node, pool_name)] += 1
    return ref
