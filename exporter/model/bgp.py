"""BGP state of one node, whatever the source: a CalicoNodeStatus or BIRD's control socket.

Both the cluster mode (``exporter.nodestatus``) and the node mode (``exporter.bird``) produce a
:class:`NodeBGP`; the BGP collector only reads these. Fields that one source cannot know are
``None`` (per-peer route counts and state-change times come only from BIRD), and a class of data
that was not collected is an empty tuple, never zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

PEER_STATES = (
    "Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established", "Close", "Unknown",
)
"""The BGP session states we export; anything else (BIRD's Down, Passive, or an empty state in a
CalicoNodeStatus) is exported as Unknown, as Calico's own status reporter leaves it empty."""

PEER_TYPES = ("NodeMesh", "NodePeer", "GlobalPeer", "LocalWorkload")
"""CalicoNodeStatus peer types, which BIRD protocol names Mesh_, Node_, Global_ map to, and
LocalWorkload (``Local_Workload_``: sessions with local workloads, node mode only)."""

BGP_PORT = 179
"""BIRD's (and BGP's) default port: a session whose protocol name has no ``_port_N``."""

ROUTE_SOURCES = ("Kernel", "Static", "Direct", "NodeMesh", "BGPPeer")
"""CalicoNodeStatus ``learnedFrom.sourceType`` values."""


def peer_state(raw: str | None) -> str:
    """Normalise a state string to one of PEER_STATES."""
    return raw if raw in PEER_STATES else "Unknown"


@dataclass(frozen=True, slots=True)
class BGPPeer:
    """One BGP peer of a node."""

    ip_version: int
    peer_ip: str
    peer_type: str
    """One of PEER_TYPES, or "" when unknown."""
    state: str
    """One of PEER_STATES."""
    routes_imported: int | None = None
    """Routes imported from this peer (BIRD only)."""
    routes_exported: int | None = None
    """Routes exported to this peer (BIRD only)."""
    state_changed: float | None = None
    """Unix time of the last state change (BIRD only, from its ``since`` column)."""
    port: int | None = None
    """The peer's port from the protocol name's ``_port_N`` (BIRD only); None for the default
    port, BGP_PORT."""

    @property
    def established(self) -> bool:
        return self.state == "Established"


@dataclass(frozen=True, slots=True)
class BirdAgent:
    """The BIRD daemon of one address family on a node."""

    ip_version: int
    ready: bool
    version: str = ""
    router_id: str = ""
    last_boot: float | None = None
    """Unix time BIRD last started."""
    last_reconfig: float | None = None
    """Unix time BIRD last reloaded its configuration."""


@dataclass(frozen=True, slots=True)
class PeerCounts:
    """Established and not-established peer counts of one address family."""

    ip_version: int
    established: int
    not_established: int


@dataclass(frozen=True, slots=True)
class RouteCount:
    """Number of routes of one (ip_version, FIB|RIB, sourceType) on a node."""

    ip_version: int
    type: str
    source_type: str
    count: int


@dataclass(frozen=True, slots=True)
class NodeBGP:
    """Everything known about BGP on one node at one moment."""

    node: str
    agents: tuple[BirdAgent, ...] = ()
    counts: tuple[PeerCounts, ...] = ()
    peers: tuple[BGPPeer, ...] = ()
    routes: tuple[RouteCount, ...] = ()
    last_updated: float | None = None
    """Unix time the source last changed this state (CalicoNodeStatus ``status.lastUpdated``)."""
