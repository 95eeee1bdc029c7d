"""ICMP echo over our own sockets: loopback pings and the packet logic."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from exporter.probes.icmp import checksum, classify, echo_request, open_icmp_socket
from exporter.probes.net import Failed
from exporter.probes.outcome import Outcome
from exporter.probes.probers import run_attempt
from tests.probes.conftest import MakeProbe

TOKEN = b"0123456789abcdef"


def icmp_allowed(family: int) -> bool:
    """Whether this process may open an ICMP socket of that family (datagram or raw)."""
    try:
        sock, _ = open_icmp_socket(family)
    except Failed:
        return False
    sock.close()
    return True


async def test_ping_ipv4_loopback(make_probe: MakeProbe) -> None:
    """An echo to 127.0.0.1 is answered: success."""
    if not icmp_allowed(socket.AF_INET):
        pytest.skip("no ICMP socket allowed here (needs ping_group_range or CAP_NET_RAW)")
    attempt = await run_attempt(make_probe("icmp", "127.0.0.1"))
    assert attempt.outcome is Outcome.SUCCESS
    assert attempt.detail.startswith("echo reply from 127.0.0.1")


@pytest.mark.usefixtures("ipv6_loopback")
async def test_ping_ipv6_loopback(make_probe: MakeProbe) -> None:
    """An echo to ::1 is answered: success."""
    if not icmp_allowed(socket.AF_INET6):
        pytest.skip("no ICMPv6 socket allowed here")
    attempt = await run_attempt(make_probe("icmp", "::1"))
    assert attempt.outcome is Outcome.SUCCESS


async def test_concurrent_pings_do_not_mix_replies(make_probe: MakeProbe) -> None:
    """Many simultaneous echoes each get their own reply (matched by id, sequence and token)."""
    if not icmp_allowed(socket.AF_INET):
        pytest.skip("no ICMP socket allowed here")
    probe = make_probe("icmp", "127.0.0.1")
    attempts = await asyncio.gather(*(run_attempt(probe) for _ in range(20)))
    assert {a.outcome for a in attempts} == {Outcome.SUCCESS}


def test_checksum_verifies() -> None:
    """A packet with its checksum filled in sums to zero (RFC 1071)."""
    packet = echo_request(socket.AF_INET, 0x1234, 7, TOKEN + b"\x01")
    assert checksum(packet) == 0
    assert struct.unpack_from("!BBHHH", packet)[0::3] == (8, 0x1234)


def reply(kind: int, ident: int, seq: int, payload: bytes) -> bytes:
    """An ICMP message of the given type with its checksum."""
    body = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def ipv4_header(proto: int = 1) -> bytes:
    """A minimal 20-byte IPv4 header."""
    return bytes([0x45, 0, 0, 84, 0, 0, 0, 0, 64, proto, 0, 0, 198, 18, 3, 2, 198, 18, 1, 2])


def raw4(data: bytes) -> Outcome | None:
    """classify() for a raw IPv4 socket that sent id 9, sequence 5."""
    return classify(data, family=socket.AF_INET, mode="raw", ident=9, seq=5, token=TOKEN)


def dgram6(data: bytes) -> Outcome | None:
    """classify() for an ICMPv6 datagram socket that sent sequence 77."""
    return classify(data, family=socket.AF_INET6, mode="datagram", ident=1, seq=77, token=TOKEN)


def unreachable4(quoted: bytes) -> bytes:
    """A raw IPv4 destination-unreachable packet quoting ``quoted``."""
    return ipv4_header() + struct.pack("!BBHI", 3, 1, 0, 0) + ipv4_header() + quoted[:8]


def test_classify_raw_ipv4() -> None:
    """Raw IPv4: our reply is success, someone else's is ignored, an unreachable about our
    request is unreachable."""
    assert raw4(ipv4_header() + reply(0, 9, 5, TOKEN)) is Outcome.SUCCESS
    assert raw4(ipv4_header() + reply(0, 10, 5, TOKEN)) is None
    assert raw4(ipv4_header() + reply(8, 9, 5, TOKEN)) is None
    assert raw4(unreachable4(echo_request(socket.AF_INET, 9, 5, TOKEN))) is Outcome.UNREACHABLE
    assert raw4(unreachable4(echo_request(socket.AF_INET, 9, 6, TOKEN))) is None
    assert raw4(b"\x45") is None


def test_classify_datagram_ipv6() -> None:
    """Datagram sockets carry no IP header and the kernel picks the id: sequence and token
    decide; an ICMPv6 unreachable quotes the IPv6 header and our request."""
    assert dgram6(reply(129, 4242, 77, TOKEN)) is Outcome.SUCCESS
    assert dgram6(reply(129, 4242, 77, b"x" * 16)) is None
    quoted = bytes(40) + struct.pack("!BBHHH", 128, 0, 0, 4242, 77)
    assert dgram6(struct.pack("!BBHI", 1, 3, 0, 0) + quoted) is Outcome.UNREACHABLE
    assert dgram6(b"\x81\x00") is None
