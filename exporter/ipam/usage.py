"""Address utilization per pool, per block and per (node, pool), as upstream computes it.

Semantics (calico-model §2.5, ``calicoctl ipam show`` for the counts, the calicoctl borrowed rule):

- a block's size is ``2^(bits - prefix)``; its addresses in use are ``size - len(unallocated)``;
- a pool's size is its whole CIDR; its allocated addresses are the sum over the blocks it contains;
  its block capacity is ``2^(blockSize - prefix)``; a block in no pool is counted under pool ``""``;
- per (node, pool): ``allocated`` counts allocations by their ``node`` attribute (``""`` when the
  attribute is missing), ``blocks`` counts blocks by their ``host:`` affinity node (``""`` when the
  block has no host affinity);
- ``borrowed``: an allocation whose ``node`` attribute is set and differs from the block's host
  affinity node (a block without affinity lends every address it holds). Blocks with a
  ``virtual:`` affinity and allocations without a ``node`` attribute are never borrowed.

Each block is reduced to a :class:`BlockFacts` when its watch event arrives (a few small tuples,
not its 64 allocations) and its contribution kept in running totals, so a scrape copies a few
small dicts and one row per block. Blocks marked ``deleted`` are absent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from exporter.ipam.pools import NO_POOL, PoolIndex
from exporter.model import ObjectKey
from exporter.model.ipam import BlockAffinity, IPAMBlock, IPNetwork, IPPool

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class BlockFacts:
    """What the figures need from one block, computed once per block change."""

    cidr: IPNetwork
    cidr_text: str
    node: str
    """The ``host:`` affinity node; "" for no or a ``virtual:`` affinity."""
    size: int
    allocated: int
    by_node: tuple[tuple[str, int], ...]
    """Allocations per ``node`` attribute ("" when missing)."""
    borrowed: tuple[tuple[str, int], ...]
    """Borrowed allocations per borrowing (``node`` attribute) node; only non-zero entries."""


def block_facts(block: IPAMBlock) -> BlockFacts:
    """Reduce a block to its counts, applying the borrowed rule of the module docstring."""
    host = block.host
    lends = not block.virtual
    by_node: Counter[str] = Counter()
    borrowed: Counter[str] = Counter()
    for owner in block.owners:
        node = owner.node
        by_node[node] += 1
        if lends and node and node != host:
            borrowed[node] += 1
    return BlockFacts(
        cidr=block.cidr,
        cidr_text=str(block.cidr),
        node=host,
        size=block.size,
        allocated=block.allocated,
        by_node=tuple(sorted(by_node.items())),
        borrowed=tuple(sorted(borrowed.items())),
    )


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """One pool's figures; ``pool`` is None for the pseudo-pool of blocks outside every pool."""

    name: str
    pool: IPPool | None
    allocated: int
    blocks: int

    @property
    def size(self) -> int:
        return self.pool.size if self.pool is not None else 0

    @property
    def utilization(self) -> float:
        """Allocated addresses over the pool size, 0..1 (0 for the pseudo-pool)."""
        return self.allocated / self.size if self.size else 0.0


@dataclass(frozen=True, slots=True)
class BlockUsage:
    """One block's figures and the pool it belongs to."""

    pool: str
    cidr: str
    node: str
    allocated: int
    size: int


@dataclass(slots=True)
class NodeUsage:
    """Figures of one (node, pool) pair."""

    allocated: int = 0
    blocks: int = 0
    borrowed: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Everything the utilization metrics show, for one scrape."""

    pools: tuple[PoolUsage, ...]
    blocks: tuple[BlockUsage, ...]
    nodes: dict[tuple[str, str], NodeUsage] = field(default_factory=dict)
    """(node, pool) -> figures."""
    affinities: dict[tuple[str, str], int] = field(default_factory=dict)
    """(node, state) -> BlockAffinity objects."""


class UsageIndex:
    """Running totals kept exact by the IPAMBlock, BlockAffinity and IPPool subscriptions.

    A block event subtracts the block's old contribution and adds its new one; a pool change
    (rare) re-resolves every block's pool and rebuilds the totals. A scrape copies the totals.
    """

    __slots__ = ("_affinities", "_affinity_of", "_blocks", "_logged_orphans", "_nodes",
                 "_orphans", "_pool_allocated", "_pool_blocks", "_pools", "_pools_synced", "_rows")

    def __init__(self, pools: PoolIndex, *, pools_synced: Callable[[], bool] = lambda: True
                 ) -> None:
        self._pools = pools
        self._pools_synced = pools_synced
        """Whether the IPPool store holds a full LIST: until then an orphan is not worth a log."""
        self._blocks: dict[ObjectKey, BlockFacts] = {}
        self._rows: dict[ObjectKey, BlockUsage] = {}
        """Each live block's figures with its pool."""
        self._pool_allocated: Counter[str] = Counter()
        self._pool_blocks: Counter[str] = Counter()
        self._nodes: dict[tuple[str, str], NodeUsage] = {}
        self._orphans: dict[ObjectKey, BlockFacts] = {}
        """Live blocks in no pool."""
        self._logged_orphans: set[str] = set()
        self._affinity_of: dict[ObjectKey, tuple[str, str]] = {}
        self._affinities: Counter[tuple[str, str]] = Counter()
        pools.on_change(self._rebuild)

    def on_block(self, key: ObjectKey, old: IPAMBlock | None, new: IPAMBlock | None) -> None:
        """Store subscriber for the IPAMBlock store."""
        facts = self._blocks.pop(key, None)
        if facts is not None:
            self._apply(self._rows.pop(key).pool, facts, -1)
            self._orphans.pop(key, None)
            if new is None or new.deleted or new.cidr != facts.cidr:
                self._logged_orphans.discard(facts.cidr_text)
        if new is not None and not new.deleted:
            self._add(key, block_facts(new))

    def on_affinity(
        self, key: ObjectKey, old: BlockAffinity | None, new: BlockAffinity | None
    ) -> None:
        """Store subscriber for the BlockAffinity store."""
        previous = self._affinity_of.pop(key, None)
        if previous is not None:
            self._affinities[previous] -= 1
            if not self._affinities[previous]:
                del self._affinities[previous]
        if new is not None and not new.deleted:
            current = (new.node, new.state)
            self._affinity_of[key] = current
            self._affinities[current] += 1

    def usage(self) -> Usage:
        """The current figures (copies: later events do not change them)."""
        if self._orphans and self._pools_synced():
            for facts in self._orphans.values():
                if facts.cidr_text not in self._logged_orphans:
                    self._logged_orphans.add(facts.cidr_text)
                    log.warning("ipam_block_outside_pools", block=facts.cidr_text,
                                node=facts.node)
        pools = [
            PoolUsage(p.name, p, self._pool_allocated[p.name], self._pool_blocks[p.name])
            for p in sorted(self._pools.pools(), key=lambda p: p.name)
        ]
        if self._pool_blocks[NO_POOL]:
            pools.append(PoolUsage(
                NO_POOL, None, self._pool_allocated[NO_POOL], self._pool_blocks[NO_POOL]
            ))
        nodes = {k: NodeUsage(v.allocated, v.blocks, v.borrowed) for k, v in self._nodes.items()}
        return Usage(tuple(pools), tuple(self._rows.values()), nodes, dict(self._affinities))

    def _add(self, key: ObjectKey, facts: BlockFacts) -> None:
        pool = self._pools.pool_of_block(facts.cidr)
        if pool == NO_POOL:
            self._orphans[key] = facts
        self._blocks[key] = facts
        self._rows[key] = BlockUsage(pool, facts.cidr_text, facts.node, facts.allocated,
                                     facts.size)
        self._apply(pool, facts, 1)

    def _apply(self, pool: str, facts: BlockFacts, sign: int) -> None:
        """Add (sign 1) or remove (sign -1) one block's contribution to the totals."""
        self._pool_allocated[pool] += sign * facts.allocated
        self._pool_blocks[pool] += sign
        if not self._pool_blocks[pool]:
            del self._pool_blocks[pool], self._pool_allocated[pool]
        touched = [(facts.node, pool)]
        self._node(facts.node, pool).blocks += sign
        for node, n in facts.by_node:
            self._node(node, pool).allocated += sign * n
            touched.append((node, pool))
        for node, n in facts.borrowed:
            self._node(node, pool).borrowed += sign * n
        if sign < 0:
            for k in touched:
                entry = self._nodes.get(k)
                if entry is not None and not (entry.allocated or entry.blocks or entry.borrowed):
                    del self._nodes[k]

    def _node(self, node: str, pool: str) -> NodeUsage:
        entry = self._nodes.get((node, pool))
        if entry is None:
            entry = self._nodes[(node, pool)] = NodeUsage()
        return entry

    def _rebuild(self) -> None:
        """After a pool change: re-resolve every block's pool and recompute the totals."""
        blocks = list(self._blocks.items())
        self._blocks.clear()
        self._rows.clear()
        self._pool_allocated.clear()
        self._pool_blocks.clear()
        self._nodes.clear()
        self._orphans.clear()
        for key, facts in blocks:
            self._add(key, facts)
