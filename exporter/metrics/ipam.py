"""IPAM metrics: pool, block and per-node utilization, borrowed and leaked addresses, endpoints.

``pool`` is the IPPool name (``""`` for blocks outside every pool), ``block`` the block CIDR. On the
per-node families (``calico_ipam_node_*``, borrowed, leaked) ``node`` is the allocation's ``node``
attribute (the pod's node) for address counts and the block's ``host:`` affinity node for block
counts, ``""`` when there is none; the four families share one key set, so a pair that has
allocations or blocks always shows its borrowed and leaked count, 0 included. Semantics of each
figure: :mod:`exporter.ipam.usage` and :mod:`exporter.ipam.leaks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import structlog
from prometheus_client.core import Metric

from exporter.ipam import IpamSnapshot, IpamState
from exporter.metrics.spec import MetricSpec

log = structlog.get_logger(__name__)

POOL_SIZE = MetricSpec(
    "calico_ippool_size_addresses", "gauge",
    "Addresses in the IP pool's CIDR: 2^(bits - prefix length).",
    ("pool",),
)
POOL_ALLOCATED = MetricSpec(
    "calico_ippool_allocated_addresses", "gauge",
    "Addresses in use in the IP pool's blocks (block size minus unallocated, summed as calicoctl "
    "ipam show does); pool=\"\" for blocks outside every pool.",
    ("pool",),
)
POOL_UTILIZATION = MetricSpec(
    "calico_ippool_utilization_ratio", "gauge",
    "Allocated addresses over the IP pool size, 0 to 1.",
    ("pool",),
)
POOL_BLOCKS = MetricSpec(
    "calico_ippool_blocks", "gauge",
    "IPAM blocks claimed in the IP pool; pool=\"\" for blocks outside every pool.",
    ("pool",),
)
POOL_BLOCKS_CAPACITY = MetricSpec(
    "calico_ippool_blocks_capacity", "gauge",
    "Blocks the IP pool can hold: 2^(blockSize - prefix length).",
    ("pool",),
)
POOL_INFO = MetricSpec(
    "calico_ippool_info", "gauge",
    "IP pool settings; always 1. usable is \"false\" when the pool's Allocatable condition is "
    "False (Calico's IP pool controller marks disabled, terminating and overlapping pools so "
    "with native v3 CRDs; IPAM then skips the pool).",
    ("pool", "cidr", "block_size", "ipip_mode", "vxlan_mode", "nat_outgoing", "disabled",
     "usable"),
)
BLOCK_ALLOCATED = MetricSpec(
    "calico_ipam_block_allocated_addresses", "gauge",
    "Addresses in use in the IPAM block (size minus unallocated); node is the block's host "
    "affinity, \"\" when none.",
    ("pool", "block", "node"),
)
BLOCK_SIZE = MetricSpec(
    "calico_ipam_block_size_addresses", "gauge",
    "Addresses in the IPAM block: 2^(bits - prefix length).",
    ("pool", "block", "node"),
)
NODE_ALLOCATED = MetricSpec(
    "calico_ipam_node_allocated_addresses", "gauge",
    "Allocations per node (the allocation's node attribute, \"\" when missing) and pool.",
    ("node", "pool"),
)
NODE_BLOCKS = MetricSpec(
    "calico_ipam_node_blocks", "gauge",
    "IPAM blocks with a host affinity to the node (\"\" for blocks without one), per pool.",
    ("node", "pool"),
)
BORROWED = MetricSpec(
    "calico_ipam_borrowed_addresses", "gauge",
    "Allocations for the node in blocks affine to another node or to none (virtual: blocks and "
    "allocations without a node attribute are never borrowed), per pool.",
    ("node", "pool"),
)
LEAKED = MetricSpec(
    "calico_ipam_leaked_addresses", "gauge",
    "Allocations naming a pod that has been gone, or that has held other IPs, for longer than the "
    "leak grace period; node is the allocation's node attribute.",
    ("pool", "node"),
)
ORPHANED_HANDLES = MetricSpec(
    "calico_ipam_orphaned_handles", "gauge",
    "IPAM handles that have held no address in any block for longer than the leak grace period.",
)
BLOCK_AFFINITIES = MetricSpec(
    "calico_ipam_block_affinities", "gauge",
    "BlockAffinity objects per node and state (confirmed, pending, pendingDeletion).",
    ("node", "state"),
)
WORKLOAD_ENDPOINTS = MetricSpec(
    "calico_workload_endpoints", "gauge",
    "Running, non-hostNetwork pods holding an IP inside a Calico IP pool, per node.",
    ("node",),
)

SPECS = (
    POOL_SIZE, POOL_ALLOCATED, POOL_UTILIZATION, POOL_BLOCKS, POOL_BLOCKS_CAPACITY, POOL_INFO,
    BLOCK_ALLOCATED, BLOCK_SIZE, NODE_ALLOCATED, NODE_BLOCKS, BORROWED, LEAKED, ORPHANED_HANDLES,
    BLOCK_AFFINITIES, WORKLOAD_ENDPOINTS,
)


def _bool(value: bool) -> str:
    return "true" if value else "false"


class IpamCollector:
    """Reads an :class:`IpamState` snapshot per scrape; a failing family is logged and skipped."""

    def __init__(self, state: IpamState) -> None:
        self._state = state

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self._state.snapshot()
        except Exception:
            log.exception("collect_failed", collector="ipam", family="snapshot")
            return
        families: tuple[Callable[[IpamSnapshot], Iterator[Metric]], ...] = (
            self._pools, self._blocks, self._nodes, self._other,
        )
        for family in families:
            try:
                yield from list(family(snap))
            except Exception:
                log.exception("collect_failed", collector="ipam", family=family.__name__)

    def _pools(self, snap: IpamSnapshot) -> Iterator[Metric]:
        size, allocated = POOL_SIZE.gauge(), POOL_ALLOCATED.gauge()
        utilization, blocks = POOL_UTILIZATION.gauge(), POOL_BLOCKS.gauge()
        capacity, info = POOL_BLOCKS_CAPACITY.gauge(), POOL_INFO.gauge()
        for usage in snap.usage.pools:
            name = [usage.name]
            allocated.add_metric(name, usage.allocated)
            blocks.add_metric(name, usage.blocks)
            pool = usage.pool
            if pool is None:
                continue
            size.add_metric(name, pool.size)
            utilization.add_metric(name, usage.utilization)
            capacity.add_metric(name, pool.blocks_capacity)
            info.add_metric(
                [
                    pool.name, str(pool.cidr), str(pool.block_size), pool.ipip_mode,
                    pool.vxlan_mode, _bool(pool.nat_outgoing), _bool(pool.disabled),
                    _bool(pool.usable),
                ],
                1.0,
            )
        yield from (size, allocated, utilization, blocks, capacity, info)

    def _blocks(self, snap: IpamSnapshot) -> Iterator[Metric]:
        allocated, size = BLOCK_ALLOCATED.gauge(), BLOCK_SIZE.gauge()
        # One series per block in two families: add samples directly, with one label dict
        # shared by both (add_metric would build two), the hottest loop of an IPAM scrape.
        allocated_name, size_name = allocated.name, size.name
        for block in snap.usage.blocks:
            labels = {"pool": block.pool, "block": block.cidr, "node": block.node}
            allocated.add_sample(allocated_name, labels, block.allocated)
            size.add_sample(size_name, labels, block.size)
        yield from (allocated, size)

    def _nodes(self, snap: IpamSnapshot) -> Iterator[Metric]:
        allocated, blocks = NODE_ALLOCATED.gauge(), NODE_BLOCKS.gauge()
        borrowed, leaked = BORROWED.gauge(), LEAKED.gauge()
        keys = set(snap.usage.nodes) | {(node, pool) for pool, node in snap.leaked}
        for node, pool in sorted(keys):
            figures = snap.usage.nodes.get((node, pool))
            labels = [node, pool]
            allocated.add_metric(labels, figures.allocated if figures else 0)
            blocks.add_metric(labels, figures.blocks if figures else 0)
            borrowed.add_metric(labels, figures.borrowed if figures else 0)
            leaked.add_metric([pool, node], snap.leaked.get((pool, node), 0))
        yield from (allocated, blocks, borrowed, leaked)

    def _other(self, snap: IpamSnapshot) -> Iterator[Metric]:
        orphaned = ORPHANED_HANDLES.gauge()
        orphaned.add_metric([], snap.orphaned_handles)
        affinities = BLOCK_AFFINITIES.gauge()
        for (node, state), n in sorted(snap.usage.affinities.items()):
            affinities.add_metric([node, state], n)
        endpoints = WORKLOAD_ENDPOINTS.gauge()
        nodes = set(snap.workload_endpoints) | {
            node for node, _pool in snap.usage.nodes if node
        }
        for node in sorted(nodes):
            endpoints.add_metric([node], snap.workload_endpoints.get(node, 0))
        yield from (orphaned, affinities, endpoints)
