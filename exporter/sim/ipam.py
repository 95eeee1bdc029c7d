"""Calico IPAM for the simulated cluster: blocks, affinities, handles, written like Calico does.

This is the independent truth the exporter's IPAM figures are tested against, so it imports only
``exporter.sim`` and works on raw objects through the emulator's synchronous API, in the group
that holds Calico's data (``crd.projectcalico.org/v1``, or native ``projectcalico.org/v3`` where
``BlockAffinity.spec.deleted`` is a bool rather than a string), looked up at every call. It
follows libcalico-go's IPAM (``lib/ipam/ipam.go``, ``ipam_block.go``):

- pools are read from the emulator at every call; a pool takes part in automatic assignment when it
  is not disabled, has the IP version asked for, allows the use (``Workload`` for pods, ``Tunnel``
  for tunnel addresses), is not ``assignmentMode: Manual`` and its ``nodeSelector`` is not
  ``!all()`` (other selectors are not evaluated: every node matches them);
- a node first allocates from the blocks affine to it (``host:<node>``); when they are full it
  claims a free block (BlockAffinity ``pending``, then the IPAMBlock with the affinity, then the
  BlockAffinity ``confirmed``), walking the pool's blocks from a start point derived from an FNV-32
  hash of the node name as Calico's block generator does; when no pool has a free block and
  ``strict_affinity`` is false it borrows from any block with a free address, else it raises
  :class:`IpamExhausted`;
- a block hands out ``unallocated[0]`` first and appends released ordinals at the end; attribute
  entries are shared by identical (handle, attributes) and compacted on release;
- a pod's addresses are under the handle ``k8s-pod-network.<containerID>`` (IPAMHandle named by
  the lower-cased handle ID), with attributes ``namespace``, ``node``, ``pod`` and ``timestamp``;
  the handle is written before the block on assignment and after it on release;
- requested addresses (pods with fixed IPs) are assigned as Calico's ``AssignIP`` does: the block
  containing the address is claimed for the node when it does not exist yet, otherwise the address
  is taken wherever the block's affinity is.

Blocks are never released when they empty (Calico keeps a node's affine blocks).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from exporter.sim.errors import ApiError

V1 = "crd.projectcalico.org/v1"
POD_NETWORK = "k8s-pod-network"
"""The CNI network name: pod handles are ``k8s-pod-network.<containerID>``."""

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

TUNNELS: dict[str, tuple[int, str, str]] = {
    "ipip": (4, "ipipTunnelAddress", "ipip-tunnel-addr-"),
    "vxlan": (4, "vxlanTunnelAddress", "vxlan-tunnel-addr-"),
    "vxlan-v6": (6, "vxlanV6TunnelAddress", "vxlan-v6-tunnel-addr-"),
    "wireguard": (4, "wireguardTunnelAddress", "wireguard-tunnel-addr-"),
    "wireguard-v6": (6, "wireguardV6TunnelAddress", "wireguard-v6-tunnel-addr-"),
}
"""Tunnel kind -> (IP version, ``type`` attribute, handle prefix), as calico-node allocates them."""


class Api(Protocol):
    """The part of the emulator's in-process API this module uses."""

    def create(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any]: ...

    def list(
        self, resource: str, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]: ...

    def update(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    def delete(self, resource: str, name: str, namespace: str | None = None) -> Any: ...

    def calico_resource(self, plural: str) -> str: ...

    @property
    def calico_api_version(self) -> str: ...


class IpamError(Exception):
    """An assignment or claim Calico IPAM would refuse; the message says why."""


class IpamExhausted(IpamError):
    """No pool of the requested IP version has a free address this node may use."""


def cidr_to_name(cidr: str) -> str:
    """Calico's ``names.CIDRToName``: ``.``, ``:`` and ``/`` become ``-``."""
    return cidr.replace(".", "-").replace(":", "-").replace("/", "-")


def affinity_name(node: str, cidr: str) -> str:
    """BlockAffinity name: ``<node>-<cidr name>``, shortened with a hash past 252 characters."""
    cidr_name = cidr_to_name(cidr)
    name = f"{node}-{cidr_name}"
    if len(name) >= 253:
        digest = hashlib.sha256(f"{node}+{cidr_name}".encode()).hexdigest()[:11]
        name = f"{node[: 252 - len(cidr_name) - 13]}-{cidr_name}-{digest}"
    return name


def hostname_hash(node: str) -> str:
    """``projectcalico.org/hostname-hash``: base32 (no padding) of SHA3-256 of the node name."""
    return base64.b32encode(hashlib.sha3_256(node.encode()).digest()).decode().rstrip("=")


def handle_name(handle_id: str) -> str:
    """IPAMHandle object name: the handle ID in lower case."""
    return handle_id.lower()


def _network(value: object) -> _Net | None:
    """A canonical CIDR, or None for anything else (Calico IPAM skips what it cannot parse)."""
    try:
        return ipaddress.ip_network(str(value))
    except ValueError:
        return None


def _fnv32(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h = (h * 0x01000193) & 0xFFFFFFFF
        h ^= byte
    return h


@dataclass(frozen=True)
class _Pool:
    name: str
    cidr: _Net
    block_size: int

    @property
    def block_count(self) -> int:
        return 1 << (self.block_size - self.cidr.prefixlen)

    @property
    def _step(self) -> int:
        return 1 << (self.cidr.max_prefixlen - self.block_size)

    def contains(self, net: _Net) -> bool:
        return (
            net.version == self.cidr.version
            and self.cidr.network_address <= net.network_address  # type: ignore[operator]
            and net.broadcast_address <= self.cidr.broadcast_address  # type: ignore[operator]
        )

    def _start(self, node: str) -> int:
        # Calico seeds its block generator with an FNV-32 hash of the host name, so that nodes
        # starting at the same time do not race for the same block.
        return random.Random(_fnv32(node.encode())).randrange(self.block_count)

    def position(self, node: str, net: _Net) -> int:
        """Where the block comes in the node's walk over the pool."""
        index = (int(net.network_address) - int(self.cidr.network_address)) // self._step
        return (index - self._start(node)) % self.block_count

    def free_block(self, node: str, taken: Sequence[_Net]) -> _Net | None:
        """The first block of the node's walk that overlaps no existing block, if any."""
        if len(taken) >= self.block_count:
            return None
        base = int(self.cidr.network_address)
        start = self._start(node)
        exact = set(taken)
        odd = [net for net in taken if net.prefixlen != self.block_size]
        for i in range(self.block_count):
            address = base + ((start + i) % self.block_count) * self._step
            net = ipaddress.ip_network((address, self.block_size))
            if net not in exact and not any(net.overlaps(o) for o in odd):
                return net
        return None


class IpamAllocator:
    """Assigns and releases addresses in the emulator the way Calico IPAM would."""

    def __init__(
        self, api: Api, *, strict_affinity: bool = False, clock: Callable[[], float] = time.time
    ) -> None:
        self.api = api
        self.strict_affinity = strict_affinity
        self._clock = clock
        self._handles: dict[tuple[str, str], str] = {}
        """(namespace, pod) -> handle ID of its addresses, until released or leaked."""

    # ------------------------------------------------------------------ public API

    def claim_block(self, *, node: str, cidr: str) -> None:
        """Claim the given block for ``node`` (a no-op if it is already affine to it)."""
        net = ipaddress.ip_network(cidr)
        pool = self._pool_containing(net.network_address)
        if pool is None or net.prefixlen != pool.block_size:
            raise IpamError(f"{cidr} is not a block of any IP pool")
        existing = self._get(self._r("ipamblocks"), cidr_to_name(str(net)))
        if existing is not None:
            if existing["spec"].get("affinity") != f"host:{node}":
                owner = existing["spec"].get("affinity") or "no affinity"
                raise IpamError(f"block {cidr} is already claimed ({owner})")
            return
        self._claim(node, net)

    def assign(
        self,
        *,
        namespace: str,
        pod: str,
        node: str,
        container_id: str,
        ip_versions: tuple[int, ...] = (4,),
        requested: tuple[str, ...] = (),
    ) -> list[str]:
        """Assign the pod one address per IP version (or exactly ``requested``); returns them."""
        handle = f"{POD_NETWORK}.{container_id}"
        attrs = {
            "namespace": namespace,
            "node": node,
            "pod": pod,
            "timestamp": self._go_time(),
        }
        out: list[str] = []
        try:
            if requested:
                for ip in requested:
                    out.append(self._assign_ip(ipaddress.ip_address(ip), node, handle, attrs))
            else:
                for version in ip_versions:
                    out.append(self._auto_assign(version, node, handle, attrs, use="Workload"))
        except Exception:
            if out:
                self._release_handle(handle)
            raise
        self._handles[(namespace, pod)] = handle
        return out

    def release(self, *, namespace: str, pod: str) -> None:
        """Release the pod's addresses (CNI DEL); a pod without addresses is a no-op."""
        handle = self._handles.pop((namespace, pod), None)
        if handle is not None:
            self._release_handle(handle)

    def leak(self, *, namespace: str, pod: str) -> None:
        """Forget the pod but keep its addresses allocated (a CNI DEL that never ran)."""
        self._handles.pop((namespace, pod), None)

    def assign_tunnel(self, *, node: str, kind: str = "ipip") -> str:
        """Assign the node's tunnel address of a kind of :data:`TUNNELS` (``ipip``...)."""
        if kind not in TUNNELS:
            raise IpamError(f"unknown tunnel kind {kind!r}")
        version, attr_type, prefix = TUNNELS[kind]
        return self._auto_assign(
            version, node, prefix + node, {"node": node, "type": attr_type}, use="Tunnel"
        )

    def release_tunnel(self, *, node: str, kind: str = "ipip") -> None:
        """Release the node's tunnel address of that kind."""
        if kind not in TUNNELS:
            raise IpamError(f"unknown tunnel kind {kind!r}")
        self._release_handle(TUNNELS[kind][2] + node)

    def release_handle(self, handle_id: str) -> None:
        """Release every address of a handle, as ``calicoctl ipam release`` or Calico's GC do."""
        self._handles = {k: v for k, v in self._handles.items() if v != handle_id}
        self._release_handle(handle_id)

    def handle_of(self, namespace: str, pod: str) -> str | None:
        """The handle ID holding the pod's addresses, None when released, leaked or unknown."""
        return self._handles.get((namespace, pod))

    # ------------------------------------------------------------------ pools

    def _pools(self, version: int | None = None, *, use: str | None = None) -> list[_Pool]:
        pools = []
        for obj in self.api.list(self._r("ippools")):
            spec = obj.get("spec") or {}
            cidr = _network(spec.get("cidr"))
            if cidr is None or (version is not None and cidr.version != version):
                continue
            if use is not None and (
                spec.get("disabled")
                or use not in (spec.get("allowedUses") or ("Workload", "Tunnel"))
                or spec.get("assignmentMode") == "Manual"
                or (spec.get("nodeSelector") or "").replace(" ", "") == "!all()"
            ):
                continue
            block_size = spec.get("blockSize") or (26 if cidr.version == 4 else 122)
            pools.append(_Pool(obj["metadata"]["name"], cidr, int(block_size)))
        return sorted(pools, key=lambda p: p.name)

    def _pool_containing(self, address: _Addr) -> _Pool | None:
        for pool in self._pools():
            if address in pool.cidr:
                return pool
        return None

    # ------------------------------------------------------------------ assignment

    def _auto_assign(
        self, version: int, node: str, handle: str, attrs: dict[str, str], *, use: str
    ) -> str:
        pools = self._pools(version, use=use)
        if not pools:
            raise IpamExhausted(f"no IPv{version} pool allows {use} addresses")
        blocks: dict[_Net, dict[str, Any]] = {}
        for obj in self.api.list(self._r("ipamblocks")):
            net = _network(obj["spec"].get("cidr"))
            if net is not None and net.version == version and len(
                obj["spec"].get("allocations") or ()
            ) == 1 << (net.max_prefixlen - net.prefixlen):
                blocks[net] = obj
        by_pool: dict[str, list[_Net]] = {}
        for pool in pools:
            positions = {net: pool.position(node, net) for net in blocks if pool.contains(net)}
            by_pool[pool.name] = sorted(positions, key=positions.__getitem__)

        def has_room(net: _Net) -> bool:
            return bool(blocks[net]["spec"]["unallocated"])

        # 1. the node's affine blocks
        for pool in pools:
            for net in by_pool[pool.name]:
                if blocks[net]["spec"].get("affinity") == f"host:{node}" and has_room(net):
                    return self._allocate(net, handle, attrs)
        # 2. a new block from the first pool that still has one
        for pool in pools:
            free = pool.free_block(node, by_pool[pool.name])
            if free is not None:
                self._claim(node, free)
                return self._allocate(free, handle, attrs)
        # 3. borrow from any block with a free address
        if not self.strict_affinity:
            for pool in pools:
                for net in by_pool[pool.name]:
                    if has_room(net):
                        return self._allocate(net, handle, attrs)
        raise IpamExhausted(
            f"IPv{version} pools {', '.join(p.name for p in pools)} have no free address "
            f"for node {node}" + (" (strictAffinity)" if self.strict_affinity else "")
        )

    def _assign_ip(self, ip: _Addr, node: str, handle: str, attrs: dict[str, str]) -> str:
        pool = self._pool_containing(ip)
        if pool is None:
            raise IpamError(f"{ip} is not in any IP pool")
        net = ipaddress.ip_network((int(ip), pool.block_size), strict=False)
        existing = self._get(self._r("ipamblocks"), cidr_to_name(str(net)))
        if existing is None:
            self._claim(node, net)
        block = existing or self.api.get(self._r("ipamblocks"), cidr_to_name(str(net)))
        ordinal = int(ip) - int(net.network_address)
        if block["spec"]["allocations"][ordinal] is not None:
            raise IpamError(f"{ip} is already allocated")
        return self._allocate(net, handle, attrs, ordinal=ordinal)

    def _allocate(
        self, net: _Net, handle: str, attrs: dict[str, str], *, ordinal: int | None = None
    ) -> str:
        """Take one ordinal of the block for the handle: handle first, then the block."""
        cidr = str(net)
        self._handle_add(handle, cidr, 1)
        block = copy.deepcopy(self.api.get(self._r("ipamblocks"), cidr_to_name(cidr)))
        spec = block["spec"]
        if ordinal is None:
            ordinal = spec["unallocated"][0]
        spec["unallocated"].remove(ordinal)
        attributes: list[dict[str, Any]] = spec.setdefault("attributes", [])
        entry = {"handle_id": handle, "secondary": dict(attrs)}
        try:
            index = attributes.index(entry)
        except ValueError:
            attributes.append(entry)
            index = len(attributes) - 1
        spec["allocations"][ordinal] = index
        spec["sequenceNumber"] = int(spec.get("sequenceNumber") or 0) + 1
        spec.setdefault("sequenceNumberForAllocation", {})[str(ordinal)] = spec["sequenceNumber"]
        self.api.update(block)
        return str(net.network_address + ordinal)

    # ------------------------------------------------------------------ blocks and affinities

    def _claim(self, node: str, net: _Net) -> None:
        """Claim a free block for the node: affinity pending, block, affinity confirmed."""
        cidr = str(net)
        name = affinity_name(node, cidr)
        affinity = self.api.create({
            "apiVersion": self.api.calico_api_version,
            "kind": "BlockAffinity",
            "metadata": {
                "name": name,
                "labels": {
                    "projectcalico.org/affinity-type": "host",
                    "projectcalico.org/hostname-hash": hostname_hash(node),
                    "projectcalico.org/ip-version": str(net.version),
                },
            },
            "spec": {"state": "pending", "node": node, "type": "host", "cidr": cidr,
                     # a string in v1 (strconv.ParseBool), a bool in v3
                     "deleted": "false" if self.api.calico_api_version == V1 else False},
        })
        size = 1 << (net.max_prefixlen - net.prefixlen)
        self.api.create({
            "apiVersion": self.api.calico_api_version,
            "kind": "IPAMBlock",
            "metadata": {"name": cidr_to_name(cidr)},
            "spec": {
                "cidr": cidr,
                "affinity": f"host:{node}",
                "affinityClaimTime": datetime.fromtimestamp(self._clock(), UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "allocations": [None] * size,
                "unallocated": list(range(size)),
                "attributes": [],
                "strictAffinity": False,
                "deleted": False,
                "sequenceNumber": 0,
                "sequenceNumberForAllocation": {},
            },
        })
        confirmed = copy.deepcopy(affinity)
        confirmed["spec"]["state"] = "confirmed"
        self.api.update(confirmed)

    # ------------------------------------------------------------------ release

    def _release_handle(self, handle: str) -> None:
        """Free every address of the handle (blocks first), then delete the handle."""
        handle_obj = self._get(self._r("ipamhandles"), handle_name(handle))
        cidrs: Sequence[str]
        if handle_obj is not None:
            cidrs = sorted((handle_obj["spec"].get("block") or {}).keys())
        else:
            cidrs = sorted(b["spec"]["cidr"] for b in self.api.list(self._r("ipamblocks")))
        for cidr in cidrs:
            block = self._get(self._r("ipamblocks"), cidr_to_name(cidr))
            if block is not None:
                self._release_in_block(copy.deepcopy(block), handle)
        if handle_obj is not None:
            self.api.delete(self._r("ipamhandles"), handle_name(handle))

    def _release_in_block(self, block: dict[str, Any], handle: str) -> None:
        spec = block["spec"]
        attributes: list[dict[str, Any]] = spec.get("attributes") or []
        mine = {i for i, a in enumerate(attributes) if a.get("handle_id") == handle}
        if not mine:
            return
        allocations: list[int | None] = spec["allocations"]
        for ordinal, index in enumerate(allocations):
            if index in mine:
                allocations[ordinal] = None
                spec["unallocated"].append(ordinal)
                (spec.get("sequenceNumberForAllocation") or {}).pop(str(ordinal), None)
        # Compact the attributes: drop the unused entries and renumber the allocations.
        used = sorted({i for i in allocations if i is not None})
        renumber = {old: new for new, old in enumerate(used)}
        spec["attributes"] = [attributes[i] for i in used]
        spec["allocations"] = [None if i is None else renumber[i] for i in allocations]
        spec["sequenceNumber"] = int(spec.get("sequenceNumber") or 0) + 1
        self.api.update(block)

    # ------------------------------------------------------------------ handles

    def _handle_add(self, handle: str, cidr: str, n: int) -> None:
        obj = self._get(self._r("ipamhandles"), handle_name(handle))
        if obj is None:
            self.api.create({
                "apiVersion": self.api.calico_api_version,
                "kind": "IPAMHandle",
                "metadata": {"name": handle_name(handle)},
                "spec": {"handleID": handle, "block": {cidr: n}, "deleted": False},
            })
            return
        obj = copy.deepcopy(obj)
        blocks = obj["spec"].setdefault("block", {})
        blocks[cidr] = int(blocks.get(cidr, 0)) + n
        self.api.update(obj)

    # ------------------------------------------------------------------ helpers

    def _r(self, plural: str) -> str:
        """``plural.group`` in the group that holds Calico's data."""
        return self.api.calico_resource(plural)

    def _get(self, resource: str, name: str) -> dict[str, Any] | None:
        try:
            return self.api.get(resource, name)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _go_time(self) -> str:
        """``time.Now().UTC().String()``, as the CNI plugin writes the ``timestamp`` attribute."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        fraction = f"{now.microsecond:06d}000".rstrip("0")  # Go prints .999999999, zeros trimmed
        seconds = now.strftime("%Y-%m-%d %H:%M:%S")
        return f"{seconds}.{fraction} +0000 UTC" if fraction else f"{seconds} +0000 UTC"
