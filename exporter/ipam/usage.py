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
not its 64 allocations); a scrape only adds those up, which stays in the low milliseconds at
thousands of blocks. Blocks marked ``deleted`` are absent.
"""

from __future__ import annotations

from collections import Counter
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
    """Per-block facts kept exact by the IPAMBlock and BlockAffinity store subscriptions."""

    __slots__ = ("_affinities", "_affinity_of", "_blocks", "_logged_orphans", "_pool_of", "_pools")

    def __init__(self, pools: PoolIndex) -> None:
        self._pools = pools
        self._blocks: dict[ObjectKey, BlockFacts] = {}
        self._pool_of: dict[ObjectKey, str] = {}
        self._logged_orphans: set[str] = set()
        self._affinity_of: dict[ObjectKey, tuple[str, str]] = {}
        self._affinities: Counter[tuple[str, str]] = Counter()
        pools.on_change(self._pool_of.clear)

    def on_block(self, key: ObjectKey, old: IPAMBlock | None, new: IPAMBlock | None) -> None:
        """Store subscriber for the IPAMBlock store."""
        self._pool_of.pop(key, None)
        if new is None or new.deleted:
            facts = self._blocks.pop(key, None)
            if facts is not None:
                self._logged_orphans.discard(facts.cidr_text)
            return
        self._blocks[key] = block_facts(new)

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

    def pool_of(self, key: ObjectKey, facts: BlockFacts) -> str:
        """The pool of a stored block (cached until the pools change)."""
        name = self._pool_of.get(key)
        if name is None:
            name = self._pools.pool_of_block(facts.cidr)
            self._pool_of[key] = name
            if name == NO_POOL and facts.cidr_text not in self._logged_orphans:
                self._logged_orphans.add(facts.cidr_text)
                log.warning("ipam_block_outside_pools", block=facts.cidr_text, node=facts.node)
        return name

    def usage(self) -> Usage:
        """Add up the per-block facts into pool, block and (node, pool) figures."""
        pool_allocated: Counter[str] = Counter()
        pool_blocks: Counter[str] = Counter()
        nodes: dict[tuple[str, str], NodeUsage] = {}
        blocks: list[BlockUsage] = []
        for key, facts in self._blocks.items():
            pool = self.pool_of(key, facts)
            pool_allocated[pool] += facts.allocated
            pool_blocks[pool] += 1
            blocks.append(
                BlockUsage(pool, facts.cidr_text, facts.node, facts.allocated, facts.size)
            )
            entry = nodes.get((facts.node, pool))
            if entry is None:
                entry = nodes[(facts.node, pool)] = NodeUsage()
            entry.blocks += 1
            for node, n in facts.by_node:
                entry = nodes.get((node, pool))
                if entry is None:
                    entry = nodes[(node, pool)] = NodeUsage()
                entry.allocated += n
            for node, n in facts.borrowed:
                nodes[(node, pool)].borrowed += n
        pools = [
            PoolUsage(p.name, p, pool_allocated[p.name], pool_blocks[p.name])
            for p in sorted(self._pools.pools(), key=lambda p: p.name)
        ]
        if pool_blocks[NO_POOL]:
            pools.append(PoolUsage(NO_POOL, None, pool_allocated[NO_POOL], pool_blocks[NO_POOL]))
        return Usage(tuple(pools), tuple(blocks), nodes, dict(self._affinities))
