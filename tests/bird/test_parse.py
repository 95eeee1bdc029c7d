"""Parsers of BIRD control-socket replies: Calico's upstream transcripts and real BIRD 1.6.8.

Expected values for ``bird-socket-transcripts-node-populator-tests.yaml`` are those of the upstream
tests the transcripts come from (``node/pkg/status/populators/{bird_status,peers,route}_test.go``,
Calico v3.32.1), mapped to our model as ``calico-model.md`` §1.2 and §5 describe.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.bird.parse import (
    LineKind,
    Protocol,
    Reply,
    ReplyLine,
    Route,
    clock_offset,
    count_routes,
    iter_routes,
    parse_bird_time,
    parse_protocol_name,
    parse_protocols,
    parse_since,
    parse_status,
    peers_from_protocols,
    split_line,
    split_replies,
)
from exporter.model.bgp import BGPPeer, BirdAgent, PeerCounts, RouteCount
from tests.bird.transcripts import REAL, UPSTREAM, UPSTREAM_FILE

T_2016_11_21 = 1479686400.0  # 2016-11-21T00:00:00Z
T_BOOT = 1632082256.0  # 2021-09-19T20:10:56Z
T_SERVER = 1632084523.0  # 2021-09-19T20:48:43Z
T_REAL_SERVER = parse_bird_time("2026-11-26 06:42:40")
T_REAL_LATER = parse_bird_time("2026-11-26 06:43:50")  # around the stop/disable captures


class Invalid(list[tuple[str, str]]):
    """Collects (reason, line) reports."""

    def __call__(self, reason: str, line: str) -> None:
        self.append((reason, line))


def transcript(name: str, invalid: Invalid | None = None) -> tuple[Reply, Reply, list[Reply]]:
    """Greeting, command reply, and whatever follows, of one upstream transcript."""
    replies = split_replies(UPSTREAM[name]["raw"], on_invalid=invalid if invalid is not None
                            else Invalid())
    return replies[0], replies[1], replies[2:]


def real(name: str) -> Reply:
    """The one reply of a real BIRD capture."""
    (reply,) = split_replies(REAL[name]["raw"])
    return reply


# ---------------------------------------------------------------------------------------------
# Every upstream transcript


def test_upstream_file_keeps_its_source_header() -> None:
    """The copied sample file still starts with its Source line, and has the seven transcripts."""
    text = UPSTREAM_FILE.read_text()
    assert text.startswith("# Source: projectcalico/calico tag v3.32.1")
    assert set(UPSTREAM) == {
        "show_status", "show_protocols_v4", "show_protocols_all_Mesh_172_17_8_102",
        "show_protocols_all_Mesh_172_17_8_104_OpenSent", "show_protocols_v6",
        "show_route_v4_basic", "show_route_v4_blackhole_unreachable_multipath",
    }


def test_show_status_transcript() -> None:
    """show status gives ready, version, router ID and the boot/reconfiguration times as UTC."""
    invalid = Invalid()
    greeting, reply, rest = transcript("show_status", invalid)
    assert greeting.code == 1
    assert greeting.text == "BIRD v0.3.3+birdv1.6.8 ready."
    status = parse_status(reply.lines, ip_version=4, greeting=greeting.text, on_invalid=invalid)
    assert status.agent == BirdAgent(
        ip_version=4, ready=True, version="v0.3.3+birdv1.6.8", router_id="172.17.0.3",
        last_boot=T_BOOT, last_reconfig=T_BOOT,
    )
    assert status.server_time == T_SERVER
    assert status.utc_offset == 0.0
    # The mock's last line has a 3-digit code: reported, and the reply has no final line.
    assert invalid == [("line without reply code", "013 Daemon is up and running")]
    assert reply.code is None
    assert rest == []


def test_show_status_not_ready_without_ready_greeting() -> None:
    """The upstream "status not ready" case: a greeting without "ready" gives ready False."""
    _, reply, _ = transcript("show_status")
    status = parse_status(reply.lines, ip_version=4, greeting="BIRD v0.3.3+birdv1.6.8")
    assert status.agent.ready is False
    assert status.agent.version == "v0.3.3+birdv1.6.8"


def test_show_protocols_v4_transcript_rows() -> None:
    """The v4 table gives the 3 Calico peers, 2 up; the reply ends at 0000."""
    invalid = Invalid()
    _, reply, rest = transcript("show_protocols_v4", invalid)
    assert reply.code == 0
    assert reply.ok
    assert [r.lines[0].text for r in rest] == ["We never get here"]
    protocols = parse_protocols(reply.lines, reference=T_SERVER, on_invalid=invalid)
    assert [(p.name, p.proto, p.state, p.since, p.info) for p in protocols] == [
        ("kernel1", "Kernel", "up", "2016-11-21", ""),
        ("device1", "Device", "up", "2016-11-21", ""),
        ("direct1", "Direct", "up", "2016-11-21", ""),
        ("Mesh_172_17_8_102", "BGP", "up", "2016-11-21", "Established"),
        ("Global_172_17_8_103", "BGP", "up", "2016-11-21", "Established"),
        ("Node_172_17_8_104", "BGP", "down", "2016-11-21", "Failed Socket: error"),
    ]
    assert all(p.since_time == T_2016_11_21 for p in protocols)
    counts, peers = peers_from_protocols(protocols, ip_version=4, on_invalid=invalid)
    assert counts == PeerCounts(4, established=2, not_established=1)
    assert [(p.peer_ip, p.peer_type, p.state, p.established) for p in peers] == [
        ("172.17.8.102", "NodeMesh", "Established", True),
        ("172.17.8.103", "GlobalPeer", "Established", True),
        # Down before any detail is read: Calico leaves the state empty; we export Unknown.
        ("172.17.8.104", "NodePeer", "Unknown", False),
    ]
    assert invalid == [("line without reply code", "We never get here")]


@pytest.mark.parametrize(("name", "ip", "state"), [
    ("show_protocols_all_Mesh_172_17_8_102", "172.17.8.102", "Established"),
    ("show_protocols_all_Mesh_172_17_8_104_OpenSent", "172.17.8.104", "OpenSent"),
])
def test_show_protocols_all_transcripts(name: str, ip: str, state: str) -> None:
    """Details give neighbor, BGP state and routes though mock lines lack codes."""
    invalid = Invalid()
    _, reply, _ = transcript(name, invalid)
    assert reply.code == 0
    (p,) = parse_protocols(reply.lines, reference=T_SERVER, on_invalid=invalid)
    assert (p.state, p.since, p.since_time) == ("up", "2016-11-21", T_2016_11_21)
    assert (p.bgp_state, p.neighbor_address) == (state, ip)
    assert (p.routes_imported, p.routes_exported, p.routes_preferred) == (0, 1, 0)
    assert p.routes_filtered is None
    assert invalid
    assert {reason for reason, _ in invalid} == {"line without reply code"}


def test_show_protocols_completed_like_upstream() -> None:
    """Rows completed with details give upstream's expected peers and states."""
    _, rows, _ = transcript("show_protocols_v4")
    protocols = parse_protocols(rows.lines, reference=T_SERVER)
    by_name = {p.name: p for p in protocols}

    def complete(row: Protocol, detail_transcript: str) -> Protocol:
        _, reply, _ = transcript(detail_transcript)
        (d,) = parse_protocols(reply.lines, reference=T_SERVER)
        return dataclasses.replace(
            row, bgp_state=d.bgp_state, neighbor_address=d.neighbor_address,
            routes_imported=d.routes_imported, routes_exported=d.routes_exported)

    by_name["Mesh_172_17_8_102"] = complete(by_name["Mesh_172_17_8_102"],
                                            "show_protocols_all_Mesh_172_17_8_102")
    by_name["Node_172_17_8_104"] = complete(by_name["Node_172_17_8_104"],
                                            "show_protocols_all_Mesh_172_17_8_104_OpenSent")
    counts, peers = peers_from_protocols(by_name.values(), ip_version=4)
    assert counts == PeerCounts(4, 2, 1)
    assert peers == (
        BGPPeer(4, "172.17.8.102", "NodeMesh", "Established", 0, 1, T_2016_11_21),
        BGPPeer(4, "172.17.8.103", "GlobalPeer", "Established", None, None, T_2016_11_21),
        BGPPeer(4, "172.17.8.104", "NodePeer", "OpenSent", 0, 1, T_2016_11_21),
    )


def test_show_protocols_v6_transcript() -> None:
    """The IPv6 table yields one established NodeMesh peer 2001:20::8 decoded from its name."""
    _, reply, rest = transcript("show_protocols_v6")
    assert reply.code == 0
    assert [r.lines[0].text for r in rest] == ["We never get here"]
    protocols = parse_protocols(reply.lines, reference=T_SERVER)
    counts, peers = peers_from_protocols(protocols, ip_version=6)
    assert counts == PeerCounts(6, 1, 0)
    assert peers == (BGPPeer(6, "2001:20::8", "NodeMesh", "Established", None, None,
                             T_2016_11_21),)


def test_show_route_basic_transcript() -> None:
    """The first route table gives upstream's eight paths, and their FIB/RIB counts by source."""
    _, reply, _ = transcript("show_route_v4_basic")
    routes = list(iter_routes(reply.lines))
    assert routes == [
        Route("0.0.0.0/0", "172.17.0.1", "eth0", "kernel1", True),
        Route("192.168.110.128/26", "172.17.0.5", "eth0", "Mesh_172_17_0_5", True),
        Route("192.168.82.0/26", "172.17.0.4", "eth0", "Mesh_172_17_0_4", True),
        Route("192.168.82.0/26", "100.100.100.100", "em0", "Global_100_100_100_100", False),
        Route("192.168.162.128/26", "N/A", "blackhole", "static1", True),
        Route("192.168.162.128/32", "N/A", "tunl0", "direct1", True),
        Route("192.168.162.129/32", "N/A", "calie58e37f9a7f", "kernel1", True),
        Route("172.17.0.0/16", "N/A", "eth0", "direct1", True),
    ]
    assert set(count_routes(routes, ip_version=4)) == {
        RouteCount(4, "FIB", "Kernel", 2), RouteCount(4, "FIB", "NodeMesh", 2),
        RouteCount(4, "RIB", "BGPPeer", 1), RouteCount(4, "FIB", "Static", 1),
        RouteCount(4, "FIB", "Direct", 2),
    }


def test_show_route_multipath_transcript() -> None:
    """Blackhole, unreachable and alternative paths give upstream's 9 routes."""
    _, reply, _ = transcript("show_route_v4_blackhole_unreachable_multipath")
    routes = list(iter_routes(reply.lines))
    assert routes == [
        Route("0.0.0.0/0", "172.17.0.1", "eth0", "kernel1", True),
        Route("192.168.69.128/26", "N/A", "blackhole", "static1", True),
        Route("192.168.69.128/26", "N/A", "unreachable", "Mesh_10_128_0_244", False),
        Route("192.168.69.128/26", "N/A", "blackhole", "kernel1", False),
        Route("192.168.36.64/26", "10.128.0.1", "ens4", "Mesh_10_128_0_241", True),
        Route("192.168.36.64/26", "N/A", "unreachable", "Mesh_10_128_0_244", False),
        Route("192.168.36.64/26", "10.128.0.1", "ens4", "Mesh_10_128_0_241", False),
        Route("192.168.36.64/26", "N/A", "unreachable", "Mesh_10_128_0_200", False),
        Route("192.168.36.64/26", "192.168.36.64", "vxlan.calico", "kernel1", False),
    ]
    assert set(count_routes(routes, ip_version=4)) == {
        RouteCount(4, "FIB", "Kernel", 1), RouteCount(4, "FIB", "Static", 1),
        RouteCount(4, "FIB", "NodeMesh", 1), RouteCount(4, "RIB", "Kernel", 2),
        RouteCount(4, "RIB", "NodeMesh", 4),
    }


# ---------------------------------------------------------------------------------------------
# Real BIRD 1.6.8 captures


def test_real_show_status() -> None:
    """Debian BIRD says "BIRD 1.6.8" (no v prefix): the version is still read."""
    status = parse_status(real("show_status").lines, ip_version=4,
                          greeting=REAL["greeting"][5:])
    assert status.agent == BirdAgent(4, True, "1.6.8", "198.18.0.2",
                                     parse_bird_time("2026-11-26 06:42:32"),
                                     parse_bird_time("2026-11-26 06:42:32"))
    assert status.server_time == T_REAL_SERVER


def test_real_established_peer() -> None:
    """A real established mesh peer: Established, 1 imported, 1 exported, since today."""
    reply = real("show_protocols_all_established")
    assert reply.code == 0
    assert T_REAL_SERVER is not None
    protocols = parse_protocols(reply.lines, reference=T_REAL_SERVER)
    counts, peers = peers_from_protocols(protocols, ip_version=4)
    assert counts == PeerCounts(4, 1, 0)
    assert peers == (BGPPeer(4, "198.18.0.3", "NodeMesh", "Established", 1, 1,
                             parse_bird_time("2026-11-26 06:42:34")),)


@pytest.mark.parametrize(("capture", "imported", "exported"), [
    ("show_protocols_all_passive_admin_shutdown", 0, 0),
    ("show_protocols_all_passive_graceful_restart", 1, 0),
])
def test_real_passive_peer_is_unknown_and_not_established(
        capture: str, imported: int, exported: int) -> None:
    """A passive peer whose BIRD stopped is Unknown, not up, with BIRD's counts."""
    assert T_REAL_LATER is not None
    protocols = parse_protocols(real(capture).lines, reference=T_REAL_LATER)
    counts, (peer,) = peers_from_protocols(protocols, ip_version=4)
    assert counts == PeerCounts(4, 0, 1)
    assert (peer.peer_ip, peer.state, peer.established) == ("198.18.0.4", "Unknown", False)
    assert (peer.routes_imported, peer.routes_exported) == (imported, exported)


def test_real_disabled_peer_has_five_columns_and_zero_routes() -> None:
    """A disabled peer (5-column row) is kept: Unknown, 0 routes each way."""
    assert T_REAL_LATER is not None
    invalid = Invalid()
    protocols = parse_protocols(real("show_protocols_all_disabled").lines,
                                reference=T_REAL_LATER, on_invalid=invalid)
    counts, peers = peers_from_protocols(protocols, ip_version=4, on_invalid=invalid)
    assert counts == PeerCounts(4, 0, 1)
    assert peers == (BGPPeer(4, "198.18.0.3", "NodeMesh", "Unknown", 0, 0,
                             parse_bird_time("2026-11-26 06:43:48")),)
    assert invalid == []


def test_real_show_protocols_after_peer_stop() -> None:
    """Without details, the info column gives the BGP state: Established and Passive."""
    assert T_REAL_LATER is not None
    protocols = parse_protocols(real("show_protocols_after_peer_stop").lines,
                                reference=T_REAL_LATER)
    counts, peers = peers_from_protocols(protocols, ip_version=4)
    assert counts == PeerCounts(4, 1, 1)
    assert [(p.peer_ip, p.state, p.state_changed) for p in peers] == [
        ("198.18.0.3", "Established", parse_bird_time("2026-11-26 06:42:34")),
        ("198.18.0.4", "Unknown", parse_bird_time("2026-11-26 06:43:40"))]
    assert protocols[-1].info == "Passive Received: Administrative shutdown"


def test_real_show_route() -> None:
    """Real show route: two mesh routes, the static blackhole block and the direct subnet."""
    assert set(count_routes(iter_routes(real("show_route").lines), ip_version=4)) == {
        RouteCount(4, "FIB", "NodeMesh", 2), RouteCount(4, "FIB", "Static", 1),
        RouteCount(4, "FIB", "Direct", 1),
    }


@pytest.mark.parametrize(("capture", "code", "ok"), [
    ("error_not_a_protocol", 9002, False), ("error_syntax", 9001, False),
    ("show_route_count", 14, True),
])
def test_real_single_line_replies(capture: str, code: int, ok: bool) -> None:
    """One-line replies end at once; 9xxx codes are errors, 0014 is a success."""
    reply = real(capture)
    assert (reply.code, reply.ok) == (code, ok)


# ---------------------------------------------------------------------------------------------
# Lines, names, times


@pytest.mark.parametrize(("line", "kind", "code", "text"), [
    ("0001 BIRD 1.6.8 ready.", LineKind.FINAL, 1, "BIRD 1.6.8 ready."),
    ("1002-kernel1  Kernel", LineKind.CODE, 1002, "kernel1  Kernel"),
    (" device1  Device", LineKind.CONTINUATION, 1002, "device1  Device"),
    ("0000 ", LineKind.FINAL, 0, ""),
    ("0000", LineKind.FINAL, 0, ""),
    ("9001 syntax error", LineKind.FINAL, 9001, "syntax error"),
    ("+Reconfigured", LineKind.ASYNC, 1002, "Reconfigured"),
    ("013 Daemon is up", LineKind.BARE, 1002, "013 Daemon is up"),
])
def test_split_line(line: str, kind: LineKind, code: int, text: str) -> None:
    """Each line kind of the control protocol is told apart; continuations inherit the code."""
    assert split_line(line, 1002) == (kind, ReplyLine(code, text))


@pytest.mark.parametrize(("name", "expected"), [
    ("Mesh_172_17_8_102", ("NodeMesh", "172.17.8.102", None)),
    ("Global_172_17_8_103", ("GlobalPeer", "172.17.8.103", None)),
    ("Node_172_17_8_104", ("NodePeer", "172.17.8.104", None)),
    ("Mesh_fd80_24e2_f998_72d7__2", ("NodeMesh", "fd80:24e2:f998:72d7::2", None)),
    ("Mesh_2001_20__8", ("NodeMesh", "2001:20::8", None)),
    ("Node_10_0_0_1_port_1790", ("NodePeer", "10.0.0.1", 1790)),
    ("Global_fd00__1_port_179", ("GlobalPeer", "fd00::1", 179)),
    # Calico v3.32.1 confd/tests/compiled_templates/explicit_peering/global/bird.cfg: two
    # sessions to one IP on ports 150 and 166.
    ("Global_10_192_0_1_port_150", ("GlobalPeer", "10.192.0.1", 150)),
    ("Global_10_192_0_1_port_166", ("GlobalPeer", "10.192.0.1", 166)),
    # .../explicit_peering/selectors/bird6.cfg
    ("Node_fd5f__3_port_500", ("NodePeer", "fd5f::3", 500)),
    # .../explicit_peering/local_bgp_peer/bird.cfg and bird6.cfg
    ("Local_Workload_192_168_162_134", ("LocalWorkload", "192.168.162.134", None)),
    ("Local_Workload_fd00_10_244_0_586d_4461_e980_a284",
     ("LocalWorkload", "fd00:10:244:0:586d:4461:e980:a284", None)),
    ("Local_Workload_10_0_0_1_port_1790", ("LocalWorkload", "10.0.0.1", 1790)),
    ("kernel1", None),
    ("Mesh_not_an_ip", None),
    ("mesh_172_17_8_102", None),
    ("Local_workload_10_0_0_1", None),
])
def test_protocol_names(name: str, expected: tuple[str, str, int | None] | None) -> None:
    """confd's names decode to (peer type, IP, port) with IPv6, _port_N and Local_Workload_
    forms (names from Calico's own confd tests); others are None."""
    assert parse_protocol_name(name) == expected


def test_port_peer_uses_neighbor_address_and_prefix_type() -> None:
    """A _port_N peer gets its IP from the name without the port, or from Neighbor address."""
    lines = [ReplyLine(1002, "Node_10_0_0_1_port_1790 BGP master start 10:00:00 Active"),
             ReplyLine(1002, "Global_fd00__1_port_179 BGP master up 10:00:00 Established"),
             ReplyLine(1006, "  BGP state:          Established"),
             ReplyLine(1006, "    Neighbor address: fd00:0:0::1")]
    ref = parse_bird_time("2026-01-02 12:00:00")
    assert ref is not None
    _, peers = peers_from_protocols(parse_protocols(lines, reference=ref), ip_version=6)
    assert [(p.peer_ip, p.peer_type, p.state) for p in peers] == [
        ("10.0.0.1", "NodePeer", "Active"), ("fd00::1", "GlobalPeer", "Established")]


def test_since_today_yesterday_and_date() -> None:
    """since: today unless after the reference, a date is midnight, offset shifts."""
    ref = parse_bird_time("2026-11-26 06:42:40")
    assert ref is not None
    assert parse_since("06:42:34", reference=ref) == parse_bird_time("2026-11-26 06:42:34")
    assert parse_since("06:42:41", reference=ref) == parse_bird_time("2026-11-26 06:42:41")
    assert parse_since("23:10:00", reference=ref) == parse_bird_time("2026-11-25 23:10:00")
    assert parse_since("2016-11-21", reference=ref) == T_2016_11_21
    assert parse_since("2016-11-21", reference=ref, utc_offset=3600) == T_2016_11_21 - 3600
    for bad in ("", "25:00:00", "6:42", "2016-13-40", "yesterday"):
        assert parse_since(bad, reference=ref) is None


def test_clock_offset_from_server_time() -> None:
    """A BIRD two hours ahead of UTC (local time) is detected from its server time."""
    now = 1_800_000_000.0
    assert clock_offset(now + 7200 + 3, now) == 7200
    assert clock_offset(now - 1, now) == 0
    assert clock_offset(None, now) == 0


def test_status_times_corrected_by_offset() -> None:
    """With now given, a BIRD running in UTC+2 has its boot time converted to true UTC."""
    lines = [ReplyLine(1000, "BIRD 1.6.8"), ReplyLine(1011, "Router ID is 198.18.0.2"),
             ReplyLine(1011, "Current server time is 2026-11-26 08:42:40"),
             ReplyLine(1011, "Last reboot on 2026-11-26 08:00:00"),
             ReplyLine(1011, "Last reconfiguration on 2026-11-26 08:30:00"),
             ReplyLine(13, "Daemon is up and running")]
    now = parse_bird_time("2026-11-26 06:42:41")
    assert now is not None
    status = parse_status(lines, ip_version=4, greeting="BIRD 1.6.8 ready.", now=now)
    assert status.utc_offset == 7200
    assert status.agent.last_boot == parse_bird_time("2026-11-26 06:00:00")
    assert status.agent.last_reconfig == parse_bird_time("2026-11-26 06:30:00")


def test_shutdown_in_progress_is_not_ready() -> None:
    """A BIRD that reports "Shutdown in progress" is not ready."""
    lines = [ReplyLine(1000, "BIRD 1.6.8"), ReplyLine(13, "Shutdown in progress")]
    assert not parse_status(lines, ip_version=4, greeting="BIRD 1.6.8 ready.").agent.ready


# ---------------------------------------------------------------------------------------------
# Malformed input


def test_malformed_lines_are_skipped_and_reported() -> None:
    """Malformed rows and details are reported once each; good rows still parse."""
    invalid = Invalid()
    lines = [
        ReplyLine(2002, "name proto table state when info"),
        ReplyLine(1002, "Mesh_198_18_0_6 BGP master up 10:00:00 Established"),
        ReplyLine(1002, "Mesh_198_18_0_3 BGP master"),
        ReplyLine(1006, "  BGP state:          Down"),
        ReplyLine(1006, "    Neighbor address: 198.18.0.3"),
        ReplyLine(1002, "Mesh_198_18_0_4 BGP master up 99:99:99 Established"),
        ReplyLine(1006, "  Routes:         many imported, 1 exported"),
        ReplyLine(1006, "    Neighbor address: not-an-ip"),
        ReplyLine(1002, "Mesh_junk BGP master up 10:00:00 Established"),
        ReplyLine(1002, "Mesh_198_18_0_5 BGP master up 10:00:00 Established"),
    ]
    protocols = parse_protocols(lines, reference=T_SERVER, on_invalid=invalid)
    counts, peers = peers_from_protocols(protocols, ip_version=4, on_invalid=invalid)
    # The short row's details are dropped with it, not given to the row before.
    assert [(p.peer_ip, p.state) for p in peers] == [
        ("198.18.0.6", "Established"), ("198.18.0.4", "Established"),
        ("198.18.0.5", "Established")]
    assert peers[1].state_changed is None
    assert peers[1].routes_imported is None
    assert counts == PeerCounts(4, 3, 0)
    assert [reason for reason, _ in invalid] == [
        "unknown protocol table headings",
        "protocol row with fewer than 5 columns",
        "bad since column",
        "bad routes line",
        "bad neighbor address",
        "peer address not decodable from protocol name",
    ]
    invalid.clear()
    routes = list(iter_routes([ReplyLine(1007, "garbage"),
                               ReplyLine(1007, "   via 1.2.3.4 on eth0 [kernel1 10:00:00] (10)"),
                               ReplyLine(1007, "198.19.1.0/26 blackhole [static1 10:00] * (200)"),
                               ReplyLine(1007, "\tvia 198.18.0.3 on eth0 weight 1")],
                              on_invalid=invalid))
    assert routes == [Route("198.19.1.0/26", "N/A", "blackhole", "static1", True)]
    assert [reason for reason, _ in invalid] == ["unrecognised route line",
                                                 "route path without destination"]


_LINE_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=80)
_LINES = st.lists(st.builds(ReplyLine, st.sampled_from([0, 1, 13, 1000, 1002, 1006, 1007, 2002,
                                                        1011, 9001]), _LINE_TEXT), max_size=30)


@given(_LINES)
def test_parsers_never_raise(lines: list[ReplyLine]) -> None:
    """Arbitrary reply lines never make a parser raise."""
    sink = Invalid()
    parse_status(lines, ip_version=4, greeting="BIRD ready", now=0.0, on_invalid=sink)
    protocols = parse_protocols(lines, reference=T_SERVER, on_invalid=sink)
    peers_from_protocols(protocols, ip_version=4, on_invalid=sink)
    count_routes(iter_routes(lines, on_invalid=sink), ip_version=4)


@given(st.text(max_size=400))
def test_split_replies_never_raises(raw: str) -> None:
    """Arbitrary transcript text splits into replies without raising."""
    split_replies(raw, on_invalid=Invalid())


# ---------------------------------------------------------------------------------------------
# Every peer kind and a multipath route: real BIRD 1.6.8 (the "_multi" captures)

T_MULTI_SERVER = parse_bird_time("2026-12-02 07:52:51")
T_MULTI_BOOT = parse_bird_time("2026-12-02 07:52:39")
T_MULTI_UP = parse_bird_time("2026-12-02 07:52:41")


def test_real_local_workload_and_port_sessions() -> None:
    """Two _port_N sessions to one IP and a Local_Workload_ peer are three peers, each with its
    type and port, and all three are counted."""
    assert T_MULTI_SERVER is not None
    invalid = Invalid()
    protocols = parse_protocols(real("show_protocols_all_multi").lines,
                                reference=T_MULTI_SERVER, on_invalid=invalid)
    counts, peers = peers_from_protocols(protocols, ip_version=4, on_invalid=invalid)
    assert invalid == []
    assert peers == (
        BGPPeer(4, "198.18.0.3", "GlobalPeer", "Established", 1, 3, T_MULTI_UP, port=1790),
        BGPPeer(4, "198.18.0.3", "GlobalPeer", "Established", 1, 3, T_MULTI_UP, port=1791),
        BGPPeer(4, "198.18.0.4", "LocalWorkload", "Connect", 0, 0, T_MULTI_BOOT),
    )
    assert counts == PeerCounts(4, 2, 1)


def test_real_multipath_routes_count_once() -> None:
    """A multipath route (static or learned from an ECMP kernel route) is one route of its
    source: the head line is read, its next-hop lines are not routes."""
    invalid = Invalid()
    routes = list(iter_routes(real("show_route_multi").lines, on_invalid=invalid))
    assert invalid == []
    assert routes == [
        Route("198.19.10.0/26", "198.18.0.3", "eth0", "Global_198_18_0_3_port_1790", True),
        Route("198.19.11.0/26", "198.18.0.3", "eth0", "Global_198_18_0_3_port_1791", True),
        Route("198.19.1.0/26", "N/A", "blackhole", "static1", True),
        Route("198.19.6.0/26", "N/A", "multipath", "static1", True),
        Route("198.18.0.0/24", "N/A", "eth0", "direct1", True),
        Route("198.19.5.0/26", "N/A", "multipath", "kernel1", True),
    ]
    assert set(count_routes(routes, ip_version=4)) == {
        RouteCount(4, "FIB", "BGPPeer", 2), RouteCount(4, "FIB", "Static", 2),
        RouteCount(4, "FIB", "Direct", 1), RouteCount(4, "FIB", "Kernel", 1)}


def test_local_workload_routes_are_bgp_peer_routes() -> None:
    """A route learned from a Local_Workload_ session counts as sourceType BGPPeer (it is a
    BGPPeer resource), and a multipath route with its next hops counts once."""
    invalid = Invalid()
    routes = list(iter_routes([
        ReplyLine(1007, "198.19.7.0/26      via 198.18.0.4 on eth0 "
                        "[Local_Workload_198_18_0_4 07:52:41] * (100/0) [i]"),
        ReplyLine(1007, "198.19.8.0/26      multipath [kernel1 07:52:39] * (10)"),
        ReplyLine(1007, "\tvia 198.18.0.3 on eth0 weight 1"),
        ReplyLine(1007, "\tvia 198.18.0.4 on eth0 weight 1"),
    ], on_invalid=invalid))
    assert invalid == []
    assert count_routes(routes, ip_version=4) == (
        RouteCount(4, "FIB", "BGPPeer", 1), RouteCount(4, "FIB", "Kernel", 1))
