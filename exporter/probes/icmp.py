"""ICMP echo prober (IPv4 and IPv6) over our own sockets: no ping binary, no third-party library.

Socket choice, per attempt:

1. an unprivileged ICMP *datagram* socket (``socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)``), allowed
   when the process's group is inside ``net.ipv4.ping_group_range`` (a per-network-namespace,
   Kubernetes-safe sysctl). The kernel picks the echo identifier and delivers only our replies.
2. else a *raw* socket, which needs ``CAP_NET_RAW``; it sees every ICMP packet of the namespace, so
   replies are matched on identifier, sequence number and a random payload token.
3. else the outcome is ``error`` with a detail naming both requirements.

``success`` on a matching echo reply, ``unreachable`` on an ICMP destination-unreachable or
time-exceeded message about our request (or the equivalent socket error, or no route when
sending); silence is cut by the run's timeout (``timeout``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from exporter.probes.config import IcmpParams, Probe
from exporter.probes.net import (
    Failed,
    describe_oserror,
    enable_recverr,
    outcome_for_oserror,
    resolve,
)
from exporter.probes.outcome import Attempt, Outcome

PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")
SocketMode = Literal["datagram", "raw"]



@dataclass(frozen=True, slots=True)
class _Types:
    request: int
    reply: int
    errors: frozenset[int]
    """Destination unreachable and time exceeded."""


_V4 = _Types(request=8, reply=0, errors=frozenset({3, 11}))
_V6 = _Types(request=128, reply=129, errors=frozenset({1, 3}))
_PAYLOAD_SIZE = 56
_TOKEN_SIZE = 16


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of data."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An echo request; the checksum is filled for IPv4 (the kernel fills it for ICMPv6)."""
    kind = (_V6 if family == socket.AF_INET6 else _V4).request
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if family == socket.AF_INET6:
        return header + payload
    return struct.pack("!BBHHH", kind, 0, checksum(header + payload), ident, seq) + payload


def classify(data: bytes, *, family: int, mode: SocketMode, ident: int, seq: int,
             token: bytes) -> Outcome | None:
    """SUCCESS for our echo reply, UNREACHABLE for an ICMP error about our request, else None
    (someone else's packet). Raw IPv4 sockets deliver the IP header first; the others do not."""
    table = _V6 if family == socket.AF_INET6 else _V4
    if mode == "raw" and family == socket.AF_INET:
        if len(data) < 20:
            return None
        data = data[(data[0] & 0x0F) * 4:]
    if len(data) < 8:
        return None
    kind, _, _, rid, rseq = struct.unpack_from("!BBHHH", data)
    if kind == table.reply:
        if rseq == seq and (mode == "datagram" or rid == ident) and data[8:8 + len(token)] == token:
            return Outcome.SUCCESS
        return None
    if kind in table.errors:
        inner = data[8:]
        if family == socket.AF_INET:
            if len(inner) < 20:
                return None
            inner = inner[(inner[0] & 0x0F) * 4:]
        else:
            inner = inner[40:]
        if len(inner) < 8:
            return None
        ikind, _, _, iid, iseq = struct.unpack_from("!BBHHH", inner)
        if ikind == table.request and iseq == seq and (mode == "datagram" or iid == ident):
            return Outcome.UNREACHABLE
    return None


def _ping_group_range() -> str:
    try:
        return " ".join(PING_GROUP_RANGE.read_text().split())
    except OSError:
        return "unknown"


def open_icmp_socket(family: int) -> tuple[socket.socket, SocketMode]:
    """A datagram ICMP socket if allowed, else a raw one; Failed(ERROR) when neither is."""
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), "datagram"
    except PermissionError:
        pass
    except OSError as exc:
        detail = f"cannot open an ICMP socket: {describe_oserror(exc)}"
        raise Failed(Outcome.ERROR, detail) from None
    try:
        return socket.socket(family, socket.SOCK_RAW, proto), "raw"
    except PermissionError:
        raise Failed(
            Outcome.ERROR,
            f"ICMP not permitted: datagram sockets need gid {os.getgid()} inside "
            f"net.ipv4.ping_group_range (now \"{_ping_group_range()}\") and raw sockets need "
            "CAP_NET_RAW",
        ) from None
    except OSError as exc:
        detail = f"cannot open an ICMP socket: {describe_oserror(exc)}"
        raise Failed(Outcome.ERROR, detail) from None


async def probe_icmp(probe: Probe) -> Attempt:
    """Send one echo request to ``target`` and wait for the reply or an ICMP error."""
    params = probe.params
    assert isinstance(params, IcmpParams)
    loop = asyncio.get_running_loop()
    try:
        family, addr = await resolve(params.host, 0, socktype=socket.SOCK_DGRAM)
        sock, mode = open_icmp_socket(family)
    except Failed as failed:
        return failed.attempt
    ident, seq = secrets.randbits(16), secrets.randbits(16)
    token = secrets.token_bytes(_TOKEN_SIZE)
    packet = echo_request(family, ident, seq, token.ljust(_PAYLOAD_SIZE, b"\0"))
    with sock:
        sock.setblocking(False)
        enable_recverr(sock)
        try:
            # Connected, a raw socket only takes ICMP errors about packets to this address as
            # socket errors (unconnected, it would take everyone's) and only replies from it.
            sock.connect(addr)
            await loop.sock_sendall(sock, packet)
        except OSError as exc:
            return Attempt(outcome_for_oserror(exc),
                           f"send echo to {addr[0]}: {describe_oserror(exc)}")
        while True:
            try:
                data = await loop.sock_recv(sock, 65535)
            except OSError as exc:
                return Attempt(Outcome.UNREACHABLE,
                               f"echo to {addr[0]}: ICMP error {describe_oserror(exc)}")
            outcome = classify(data, family=family, mode=mode, ident=ident, seq=seq, token=token)
            if outcome is Outcome.SUCCESS:
                return Attempt(outcome, f"echo reply from {addr[0]} ({mode} socket)")
            if outcome is Outcome.UNREACHABLE:
                return Attempt(outcome, f"echo to {addr[0]}: ICMP destination unreachable")


__all__ = ["PING_GROUP_RANGE", "checksum", "classify", "echo_request", "open_icmp_socket",
           "probe_icmp"]
