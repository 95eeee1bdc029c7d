"""Calico IPAM objects: IPPool, IPAMBlock, BlockAffinity and IPAMHandle (calico-model §2).

Parsing follows Calico's own reading of the ``crd.projectcalico.org/v1`` objects:

- an IPPool without ``blockSize`` (or with 0) has blocks of /26 (IPv4) or /122 (IPv6); missing
  ``ipipMode``/``vxlanMode`` are ``Never``; missing ``allowedUses`` is ``[Workload, Tunnel]``;
- an IPAMBlock's size is ``2^(bits - prefix)``, its addresses in use are ``size - len(unallocated)``
  (as ``calicoctl ipam show``), and its ``allocations`` are kept as two parallel tuples: the
  allocated ordinals and their :class:`AllocationOwner` (one object per ``attributes[]`` entry,
  shared by the ordinals pointing at it). Thousands of blocks stay cheap: no object per address,
  and few objects for Python's garbage collector to walk;
- ``deleted`` is read as a bool or as Go's ``strconv.ParseBool`` string (v1 BlockAffinity; a
  bool in ``projectcalico.org/v3``);
- an IPPool is not usable when its ``status.conditions`` has ``type: Allocatable`` with
  ``status: "False"``, which kube-controllers' IP pool controller writes for a disabled,
  terminating or overlapping pool (v3 CRDs; ``kube-controllers/pkg/controllers/ippool/
  pool_controller.go``) and which makes Calico's IPAM skip the pool (``filterIPPool`` in
  ``libcalico-go/lib/clientv3/client.go`` on master); without the condition a pool is usable.

The same parsers read both API groups: the ``crd.projectcalico.org/v1`` and native
``projectcalico.org/v3`` objects of these kinds have the same fields.

Objects marked ``deleted: true`` (Calico's mark-then-delete) parse to a value whose ``deleted``
flag is set and whose contents are not validated further; they stay in the store like any object
(the watch engine needs every key) and the IPAM index treats them as absent.

A malformed object raises :class:`~exporter.model.ParseError`: a CIDR that does not parse or has
host bits set, ``allocations`` whose length is not the block size, an allocation pointing past
``attributes`` (a dangling attribute index), an ``unallocated`` list that disagrees with the free
entries of ``allocations``, a pool whose ``blockSize`` is outside ``[prefix, bits]``.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.model import ParseError, RawObject

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
"""Block prefix length Calico uses when a pool's ``blockSize`` is missing or 0."""

DEFAULT_ALLOWED_USES = ("Workload", "Tunnel")
"""Calico's default ``allowedUses`` for an IPPool."""

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False", ""})


def parse_bool(value: object, *, field: str) -> bool:
    """A bool as Calico reads it: JSON bool, absent/null, or a ``strconv.ParseBool`` string."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
    raise ParseError(f"{field} {value!r} is not a boolean")


_NETWORKS: dict[str, IPNetwork] = {}
"""Parsed CIDRs by text: a block's CIDR never changes, and it is re-sent with every IPAM write."""
_NETWORKS_MAX = 50_000


def parse_cidr(value: object, *, field: str) -> IPNetwork:
    """A CIDR string with no host bits set (Calico always stores canonical networks)."""
    if not isinstance(value, str) or "/" not in value:
        raise ParseError(f"{field} {value!r} is not a CIDR")
    network = _NETWORKS.get(value)
    if network is not None:
        return network
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ParseError(f"{field} {value!r} is not a CIDR") from None
    if len(_NETWORKS) >= _NETWORKS_MAX:
        _NETWORKS.clear()
    _NETWORKS[value] = network
    return network


def cidr_to_name(cidr: str) -> str:
    """Calico's ``names.CIDRToName``: ``.``, ``:`` and ``/`` become ``-``."""
    return cidr.replace(".", "-").replace(":", "-").replace("/", "-")


def _spec(raw: RawObject) -> tuple[str, Mapping[str, Any]]:
    meta = raw.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise ParseError("metadata.name missing")
    spec = raw.get("spec")
    if not isinstance(spec, dict):
        raise ParseError("spec missing")
    return meta["name"], spec


def _str(spec: Mapping[str, Any], field: str, default: str = "") -> str:
    value = spec.get(field)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ParseError(f"spec.{field} {value!r} is not a string")
    return value or default


# --------------------------------------------------------------------------------------------
# IPPool


@dataclass(frozen=True, slots=True)
class IPPool:
    """An IP pool: its CIDR, block size and the encapsulation/NAT settings worth exporting."""

    name: str
    cidr: IPNetwork
    block_size: int
    """Prefix length of the pool's blocks; 26 (IPv4) or 122 (IPv6) when unset or 0."""
    ipip_mode: str = "Never"
    vxlan_mode: str = "Never"
    nat_outgoing: bool = False
    disabled: bool = False
    disable_bgp_export: bool = False
    node_selector: str = "all()"
    allowed_uses: tuple[str, ...] = DEFAULT_ALLOWED_USES
    assignment_mode: str = "Automatic"
    usable: bool = True
    """False when the pool's ``Allocatable`` condition is ``False`` (IPAM skips the pool)."""

    @property
    def ip_version(self) -> int:
        return self.cidr.version

    @property
    def size(self) -> int:
        """Addresses in the whole pool CIDR: ``2^(bits - prefix)``."""
        return 1 << (self.cidr.max_prefixlen - self.cidr.prefixlen)

    @property
    def blocks_capacity(self) -> int:
        """How many blocks the pool can hold: ``2^(blockSize - prefix)``."""
        return 1 << (self.block_size - self.cidr.prefixlen)

    @property
    def block_addresses(self) -> int:
        """Addresses per block: ``2^(bits - blockSize)``."""
        return 1 << (self.cidr.max_prefixlen - self.block_size)


def parse_ippool(raw: RawObject) -> IPPool:
    name, spec = _spec(raw)
    cidr = parse_cidr(spec.get("cidr"), field="spec.cidr")
    block_size = spec.get("blockSize")
    if block_size is None or block_size == 0:
        block_size = DEFAULT_BLOCK_SIZE[cidr.version]
    if isinstance(block_size, bool) or not isinstance(block_size, int):
        raise ParseError(f"spec.blockSize {block_size!r} is not an integer")
    if not cidr.prefixlen <= block_size <= cidr.max_prefixlen:
        raise ParseError(
            f"spec.blockSize {block_size} is outside /{cidr.prefixlen}../{cidr.max_prefixlen}"
        )
    uses = spec.get("allowedUses")
    if uses is None:
        allowed: tuple[str, ...] = DEFAULT_ALLOWED_USES
    elif isinstance(uses, list) and all(isinstance(u, str) for u in uses):
        allowed = tuple(uses)
    else:
        raise ParseError("spec.allowedUses is not a list of strings")
    return IPPool(
        name=name,
        usable=_allocatable(raw),
        cidr=cidr,
        block_size=block_size,
        ipip_mode=_str(spec, "ipipMode", "Never"),
        vxlan_mode=_str(spec, "vxlanMode", "Never"),
        nat_outgoing=parse_bool(spec.get("natOutgoing"), field="spec.natOutgoing"),
        disabled=parse_bool(spec.get("disabled"), field="spec.disabled"),
        disable_bgp_export=parse_bool(
            spec.get("disableBGPExport"), field="spec.disableBGPExport"
        ),
        node_selector=_str(spec, "nodeSelector", "all()"),
        allowed_uses=allowed,
        assignment_mode=_str(spec, "assignmentMode", "Automatic"),
    )


POOL_CONDITION = "Allocatable"
"""``v3.IPPoolConditionAllocatable`` (``api/pkg/apis/projectcalico/v3/ippool.go``)."""


def _allocatable(raw: RawObject) -> bool:
    """Whether no ``Allocatable`` condition of the pool's status says ``"False"``."""
    status = raw.get("status")
    if status is None:
        return True
    if not isinstance(status, dict):
        raise ParseError("status is not an object")
    conditions = status.get("conditions")
    if conditions is None:
        return True
    if not isinstance(conditions, list) or not all(isinstance(c, dict) for c in conditions):
        raise ParseError("status.conditions is not a list of objects")
    return not any(c.get("type") == POOL_CONDITION and c.get("status") == "False"
                   for c in conditions)


# --------------------------------------------------------------------------------------------
# IPAMBlock


@dataclass(frozen=True, slots=True)
class AllocationOwner:
    """One ``attributes[]`` entry of a block, shared by every allocation that points at it."""

    handle: str
    """``handle_id``; "" when absent."""
    node: str = ""
    """``secondary.node``: the node the address was assigned for; "" when absent."""
    namespace: str = ""
    pod: str = ""
    kind: str = ""
    """``secondary.type`` (``ipipTunnelAddress``, ``vxlanTunnelAddress``, a Service type...)."""


@dataclass(frozen=True, slots=True)
class IPAMBlock:
    """A block of addresses: CIDR, affinity, how many are in use, and who holds them."""

    name: str
    cidr: IPNetwork
    affinity: str
    """``host:<node>``, ``virtual:<name>``, or "" when the block has no affinity."""
    size: int
    """``2^(bits - prefix)`` addresses."""
    allocated: int
    """Addresses in use: ``size - len(unallocated)``."""
    ordinals: tuple[int, ...] = ()
    """The allocated ordinals (offsets from the block base), ascending."""
    owners: tuple[AllocationOwner, ...] = ()
    """The owner of each allocated ordinal, parallel to ``ordinals``."""
    deleted: bool = False
    """Marked ``deleted: true``: Calico treats the block as non-existent, and so do we."""

    @property
    def host(self) -> str:
        """The affine node for a ``host:`` affinity, else ""."""
        return self.affinity[5:] if self.affinity.startswith("host:") else ""

    @property
    def virtual(self) -> bool:
        """A ``virtual:`` affinity (LoadBalancer addresses and the like)."""
        return self.affinity.startswith("virtual:")

    def allocations(self) -> Iterator[tuple[int, AllocationOwner]]:
        """(ordinal, owner) of every allocated address, ascending."""
        return zip(self.ordinals, self.owners, strict=True)

    def address(self, ordinal: int) -> IPAddress:
        """The address at ``ordinal`` in this block."""
        return self.cidr.network_address + ordinal


def _owner(attr: object, index: int) -> AllocationOwner:
    if not isinstance(attr, dict):
        raise ParseError(f"spec.attributes[{index}] is not an object")
    handle = attr.get("handle_id") or ""
    secondary = attr.get("secondary") or {}
    if not isinstance(handle, str) or not isinstance(secondary, dict):
        raise ParseError(f"spec.attributes[{index}] has a bad handle_id or secondary")
    fields = []
    for key in ("node", "namespace", "pod", "type"):
        value = secondary.get(key) or ""
        if not isinstance(value, str):
            raise ParseError(f"spec.attributes[{index}].secondary.{key} is not a string")
        fields.append(sys.intern(value))
    return AllocationOwner(handle, *fields)


_OWNERS: dict[tuple[str, str, str, str, str], AllocationOwner] = {}
"""Owners seen recently, by (handle, node, namespace, pod, type): a block is re-sent whole after
every IPAM write, and all but one of its attributes are the same as before."""
_OWNERS_MAX = 100_000
_NO_SECONDARY: Mapping[str, Any] = {}


def _owners(attributes: list[Any]) -> list[AllocationOwner]:
    """One owner per ``attributes[]`` entry, reusing equal owners parsed before."""
    cache = _OWNERS
    out: list[AllocationOwner] = []
    for index, attr in enumerate(attributes):
        if isinstance(attr, dict):
            secondary = attr.get("secondary") or _NO_SECONDARY
            if isinstance(secondary, dict):
                key = (attr.get("handle_id") or "", secondary.get("node") or "",
                       secondary.get("namespace") or "", secondary.get("pod") or "",
                       secondary.get("type") or "")
                try:
                    owner = cache.get(key)
                except TypeError:  # an unhashable value: _owner reports it
                    owner = None
                if owner is not None:  # equal to a key of strings, so all strings
                    out.append(owner)
                    continue
        owner = _owner(attr, index)
        if len(cache) >= _OWNERS_MAX:
            cache.clear()
        cache[(owner.handle, owner.node, owner.namespace, owner.pod, owner.kind)] = owner
        out.append(owner)
    return out


def parse_ipamblock(raw: RawObject) -> IPAMBlock:
    name, spec = _spec(raw)
    cidr = parse_cidr(spec.get("cidr"), field="spec.cidr")
    affinity = _str(spec, "affinity")
    size = 1 << (cidr.max_prefixlen - cidr.prefixlen)
    if parse_bool(spec.get("deleted"), field="spec.deleted"):
        return IPAMBlock(name, cidr, affinity, size, 0, deleted=True)

    allocations = spec.get("allocations")
    unallocated = spec.get("unallocated")
    attributes = spec.get("attributes") or []
    if not isinstance(allocations, list):
        raise ParseError("spec.allocations is not a list")
    if not isinstance(unallocated, list):
        raise ParseError("spec.unallocated is not a list")
    if not isinstance(attributes, list):
        raise ParseError("spec.attributes is not a list")
    if len(allocations) != size:
        raise ParseError(
            f"spec.allocations has {len(allocations)} entries, a /{cidr.prefixlen} block has {size}"
        )
    owners = _owners(attributes)
    ordinals: list[int] = []
    block_owners: list[AllocationOwner] = []
    free_ordinals: list[int] = []
    known = len(owners)
    for ordinal, index in enumerate(allocations):
        if index is None:
            free_ordinals.append(ordinal)
            continue
        if type(index) is not int or not 0 <= index < known:  # bool is not exactly int
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise ParseError(f"spec.allocations[{ordinal}] {index!r} is not an attribute index")
            if index >= known:
                raise ParseError(
                    f"spec.allocations[{ordinal}] points at attribute {index}, "
                    f"only {known} exist"
                )
        ordinals.append(ordinal)
        block_owners.append(owners[index])
    free = len(free_ordinals)
    try:
        # unallocated is exactly the free ordinals, each once, all plain ints: checked in C.
        valid = (len(unallocated) == free and set(map(type, unallocated)) <= {int}
                 and set(unallocated) == set(free_ordinals))
    except TypeError:  # an unhashable entry: the loop below names it
        valid = False
    if valid:
        return IPAMBlock(name, cidr, affinity, size, size - free, tuple(ordinals),
                         tuple(block_owners))
    seen: set[int] = set()
    for ordinal in unallocated:
        if (
            isinstance(ordinal, bool)
            or not isinstance(ordinal, int)
            or not 0 <= ordinal < size
            or ordinal in seen
            or allocations[ordinal] is not None
        ):
            raise ParseError(f"spec.unallocated entry {ordinal!r} is not a free ordinal")
        seen.add(ordinal)
    if len(seen) != free:
        raise ParseError(
            f"spec.unallocated lists {len(seen)} free ordinals, allocations has {free}"
        )
    return IPAMBlock(
        name, cidr, affinity, size, size - len(unallocated), tuple(ordinals), tuple(block_owners)
    )


# --------------------------------------------------------------------------------------------
# BlockAffinity


@dataclass(frozen=True, slots=True)
class BlockAffinity:
    """A node's claim on a block (an index; the block's own affinity is authoritative)."""

    name: str
    node: str
    cidr: IPNetwork
    state: str
    """``confirmed``, ``pending`` or ``pendingDeletion``; Calico reads "" as ``confirmed``."""
    type: str = "host"
    """``host`` or ``virtual``; "" reads as ``host``."""
    deleted: bool = False


def parse_blockaffinity(raw: RawObject) -> BlockAffinity:
    name, spec = _spec(raw)
    node = spec.get("node")
    if not isinstance(node, str) or not node:
        raise ParseError("spec.node missing")
    return BlockAffinity(
        name=name,
        node=sys.intern(node),
        cidr=parse_cidr(spec.get("cidr"), field="spec.cidr"),
        state=_str(spec, "state", "confirmed"),
        type=_str(spec, "type", "host"),
        deleted=parse_bool(spec.get("deleted"), field="spec.deleted"),
    )


# --------------------------------------------------------------------------------------------
# IPAMHandle


@dataclass(frozen=True, slots=True)
class IPAMHandle:
    """An IPAM handle: the owner ID of some addresses and how many it holds in which block."""

    name: str
    handle_id: str
    blocks: Mapping[str, int]
    """Block CIDR -> number of addresses this handle holds there."""
    deleted: bool = False


def parse_ipamhandle(raw: RawObject) -> IPAMHandle:
    name, spec = _spec(raw)
    handle_id = spec.get("handleID")
    if not isinstance(handle_id, str) or not handle_id:
        raise ParseError("spec.handleID missing")
    blocks = spec.get("block") or {}
    if not isinstance(blocks, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in blocks.items()
    ):
        raise ParseError("spec.block is not a map of CIDR to count")
    return IPAMHandle(
        name=name,
        handle_id=handle_id,
        blocks=dict(blocks),
        deleted=parse_bool(spec.get("deleted"), field="spec.deleted"),
    )
