"""The IPAM feature's state, wired to the stores, and the per-scrape snapshot the collector reads.

:func:`wire_ipam` subscribes the indexes to the stores (each subscription first replays what the
store holds, so wiring before or after the first LIST is the same) and returns an
:class:`IpamState`; ``IpamState.snapshot()`` adds up the pre-computed per-block facts and reads the
running totals, without touching the stores' full contents.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from exporter.config import IpamSettings
from exporter.ipam.endpoints import WorkloadEndpoints
from exporter.ipam.leaks import HandleTracker, LeakTracker
from exporter.ipam.pools import PoolIndex
from exporter.ipam.usage import Usage, UsageIndex
from exporter.kube.store import Store
from exporter.model.core import Pod
from exporter.model.ipam import BlockAffinity, IPAMBlock, IPAMHandle, IPPool


@dataclass(frozen=True, slots=True)
class IpamSnapshot:
    """Every IPAM figure of one scrape."""

    usage: Usage
    leaked: Counter[tuple[str, str]]
    """(pool, node) -> leaked addresses (only non-zero entries)."""
    orphaned_handles: int
    workload_endpoints: dict[str, int]
    """node -> workload endpoints (only non-zero entries)."""


class IpamState:
    """The IPAM indexes, kept current by store subscriptions; read with :meth:`snapshot`."""

    __slots__ = ("endpoints", "handles", "leaks", "pools", "usage")

    def __init__(
        self,
        *,
        pools: PoolIndex,
        usage: UsageIndex,
        leaks: LeakTracker,
        handles: HandleTracker,
        endpoints: WorkloadEndpoints,
    ) -> None:
        self.pools = pools
        self.usage = usage
        self.leaks = leaks
        self.handles = handles
        self.endpoints = endpoints

    def snapshot(self) -> IpamSnapshot:
        """The current figures; cheap enough to call on every scrape."""
        return IpamSnapshot(
            usage=self.usage.usage(),
            leaked=self.leaks.leaked(self.pools),
            orphaned_handles=self.handles.orphaned(),
            workload_endpoints=self.endpoints.per_node(),
        )


def wire_ipam(
    *,
    ippools: Store[IPPool],
    ipamblocks: Store[IPAMBlock],
    blockaffinities: Store[BlockAffinity],
    ipamhandles: Store[IPAMHandle],
    pods: Store[Pod],
    settings: IpamSettings,
    clock: Callable[[], float] = time.monotonic,
) -> IpamState:
    """Subscribe the IPAM indexes to the stores and return the state the collector reads."""
    pools = PoolIndex()
    ippools.subscribe(pools.on_store_change)
    usage = UsageIndex(pools, pools_synced=ippools.synced.is_set)
    ipamblocks.subscribe(usage.on_block)
    blockaffinities.subscribe(usage.on_affinity)

    endpoints = WorkloadEndpoints(pods, pools)
    pods.subscribe(endpoints.on_pod)
    pools.on_change(endpoints.recompute)

    grace = settings.leak_grace_period
    leaks = LeakTracker(pods, grace_period=grace, clock=clock)
    pods.subscribe(leaks.on_pod)
    ipamblocks.subscribe(leaks.on_block)

    handles = HandleTracker(grace_period=grace, clock=clock)
    ipamblocks.subscribe(handles.on_block)
    ipamhandles.subscribe(handles.on_handle)
    return IpamState(pools=pools, usage=usage, leaks=leaks, handles=handles, endpoints=endpoints)
