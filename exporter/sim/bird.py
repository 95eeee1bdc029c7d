"""Simulated BIRD control sockets: what calico-node's BIRD 1.6 answers on ``bird.ctl`` and
``bird6.ctl``, from the BGP world of a :class:`~exporter.sim.cluster.SimCluster`.

One :class:`BirdView` renders a node's replies for one address family, in BIRD 1.6.8's own formats
(``nest/cmds.c`` ``show status``, ``nest/proto.c`` ``proto_cmd_show`` and
``proto_show_basic_info``, ``proto/bgp/bgp.c`` ``bgp_show_proto_info`` and ``bgp_get_status``,
``nest/rt-table.c`` ``rt_show_rte``; compare the transcripts of Calico's populator tests and the
Debian BIRD captures in ``tests/bird/data``):

- ``show status``: version (Calico's ``v0.3.3+birdv1.6.8``), router ID (the node's address),
  server time (UTC, as in calico-node), last reboot and reconfiguration (when the cluster
  booted);
- ``show protocols [all [NAME]]``: ``kernel1``, ``device1``, ``direct1``, ``static1`` and one BGP
  protocol per configured peer, named as confd names them (``Mesh_<ip>`` in a full mesh,
  ``Node_<ip>`` towards route reflectors), ``up``/``Established`` or ``start``/``Active`` with
  ``Socket: Connection timed out``; ``since`` is when the session last changed (``HH:MM:SS``
  within 20 hours, else the date); the details give ``Routes: N imported, M exported, K
  preferred``: imported are the routes learned over the session, preferred those of them BIRD
  selected, exported the node's own blocks (iBGP does not pass on what it learned, except a
  route reflector to its clients);
- ``show route``: the same routes the simulated calico-node reports in CalicoNodeStatus, as BIRD
  lists them (primary path with ``*`` first, alternatives below it);
- anything else: ``9001 syntax error``; an unknown protocol name ``9002 NAME is not a protocol``.

:class:`BirdSockets` serves these on Unix sockets under a directory, ``<dir>/<node>/bird.ctl``
and ``bird6.ctl`` (the latter only for nodes with an IPv6 address), and keeps them in step with
the cluster: a node's sockets go away while its BIRD is down (as BIRD removes its socket on a
clean stop) or when the node leaves, and come back when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter.sim.calico_node import BIRD_VERSION, bird_since

if TYPE_CHECKING:
    from exporter.sim.cluster import SimCluster

_log = logging.getLogger(__name__)

__all__ = ["BirdSockets", "BirdView"]

_SOURCE_PROTOCOL = {"Kernel": "kernel1", "Direct": "direct1", "Static": "static1"}
_PREFERENCE = {"kernel1": 10, "direct1": 240, "static1": 200}


def _clock(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


def protocol_name(peer_type: str, ip: str) -> str:
    """confd's protocol name for a peer: ``Mesh_192_168_0_1``, ``Node_fd00__1``."""
    prefix = {"NodeMesh": "Mesh", "NodePeer": "Node", "GlobalPeer": "Global"}[peer_type]
    sep = ":" if ":" in ip else "."
    return f"{prefix}_{ip.replace(sep, '_')}"


class BirdView:
    """The replies of one node's BIRD (``ip_version`` 4) or BIRD6 (6), rendered on demand."""

    def __init__(self, cluster: SimCluster, node: str, ip_version: int, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self.node = node
        self.ip_version = ip_version
        self.clock = clock

    # ---------------------------------------------------------------------------- the world

    def _address(self, node: str) -> str:
        sim = self.cluster.nodes[node]
        return sim.ipv4 if self.ip_version == 4 else sim.ipv6

    def _routes(self) -> list[dict[str, Any]]:
        key = "routesV4" if self.ip_version == 4 else "routesV6"
        routes: list[dict[str, Any]] = self.cluster.route_status(self.node).get(key, [])
        return routes

    def _peers(self, now: float) -> list[dict[str, Any]]:
        """One entry per BGP session of this family: name, address, state, since, counts."""
        routes = self._routes()
        own_blocks = sum(1 for r in routes if r["learnedFrom"]["sourceType"] == "Static")
        me = self.cluster.nodes[self.node]
        out = []
        for peer, peer_type in self.cluster.peers_of(self.node):
            ip = self._address(peer.name)
            if not ip or not self._address(self.node):
                continue
            up = self.cluster.session_up(self.node, peer.name)
            changed = self.cluster.session_changed.get(frozenset((self.node, peer.name)),
                                                       self.cluster.booted)
            addresses = {a for a in (peer.ipv4, peer.ipv6) if a}
            learned = [r for r in routes if r["learnedFrom"].get("peerIP") in addresses]
            reflected = 0
            if me.route_reflector and not peer.route_reflector:
                reflected = sum(1 for r in routes if r["type"] == "FIB"
                                and r["learnedFrom"].get("peerIP") not in (None, *addresses))
            out.append({
                "name": protocol_name(peer_type, ip), "ip": ip, "up": up,
                "router_id": peer.ipv4,
                "since": bird_since(changed, now),
                "imported": len(learned) if up else 0,
                "preferred": sum(1 for r in learned if r["type"] == "FIB") if up else 0,
                "exported": own_blocks + reflected if up else 0,
            })
        return out

    # ---------------------------------------------------------------------------- replies

    def status(self) -> list[str]:
        now = self.clock()
        booted = self.cluster.booted
        return [
            f"1000-BIRD {BIRD_VERSION}",
            f"1011-Router ID is {self.cluster.nodes[self.node].ipv4}",
            f" Current server time is {_clock(now)}",
            f" Last reboot on {_clock(booted)}",
            f" Last reconfiguration on {_clock(booted)}",
            "0013 Daemon is up and running",
        ]

    def protocols(self, *, verbose: bool, name: str | None = None) -> list[str]:
        now = self.clock()
        booted = bird_since(self.cluster.booted, now)
        routes = self._routes()
        rows: list[tuple[str, str, str, str, str, list[str]]] = []
        counts = {p: sum(1 for r in routes if _SOURCE_PROTOCOL.get(
            r["learnedFrom"]["sourceType"]) == p) for p in _PREFERENCE}
        filters = {"kernel1": ("ACCEPT", "calico_kernel_programming"),
                   "direct1": ("ACCEPT", "REJECT"), "static1": ("ACCEPT", "REJECT")}
        exported = {"kernel1": sum(1 for r in routes if r["type"] == "FIB"), "direct1": 0,
                    "static1": 0}
        for proto, kind in (("kernel1", "Kernel"), ("device1", "Device"),
                            ("direct1", "Direct"), ("static1", "Static")):
            details: list[str] = []
            if proto != "device1":
                details = [f"  Preference:     {_PREFERENCE[proto]}",
                           f"  Input filter:   {filters[proto][0]}",
                           f"  Output filter:  {filters[proto][1]}",
                           *self._stats(counts[proto], exported[proto], counts[proto])]
            else:
                details = ["  Preference:     0", "  Input filter:   ACCEPT",
                           "  Output filter:  REJECT"]
            rows.append((proto, kind, "up", booted, "", details))
        for peer in self._peers(now):
            state = "Established" if peer["up"] else "Active"
            info = "Established" if peer["up"] else f"{state:<14}Socket: Connection timed out"
            details = ["  Description:    Connection to BGP peer",
                       "  Preference:     100", "  Input filter:   ACCEPT",
                       "  Output filter:  calico_export_to_bgp_peers",
                       *self._stats(peer["imported"], peer["exported"], peer["preferred"]),
                       f"  BGP state:          {state}",
                       f"    Neighbor address: {peer['ip']}",
                       f"    Neighbor AS:      {self.cluster.scenario.as_number}"]
            if peer["up"]:
                details += [f"    Neighbor ID:      {peer['router_id']}",
                            "    Neighbor caps:    refresh enhanced-refresh restart-able "
                            "llgr-aware AS4 add-path-rx add-path-tx",
                            "    Session:          internal multihop AS4 add-path-rx "
                            "add-path-tx",
                            f"    Source address:   {self._address(self.node)}",
                            "    Hold timer:       198/240", "    Keepalive timer:  53/80"]
            else:
                details += ["    Connect delay:    3/5",
                            "    Last error:       Socket: Connection timed out"]
            rows.append((peer["name"], "BGP", "up" if peer["up"] else "start", peer["since"],
                         info, details))
        if name is not None:
            rows = [r for r in rows if r[0] == name]
            if not rows:
                return [f"9002 {name} is not a protocol"]
        lines = ["2002-name     proto    table    state  since       info"]
        for proto, kind, state, since, info, details in rows:
            lines.append(f"1002-{proto:<8} {kind:<8} {'master':<8} {state:<5}  {since:<10}  "
                         f"{info}".rstrip())
            if verbose:
                lines.append("1006-" + details[0])
                lines += [" " + d for d in details[1:]]
                lines.append(" ")
        lines.append("0000")
        return [line.rstrip() if line != " " else line for line in lines]

    @staticmethod
    def _stats(imported: int, exported: int, preferred: int) -> list[str]:
        return [f"  Routes:         {imported} imported, {exported} exported, {preferred} "
                "preferred",
                "  Route change stats:     received   rejected   filtered    ignored   accepted",
                f"    Import updates:     {imported:>10} {0:>10} {0:>10} {0:>10} {imported:>10}",
                f"    Import withdraws:   {0:>10} {0:>10}        --- {0:>10} {0:>10}",
                f"    Export updates:     {exported:>10} {0:>10} {0:>10}        --- "
                f"{exported:>10}",
                f"    Export withdraws:   {0:>10}        ---        ---        --- {0:>10}"]

    def routes(self) -> list[str]:
        now = self.clock()
        booted = bird_since(self.cluster.booted, now)
        # The simulated CalicoNodeStatus names a route's peer and gateway by the peer node's
        # IPv4 address in both families; BIRD6 knows the peer by its IPv6 address.
        peers: dict[str, tuple[str, str, str]] = {}
        for node, peer_type in self.cluster.peers_of(self.node):
            ip = self._address(node.name)
            if not ip:
                continue
            entry = (protocol_name(peer_type, ip), ip, bird_since(self.cluster.session_changed.get(
                frozenset((self.node, node.name)), self.cluster.booted), now))
            for address in (node.ipv4, node.ipv6):
                if address:
                    peers[address] = entry
        by_dest: dict[str, list[dict[str, Any]]] = {}
        for route in self._routes():
            by_dest.setdefault(route["destination"], []).append(route)
        lines: list[str] = []
        for dest, paths in by_dest.items():
            paths.sort(key=lambda r: r["type"] != "FIB")
            for i, r in enumerate(paths):
                source = r["learnedFrom"]["sourceType"]
                peer = peers.get(r["learnedFrom"].get("peerIP") or "")
                proto = _SOURCE_PROTOCOL.get(source) or (peer[0] if peer else "bgp1")
                when = peer[2] if peer else booted
                gateway = peers[r["gateway"]][1] if r["gateway"] in peers else r["gateway"]
                if r["interface"] == "blackhole":
                    via = "blackhole"
                elif gateway == "N/A":
                    via = f"dev {r['interface']}"
                else:
                    via = f"via {gateway} on {r['interface']}"
                info = " (100/0) [i]" if peer else f" ({_PREFERENCE.get(proto, 100)})"
                mark = " *" if r["type"] == "FIB" else ""
                shown = dest if i == 0 else ""
                lines.append(f"{shown:<18} {via} [{proto} {when}]{mark}{info}")
        if not lines:
            return ["0000"]
        return ["1007-" + lines[0], *(" " + line for line in lines[1:]), "0000"]

    def answer(self, command: str) -> list[str]:
        """The reply lines (codes included) to one command line."""
        words = command.split()
        if words == ["show", "status"]:
            return self.status()
        if words[:2] == ["show", "protocols"] and len(words) <= 4:
            verbose = len(words) >= 3 and words[2] == "all"
            if len(words) == 4 and not verbose:
                return ["9001 syntax error"]
            name = words[3] if len(words) == 4 else (
                words[2] if len(words) == 3 and not verbose else None)
            return self.protocols(verbose=verbose, name=name)
        if words == ["show", "route"]:
            return self.routes()
        return ["9001 syntax error"]


class _Server:
    """One listening control socket."""

    def __init__(self, view: BirdView, path: Path) -> None:
        self.view = view
        self.path = path
        self.server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.server = await asyncio.start_unix_server(self._client, path=str(self.path))
        self.path.chmod(0o660)  # BIRD makes its sockets root:root 0660

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self._clients):  # a stopped BIRD drops its connections
                writer.close()
            await self.server.wait_closed()
            self.server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            writer.write(f"0001 BIRD {BIRD_VERSION} ready.\n".encode())
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    break
                reply = self.view.answer(line.decode(errors="replace").strip())
                writer.write(("\n".join(reply) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class BirdSockets:
    """BIRD's control sockets of every node of a cluster, under ``directory``."""

    def __init__(self, cluster: SimCluster, directory: Path, *,
                 clock: Callable[[], float] = time.time, resync: float = 0.2) -> None:
        self.cluster = cluster
        self.directory = directory
        self.clock = clock
        self.resync = resync
        self._servers: dict[tuple[str, int], _Server] = {}
        self._task: asyncio.Task[None] | None = None

    def path(self, node: str, ip_version: int = 4) -> Path:
        """Where the node's ``bird.ctl`` (4) or ``bird6.ctl`` (6) is, whether or not it is up."""
        return self.directory / node / ("bird.ctl" if ip_version == 4 else "bird6.ctl")

    def _wanted(self) -> set[tuple[str, int]]:
        out = set()
        for name, node in self.cluster.nodes.items():
            if name in self.cluster.down_birds:
                continue
            out.add((name, 4))
            if node.ipv6 and ipaddress.ip_address(node.ipv6).version == 6:
                out.add((name, 6))
        return out

    async def sync(self) -> None:
        """Start the sockets of running BIRDs, stop those of stopped ones or departed nodes."""
        wanted = self._wanted()
        for key in sorted(set(self._servers) - wanted):
            await self._servers.pop(key).stop()
        for key in sorted(wanted - set(self._servers)):
            server = _Server(BirdView(self.cluster, key[0], key[1], clock=self.clock),
                             self.path(*key))
            await server.start()
            self._servers[key] = server

    async def start(self) -> None:
        """Serve now, and keep following the cluster until :meth:`stop`."""
        await self.sync()
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="sim-bird")

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.resync)
            try:
                await self.sync()
            except OSError as exc:  # a socket path that cannot be bound: try again later
                _log.warning("sim bird sockets not in step: %s", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for key in list(self._servers):
            await self._servers.pop(key).stop()
