"""The simulated BIRD control sockets answer as calico-node's BIRD 1.6 does, and node mode reading
them sees the same BGP world the simulated CalicoNodeStatus reports."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from exporter.bird.parse import split_replies
from exporter.bird.poller import BirdPoller
from exporter.bird.protocol import BirdClient, BirdReplyError
from exporter.config import BirdSettings
from exporter.model.bgp import NodeBGP
from exporter.model.nodestatus import parse_node_status
from exporter.model.telemetry import Telemetry
from exporter.sim.apiserver import ApiServer
from exporter.sim.bird import BirdSockets, BirdView
from exporter.sim.calico_node import CNS
from exporter.sim.cluster import SimCluster
from exporter.sim.scenario import Scenario, load, parse

CAPTURES = Path(__file__).parents[1] / "bird" / "data" / "bird-1.6.8-debian-captures.yaml"
POPULATOR = Path(__file__).parents[1] / "bird" / "data" / (
    "bird-socket-transcripts-node-populator-tests.yaml")
MASTER, WORKER0 = "nke-dev01-89e792-master-0", "nke-dev01-89e792-worker-0"


@dataclasses.dataclass
class World:
    api: ApiServer
    cluster: SimCluster
    sockets: BirdSockets


@pytest.fixture
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    """A simulated cluster (nke-lab unless parametrised) with its BIRD sockets served."""
    scenario: Scenario = getattr(request, "param", None) or load("nke-lab")
    api = ApiServer(token=None)
    await api.start()
    cluster = SimCluster(api, scenario)
    await cluster.start()
    sockets = BirdSockets(cluster, tmp_path / "bird", resync=0.05)
    await sockets.start()
    try:
        yield World(api, cluster, sockets)
    finally:
        await sockets.stop()
        await cluster.stop()
        await api.stop()


def _codes(raw_lines: list[str]) -> list[int]:
    """The reply code of every line (continuations inherit theirs), as the parser reads them."""
    (reply,) = split_replies("\n".join(raw_lines), on_invalid=_fail)
    return [line.code for line in reply.lines]


def _fail(reason: str, line: str) -> None:
    raise AssertionError(f"{reason}: {line!r}")


def test_status_has_the_shape_of_real_bird(world: World) -> None:
    """``show status`` has the codes and line forms of the Debian BIRD 1.6.8 capture and of the
    transcript in Calico's populator tests (projectcalico/calico v3.32.1
    node/pkg/status/populators/bird_status_test.go): 1000, 1011 with continuations, 0013."""
    ours = BirdView(world.cluster, MASTER, 4).status()
    captured = yaml.safe_load(CAPTURES.read_text())["show_status"]["raw"].splitlines()
    assert _codes(ours) == _codes(captured) == [1000, 1011, 1011, 1011, 1011, 13]
    calico = yaml.safe_load(POPULATOR.read_text())["show_status"]["raw"].splitlines()
    for mine, theirs in zip(ours[1:5], calico[2:6], strict=True):  # its last line is a mock's
        assert mine.split(" is ")[0].split(" on ")[0] == theirs.split(" is ")[0].split(" on ")[0]
    assert ours[0] == calico[1]  # 1000-BIRD v0.3.3+birdv1.6.8, Calico's BIRD


def test_protocol_rows_have_the_shape_of_real_bird(world: World) -> None:
    """``show protocols all`` starts with BIRD's heading line, and each protocol is a 1002 row
    followed by 1006 details, as in the Debian capture."""
    ours = BirdView(world.cluster, MASTER, 4).protocols(verbose=True)
    captured = yaml.safe_load(CAPTURES.read_text())["show_protocols_all_established"]["raw"]
    assert ours[0] == captured.splitlines()[0]
    codes = _codes(ours)
    assert codes[0] == 2002
    assert codes.count(1002) == 6  # kernel1, device1, direct1, static1, two mesh peers
    assert codes[-1] == 0
    rows = [line for line in ours if line.startswith("1002-")]
    assert [r.split()[0] for r in rows] == [
        "1002-kernel1", "1002-device1", "1002-direct1", "1002-static1",
        "1002-Mesh_192_168_102_103", "1002-Mesh_192_168_102_104"]


async def _node_mode(world: World, node: str) -> tuple[NodeBGP, Telemetry]:
    telemetry = Telemetry()
    poller = BirdPoller(BirdSettings(node_name=node,
                                     bird_socket=str(world.sockets.path(node, 4)),
                                     bird6_socket=str(world.sockets.path(node, 6))),
                        telemetry=telemetry)
    try:
        return await poller.poll_once(), telemetry
    finally:
        await poller.close()


async def _status_view(world: World, node: str) -> NodeBGP:
    """The node's BGP as the simulated calico-node reports it into a CalicoNodeStatus."""
    name = f"check-{node}"
    world.api.create({"apiVersion": "crd.projectcalico.org/v1", "kind": "CalicoNodeStatus",
                      "metadata": {"name": name},
                      "spec": {"node": node, "classes": ["Agent", "BGP", "Routes"],
                               "updatePeriodSeconds": 1}})
    for _ in range(100):
        obj = world.api.get(CNS, name)
        if obj.get("status"):
            break
        await asyncio.sleep(0.05)
    world.api.delete(CNS, name)
    return parse_node_status(obj).bgp


def _comparable(bgp: NodeBGP, versions: set[int]) -> tuple[object, ...]:
    """What both views have, for the IP versions node mode saw (the simulated calico-node also
    reports an idle BIRD6 on IPv4-only nodes; node mode sees no bird6.ctl there)."""
    peers = sorted((p.ip_version, p.peer_ip, p.peer_type, p.state) for p in bgp.peers
                   if p.ip_version in versions)
    agents = sorted((a.ip_version, a.ready, a.version, a.router_id) for a in bgp.agents
                    if a.ip_version in versions)
    counts = sorted((c.ip_version, c.established, c.not_established) for c in bgp.counts
                    if c.ip_version in versions)
    routes = sorted((r.ip_version, r.type, r.source_type, r.count) for r in bgp.routes
                    if r.ip_version in versions)
    return tuple(counts), tuple(peers), tuple(routes), tuple(agents)


def _same(direct: NodeBGP, reported: NodeBGP) -> bool:
    versions = {a.ip_version for a in direct.agents}
    return _comparable(direct, versions) == _comparable(reported, versions)


async def test_node_mode_sees_what_the_node_status_reports(world: World) -> None:
    """For every node, node mode over the simulated socket gets the peer counts, peers and
    their states, route counts and agent the CalicoNodeStatus of the same world has, with no
    line it cannot read; a session taken down shows on both ends, with nothing imported."""
    world.cluster.set_session(MASTER, WORKER0, up=False)
    for node in world.cluster.nodes:
        direct, telemetry = await _node_mode(world, node)
        assert _same(direct, await _status_view(world, node))
        assert not telemetry.invalid_objects
        assert telemetry.source_up == {"bird": True, "bird_routes": True}
    master, _ = await _node_mode(world, MASTER)
    down = next(p for p in master.peers if p.peer_ip == "192.168.102.103")
    assert (down.state, down.routes_imported, down.routes_exported) == ("Active", 0, 0)
    up = next(p for p in master.peers if p.peer_ip == "192.168.102.104")
    assert (up.state, up.routes_imported, up.routes_exported) == ("Established", 1, 1)
    changed = world.cluster.session_changed[frozenset((MASTER, WORKER0))]
    assert down.state_changed == int(changed)
    assert up.state_changed == int(world.cluster.booted)


async def test_bird_down_removes_the_socket(world: World) -> None:
    """A stopped BIRD has no socket (node mode: BIRD down), a started one is back."""
    world.cluster.set_bird(MASTER, up=False)
    await world.sockets.sync()
    assert not world.sockets.path(MASTER).exists()
    bgp, telemetry = await _node_mode(world, MASTER)
    assert [a.ready for a in bgp.agents] == [False]
    assert telemetry.source_up == {"bird": False, "bird_routes": False}
    world.cluster.set_bird(MASTER, up=True)
    await world.sockets.sync()
    bgp, telemetry = await _node_mode(world, MASTER)
    assert [a.ready for a in bgp.agents] == [True]


async def test_errors_as_bird_says_them(world: World) -> None:
    """An unknown command is ``9001 syntax error`` and an unknown protocol ``9002 NAME is not a
    protocol``, as in the Debian capture; the connection stays usable."""
    captures = yaml.safe_load(CAPTURES.read_text())
    async with BirdClient(str(world.sockets.path(MASTER)), timeout=2) as client:
        with pytest.raises(BirdReplyError) as syntax:
            await client.command("show foo")
        assert f"{syntax.value.code:04d} {syntax.value.text}" == (
            captures["error_syntax"]["raw"].strip())
        with pytest.raises(BirdReplyError) as unknown:
            await client.command("show protocols all Mesh_198_18_0_9")
        assert f"{unknown.value.code:04d} {unknown.value.text}" == (
            captures["error_not_a_protocol"]["raw"].strip())
        one = await client.command("show protocols all Mesh_192_168_102_104")
        assert [line.code for line in one.lines][:3] == [2002, 1002, 1006]
        assert client.connects == 1


@pytest.mark.parametrize("world", [load("dual-stack")], indirect=True, ids=["dual-stack"])
async def test_ipv6_on_bird6(world: World) -> None:
    """Nodes with an IPv6 address have bird6.ctl with their IPv6 peers and routes."""
    bgp, telemetry = await _node_mode(world, "ds-node-1")
    assert telemetry.source_up == {"bird": True, "bird6": True, "bird_routes": True,
                                   "bird6_routes": True}
    assert sorted((p.ip_version, p.peer_ip) for p in bgp.peers) == [
        (4, "192.168.60.12"), (4, "192.168.60.13"), (6, "fd00:60::12"), (6, "fd00:60::13")]
    assert {a.ip_version for a in bgp.agents} == {4, 6}
    assert _same(bgp, await _status_view(world, "ds-node-1"))


REFLECTED = parse({
    "name": "rr", "nodes": [{"name": "rr-1", "ipv4": "192.168.70.1"},
                            {"name": "n-2", "ipv4": "192.168.70.2"},
                            {"name": "n-3", "ipv4": "192.168.70.3"}],
    "bgp": {"routeReflectors": ["rr-1"]},
    "ippools": [{"name": "p", "cidr": "10.70.0.0/16", "blockSize": 26}],
    "ipam": {"blocks": [{"cidr": "10.70.1.0/26", "node": "rr-1"},
                        {"cidr": "10.70.2.0/26", "node": "n-2"},
                        {"cidr": "10.70.3.0/26", "node": "n-3"}]},
})


@pytest.mark.parametrize("world", [REFLECTED], indirect=True, ids=["route-reflector"])
async def test_route_reflector(world: World) -> None:
    """With a route reflector, clients have one Node_ protocol to it; the reflector passes the
    other client's block on, so it exports more than its own block to each client."""
    client, _ = await _node_mode(world, "n-2")
    assert [(p.peer_ip, p.peer_type) for p in client.peers] == [("192.168.70.1", "NodePeer")]
    assert client.peers[0].routes_imported == 2  # rr-1's block and n-3's, reflected
    reflector, _ = await _node_mode(world, "rr-1")
    exported = {p.peer_ip: p.routes_exported for p in reflector.peers}
    assert exported == {"192.168.70.2": 2, "192.168.70.3": 2}
    assert _same(client, await _status_view(world, "n-2"))
