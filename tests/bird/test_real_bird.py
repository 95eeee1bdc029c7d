"""Node mode against three real BIRD 1.6.8 daemons meshed like Calico, in network namespaces.

Each test builds its own lab: a bridge namespace and three node namespaces joined to it by veth
pairs, nodes 198.18.0.2-4/24, and one BIRD per node with its own control socket in a tmp dir,
configured as confd writes bird.cfg for a full iBGP mesh (AS 64512, protocols ``Mesh_<ip>``,
``passive on`` towards peers whose IP is greater as a string, one static blackhole /26 block per
node exported to the peers). Nothing is sent anywhere but between these namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.bird.poller import BirdPoller
from exporter.config import BirdSettings
from exporter.metrics.bgp import families
from exporter.model.bgp import BirdAgent, NodeBGP, PeerCounts, RouteCount
from exporter.model.telemetry import Telemetry
from tests.netns import BIRD, netns_unusable

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180)]

IPS = ("198.18.0.2", "198.18.0.3", "198.18.0.4")
BLOCKS = ("198.19.1.0/26", "198.19.2.0/26", "198.19.3.0/26")
AS = 64512
INTERVAL = 0.5
SETTLE = 60.0
"""Longest wait for BGP sessions to (re-)establish; BIRD's connect delay is 2 s."""


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def bird_config(index: int) -> str:
    """bird.cfg for node ``index`` as confd writes it (the parts BGP state depends on)."""
    local = IPS[index]
    peers = []
    for peer in IPS:
        if peer == local:
            continue
        passive = ("\n  passive on; # Mesh is unidirectional, peer will connect to us."
                   if peer > local else "")
        peers.append(
            f"protocol bgp Mesh_{peer.replace('.', '_')} from bgp_template {{\n"
            f"  neighbor {peer} as {AS};\n"
            f"  source address {local};  # The local address we use for the TCP connection"
            f"{passive}\n}}\n")
    return f"""# Generated like confd's bird.cfg
router id {local};

filter calico_export_to_bgp_peers {{
  if ( net ~ 198.19.0.0/16 ) then {{ accept; }}
  reject;
}}

protocol kernel {{
  learn;
  persist;
  scan time 2;
  import all;
  export none;
  graceful restart;
  merge paths on;
}}

protocol device {{
  debug {{ states }};
  scan time 2;
}}

protocol direct {{
  debug {{ states }};
  interface -"cali*", -"kube-ipvs*", "*";
}}

protocol static {{
  route {BLOCKS[index]} blackhole;
}}

template bgp bgp_template {{
  debug {{ states }};
  description "Connection to BGP peer";
  local as {AS};
  multihop;
  gateway recursive;
  import all;
  export filter calico_export_to_bgp_peers;
  add paths on;
  graceful restart;
  connect delay time 2;
  connect retry time 5;
  error wait time 5,30;
}}

# ------------- Node-to-node mesh -------------
""" + "\n".join(peers)


@dataclass
class Lab:
    """Three BIRDs in namespaces; ``stop(i)``/``start(i)`` control node i's daemon."""

    root: Path
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)

    def ns(self, index: int) -> str:
        return f"ceb{self.token}n{index}"

    def sock(self, index: int) -> str:
        return str(self.root / f"bird{index}.ctl")

    def build(self) -> None:
        bridge = f"ceb{self.token}br"
        _run("ip", "netns", "add", bridge)
        self.namespaces.append(bridge)
        _run("ip", "-n", bridge, "link", "set", "lo", "up")
        _run("ip", "-n", bridge, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", bridge, "link", "set", "br0", "up")
        for i, ip in enumerate(IPS):
            ns = self.ns(i)
            _run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", bridge, "link", "add", f"v{i}", "type", "veth",
                 "peer", "name", "eth0", "netns", ns)
            _run("ip", "-n", bridge, "link", "set", f"v{i}", "master", "br0", "up")
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            (self.root / f"bird{i}.cfg").write_text(bird_config(i))
        for i in range(len(IPS)):
            self.start(i)

    def start(self, index: int) -> None:
        log = (self.root / f"bird{index}.log").open("ab")
        self.procs[index] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(index), BIRD, "-f",
             "-c", str(self.root / f"bird{index}.cfg"), "-s", self.sock(index),
             "-P", str(self.root / f"bird{index}.pid")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()

    def stop(self, index: int) -> None:
        proc = self.procs.pop(index, None)
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def teardown(self) -> None:
        for index in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(index)
        for ns in reversed(self.namespaces):
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                _run("ip", "netns", "del", ns)
        self.namespaces.clear()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A fresh three-node BIRD mesh, torn down (daemons and namespaces) whatever happens."""
    reason = netns_unusable(bird=True)
    if reason is not None:
        pytest.skip(reason)
    mesh = Lab(tmp_path)
    try:
        mesh.build()
        yield mesh
    finally:
        mesh.teardown()


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float,
                     every: float = INTERVAL) -> None:
    """Re-check every ``every`` seconds until true; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(every)


def peer_up(node: NodeBGP) -> dict[str, float]:
    """calico_bgp_peer_up by peer IP, as the BGP collector exports the snapshot."""
    return {s.labels["peer_ip"]: s.value for f in families([node])
            if f.name == "calico_bgp_peer_up" for s in f.samples}


async def test_poller_reports_real_mesh(lab: Lab, tmp_path: Path) -> None:
    """Poller on 198.18.0.2: 2 peers up, a stopped peer down and back, local down."""
    telemetry = Telemetry()
    settings = BirdSettings(node_name="node-1", bird_socket=lab.sock(0),
                            bird6_socket=str(tmp_path / "no-bird6.ctl"),
                            bird_interval=INTERVAL, bird_timeout=2.0)
    poller = BirdPoller(settings, telemetry=telemetry)
    task: asyncio.Task[None] | None = None
    try:
        async def settled() -> bool:
            # Both sessions up and each peer's block received (the UPDATE follows the OPEN).
            node = await poller.poll_once()
            return node.counts == (PeerCounts(4, 2, 0),) and all(
                (p.routes_imported, p.routes_exported) == (1, 1) for p in node.peers)

        await eventually(settled, within=SETTLE)
        (node,) = poller.snapshot()
        assert node.node == "node-1"
        (agent,) = node.agents
        assert (agent.ready, agent.version, agent.router_id) == (True, "1.6.8", "198.18.0.2")
        assert agent.last_boot is not None
        assert [(p.peer_ip, p.peer_type, p.state, p.routes_imported, p.routes_exported)
                for p in node.peers] == [
            ("198.18.0.3", "NodeMesh", "Established", 1, 1),
            ("198.18.0.4", "NodeMesh", "Established", 1, 1)]
        assert all(p.state_changed is not None and p.state_changed >= agent.last_boot
                   for p in node.peers)
        assert set(node.routes) == {RouteCount(4, "FIB", "NodeMesh", 2),
                                    RouteCount(4, "FIB", "Static", 1),
                                    RouteCount(4, "FIB", "Direct", 1)}
        assert telemetry.source_up == {"bird": True, "bird_routes": True}
        assert peer_up(node) == {"198.18.0.3": 1.0, "198.18.0.4": 1.0}

        # Stop the BIRD of 198.18.0.4: down by the second round at the latest.
        lab.stop(2)
        for _ in range(2):
            node = await poller.poll_once()
            if peer_up(node)["198.18.0.4"] == 0:
                break
            await asyncio.sleep(INTERVAL)
        assert peer_up(node) == {"198.18.0.3": 1.0, "198.18.0.4": 0.0}
        assert node.counts == (PeerCounts(4, 1, 1),)
        down = next(p for p in node.peers if p.peer_ip == "198.18.0.4")
        assert down.state == "Unknown"  # BIRD: state start, BGP state Passive
        assert (down.routes_imported, down.routes_exported) == (0, 0)

        lab.start(2)
        await eventually(settled, within=SETTLE)
        assert peer_up(poller.snapshot()[0]) == {"198.18.0.3": 1.0, "198.18.0.4": 1.0}

        # Stop the local BIRD while run() polls: source down, agent not ready, no crash.
        task = asyncio.create_task(poller.run(), name="bird-poller")
        lab.stop(0)

        async def local_down() -> bool:
            return telemetry.source_up.get("bird") is False

        await eventually(local_down, within=30, every=0.1)
        assert not task.done()
        assert poller.snapshot()[0].agents == (BirdAgent(4, ready=False),)
        assert poller.snapshot()[0].peers == ()
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await poller.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _scrape(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, frozenset[
        tuple[str, str]]], float]:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


async def test_node_process_against_real_mesh(lab: Lab, tmp_path: Path) -> None:
    """calico-exporter node: peer_up and routes, peer stop/restart, source_up 0."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {**os.environ, "NODE_NAME": "node-1"}
    out = (tmp_path / "exporter.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "node", "--listen", f"127.0.0.1:{port}",
        "--bird-socket", lab.sock(0), "--bird6-socket", str(tmp_path / "no-bird6.ctl"),
        "--bird-interval", f"{int(INTERVAL * 1000)}ms", "--log-format", "json",
        env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    out.close()

    def peer(ip: str) -> frozenset[tuple[str, str]]:
        return frozenset({"node": "node-1", "ip_version": "4", "peer_ip": ip,
                          "peer_type": "NodeMesh"}.items())

    def routes(ip: str, direction: str) -> frozenset[tuple[str, str]]:
        return peer(ip) | {("direction", direction)}

    bird_source = frozenset({"source": "bird"}.items())
    try:
        async with aiohttp.ClientSession() as session:
            got: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}

            async def up(values: dict[str, float]) -> bool:
                nonlocal got
                assert proc.returncode is None, (tmp_path / "exporter.log").read_text()
                got = await _scrape(session, url)
                return all(got.get(("calico_bgp_peer_up", peer(ip))) == v
                           for ip, v in values.items())

            async def settled() -> bool:
                # Both up and each peer's block received (the UPDATE follows the OPEN).
                return await up({"198.18.0.3": 1, "198.18.0.4": 1}) and all(
                    got.get(("calico_bgp_peer_routes", routes(ip, d))) == 1
                    for ip in ("198.18.0.3", "198.18.0.4") for d in ("imported", "exported"))

            await eventually(settled, within=SETTLE)
            for ip in ("198.18.0.3", "198.18.0.4"):
                assert ("calico_bgp_peer_state_change_timestamp_seconds", peer(ip)) in got
            assert got["calico_exporter_source_up", bird_source] == 1
            assert got["calico_bird_ready", frozenset({("node", "node-1"),
                                                       ("ip_version", "4")})] == 1

            lab.stop(2)
            await eventually(lambda: up({"198.18.0.3": 1, "198.18.0.4": 0}), within=30)
            lab.start(2)
            await eventually(lambda: up({"198.18.0.3": 1, "198.18.0.4": 1}), within=SETTLE)

            lab.stop(0)

            async def source_down() -> bool:
                assert proc.returncode is None, (tmp_path / "exporter.log").read_text()
                return (await _scrape(session, url)).get(
                    ("calico_exporter_source_up", bird_source)) == 0

            await eventually(source_down, within=30)
            final = await _scrape(session, url)
            assert final["calico_bird_ready", frozenset({("node", "node-1"),
                                                         ("ip_version", "4")})] == 0
            assert not any(name == "calico_bgp_peer_up" for name, _ in final)
            assert proc.returncode is None
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def node_config_every_kind() -> str:
    """bird.cfg of 198.18.0.2 with the peer kinds confd writes besides the mesh: two Global
    sessions to 198.18.0.3 on ports 1790 and 1791 (``_port_N`` names) and a Local_Workload_
    session to 198.18.0.4 (nobody there); a static multipath route as well."""
    sessions = "".join(
        f"protocol bgp {name} from bgp_template {{\n"
        f"  neighbor {ip}{f' port {port}' if port else ''} as {AS};\n"
        f"  source address {IPS[0]};\n}}\n"
        for name, ip, port in (("Global_198_18_0_3_port_1790", IPS[1], 1790),
                               ("Global_198_18_0_3_port_1791", IPS[1], 1791),
                               ("Local_Workload_198_18_0_4", IPS[2], None)))
    mesh = bird_config(0)
    head = mesh[:mesh.index("# ------------- Node-to-node mesh")]
    head = head.replace(f"route {BLOCKS[0]} blackhole;",
                        f"route {BLOCKS[0]} blackhole;\n  route 198.19.6.0/26 multipath "
                        f"via {IPS[1]} weight 1 via {IPS[2]} weight 2;")
    return head + sessions


def port_peer_config(port: int) -> str:
    """A passive BGP speaker on 198.18.0.3:``port`` announcing one /26 of its own."""
    return (f"router id {IPS[1]};\nlisten bgp address {IPS[1]} port {port};\n"
            f"protocol device {{ scan time 2; }}\n"
            f"protocol static {{ route 198.19.{port - 1780}.0/26 blackhole; }}\n"
            f"protocol bgp node {{ local as {AS}; neighbor {IPS[0]} as {AS}; passive on; "
            f"multihop; import all; export all; }}\n")


@pytest.fixture
def every_kind_lab(tmp_path: Path) -> Iterator[str]:
    """198.18.0.2 (BIRD with node_config_every_kind()) and 198.18.0.3 (two passive BIRDs on
    ports 1790 and 1791) joined by a veth pair, plus an ECMP kernel route on the node; yields
    the node's control socket and tears everything down whatever happens."""
    reason = netns_unusable(bird=True)
    if reason is not None:
        pytest.skip(reason)
    token = secrets.token_hex(3)
    node_ns, peer_ns = f"ceb{token}k0", f"ceb{token}k1"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for ns in (node_ns, peer_ns):
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", node_ns, "link", "add", "eth0", "type", "veth",
             "peer", "name", "eth0", "netns", peer_ns)
        for ns, ip in ((node_ns, IPS[0]), (peer_ns, IPS[1])):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", node_ns, "route", "add", "198.19.5.0/26", "proto", "static",
             "nexthop", "via", IPS[1], "dev", "eth0", "nexthop", "via", IPS[2], "dev", "eth0")
        configs = [(peer_ns, f"peer{port}", port_peer_config(port)) for port in (1790, 1791)]
        configs.append((node_ns, "node", node_config_every_kind()))
        for ns, name, config in configs:
            (tmp_path / f"{name}.cfg").write_text(config)
            log = (tmp_path / f"{name}.log").open("ab")
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, BIRD, "-f", "-c", str(tmp_path / f"{name}.cfg"),
                 "-s", str(tmp_path / f"{name}.ctl"), "-P", str(tmp_path / f"{name}.pid")],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL))
            log.close()
        yield str(tmp_path / "node.ctl")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for ns in (node_ns, peer_ns):
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                _run("ip", "netns", "del", ns)


async def test_every_peer_kind_and_multipath_on_real_bird(every_kind_lab: str,
                                                          tmp_path: Path) -> None:
    """Real BIRD 1.6.8: two sessions to one IP on ports 1790 and 1791 are two series told apart
    by peer_port, a Local_Workload_ session is peer_type LocalWorkload, and a static multipath
    route and an ECMP kernel route each count once."""
    settings = BirdSettings(node_name="node-1", bird_socket=every_kind_lab,
                            bird6_socket=str(tmp_path / "no-bird6.ctl"),
                            bird_interval=INTERVAL, bird_timeout=2.0)
    poller = BirdPoller(settings, telemetry=Telemetry())
    try:
        async def settled() -> bool:
            node = await poller.poll_once()
            return node.counts == (PeerCounts(4, 2, 1),) and len(node.routes) == 4 and all(
                p.routes_imported == 1 for p in node.peers if p.port)

        await eventually(settled, within=SETTLE)
    finally:
        await poller.close()
    (node,) = poller.snapshot()
    assert [(p.peer_ip, p.peer_type, p.port, p.routes_imported) for p in node.peers] == [
        ("198.18.0.3", "GlobalPeer", 1790, 1),
        ("198.18.0.3", "GlobalPeer", 1791, 1),
        ("198.18.0.4", "LocalWorkload", None, 0)]
    assert [p.state for p in node.peers[:2]] == ["Established", "Established"]
    assert node.peers[2].state in ("Idle", "Connect", "Active")
    assert set(node.routes) == {RouteCount(4, "FIB", "BGPPeer", 2),
                                RouteCount(4, "FIB", "Static", 2),
                                RouteCount(4, "FIB", "Direct", 1),
                                RouteCount(4, "FIB", "Kernel", 1)}
    up = {tuple(sorted(s.labels.items())): s.value for f in families([node])
          if f.name == "calico_bgp_peer_up" for s in f.samples}
    base = (("ip_version", "4"), ("node", "node-1"))
    assert up == {
        (*base, ("peer_ip", "198.18.0.3"), ("peer_port", "1790"),
         ("peer_type", "GlobalPeer")): 1.0,
        (*base, ("peer_ip", "198.18.0.3"), ("peer_port", "1791"),
         ("peer_type", "GlobalPeer")): 1.0,
        (*base, ("peer_ip", "198.18.0.4"), ("peer_type", "LocalWorkload")): 0.0}
