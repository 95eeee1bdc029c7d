"""CalicoNodeStatus (``crd.projectcalico.org/v1``) parsed into its spec and a :class:`NodeBGP`.

Semantics follow Calico's node status reporter (``../shared/docs/calico-model.md`` §1): a class
missing from ``spec.classes``, a missing ``status`` or a ``status`` never filled in
(``lastUpdated`` null) means "not collected", so the matching part of :class:`NodeBGP` stays empty
instead of turning into zeros. Routes are reduced to counts per (ip_version, type, sourceType) at
parse time: a status can list thousands of routes and we never keep them.
"""

from __future__ import annotations

import calendar
import operator
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exporter.model import ParseError, RawObject
from exporter.model.bgp import BGPPeer, BirdAgent, NodeBGP, PeerCounts, RouteCount, peer_state
from exporter.model.core import parse_time

CLASSES = ("Agent", "BGP", "Routes")


@dataclass(frozen=True, slots=True)
class CalicoNodeStatus:
    """One CalicoNodeStatus: what it asks calico-node for, who owns it, and what it reports."""

    name: str
    uid: str
    node: str
    classes: tuple[str, ...]
    update_period: int | None
    """spec.updatePeriodSeconds; None when absent (calico-node then ignores the object)."""
    labels: Mapping[str, str]
    owner_uids: tuple[str, ...]
    bgp: NodeBGP


_BIRD_TIMES: dict[str, float] = {}
"""Parsed BIRD times by text: a node reports the same boot and reconfiguration times for hours."""
_BIRD_TIMES_MAX = 10_000


def parse_bird_time(value: object) -> float | None:
    """BIRD's ``YYYY-MM-DD HH:MM:SS`` (daemon local time, UTC in calico-node) as Unix seconds."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ParseError(f"BIRD time {value!r} is not a string")
    cached = _BIRD_TIMES.get(value)
    if cached is not None:
        return cached
    try:
        parsed = float(calendar.timegm(time.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")))
    except ValueError:
        raise ParseError(f"BIRD time {value!r} is not YYYY-MM-DD HH:MM:SS") from None
    if len(_BIRD_TIMES) >= _BIRD_TIMES_MAX:
        _BIRD_TIMES.clear()
    _BIRD_TIMES[value] = parsed
    return parsed


def _map(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParseError(f"{key} is not an object")
    return value


def _list(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ParseError(f"{key} is not a list")
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ParseError(f"{key} is not a non-negative integer")
    return value


def _agents(agent: Mapping[str, Any]) -> tuple[BirdAgent, ...]:
    out = []
    for version, key in ((4, "birdV4"), (6, "birdV6")):
        bird = _map(agent, key)
        if not bird:
            continue
        out.append(
            BirdAgent(
                ip_version=version,
                ready=bird.get("state") == "Ready",
                version=str(bird.get("version", "")),
                router_id=str(bird.get("routerID", "")),
                last_boot=parse_bird_time(bird.get("lastBootTime")),
                last_reconfig=parse_bird_time(bird.get("lastReconfigurationTime")),
            )
        )
    return tuple(out)


def _bgp(bgp: Mapping[str, Any]) -> tuple[tuple[PeerCounts, ...], tuple[BGPPeer, ...]]:
    if not bgp:
        return (), ()
    counts = (
        PeerCounts(4, _int(bgp, "numberEstablishedV4"), _int(bgp, "numberNotEstablishedV4")),
        PeerCounts(6, _int(bgp, "numberEstablishedV6"), _int(bgp, "numberNotEstablishedV6")),
    )
    peers = []
    for version, key in ((4, "peersV4"), (6, "peersV6")):
        for peer in _list(bgp, key):
            if not isinstance(peer, dict) or not isinstance(peer.get("peerIP"), str):
                raise ParseError(f"{key} entry without peerIP")
            peers.append(
                BGPPeer(
                    ip_version=version,
                    peer_ip=peer["peerIP"],
                    peer_type=str(peer.get("type", "")),
                    state=peer_state(peer.get("state")),
                )
            )
    return counts, tuple(peers)


_NO_SOURCE: Mapping[str, Any] = {}
_TYPE = operator.itemgetter("type")
_LEARNED = operator.itemgetter("learnedFrom")
_SOURCE = operator.itemgetter("sourceType")


def _routes(routes: Mapping[str, Any]) -> tuple[RouteCount, ...]:
    counts: Counter[tuple[int, str, str]] = Counter()
    for version, key in ((4, "routesV4"), (6, "routesV6")):
        items = _list(routes, key)
        pairs: Counter[tuple[object, object]]
        try:
            # The common case entirely in C: every route a map with type and learnedFrom.sourceType.
            pairs = Counter(zip(map(_TYPE, items), map(_SOURCE, map(_LEARNED, items)),
                                strict=True))
        except (KeyError, TypeError):
            try:
                # learnedFrom absent or empty somewhere, still maps and hashable values.
                pairs = Counter([(r.get("type", ""), (r.get("learnedFrom") or _NO_SOURCE)
                                  .get("sourceType", "")) for r in items])
            except (AttributeError, TypeError):
                pairs = _route_pairs(items, key)
        if not all(type(kind) is str and type(source) is str for kind, source in pairs):
            pairs = _route_pairs(items, key)  # 1 and True count as one key before str()
        for (kind, source), n in pairs.items():
            counts[(version, str(kind), str(source))] += n
    return tuple(RouteCount(v, t, s, n) for (v, t, s), n in sorted(counts.items()))


def _route_pairs(items: list[Any], key: str) -> Counter[tuple[object, object]]:
    pairs: Counter[tuple[object, object]] = Counter()
    for route in items:
        if not isinstance(route, dict):
            raise ParseError(f"{key} entry is not an object")
        learned = route.get("learnedFrom") or {}
        source = learned.get("sourceType", "") if isinstance(learned, dict) else ""
        pairs[(str(route.get("type", "")), str(source))] += 1
    return pairs


def parse_node_status(raw: RawObject) -> CalicoNodeStatus:
    """Parse a CalicoNodeStatus; raises ParseError when it is malformed."""
    meta = raw.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise ParseError("metadata.name missing")
    spec = _map(raw, "spec")
    status = _map(raw, "status")
    node = spec.get("node")
    if not isinstance(node, str) or not node:
        raise ParseError("spec.node missing")
    classes = tuple(str(c) for c in _list(spec, "classes"))
    period = spec.get("updatePeriodSeconds")
    if period is not None and (not isinstance(period, int) or isinstance(period, bool)):
        raise ParseError("spec.updatePeriodSeconds is not an integer")
    owners = tuple(
        str(o.get("uid", "")) for o in _list(meta, "ownerReferences") if isinstance(o, dict)
    )
    last_updated = parse_time(status.get("lastUpdated"))
    agents: tuple[BirdAgent, ...] = ()
    counts: tuple[PeerCounts, ...] = ()
    peers: tuple[BGPPeer, ...] = ()
    routes: tuple[RouteCount, ...] = ()
    if last_updated is not None:
        if "Agent" in classes:
            agents = _agents(_map(status, "agent"))
        if "BGP" in classes:
            counts, peers = _bgp(_map(status, "bgp"))
        if "Routes" in classes:
            routes = _routes(_map(status, "routes"))
    labels = meta.get("labels") or {}
    return CalicoNodeStatus(
        name=meta["name"],
        uid=str(meta.get("uid", "")),
        node=node,
        classes=classes,
        update_period=period,
        labels=dict(labels) if isinstance(labels, dict) else {},
        owner_uids=owners,
        bgp=NodeBGP(node=node, agents=agents, counts=counts, peers=peers, routes=routes,
                    last_updated=last_updated),
    )
