"""Leaked addresses and orphaned IPAM handles, tracked from watch events only.

**Leaked address**: an allocation whose attributes name a pod (``namespace`` and ``pod``) that
has not existed for longer than the grace period, or that exists with IPs of which none is the
allocated address (the pod was recreated under the same name and got another address). A pod that
exists without IPs yet is not suspicious. The tracker indexes pod-owned allocations by pod, so a
pod event re-checks only that pod's allocations and a block event only that block's changed
allocations; a scrape counts the suspects whose suspicion is older than the grace period. When a
pod is deleted its deletion time is remembered (for one grace period), so an allocation that shows
up after its pod is gone is dated from the deletion. Nothing here calls the API.

**Orphaned handle**: a live IPAMHandle whose handle ID holds no address in any block for longer
than the grace period (``calicoctl ipam check`` reports these; Calico writes the handle before the
block, so a fresh handle is briefly empty).

Time comes from an injectable ``clock`` (seconds, monotonic by default).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable

from exporter.ipam.pools import PoolIndex
from exporter.kube.store import Store
from exporter.model import ObjectKey
from exporter.model.core import Pod
from exporter.model.ipam import AllocationOwner, IPAMBlock, IPAMHandle, IPNetwork

Clock = Callable[[], float]
AllocationRef = tuple[ObjectKey, int]
"""(IPAMBlock store key, ordinal)."""
_Record = tuple[ObjectKey, str, str, ObjectKey]
"""(pod key, address, ``node`` attribute, IPAMBlock store key) of a pod-owned allocation.

Plain tuples of strings: Python's garbage collector stops tracking them, which keeps its full
passes short with tens of thousands of allocations."""


def _pod_allocations(block: IPAMBlock | None) -> set[tuple[int, AllocationOwner]]:
    if block is None or block.deleted:
        return set()
    return {(ordinal, owner) for ordinal, owner in block.allocations() if owner.pod}


def _canonical(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


class LeakTracker:
    """Suspect allocations (pod gone, or pod on another IP) and since when they are suspect."""

    __slots__ = ("_allocations", "_block_cidrs", "_by_pod", "_clock", "_gone_since", "_grace",
                 "_pods", "_suspects")

    def __init__(self, pods: Store[Pod], *, grace_period: float, clock: Clock) -> None:
        self._pods = pods
        self._grace = grace_period
        self._clock = clock
        self._allocations: dict[AllocationRef, _Record] = {}
        self._by_pod: dict[ObjectKey, tuple[AllocationRef, ...]] = {}
        self._block_cidrs: dict[ObjectKey, IPNetwork] = {}
        self._suspects: dict[AllocationRef, float] = {}
        self._gone_since: dict[ObjectKey, float] = {}

    def on_block(self, key: ObjectKey, old: IPAMBlock | None, new: IPAMBlock | None) -> None:
        """Store subscriber for the IPAMBlock store: index added and drop removed allocations."""
        before = _pod_allocations(old)
        after = _pod_allocations(new)
        if old is not None and new is not None and old.cidr != new.cidr:
            common: set[tuple[int, AllocationOwner]] = set()
        else:
            common = before & after
        for ordinal, _owner in before - common:
            self._forget((key, ordinal))
        if new is None or new.deleted:
            self._block_cidrs.pop(key, None)
            return
        self._block_cidrs[key] = new.cidr
        for ordinal, owner in after - common:
            ref = (key, ordinal)
            self._forget(ref)
            pod = (owner.namespace, owner.pod)
            self._allocations[ref] = (pod, str(new.address(ordinal)), owner.node, key)
            self._by_pod[pod] = (*self._by_pod.get(pod, ()), ref)
            self._check(ref)

    def on_pod(self, key: ObjectKey, old: Pod | None, new: Pod | None) -> None:
        """Pod store subscriber: remember deletions, re-check the pod's allocations."""
        if old is not None and new is not None and old.ips == new.ips:
            return  # a check reads only the pod's presence and IPs: same result as last time
        now = self._clock()
        if new is None:
            self._gone_since[key] = now
            self._prune_gone(now)
        else:
            self._gone_since.pop(key, None)
        for ref in self._by_pod.get(key, ()):
            self._check(ref)

    def leaked(self, pools: PoolIndex) -> Counter[tuple[str, str]]:
        """(pool, node) -> allocations suspect for longer than the grace period."""
        now = self._clock()
        out: Counter[tuple[str, str]] = Counter()
        for ref, since in self._suspects.items():
            if now - since > self._grace:
                _pod, _ip, node, block = self._allocations[ref]
                out[(pools.pool_of_block(self._block_cidrs[block]), node)] += 1
        return out

    def suspects(self) -> int:
        """Allocations currently suspect, whatever their age."""
        return len(self._suspects)

    def _check(self, ref: AllocationRef) -> None:
        pod_key, ip, _node, _block = self._allocations[ref]
        pod = self._pods.get(pod_key)
        if pod is None:
            since = self._gone_since.get(pod_key)
            self._suspects.setdefault(ref, self._clock() if since is None else since)
        elif pod.ips and ip not in {_canonical(pod_ip) for pod_ip in pod.ips}:
            self._suspects.setdefault(ref, self._clock())
        else:
            self._suspects.pop(ref, None)

    def _forget(self, ref: AllocationRef) -> None:
        record = self._allocations.pop(ref, None)
        if record is None:
            return
        self._suspects.pop(ref, None)
        pod = record[0]
        refs = tuple(r for r in self._by_pod.get(pod, ()) if r != ref)
        if refs:
            self._by_pod[pod] = refs
        else:
            self._by_pod.pop(pod, None)

    def _prune_gone(self, now: float) -> None:
        # Deletion times are inserted in clock order: drop the ones older than the grace period.
        while self._gone_since:
            pod, since = next(iter(self._gone_since.items()))
            if now - since <= self._grace:
                break
            del self._gone_since[pod]


class HandleTracker:
    """Live IPAMHandles whose handle ID holds no allocation in any block, and since when."""

    __slots__ = ("_clock", "_empty_since", "_grace", "_held", "_live", "_live_ids")

    def __init__(self, *, grace_period: float, clock: Clock) -> None:
        self._grace = grace_period
        self._clock = clock
        self._held: Counter[str] = Counter()
        """handle ID -> allocations holding it, over all blocks."""
        self._live: dict[ObjectKey, str] = {}
        """IPAMHandle store key -> handle ID, for handles not marked deleted."""
        self._live_ids: Counter[str] = Counter()
        """handle ID -> live IPAMHandle objects carrying it (1, unless names differ in case)."""
        self._empty_since: dict[str, float] = {}

    def on_block(self, key: ObjectKey, old: IPAMBlock | None, new: IPAMBlock | None) -> None:
        """Store subscriber for the IPAMBlock store: keep per-handle allocation counts."""
        delta: Counter[str] = Counter()
        for block, sign in ((old, -1), (new, 1)):
            if block is not None and not block.deleted:
                for owner in block.owners:
                    if owner.handle:
                        delta[owner.handle] += sign
        for handle, n in delta.items():
            if not n:
                continue
            held = self._held[handle] + n
            if held > 0:
                self._held[handle] = held
                self._empty_since.pop(handle, None)
            else:
                self._held.pop(handle, None)
                if self._live_ids[handle]:
                    self._empty_since.setdefault(handle, self._clock())

    def on_handle(
        self, key: ObjectKey, old: IPAMHandle | None, new: IPAMHandle | None
    ) -> None:
        """Store subscriber for the IPAMHandle store."""
        previous = self._live.pop(key, None)
        if new is not None and not new.deleted:
            self._live[key] = new.handle_id
            self._live_ids[new.handle_id] += 1
            if not self._held[new.handle_id]:
                self._empty_since.setdefault(new.handle_id, self._clock())
        if previous is not None:
            # after adding the new version, so that an update keeps its empty-since time
            self._live_ids[previous] -= 1
            if not self._live_ids[previous]:
                del self._live_ids[previous]
                self._empty_since.pop(previous, None)

    def orphaned(self) -> int:
        """Live handles empty for longer than the grace period."""
        now = self._clock()
        return sum(1 for since in self._empty_since.values() if now - since > self._grace)
