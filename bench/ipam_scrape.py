"""IPAM scrape cost at scale: 1,000 /26 blocks and 30,000 pods, in memory, no API server.

Builds raw IPPool/IPAMBlock/BlockAffinity/IPAMHandle/Pod objects, parses them into real stores,
wires the IPAM state (``wire_ipam``), then times ``IpamCollector.collect()`` and the full text
exposition (``generate_latest``) over many scrapes, and the cost of single watch events (a block
allocation, a pod update). Prints one JSON line::

    .venv/bin/python -m bench.ipam_scrape [--blocks 1000] [--pods 30000] [--scrapes 200]

About 3% of the pods sit on borrowed addresses and 0.5% of the allocations are leaked (their pod
is gone), so every family has series and the leak tracker has suspects.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import statistics
import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from exporter.config import IpamSettings
from exporter.ipam import wire_ipam
from exporter.kube.store import Store
from exporter.metrics.ipam import IpamCollector
from exporter.model import object_key
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

CALICO = "crd.projectcalico.org/v1"
POOL = ipaddress.ip_network("172.16.0.0/12")
BLOCK_ADDRESSES = 64


def _block(j: int, node: str, pods: list[tuple[int, str, str, str]]) -> dict[str, Any]:
    """Block j affine to ``node`` with (ordinal, pod node, namespace, pod) allocations."""
    base = int(POOL.network_address) + j * BLOCK_ADDRESSES
    cidr = f"{ipaddress.IPv4Address(base)}/26"
    allocations: list[int | None] = [None] * BLOCK_ADDRESSES
    attributes = []
    for ordinal, pod_node, namespace, pod in pods:
        allocations[ordinal] = len(attributes)
        attributes.append({"handle_id": f"k8s-pod-network.{namespace}-{pod}", "secondary": {
            "node": pod_node, "namespace": namespace, "pod": pod,
            "timestamp": "2026-11-01 00:00:00.000000000 +0000 UTC"}})
    return {"apiVersion": CALICO, "kind": "IPAMBlock",
            "metadata": {"name": cidr.replace(".", "-").replace("/", "-")},
            "spec": {"cidr": cidr, "affinity": f"host:{node}", "allocations": allocations,
                     "unallocated": [i for i, a in enumerate(allocations) if a is None],
                     "attributes": attributes, "strictAffinity": False}}


def build(blocks: int, pods: int, nodes: int) -> dict[str, list[dict[str, Any]]]:
    """Raw objects of a cluster: pods spread over the blocks, a few borrowed, a few leaked."""
    per_block: dict[int, list[tuple[int, str, str, str]]] = {j: [] for j in range(blocks)}
    raw_pods = []
    for k in range(pods):
        j, ordinal = k % blocks, k // blocks
        owner = f"node-{j % nodes:04d}"
        pod_node = f"node-{(j + 1) % nodes:04d}" if k % 33 == 0 else owner  # ~3% borrowed
        namespace, name = f"ns-{k // 100:04d}", f"pod-{k:05d}"
        per_block[j].append((ordinal, pod_node, namespace, name))
        ip = str(ipaddress.IPv4Address(int(POOL.network_address) + j * BLOCK_ADDRESSES + ordinal))
        if k % 200 != 7:  # ~0.5% leaked: allocated, pod gone
            raw_pods.append({"metadata": {"namespace": namespace, "name": name, "uid": str(k)},
                             "spec": {"nodeName": pod_node},
                             "status": {"phase": "Running", "podIP": ip,
                                        "podIPs": [{"ip": ip}]}})
    raw_blocks = [_block(j, f"node-{j % nodes:04d}", per_block[j]) for j in range(blocks)]
    affinities = [
        {"metadata": {"name": f"node-{j % nodes:04d}-{b['metadata']['name']}"},
         "spec": {"node": f"node-{j % nodes:04d}", "cidr": b["spec"]["cidr"],
                  "state": "confirmed", "deleted": "false"}}
        for j, b in enumerate(raw_blocks)
    ]
    handles = [
        {"metadata": {"name": a["handle_id"].lower()},
         "spec": {"handleID": a["handle_id"], "block": {b["spec"]["cidr"]: 1}}}
        for b in raw_blocks for a in b["spec"]["attributes"]
    ]
    pools = [{"metadata": {"name": "default-ipv4-ippool"},
              "spec": {"cidr": str(POOL), "blockSize": 26, "natOutgoing": True}}]
    return {"pools": pools, "blocks": raw_blocks, "affinities": affinities,
            "handles": handles, "pods": raw_pods}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class _Loaded:
    """The stores and IPAM state of a built cluster."""

    def __init__(self, raw: dict[str, list[dict[str, Any]]]) -> None:
        self.ippools: Store[IPPool] = Store("ippools")
        self.ipamblocks: Store[IPAMBlock] = Store("ipamblocks")
        self.affinities: Store[BlockAffinity] = Store("blockaffinities")
        self.handles: Store[IPAMHandle] = Store("ipamhandles")
        self.pods: Store[Pod] = Store("pods")
        self.state = wire_ipam(
            ippools=self.ippools, ipamblocks=self.ipamblocks, blockaffinities=self.affinities,
            ipamhandles=self.handles, pods=self.pods, settings=IpamSettings(),
        )
        for obj in raw["pools"]:
            self.ippools.upsert(object_key(obj), parse_ippool(obj))
        for obj in raw["pods"]:
            self.pods.upsert(object_key(obj), parse_pod(obj))
        for obj in raw["affinities"]:
            self.affinities.upsert(object_key(obj), parse_blockaffinity(obj))
        for obj in raw["handles"]:
            self.handles.upsert(object_key(obj), parse_ipamhandle(obj))
        for obj in raw["blocks"]:
            self.ipamblocks.upsert(object_key(obj), parse_ipamblock(obj))


class _FullGcTimer:
    """Durations of Python's full (generation 2) garbage collections while installed."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.ms.append((time.perf_counter() - self._started) * 1000)


def run(*, blocks: int, pods: int, nodes: int, scrapes: int, freeze: bool = False
        ) -> dict[str, Any]:
    """Build, load, then time scrapes and single events; returns the JSON-able result."""
    raw = build(blocks, pods, nodes)
    started = time.perf_counter()
    loaded = _Loaded(raw)
    load_s = time.perf_counter() - started
    # Keep only what the event timings rewrite: the exporter holds parsed objects, never the
    # raw JSON, and a bigger heap makes Python's full GC passes (and so the p99) slower.
    event_blocks, event_pods = raw["blocks"][:200], raw["pods"][:2000]
    del raw
    gc.collect()
    if freeze:
        gc.freeze()
    full_gc = _FullGcTimer()
    gc.callbacks.append(full_gc)
    try:
        collector = IpamCollector(loaded.state)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        series = sum(len(m.samples) for m in collector.collect())
        collect_ms: list[float] = []
        scrape_ms: list[float] = []
        for _ in range(scrapes):
            t0 = time.perf_counter()
            list(collector.collect())
            t1 = time.perf_counter()
            generate_latest(registry)
            t2 = time.perf_counter()
            collect_ms.append((t1 - t0) * 1000)
            scrape_ms.append((t2 - t0) * 1000)

        # single watch events: one more allocation in a block, one pod status change
        block_us: list[float] = []
        for obj in event_blocks:
            spec = obj["spec"]
            spec["allocations"][spec["unallocated"][0]] = 0
            spec["unallocated"] = spec["unallocated"][1:]
            t0 = time.perf_counter()
            loaded.ipamblocks.upsert(object_key(obj), parse_ipamblock(obj))
            block_us.append((time.perf_counter() - t0) * 1e6)
        pod_us: list[float] = []
        for obj in event_pods:
            obj["status"]["phase"] = "Succeeded"
            t0 = time.perf_counter()
            loaded.pods.upsert(object_key(obj), parse_pod(obj))
            pod_us.append((time.perf_counter() - t0) * 1e6)
    finally:
        gc.callbacks.remove(full_gc)
        gc.unfreeze()
    return {
        "bench": "ipam_scrape",
        "blocks": blocks,
        "pods": pods,
        "nodes": nodes,
        "series": series,
        "suspect_allocations": loaded.state.leaks.suspects(),
        "load_s": round(load_s, 3),
        "collect_ms_p50": round(statistics.median(collect_ms), 3),
        "collect_ms_p99": round(_percentile(collect_ms, 0.99), 3),
        "scrape_ms_p50": round(statistics.median(scrape_ms), 3),
        "scrape_ms_p99": round(_percentile(scrape_ms, 0.99), 3),
        "block_event_us_p50": round(statistics.median(block_us), 1),
        "pod_event_us_p50": round(statistics.median(pod_us), 1),
        "full_gc_passes": len(full_gc.ms),
        "full_gc_ms_max": round(max(full_gc.ms, default=0.0), 1),
        "gc_frozen": freeze,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=30000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--freeze", action="store_true",
                        help="gc.freeze() after loading, as a process can after its first sync")
    args = parser.parse_args(argv)
    if args.pods > args.blocks * BLOCK_ADDRESSES:
        parser.error("more pods than addresses")
    print(json.dumps(run(blocks=args.blocks, pods=args.pods, nodes=args.nodes,
                         scrapes=args.scrapes, freeze=args.freeze)))


if __name__ == "__main__":
    main()
