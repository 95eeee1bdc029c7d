"""Pure parsers of BIRD 1.x control-socket replies: reply lines, ``show status``,
``show protocols [all]``, ``show route``, protocol names and BIRD's time formats.

A reply is a run of lines, each ``DDDD-text`` (more lines follow), ``DDDD text`` (the last line),
`` text`` (continues the previous code) or ``+text`` (an asynchronous message). Real BIRD never
sends anything else; a line that fits none of these (test mocks do this) is reported as invalid
and kept as a continuation, so the content parsers, which look at the text, still see it.

Nothing here raises on malformed input: a line that cannot be understood is skipped and reported
through ``on_invalid(reason, line)`` (the poller counts it in ``Telemetry.invalid``).

Times: BIRD prints its daemon-local time without a zone (``2021-09-19 20:10:56``) and a protocol's
``since`` as ``HH:MM:SS`` (changed less than 20 h ago) or ``YYYY-MM-DD``. They are read as UTC,
then shifted by ``utc_offset``, the daemon's offset from UTC that :func:`clock_offset` infers from
``Current server time`` (0 in calico-node, whose clock is UTC). ``HH:MM:SS`` is the latest such
time not after the server time; ``YYYY-MM-DD`` is that day's midnight.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import structlog

from exporter.model.bgp import BGPPeer, BirdAgent, PeerCounts, RouteCount, peer_state

log = structlog.get_logger(__name__)

InvalidSink = Callable[[str, str], None]
"""Receives ``(reason, line)`` for each line that could not be understood."""


def log_invalid(reason: str, line: str) -> None:
    """Default sink: log the malformed line."""
    log.warning("bird_line_invalid", reason=reason, line=line[:200])


# --------------------------------------------------------------------------------------------
# Reply lines


class LineKind(enum.Enum):
    """What one line of the control socket is."""

    CODE = "code"
    """``DDDD-text``: a line with a reply code; more lines follow."""
    FINAL = "final"
    """``DDDD text`` (or a bare ``DDDD``): the last line of a reply (0xxx ok, 8xxx/9xxx
    errors)."""
    CONTINUATION = "continuation"
    """`` text``: continues the previous code."""
    ASYNC = "async"
    """``+text``: an asynchronous message, not part of any reply."""
    BARE = "bare"
    """None of the above: malformed; kept as a continuation."""


@dataclass(frozen=True, slots=True)
class ReplyLine:
    """One line of a reply: its code (inherited for continuation lines) and its text."""

    code: int
    text: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete (or, for a transcript, possibly cut-short) reply."""

    lines: tuple[ReplyLine, ...]
    """Every line, the final one included."""
    code: int | None
    """Code of the final line; None when the reply ended without one."""

    @property
    def ok(self) -> bool:
        """True when the reply ended with a success code (below 8000)."""
        return self.code is not None and self.code < 8000

    @property
    def text(self) -> str:
        """Text of the final line (the message of an error reply)."""
        return self.lines[-1].text if self.lines else ""


_CODE_LINE = re.compile(r"^(\d{4})(?:([ -])(.*))?$")


def split_line(line: str, prev_code: int) -> tuple[LineKind, ReplyLine]:
    """Classify one line (without its newline); continuation lines take ``prev_code``."""
    m = _CODE_LINE.match(line)
    if m:
        kind = LineKind.CODE if m.group(2) == "-" else LineKind.FINAL
        return kind, ReplyLine(int(m.group(1)), m.group(3) or "")
    if line.startswith(" "):
        return LineKind.CONTINUATION, ReplyLine(prev_code, line[1:])
    if line.startswith("+"):
        return LineKind.ASYNC, ReplyLine(prev_code, line[1:])
    return LineKind.BARE, ReplyLine(prev_code, line)


def split_replies(raw: str, *, on_invalid: InvalidSink = log_invalid) -> list[Reply]:
    """Cut a transcript (greeting, then replies) into replies; a trailing partial reply is
    returned with ``code=None``."""
    replies: list[Reply] = []
    lines: list[ReplyLine] = []
    prev = 0
    for text in raw.splitlines():
        kind, line = split_line(text, prev)
        if kind is LineKind.ASYNC:
            continue
        if kind is LineKind.BARE:
            on_invalid("line without reply code", text)
        lines.append(line)
        prev = line.code
        if kind is LineKind.FINAL:
            replies.append(Reply(tuple(lines), line.code))
            lines, prev = [], 0
    if lines:
        replies.append(Reply(tuple(lines), None))
    return replies


# --------------------------------------------------------------------------------------------
# Times


_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_HMS = re.compile(r"^(\d{2}):(\d{2}):(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAY = 86400.0
_SINCE_SLACK = 60.0
"""A ``since`` time up to this far after the reference still counts as today (BIRD rounds its
relative times, so a fresh protocol can print a second after the server time)."""


def parse_bird_time(text: str) -> float | None:
    """``YYYY-MM-DD HH:MM:SS`` read as UTC, as unix time; None when it does not parse."""
    try:
        return datetime.strptime(text.strip(), _TIME_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def parse_since(text: str, *, reference: float, utc_offset: float = 0.0) -> float | None:
    """BIRD's ``since`` column as unix time, or None when it does not parse.

    ``reference`` is the server time read as UTC (or ``now + utc_offset``). ``HH:MM:SS`` is the
    latest such time not after the reference (so yesterday when it is later than the reference);
    ``YYYY-MM-DD`` is midnight of that day. ``utc_offset`` is then subtracted.
    """
    m = _HMS.match(text)
    if m:
        h, mi, s = (int(g) for g in m.groups())
        if h > 23 or mi > 59 or s > 60:
            return None
        midnight = reference - reference % _DAY
        t = midnight + h * 3600 + mi * 60 + s
        if t > reference + _SINCE_SLACK:
            t -= _DAY
        return t - utc_offset
    if _DATE.match(text):
        try:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return None
        return day - utc_offset
    return None


def clock_offset(server_time: float | None, now: float) -> float:
    """BIRD's offset from UTC, inferred from its server time read as UTC, rounded to 15 min."""
    if server_time is None:
        return 0.0
    return round((server_time - now) / 900.0) * 900.0


# --------------------------------------------------------------------------------------------
# show status


@dataclass(frozen=True, slots=True)
class BirdStatus:
    """What ``show status`` tells: the agent, and the server time for resolving ``since``."""

    agent: BirdAgent
    server_time: float | None
    """``Current server time`` read as UTC (not shifted by utc_offset)."""
    utc_offset: float
    """The daemon's offset from UTC (seconds), 0 unless ``now`` was given."""


_STATUS_TIMES = {
    "Current server time is ": "server",
    "Last reboot on ": "boot",
    "Last reconfiguration on ": "reconfig",
}


def greeting_ready(greeting: str) -> bool:
    """Calico's rule: the welcome line says BIRD and ready."""
    return "BIRD" in greeting and "ready" in greeting


def parse_status(
    lines: Iterable[ReplyLine],
    *,
    ip_version: int,
    greeting: str,
    now: float | None = None,
    on_invalid: InvalidSink = log_invalid,
) -> BirdStatus:
    """``show status`` → BirdAgent. Ready when the greeting says ready and BIRD is not shutting
    down. With ``now``, times are corrected by the offset inferred from the server time."""
    version = router_id = ""
    times: dict[str, float] = {}
    shutting_down = False
    for line in lines:
        text = line.text.strip()
        if line.code == 1000 and text.startswith("BIRD "):
            version = text.removeprefix("BIRD ").strip()
        elif text.startswith("Router ID is "):
            router_id = text.removeprefix("Router ID is ").strip()
        elif prefix := next((k for k in _STATUS_TIMES if text.startswith(k)), None):
            t = parse_bird_time(text.removeprefix(prefix))
            if t is None:
                on_invalid("bad time in show status", line.text)
            else:
                times[_STATUS_TIMES[prefix]] = t
        elif line.code == 13 and text == "Shutdown in progress":
            shutting_down = True
    server, boot, reconfig = times.get("server"), times.get("boot"), times.get("reconfig")
    offset = clock_offset(server, now) if now is not None else 0.0
    agent = BirdAgent(
        ip_version=ip_version,
        ready=greeting_ready(greeting) and not shutting_down,
        version=version,
        router_id=router_id,
        last_boot=None if boot is None else boot - offset,
        last_reconfig=None if reconfig is None else reconfig - offset,
    )
    return BirdStatus(agent=agent, server_time=server, utc_offset=offset)


# --------------------------------------------------------------------------------------------
# Protocol names

PEER_TYPE_BY_PREFIX = {
    "Mesh": "NodeMesh", "Node": "NodePeer", "Global": "GlobalPeer",
    "Local_Workload": "LocalWorkload",
}
"""confd's protocol name prefixes and the peer types they stand for: CalicoNodeStatus's three,
and ``LocalWorkload`` for the sessions with local workloads (a BGPPeer with
``localWorkloadSelector``) that confd writes since Calico 3.30 and calico-node does not report."""

_PEER_NAME = re.compile(r"^(Global|Node|Mesh|Local_Workload)_(.+?)(?:_port_(\d+))?$")


class PeerName(NamedTuple):
    """What confd encodes in a BGP protocol name."""

    peer_type: str
    ip: str
    port: int | None
    """The ``_port_N`` suffix confd adds for a peer on a non-default port; None without one."""


def parse_protocol_name(name: str) -> PeerName | None:
    """``Mesh_192_168_56_101``, ``Node_10_0_0_1_port_1790``, ``Mesh_fd80_24e2_f998_72d7__2``,
    ``Local_Workload_10_0_0_9`` → (peer_type, ip, port); None for names confd does not write for
    BGP peers (kernel1, hand-written names, or an address that does not decode)."""
    m = _PEER_NAME.match(name)
    if not m:
        return None
    ip = _decode_ip(m.group(2))
    if ip is None:
        return None
    port = int(m.group(3)) if m.group(3) else None
    return PeerName(PEER_TYPE_BY_PREFIX[m.group(1)], ip, port)


def _decode_ip(encoded: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(encoded.replace("_", ".")))
    except ValueError:
        pass
    try:
        return str(ipaddress.IPv6Address(encoded.replace("_", ":")))
    except ValueError:
        return None


def _normalise_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# show protocols [all]

HEADINGS = ("name", "proto", "table", "state", "since", "info")
"""The column headings BIRD 1.x prints for ``show protocols`` (calicoctl checks them too)."""

PROTOCOL_TYPES = frozenset({
    "BGP", "Kernel", "Device", "Direct", "Static", "Pipe", "OSPF", "RIP", "BFD", "RAdv", "Babel",
})
"""BIRD 1.6 protocol types, to recognise a table row that lost its 1002 code (test mocks)."""


@dataclass(frozen=True, slots=True)
class Protocol:
    """One row of ``show protocols``, plus the details ``show protocols all`` adds."""

    name: str
    proto: str
    table: str
    state: str
    """BIRD's protocol state column: up, down, start, stop, flush, wait or feed."""
    since: str
    """The since column, verbatim."""
    info: str
    """The info column: BGP state and last error for BGP; may be empty."""
    since_time: float | None = None
    bgp_state: str = ""
    """``BGP state:`` from the details (Established, Passive, Down, ...)."""
    neighbor_address: str = ""
    routes_imported: int | None = None
    routes_filtered: int | None = None
    routes_exported: int | None = None
    routes_preferred: int | None = None


_ROUTES = re.compile(r"^Routes:\s+(.*)$")
_ROUTE_FIELD = re.compile(r"^(\d+)\s+(imported|filtered|exported|preferred)$")


def parse_protocols(
    lines: Iterable[ReplyLine],
    *,
    reference: float,
    utc_offset: float = 0.0,
    on_invalid: InvalidSink = log_invalid,
) -> list[Protocol]:
    """Rows and details of ``show protocols`` or ``show protocols all [NAME]``, in order.

    ``reference`` and ``utc_offset`` resolve the since column (see :func:`parse_since`).
    """
    out: list[Protocol] = []
    current: dict[str, object] | None = None
    orphaned = False  # details of a row we could not read: dropped with it

    def flush() -> None:
        if current is not None:
            out.append(Protocol(**current))  # type: ignore[arg-type]

    for line in lines:
        text = line.text.strip()
        if not text:
            continue
        fields = text.split()
        if line.code == 2002 or tuple(fields) == HEADINGS:
            if tuple(fields) != HEADINGS:
                on_invalid("unknown protocol table headings", line.text)
            continue
        if line.code == 1002 or (
            line.code != 1006 and len(fields) >= 5 and fields[1] in PROTOCOL_TYPES
            and not fields[0].endswith(":")
        ):
            flush()
            if len(fields) < 5:
                on_invalid("protocol row with fewer than 5 columns", line.text)
                current, orphaned = None, True
                continue
            orphaned = False
            since_time = parse_since(fields[4], reference=reference, utc_offset=utc_offset)
            if since_time is None:
                on_invalid("bad since column", line.text)
            current = {
                "name": fields[0], "proto": fields[1], "table": fields[2], "state": fields[3],
                "since": fields[4], "info": " ".join(fields[5:]), "since_time": since_time,
            }
            continue
        if current is None:
            if not orphaned:
                on_invalid("protocol detail before any protocol row", line.text)
            continue
        _detail(current, text, line.text, on_invalid)
    flush()
    return out


def _detail(current: dict[str, object], text: str, raw: str, on_invalid: InvalidSink) -> None:
    if text.startswith("BGP state:"):
        current["bgp_state"] = text.removeprefix("BGP state:").strip()
    elif text.startswith("Neighbor address:"):
        value = text.removeprefix("Neighbor address:").strip()
        ip = _normalise_ip(value)
        if ip is None:
            on_invalid("bad neighbor address", raw)
        else:
            current["neighbor_address"] = ip
    elif m := _ROUTES.match(text):
        counts: dict[str, int] = {}
        for part in m.group(1).split(","):
            fm = _ROUTE_FIELD.match(part.strip())
            if fm is None:
                on_invalid("bad routes line", raw)
                return
            counts[fm.group(2)] = int(fm.group(1))
        if "imported" not in counts or "exported" not in counts:
            on_invalid("bad routes line", raw)
            return
        for key, count in counts.items():
            current[f"routes_{key}"] = count


def peers_from_protocols(
    protocols: Iterable[Protocol], *, ip_version: int, on_invalid: InvalidSink = log_invalid,
) -> tuple[PeerCounts, tuple[BGPPeer, ...]]:
    """The BGP sessions confd wrote: BGP protocols named ``Mesh_``, ``Node_``, ``Global_`` or
    ``Local_Workload_``, with an optional ``_port_N`` suffix kept as the peer's port.

    Established counts protocols whose state column is ``up`` (as Calico counts); the peer state
    is the details' ``BGP state:`` (else the info column's first word), normalised by
    :func:`peer_state`, so Down and Passive become Unknown. A protocol that is down has no
    routes: its route counts are 0 when BIRD prints no ``Routes:`` line for it.
    """
    peers: list[BGPPeer] = []
    established = not_established = 0
    for p in protocols:
        if p.proto != "BGP":
            continue
        m = _PEER_NAME.match(p.name)
        if m is None:
            continue  # hand-written protocols: not Calico peers
        decoded = parse_protocol_name(p.name)
        ip = p.neighbor_address or (decoded.ip if decoded else "")
        if not ip:
            on_invalid("peer address not decodable from protocol name", p.name)
            continue
        if p.state == "up":
            established += 1
        else:
            not_established += 1
        raw_state = p.bgp_state or _state_from_info(p)
        imported, exported = p.routes_imported, p.routes_exported
        if p.state == "down" and imported is None and exported is None:
            imported = exported = 0
        peers.append(BGPPeer(
            ip_version=ip_version,
            peer_ip=ip,
            peer_type=PEER_TYPE_BY_PREFIX[m.group(1)],
            state=peer_state(raw_state),
            routes_imported=imported,
            routes_exported=exported,
            state_changed=p.since_time,
            port=int(m.group(3)) if m.group(3) else None,
        ))
    return PeerCounts(ip_version, established, not_established), tuple(peers)


def _state_from_info(p: Protocol) -> str:
    if p.state == "down":
        return "Down"
    return p.info.split(" ", 1)[0] if p.info else ""


# --------------------------------------------------------------------------------------------
# show route


@dataclass(frozen=True, slots=True)
class Route:
    """One path of ``show route``, as Calico's route populator reads it."""

    dest: str
    gateway: str
    """Next hop, or ``N/A`` for dev, blackhole and unreachable routes."""
    iface: str
    """Interface, or ``blackhole`` / ``unreachable`` / ``prohibited`` / ``multipath``."""
    learned_from: str
    """Name of the protocol the route came from."""
    primary: bool
    """BIRD's ``*``: the selected path (FIB); else an alternative (RIB)."""


_VIA = re.compile(r"^(\S*)\s*via\s(\S+)\s+on\s(\S+).*?\[(\S+)\s.*\]")
_DEV = re.compile(r"^(\S*)\s*dev\s(\S+).*?\[(\S+)\s.*\]")
_SPECIAL = re.compile(
    r"^(\S*)\s*(blackhole|unreachable|prohibited|multipath)\s.*?\[(\S+)\s.*\]")
"""Routes without a gateway; ``multipath`` is the head line of a route with several next hops,
which BIRD 1.6.8 prints as ``%-18s multipath [proto time] * (pref)`` followed by one
``\\tvia <gw> on <iface> weight <n>`` line per next hop (``nest/rt-table.c``,
``rt_format_via()`` and ``rt_show_rte()``)."""
_NEXTHOP = re.compile(r"^\s*via\s\S+\s+on\s\S+\s+weight\s\d+")
"""A multipath next hop line (no protocol in brackets): part of the route above, not counted."""


def iter_routes(lines: Iterable[ReplyLine], *, on_invalid: InvalidSink = log_invalid,
                ) -> Iterator[Route]:
    """Paths of ``show route``; a line without destination is another path to the previous one.

    A multipath route is one path (its head line, ``iface="multipath"``, gateway ``N/A``): its
    next-hop lines are skipped, so an ECMP prefix counts once, like any other route."""
    previous = ""
    for line in lines:
        text = line.text
        if not text.strip() or _NEXTHOP.match(text):
            continue
        if m := _VIA.match(text):
            dest, gateway, iface, source = m.group(1), m.group(2), m.group(3), m.group(4)
        elif (m := _DEV.match(text)) or (m := _SPECIAL.match(text)):
            dest, gateway, iface, source = m.group(1), "N/A", m.group(2), m.group(3)
        else:
            on_invalid("unrecognised route line", text)
            continue
        if not dest:
            if not previous:
                on_invalid("route path without destination", text)
                continue
            dest = previous
        previous = dest
        yield Route(dest, gateway, iface, source, "] *" in text)


def route_source_type(learned_from: str) -> str | None:
    """Calico's ``learnedFrom.sourceType`` for a protocol name; None for other protocols."""
    for prefix, source in (("kernel", "Kernel"), ("static", "Static"), ("direct", "Direct")):
        if learned_from.startswith(prefix):
            return source
    m = _PEER_NAME.match(learned_from)
    if m is None:
        return None
    return "NodeMesh" if m.group(1) == "Mesh" else "BGPPeer"  # Local_Workload is a BGPPeer


def count_routes(routes: Iterable[Route], *, ip_version: int) -> tuple[RouteCount, ...]:
    """Routes by (FIB|RIB, source type); paths from other protocols are not counted."""
    counts: Counter[tuple[str, str]] = Counter()
    for r in routes:
        source = route_source_type(r.learned_from)
        if source is not None:
            counts["FIB" if r.primary else "RIB", source] += 1
    return tuple(
        RouteCount(ip_version, kind, source, n) for (kind, source), n in sorted(counts.items())
    )


__all__ = [
    "HEADINGS",
    "PEER_TYPE_BY_PREFIX",
    "BirdStatus",
    "InvalidSink",
    "LineKind",
    "PeerName",
    "Protocol",
    "Reply",
    "ReplyLine",
    "Route",
    "clock_offset",
    "count_routes",
    "greeting_ready",
    "iter_routes",
    "log_invalid",
    "parse_bird_time",
    "parse_protocol_name",
    "parse_protocols",
    "parse_since",
    "parse_status",
    "peers_from_protocols",
    "route_source_type",
    "split_line",
    "split_replies",
]
