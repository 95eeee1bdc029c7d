"""The DNS prober against a dnspython server on loopback, and the wire format on its own."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.probes.config import Probe
from exporter.probes.dns import default_nameserver, probe_dns
from exporter.probes.dnsmsg import (
    TYPES,
    DnsFormatError,
    build_query,
    encode_name,
    parse_message,
)
from exporter.probes.outcome import Outcome
from exporter.probes.probers import run_attempt
from tests.probes.conftest import MakeProbe
from tests.probes.servers import DnsServer, dns_server


def lookup(make_probe: MakeProbe, server: DnsServer, name: str, **keys: object) -> Probe:
    """A DNS probe for ``name`` against the test server."""
    return make_probe("dns", name, server=f"{server.host}:{server.port}", **keys)


async def test_a_record_success(make_probe: MakeProbe, dns: DnsServer) -> None:
    """An A query with answers is success, and expect_answers is checked against them."""
    probe = lookup(make_probe, dns, "web.test", expect_answers=["127.0.0.2"])
    attempt = await run_attempt(probe)
    assert attempt.outcome is Outcome.SUCCESS
    assert attempt.detail == f"web.test A @127.0.0.1:{dns.port}: 127.0.0.1, 127.0.0.2"


@pytest.mark.parametrize(("name", "rtype", "expected"), [
    ("web.test", "AAAA", "0:0::1"),
    ("web.test.", "TXT", "v=spf1 -all"),
    ("_http._tcp.web.test", "SRV", "10 5 8080 WEB.test."),
    ("alias.test", "CNAME", "web.test"),
    ("cname.test", "A", "127.0.0.1"),
])
async def test_record_types(make_probe: MakeProbe, dns: DnsServer, name: str, rtype: str,
                            expected: str) -> None:
    """AAAA, TXT, SRV, CNAME and a CNAME chain answer; expected answers compare normalized."""
    probe = lookup(make_probe, dns, name, type=rtype, expect_answers=[expected])
    assert (await run_attempt(probe)).outcome is Outcome.SUCCESS


async def test_nxdomain(make_probe: MakeProbe, dns: DnsServer) -> None:
    """An unknown name is dns_nxdomain."""
    attempt = await run_attempt(lookup(make_probe, dns, "nothing.test"))
    assert attempt.outcome is Outcome.DNS_NXDOMAIN
    assert attempt.detail.endswith(": NXDOMAIN")


async def test_nodata_and_missing_answer(make_probe: MakeProbe, dns: DnsServer) -> None:
    """No record of the asked type, or an expected answer absent, is dns_nxdomain too."""
    nodata = await run_attempt(lookup(make_probe, dns, "alias.test", type="SRV"))
    assert nodata.outcome is Outcome.DNS_NXDOMAIN
    assert nodata.detail.endswith("no SRV record (NODATA)")
    missing = await run_attempt(lookup(make_probe, dns, "web.test", expect_answers=["10.0.0.1"]))
    assert missing.outcome is Outcome.DNS_NXDOMAIN
    assert missing.detail.endswith("expected answer 10.0.0.1 missing; got 127.0.0.1, 127.0.0.2")


@pytest.mark.parametrize(("name", "outcome"), [
    ("servfail.test", Outcome.DNS_SERVFAIL),
    ("refused.test", Outcome.DNS_SERVFAIL),
    ("formerr.test", Outcome.ERROR),
    ("garbage.test", Outcome.DNS_SERVFAIL),
])
async def test_error_rcodes(make_probe: MakeProbe, dns: DnsServer, name: str,
                            outcome: Outcome) -> None:
    """SERVFAIL and REFUSED are dns_servfail, a malformed reply too; FORMERR means our query
    was bad: error."""
    assert (await run_attempt(lookup(make_probe, dns, name))).outcome is outcome


async def test_dns_timeout(make_probe: MakeProbe, dns: DnsServer) -> None:
    """A server that never replies gives dns_timeout."""
    attempt = await run_attempt(lookup(make_probe, dns, "drop.test", timeout="200ms"))
    assert attempt.outcome is Outcome.DNS_TIMEOUT


async def test_truncated_reply_retries_over_tcp(make_probe: MakeProbe, dns: DnsServer) -> None:
    """A TC reply over UDP is retried over TCP, which carries the whole answer."""
    attempt = await run_attempt(lookup(make_probe, dns, "big.test", type="TXT"))
    assert attempt.outcome is Outcome.SUCCESS
    assert dns.queries == [("big.test.", "udp"), ("big.test.", "tcp")]


async def test_reply_with_wrong_id_is_ignored(make_probe: MakeProbe, dns: DnsServer) -> None:
    """Only the reply with our ID counts (the spoofed one arrives first)."""
    probe = lookup(make_probe, dns, "spoof.test", expect_answers=["10.9.9.9"])
    assert (await run_attempt(probe)).outcome is Outcome.SUCCESS


async def test_closed_udp_port_is_refused(make_probe: MakeProbe) -> None:
    """ICMP port unreachable from the server address is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
    probe = make_probe("dns", "web.test", server=f"127.0.0.1:{port}")
    assert (await run_attempt(probe)).outcome is Outcome.REFUSED


@pytest.mark.usefixtures("ipv6_loopback")
async def test_ipv6_server(make_probe: MakeProbe) -> None:
    """The server may be an IPv6 address, written [addr]:port."""
    async with dns_server("::1") as server:
        probe = make_probe("dns", "web.test", server=f"[::1]:{server.port}")
        assert (await run_attempt(probe)).outcome is Outcome.SUCCESS


async def test_no_nameserver_is_error(make_probe: MakeProbe, tmp_path: Path) -> None:
    """Without server and without a nameserver in resolv.conf the probe cannot run: error."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search cluster.local\n")
    attempt = await probe_dns(make_probe("dns", "web.test"), resolv_conf=resolv)
    assert attempt.outcome is Outcome.ERROR
    assert attempt.detail == f"no server given and no nameserver in {resolv}"


def test_default_nameserver_from_resolv_conf(tmp_path: Path) -> None:
    """The first valid nameserver line wins; comments and junk are skipped."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# generated\nsearch svc.cluster.local\nnameserver bogus\n"
                      "nameserver 10.96.0.10 ; kube-dns\nnameserver 10.96.0.11\n")
    assert default_nameserver(resolv) == ("10.96.0.10", 53)
    assert default_nameserver(tmp_path / "missing") is None


def test_query_parses_with_dnspython() -> None:
    """Our query is a valid DNS message to an independent implementation."""
    wire = build_query("Web.Test.", TYPES["SRV"], ident=0x1234)
    message = dns.message.from_wire(wire)
    assert message.id == 0x1234
    assert message.question[0].name.to_text() == "Web.Test."
    assert message.question[0].rdtype == dns.rdatatype.SRV
    assert message.flags & dns.flags.RD


def test_parse_compressed_response_from_dnspython() -> None:
    """A compressed multi-record response built by dnspython parses to the same records."""
    query = dns.message.make_query("a.example.", "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("a.example.", 60, "IN", "CNAME", "b.example."))
    response.answer.append(dns.rrset.from_text("b.example.", 60, "IN", "A", "10.1.2.3"))
    parsed = parse_message(response.to_wire())
    assert parsed.ident == query.id
    assert parsed.is_response
    assert [(r.name, r.rtype, r.ttl, r.data) for r in parsed.answers] == [
        ("a.example", 5, 60, "b.example"), ("b.example", 1, 60, "10.1.2.3")]


def test_compression_loop_is_rejected() -> None:
    """A name pointing at itself is malformed, not an endless loop."""
    header = b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00"
    with pytest.raises(DnsFormatError, match="loop"):
        parse_message(header + b"\xc0\x0c\x00\x01\x00\x01")


def test_encode_name_limits() -> None:
    """Empty and over-long labels and names are refused."""
    assert encode_name(".") == b"\x00"
    for bad in ("a..b", "x" * 64 + ".test", ".".join(["abcdefgh"] * 32)):
        with pytest.raises(DnsFormatError):
            encode_name(bad)


@given(st.binary(max_size=600))
def test_parse_never_crashes(data: bytes) -> None:
    """Any bytes parse to a message or raise DnsFormatError, nothing else."""
    with contextlib.suppress(DnsFormatError):
        parse_message(data)


@given(st.binary(min_size=12, max_size=12), st.binary(max_size=300))
def test_parse_never_crashes_after_a_header(header: bytes, body: bytes) -> None:
    """Random records after a plausible header (1 question, 3 answers) never crash the parser."""
    with contextlib.suppress(DnsFormatError):
        parse_message(header[:4] + b"\x00\x01\x00\x03" + header[8:] + body)
