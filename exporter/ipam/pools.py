"""Which IPPool an address or a block belongs to, kept current from the IPPool store.

A block belongs to the pool whose CIDR contains it; when pools overlap (Calico forbids it, but the
v1 CRD does not) the most specific pool wins, then the first name. A block in no pool belongs to
the pseudo-pool ``""``. Pools are few, so lookups scan them; what is expensive to redo (per-block
pool names, per-pod endpoint flags) listens to :meth:`PoolIndex.on_change` and recomputes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from exporter.model import ObjectKey
from exporter.model.ipam import IPAddress, IPNetwork, IPPool

NO_POOL = ""
"""The ``pool`` label of blocks and addresses outside every IPPool."""


class PoolIndex:
    """The current IPPools, ordered for lookups (most specific first, then by name)."""

    __slots__ = ("_listeners", "_ordered", "_pools")

    def __init__(self) -> None:
        self._pools: dict[ObjectKey, IPPool] = {}
        self._ordered: tuple[IPPool, ...] = ()
        self._listeners: list[Callable[[], None]] = []

    def on_store_change(self, key: ObjectKey, old: IPPool | None, new: IPPool | None) -> None:
        """Store subscriber for the IPPool store."""
        if new is None:
            self._pools.pop(key, None)
        else:
            self._pools[key] = new
        self._ordered = tuple(
            sorted(self._pools.values(), key=lambda p: (-p.cidr.prefixlen, p.name))
        )
        for listener in self._listeners:
            listener()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every pool added, changed or removed."""
        self._listeners.append(listener)

    def pools(self) -> tuple[IPPool, ...]:
        """Every pool, most specific first."""
        return self._ordered

    def pool_of_block(self, cidr: IPNetwork) -> str:
        """The name of the pool containing the block, or :data:`NO_POOL`."""
        for pool in self._ordered:
            if pool.cidr.version == cidr.version and cidr.subnet_of(pool.cidr):  # type: ignore[arg-type]
                return pool.name
        return NO_POOL

    def pool_of_address(self, address: IPAddress) -> str:
        """The name of the pool containing the address, or :data:`NO_POOL`."""
        for pool in self._ordered:
            if address in pool.cidr:
                return pool.name
        return NO_POOL

    def pool_of_ip(self, ip: str) -> str:
        """Like :meth:`pool_of_address` for a string; :data:`NO_POOL` if it is not an IP."""
        try:
            return self.pool_of_address(ipaddress.ip_address(ip))
        except ValueError:
            return NO_POOL
