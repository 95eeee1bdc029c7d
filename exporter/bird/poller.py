"""Node mode: read this node's BGP state from BIRD's control sockets every ``bird_interval``.

Each round asks ``bird.ctl`` (IPv4) and ``bird6.ctl`` (IPv6), concurrently, for ``show status``,
``show protocols all`` and ``show route``, and builds one :class:`NodeBGP` for the node (see
:mod:`exporter.bird.parse` for how each reply is read). The collector reads
:meth:`BirdPoller.snapshot`.

What a family contributes when its socket does not answer (refused, timeout, BIRD error), which
is what CalicoNodeStatus shows in the same case: an agent with ``ready=False`` and no peers,
counts or routes, so ``calico_bird_ready`` goes to 0 and the peer series vanish rather than
showing stale values; ``Telemetry.source_up["bird"|"bird6"]`` is False. The process does not
stop: it retries with jittered backoff while no socket answers.

``show route`` is asked last and can take long on a big table. When it fails (timeout, BIRD
closing the connection, an error reply) after ``show status`` and ``show protocols all``
answered, only that round's route counts are unknown: the family's ``NodeBGP.routes`` are left
out of that round (``calico_bgp_routes`` has no series for it: absent, neither 0 nor the last
value), while the agent, its readiness, the peers and their per-peer route counts (from ``show
protocols all``) are kept and ``source_up["bird"|"bird6"]`` stays True.
``source_up["bird_routes"|"bird6_routes"]`` says whether the last ``show route`` answered.
A timeout drops the connection (a late reply must not be read as the next command's); the next
round reconnects.

A missing ``bird6.ctl`` means the node has no IPv6: no v6 agent and no ``source_up["bird6"]``.
Once bird6 has answered, its socket disappearing (BIRD removes it on a clean stop) counts as
down. A missing ``bird.ctl`` is always down.

Malformed lines are counted once per distinct line in ``Telemetry.invalid`` (resource ``bird``
or ``bird6``), not once per poll. ``NodeBGP.last_updated`` stays None: it is CalicoNodeStatus's
``lastUpdated`` and has no meaning here.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from exporter.bird.parse import (
    InvalidSink,
    count_routes,
    iter_routes,
    parse_protocols,
    parse_status,
    peers_from_protocols,
)
from exporter.bird.protocol import BirdClient, BirdError, BirdUnavailable
from exporter.config import BirdSettings
from exporter.model.bgp import BGPPeer, BirdAgent, NodeBGP, PeerCounts, RouteCount
from exporter.model.telemetry import Telemetry

log = structlog.get_logger(__name__)

BACKOFF_MAX = 30.0
"""Longest wait between rounds while no BIRD socket answers, in seconds."""
_MIN_INTERVAL = 0.05
_SEEN_INVALID_MAX = 1000


@dataclass(frozen=True, slots=True)
class FamilyState:
    """What one address family contributed to the last round."""

    agent: BirdAgent
    counts: tuple[PeerCounts, ...] = ()
    peers: tuple[BGPPeer, ...] = ()
    routes: tuple[RouteCount, ...] = ()


@dataclass(slots=True)
class _Family:
    ip_version: int
    source: str
    optional: bool
    client: BirdClient
    sink: InvalidSink
    answered_once: bool = False
    up: bool | None = None
    routes_up: bool | None = None

    @property
    def routes_source(self) -> str:
        return f"{self.source}_routes"


class BirdPoller:
    """Polls BIRD and BIRD6 for one node; ``await run()`` forever, read ``snapshot()``."""

    def __init__(
        self,
        settings: BirdSettings,
        *,
        telemetry: Telemetry,
        routes: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``routes`` adds ``show route`` counts (NodeBGP.routes); ``clock`` is wall time."""
        if not settings.node_name:
            raise ValueError("node mode needs a node name: set --node-name or NODE_NAME")
        self.node = settings.node_name
        self.interval = max(settings.bird_interval, _MIN_INTERVAL)
        self._telemetry = telemetry
        self._routes = routes
        self._clock = clock
        self._families = [
            self._family(4, "bird", settings.bird_socket, settings.bird_timeout, optional=False),
            self._family(6, "bird6", settings.bird6_socket, settings.bird_timeout, optional=True),
        ]
        self._last: NodeBGP | None = None
        self.polled = asyncio.Event()
        """Set once the first round has finished (whatever BIRD answered)."""

    def _family(self, ip_version: int, source: str, path: str, timeout: float, *,
                optional: bool) -> _Family:
        sink = self._sink(source)
        client = BirdClient(path, timeout=timeout, on_invalid=sink)
        return _Family(ip_version, source, optional, client, sink)

    def _sink(self, source: str) -> InvalidSink:
        """Counts each distinct malformed line once (a bad line would recur every round)."""
        seen: set[tuple[str, str]] = set()

        def invalid(reason: str, line: str) -> None:
            key = (reason, line)
            if key in seen:
                return
            if len(seen) >= _SEEN_INVALID_MAX:
                seen.clear()
            seen.add(key)
            self._telemetry.invalid(source, reason=reason, name=line[:200])
        return invalid

    # ----------------------------------------------------------------------------------------

    def snapshot(self) -> list[NodeBGP]:
        """The node's BGP state from the last round; empty before the first round."""
        return [] if self._last is None else [self._last]

    async def run(self) -> None:
        """Poll every interval until cancelled; back off (with jitter) while nothing answers."""
        failures = 0
        try:
            while True:
                started = self._clock()
                await self.poll_once()
                if any(f.up for f in self._families):
                    failures = 0
                    delay = self.interval - (self._clock() - started)
                else:
                    failures += 1
                    delay = self.backoff(failures)
                await asyncio.sleep(max(delay, 0.0))
        finally:
            await self.close()

    def backoff(self, failures: int) -> float:
        """Wait after ``failures`` rounds in a row where no socket answered: full jitter
        between the interval and ``interval * 2**failures``, capped at BACKOFF_MAX."""
        cap = max(self.interval, min(self.interval * 2 ** min(failures, 16), BACKOFF_MAX))
        return random.uniform(self.interval, cap)

    async def poll_once(self) -> NodeBGP:
        """One round over both sockets; updates and returns the snapshot."""
        states = await asyncio.gather(*(self._poll_family(f) for f in self._families))
        present = [s for s in states if s is not None]
        node = NodeBGP(
            node=self.node,
            agents=tuple(s.agent for s in present),
            counts=tuple(c for s in present for c in s.counts),
            peers=tuple(p for s in present for p in s.peers),
            routes=tuple(r for s in present for r in s.routes),
        )
        self._last = node
        self.polled.set()
        return node

    async def close(self) -> None:
        """Close both sockets."""
        for fam in self._families:
            await fam.client.close()

    # ----------------------------------------------------------------------------------------

    async def _poll_family(self, fam: _Family) -> FamilyState | None:
        try:
            state = await self._read_family(fam)
        except BirdUnavailable as exc:
            if exc.missing and fam.optional and not fam.answered_once:
                self._telemetry.source_up.pop(fam.source, None)
                self._telemetry.source_up.pop(fam.routes_source, None)
                return None
            self._mark(fam, up=False, reason=str(exc))
            return FamilyState(BirdAgent(fam.ip_version, ready=False))
        except BirdError as exc:
            self._mark(fam, up=False, reason=str(exc))
            return FamilyState(BirdAgent(fam.ip_version, ready=False))
        fam.answered_once = True
        self._mark(fam, up=True, reason="")
        return state

    def _mark(self, fam: _Family, *, up: bool, reason: str) -> None:
        self._telemetry.source_up[fam.source] = up
        if not up and self._routes:
            self._telemetry.source_up[fam.routes_source] = False
            fam.routes_up = False
        if fam.up is not up:
            if up:
                log.info("bird_up", source=fam.source, path=fam.client.path)
            else:
                log.warning("bird_down", source=fam.source, path=fam.client.path, reason=reason)
        fam.up = up

    def _mark_routes(self, fam: _Family, *, up: bool, reason: str) -> None:
        """Record whether ``show route`` answered this round; log changes only."""
        self._telemetry.source_up[fam.routes_source] = up
        if fam.routes_up is not up:
            if up:
                log.info("bird_routes_up", source=fam.source, path=fam.client.path)
            else:
                log.warning("bird_routes_failed", source=fam.source, path=fam.client.path,
                            reason=reason)
        fam.routes_up = up

    async def _read_family(self, fam: _Family) -> FamilyState:
        client, sink, v = fam.client, fam.sink, fam.ip_version
        status_reply = await client.command("show status")
        protocols_reply = await client.command("show protocols all")
        routes: tuple[RouteCount, ...] = ()
        if self._routes:
            try:
                routes_reply = await client.command("show route")
            except BirdError as exc:
                self._mark_routes(fam, up=False, reason=str(exc))
            else:
                routes = count_routes(iter_routes(routes_reply.lines, on_invalid=sink),
                                      ip_version=v)
                self._mark_routes(fam, up=True, reason="")
        now = self._clock()
        status = parse_status(status_reply.lines, ip_version=v, greeting=client.greeting,
                              now=now, on_invalid=sink)
        reference = status.server_time if status.server_time is not None else now
        protocols = parse_protocols(protocols_reply.lines, reference=reference,
                                    utc_offset=status.utc_offset, on_invalid=sink)
        counts, peers = peers_from_protocols(protocols, ip_version=v, on_invalid=sink)
        return FamilyState(agent=status.agent, counts=(counts,), peers=peers, routes=routes)


__all__ = ["BACKOFF_MAX", "BirdPoller", "FamilyState"]
