"""BirdPoller against fake bird.ctl / bird6.ctl sockets replaying BIRD 1.6.8 replies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.bird.parse import parse_bird_time
from exporter.bird.poller import BACKOFF_MAX, BirdPoller
from exporter.config import BirdSettings
from exporter.metrics.bgp import BGPCollector, families
from exporter.model.bgp import BGPPeer, BirdAgent, NodeBGP, PeerCounts, RouteCount
from exporter.model.telemetry import Telemetry
from tests.bird.fakebird import CLOSE, HANG, FakeBird, Script
from tests.bird.transcripts import REAL

NOW = parse_bird_time("2026-11-26 06:43:51")
assert NOW is not None


def at(text: str) -> float:
    """Unix time of a BIRD time string."""
    t = parse_bird_time(text)
    assert t is not None
    return t


STATUS_V4 = REAL["show_status"]["raw"].replace("06:42:40", "06:43:50")
PROTOCOLS_V4 = (
    REAL["show_protocols_all_established"]["raw"].removesuffix("0000\n")
    + REAL["show_protocols_all_passive_graceful_restart"]["raw"].split("\n", 1)[1]
)
V4: Script = {"show status": STATUS_V4, "show protocols all": PROTOCOLS_V4,
              "show route": REAL["show_route"]["raw"]}

# The same shapes for bird6, with the IPv6 names confd writes.
STATUS_V6 = STATUS_V4
PROTOCOLS_V6 = (
    REAL["show_protocols_all_established"]["raw"]
    .replace("Mesh_198_18_0_3", "Mesh_fd80_24e2_f998_72d7__3")
    .replace("Neighbor address: 198.18.0.3", "Neighbor address: fd80:24e2:f998:72d7::3")
)
V6: Script = {"show status": STATUS_V6, "show protocols all": PROTOCOLS_V6,
              "show route": "1007-fd80:1::/122      via fd80:24e2:f998:72d7::3 on eth0 "
                            "[Mesh_fd80_24e2_f998_72d7__3 06:42:34] * (100/0) [i]\n0000 \n"}


def settings(tmp_path: Path, **kw: object) -> BirdSettings:
    """BirdSettings with both sockets in tmp_path and a short interval."""
    values: dict[str, object] = {
        "node_name": "node-1", "bird_socket": str(tmp_path / "bird.ctl"),
        "bird6_socket": str(tmp_path / "bird6.ctl"), "bird_interval": 0.05, "bird_timeout": 5.0}
    values.update(kw)
    return BirdSettings(**values)  # type: ignore[arg-type]


def poller(tmp_path: Path, telemetry: Telemetry, **kw: object) -> BirdPoller:
    """A poller whose wall clock reads NOW, just after the captured server time."""
    return BirdPoller(settings(tmp_path, **kw), telemetry=telemetry, clock=lambda: NOW)


def samples(p: BirdPoller) -> dict[tuple[str, tuple[str, ...]], float]:
    """The lead's BGP families over the poller's snapshot: (name, label values) -> value."""
    out: dict[tuple[str, tuple[str, ...]], float] = {}
    for family in families(p.snapshot()):
        for s in family.samples:
            out[s.name, tuple(s.labels.values())] = s.value
    return out


async def eventually(check: Callable[[], bool], *, within: float = 10.0) -> None:
    """Wait (bounded) until check() is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_poll_builds_node_bgp_for_both_families(tmp_path: Path) -> None:
    """One round over bird and bird6 builds agents, counts, peers and routes."""
    telemetry = Telemetry()
    p = poller(tmp_path, telemetry)
    assert p.snapshot() == []
    async with FakeBird(str(tmp_path / "bird.ctl"), V4), \
            FakeBird(str(tmp_path / "bird6.ctl"), V6):
        try:
            node = await p.poll_once()
        finally:
            await p.close()
    assert p.snapshot() == [node]
    assert node.node == "node-1"
    assert node.last_updated is None
    boot = at("2026-11-26 06:42:32")
    assert node.agents == (BirdAgent(4, True, "1.6.8", "198.18.0.2", boot, boot),
                           BirdAgent(6, True, "1.6.8", "198.18.0.2", boot, boot))
    assert node.counts == (PeerCounts(4, 1, 1), PeerCounts(6, 1, 0))
    assert node.peers == (
        BGPPeer(4, "198.18.0.3", "NodeMesh", "Established", 1, 1, at("2026-11-26 06:42:34")),
        BGPPeer(4, "198.18.0.4", "NodeMesh", "Unknown", 1, 0, at("2026-11-26 06:43:45")),
        BGPPeer(6, "fd80:24e2:f998:72d7::3", "NodeMesh", "Established", 1, 1,
                at("2026-11-26 06:42:34")),
    )
    assert set(node.routes) == {
        RouteCount(4, "FIB", "NodeMesh", 2), RouteCount(4, "FIB", "Static", 1),
        RouteCount(4, "FIB", "Direct", 1), RouteCount(6, "FIB", "NodeMesh", 1)}
    assert telemetry.source_up == {"bird": True, "bird6": True, "bird_routes": True,
                                   "bird6_routes": True}
    assert p.polled.is_set()


async def test_collector_series_from_snapshot(tmp_path: Path) -> None:
    """The BGP collector exports peer_up, peer routes and state change times."""
    p = poller(tmp_path, Telemetry())
    async with FakeBird(str(tmp_path / "bird.ctl"), V4):
        try:
            await p.poll_once()
        finally:
            await p.close()
    got = samples(p)
    peer3, peer4 = ("node-1", "4", "198.18.0.3", "NodeMesh"), ("node-1", "4", "198.18.0.4",
                                                                "NodeMesh")
    assert got["calico_bgp_peer_up", peer3] == 1
    assert got["calico_bgp_peer_up", peer4] == 0
    assert got["calico_bgp_peer_routes", (*peer3, "imported")] == 1
    assert got["calico_bgp_peer_routes", (*peer3, "exported")] == 1
    assert got["calico_bgp_peer_routes", (*peer4, "imported")] == 1
    assert got["calico_bgp_peer_state_change_timestamp_seconds", peer3] == at(
        "2026-11-26 06:42:34")
    assert got["calico_bgp_peers", ("node-1", "4", "established")] == 1
    assert got["calico_bgp_peers", ("node-1", "4", "not_established")] == 1
    assert got["calico_bird_ready", ("node-1", "4")] == 1
    assert ("calico_bird_ready", ("node-1", "6")) not in got


async def test_missing_bird6_means_no_ipv6(tmp_path: Path) -> None:
    """Without bird6.ctl there is no v6 agent, and no bird6 source at all (no down noise)."""
    telemetry = Telemetry()
    p = poller(tmp_path, telemetry)
    async with FakeBird(str(tmp_path / "bird.ctl"), V4):
        try:
            node = await p.poll_once()
        finally:
            await p.close()
    assert [a.ip_version for a in node.agents] == [4]
    assert telemetry.source_up == {"bird": True, "bird_routes": True}


async def test_bird_not_answering_is_down_not_a_crash(tmp_path: Path) -> None:
    """A missing or hanging bird.ctl is source down and a not-ready agent."""
    telemetry = Telemetry()
    p = poller(tmp_path, telemetry, bird_timeout=0.3)
    try:
        node = await p.poll_once()
        assert node.agents == (BirdAgent(4, ready=False),)
        assert (node.counts, node.peers, node.routes) == ((), (), ())
        assert telemetry.source_up == {"bird": False, "bird_routes": False}
        assert samples(p)["calico_bird_ready", ("node-1", "4")] == 0
        async with FakeBird(str(tmp_path / "bird.ctl"), {**V4, "show status": HANG}):
            node = await p.poll_once()
        assert node.agents == (BirdAgent(4, ready=False),)
        assert telemetry.source_up == {"bird": False, "bird_routes": False}
    finally:
        await p.close()


async def test_bird6_stopping_after_answering_is_down(tmp_path: Path) -> None:
    """Once bird6 has answered, its socket disappearing counts as down, not as "no IPv6"."""
    telemetry = Telemetry()
    p = poller(tmp_path, telemetry)
    async with FakeBird(str(tmp_path / "bird.ctl"), V4):
        try:
            async with FakeBird(str(tmp_path / "bird6.ctl"), V6):
                await p.poll_once()
            assert telemetry.source_up["bird6"] is True
            node = await p.poll_once()
        finally:
            await p.close()
    assert telemetry.source_up == {"bird": True, "bird6": False, "bird_routes": True,
                                   "bird6_routes": False}
    assert node.agents[1] == BirdAgent(6, ready=False)
    assert [peer.ip_version for peer in node.peers] == [4, 4]


async def test_show_route_error_keeps_peers(tmp_path: Path) -> None:
    """A BIRD that refuses show route still gives agents and peers, just no route counts."""
    script = {k: v for k, v in V4.items() if k != "show route"}
    p = poller(tmp_path, Telemetry())
    async with FakeBird(str(tmp_path / "bird.ctl"), script):
        try:
            node = await p.poll_once()
        finally:
            await p.close()
    assert node.routes == ()
    assert len(node.peers) == 2


@pytest.mark.parametrize("failure", [HANG, CLOSE])
async def test_show_route_failure_loses_only_that_rounds_routes(tmp_path: Path,
                                                                failure: str) -> None:
    """Issue 12: a show route that times out (a big table) or is cut off marks only that
    round's route counts unknown: calico_bgp_routes of the family has no series (neither 0
    nor stale), while readiness, peers and their per-peer route counts stay and the family's
    source stays up; source_up["bird_routes"] shows the failure. The next round that answers
    brings the routes back, on a new connection."""
    telemetry = Telemetry()
    p = poller(tmp_path, telemetry, bird_timeout=0.3)
    fake = FakeBird(str(tmp_path / "bird.ctl"), dict(V4))
    async with fake:
        try:
            await p.poll_once()
            healthy = samples(p)
            fake.script["show route"] = failure
            node = await p.poll_once()
            failed, failed_up = samples(p), dict(telemetry.source_up)
            fake.script["show route"] = V4["show route"]
            await p.poll_once()
            again = samples(p)
        finally:
            await p.close()
    assert [(a.ip_version, a.ready) for a in node.agents] == [(4, True)]
    assert len(node.peers) == 2
    assert node.routes == ()
    assert failed_up == {"bird": True, "bird_routes": False}
    assert telemetry.source_up == {"bird": True, "bird_routes": True}
    routes = [k for k in healthy if k[0] == "calico_bgp_routes"]
    assert routes
    assert {k: v for k, v in healthy.items() if k not in routes} == failed
    assert again == healthy


async def test_routes_can_be_switched_off(tmp_path: Path) -> None:
    """With routes=False the poller never sends show route."""
    async with FakeBird(str(tmp_path / "bird.ctl"), V4) as fake:
        p = BirdPoller(settings(tmp_path), telemetry=Telemetry(), routes=False, clock=lambda: NOW)
        try:
            node = await p.poll_once()
        finally:
            await p.close()
    assert node.routes == ()
    assert fake.commands == ["show status", "show protocols all"]


async def test_invalid_lines_counted_once(tmp_path: Path) -> None:
    """A malformed line that recurs every round is counted (and logged) once."""
    bad = PROTOCOLS_V4.replace("06:42:34    Established", "99:99:99    Established")
    telemetry = Telemetry()
    p = poller(tmp_path, telemetry)
    async with FakeBird(str(tmp_path / "bird.ctl"), {**V4, "show protocols all": bad}):
        try:
            await p.poll_once()
            node = await p.poll_once()
        finally:
            await p.close()
    assert telemetry.invalid_objects["bird"] == 1
    assert node.peers[0].state_changed is None


async def test_run_recovers_after_bird_restart(tmp_path: Path) -> None:
    """run() survives BIRD stopping (source down) and recovers when it returns."""
    telemetry = Telemetry()
    p = poller(tmp_path, telemetry)
    path = str(tmp_path / "bird.ctl")
    fake = await FakeBird(path, V4).start()
    task = asyncio.create_task(p.run(), name="bird-poller")
    try:
        await eventually(lambda: telemetry.source_up.get("bird") is True)
        await fake.stop()
        await eventually(lambda: telemetry.source_up.get("bird") is False)
        assert p.snapshot()[0].agents == (BirdAgent(4, ready=False),)
        fake = await FakeBird(path, V4).start()
        await eventually(lambda: telemetry.source_up.get("bird") is True)
        await eventually(lambda: len(p.snapshot()[0].peers) == 2)
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await eventually(lambda: fake.open_connections == 0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await fake.stop()


def test_node_name_required(tmp_path: Path) -> None:
    """Node mode without a node name is a configuration error."""
    with pytest.raises(ValueError, match="node name"):
        BirdPoller(settings(tmp_path, node_name=""), telemetry=Telemetry())


def test_backoff_bounds(tmp_path: Path) -> None:
    """Backoff is jittered between the interval and a doubling cap, never above BACKOFF_MAX."""
    p = BirdPoller(settings(tmp_path, bird_interval=5.0), telemetry=Telemetry())
    for _ in range(50):
        assert 5.0 <= p.backoff(1) <= 10.0
        assert 5.0 <= p.backoff(40) <= BACKOFF_MAX


MULTI: Script = {"show status": REAL["show_status_multi"]["raw"],
                 "show protocols all": REAL["show_protocols_all_multi"]["raw"],
                 "show route": REAL["show_route_multi"]["raw"]}
"""Real BIRD 1.6.8: two _port_ sessions to 198.18.0.3, a Local_Workload_ peer, multipath routes."""


async def test_every_peer_kind_and_multipath_exact_series(tmp_path: Path) -> None:
    """Through the poller and the collector's /metrics rendering: the two sessions to one IP
    carry peer_port, the Local_Workload_ peer is peer_type LocalWorkload without it, and each
    multipath route counts once."""
    p = BirdPoller(settings(tmp_path), telemetry=Telemetry(),
                   clock=lambda: at("2026-12-02 07:52:52"))
    async with FakeBird(str(tmp_path / "bird.ctl"), MULTI):
        try:
            await p.poll_once()
        finally:
            await p.close()
    text = "".join(BGPCollector(p.snapshot).render(False))
    wanted = ("calico_bgp_peers{", "calico_bgp_peer_up{", "calico_bgp_peer_routes{",
              "calico_bgp_peer_state_change_timestamp_seconds{", "calico_bgp_routes{")
    lines = [line for line in text.splitlines() if line.startswith(wanted)]
    assert (at("2026-12-02 07:52:41"), at("2026-12-02 07:52:39")) == (1796197961, 1796197959)
    a = 'ip_version="4",node="node-1",peer_ip="198.18.0.3"'
    b = 'ip_version="4",node="node-1",peer_ip="198.18.0.4"'
    assert lines == [
        'calico_bgp_peers{ip_version="4",node="node-1",state="established"} 2.0',
        'calico_bgp_peers{ip_version="4",node="node-1",state="not_established"} 1.0',
        f'calico_bgp_peer_up{{{a},peer_port="1790",peer_type="GlobalPeer"}} 1.0',
        f'calico_bgp_peer_up{{{a},peer_port="1791",peer_type="GlobalPeer"}} 1.0',
        f'calico_bgp_peer_up{{{b},peer_type="LocalWorkload"}} 0.0',
        'calico_bgp_routes{ip_version="4",node="node-1",source_type="BGPPeer",type="FIB"} 2.0',
        'calico_bgp_routes{ip_version="4",node="node-1",source_type="Direct",type="FIB"} 1.0',
        'calico_bgp_routes{ip_version="4",node="node-1",source_type="Kernel",type="FIB"} 1.0',
        'calico_bgp_routes{ip_version="4",node="node-1",source_type="Static",type="FIB"} 2.0',
        f'calico_bgp_peer_routes{{direction="imported",{a},peer_port="1790",'
        'peer_type="GlobalPeer"} 1.0',
        f'calico_bgp_peer_routes{{direction="exported",{a},peer_port="1790",'
        'peer_type="GlobalPeer"} 3.0',
        f'calico_bgp_peer_routes{{direction="imported",{a},peer_port="1791",'
        'peer_type="GlobalPeer"} 1.0',
        f'calico_bgp_peer_routes{{direction="exported",{a},peer_port="1791",'
        'peer_type="GlobalPeer"} 3.0',
        f'calico_bgp_peer_routes{{direction="imported",{b},peer_type="LocalWorkload"}} 0.0',
        f'calico_bgp_peer_routes{{direction="exported",{b},peer_type="LocalWorkload"}} 0.0',
        f'calico_bgp_peer_state_change_timestamp_seconds{{{a},peer_port="1790",'
        'peer_type="GlobalPeer"} 1.796197961e+09',
        f'calico_bgp_peer_state_change_timestamp_seconds{{{a},peer_port="1791",'
        'peer_type="GlobalPeer"} 1.796197961e+09',
        f'calico_bgp_peer_state_change_timestamp_seconds{{{b},peer_type="LocalWorkload"}} '
        '1.796197959e+09',
    ]
    states = {tuple(sorted(s.labels.items())): s.value for f in families(p.snapshot())
              if f.name == "calico_bgp_peer_state" for s in f.samples if s.value == 1}
    assert sorted(dict(k)["state"] + dict(k).get("peer_port", "") for k in states) == [
        "Connect", "Established1790", "Established1791"]


def test_peer_port_only_where_an_ip_is_shared() -> None:
    """peer_port appears only on sessions to an IP reached on more than one port (the
    unsuffixed one as 179); a lone _port_ session and ordinary peers keep the usual labels,
    and a session listed twice (CalicoNodeStatus) is one series."""
    node = NodeBGP("node-1", peers=(
        BGPPeer(4, "198.18.1.1", "GlobalPeer", "Established", port=150),
        BGPPeer(4, "198.18.1.1", "GlobalPeer", "Idle"),
        BGPPeer(4, "198.18.1.3", "GlobalPeer", "Established", port=150),
        BGPPeer(6, "fd00::1", "GlobalPeer", "Established", port=150),
        BGPPeer(4, "198.18.1.5", "NodeMesh", "Established"),
        BGPPeer(4, "198.18.1.5", "NodeMesh", "Established"),
    ))
    (up,) = [f for f in families([node]) if f.name == "calico_bgp_peer_up"]
    assert [(s.labels, s.value) for s in up.samples] == [
        ({"node": "node-1", "ip_version": "4", "peer_ip": "198.18.1.1",
          "peer_type": "GlobalPeer", "peer_port": "150"}, 1.0),
        ({"node": "node-1", "ip_version": "4", "peer_ip": "198.18.1.1",
          "peer_type": "GlobalPeer", "peer_port": "179"}, 0.0),
        ({"node": "node-1", "ip_version": "4", "peer_ip": "198.18.1.3",
          "peer_type": "GlobalPeer"}, 1.0),
        ({"node": "node-1", "ip_version": "6", "peer_ip": "fd00::1",
          "peer_type": "GlobalPeer"}, 1.0),
        ({"node": "node-1", "ip_version": "4", "peer_ip": "198.18.1.5",
          "peer_type": "NodeMesh"}, 1.0),
    ]
