"""DNS prober: one query over UDP (TCP when the answer is truncated) with our own asyncio client.

The query goes to ``server`` (IP[:port]) or to the first ``nameserver`` of /etc/resolv.conf. The
name is absolute: no search list, no ndots. Only a reply from the server we asked, with our ID and
our question, is accepted; anything else arriving on the socket is ignored.

Outcomes:

* ``success``: NOERROR with at least one record of the asked type, including every
  ``expect_answers`` value (A/AAAA compared as addresses, names case-insensitively, TXT exactly);
* ``dns_nxdomain``: NXDOMAIN, NOERROR without a record of that type (NODATA), or an expected answer
  missing;
* ``dns_servfail``: SERVFAIL, REFUSED, NOTIMP or another error code, or a malformed reply;
* ``dns_timeout``: no reply in time (set by the run's timeout);
* ``refused``: ICMP port unreachable (nothing listens on the server port);
* ``unreachable``: no route or ICMP host/net unreachable;
* ``error``: no nameserver configured, or the server could not parse our query (FORMERR).
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import struct
from pathlib import Path

from exporter.probes.config import DnsParams, Probe
from exporter.probes.dnsmsg import (
    CLASS_IN,
    FORMERR,
    NOERROR,
    NXDOMAIN,
    RCODE_NAMES,
    TYPES,
    DnsFormatError,
    Message,
    build_query,
    normalize_name,
    parse_message,
)
from exporter.probes.net import Failed, describe_oserror, enable_recverr, outcome_for_oserror
from exporter.probes.outcome import Attempt, Outcome

RESOLV_CONF = Path("/etc/resolv.conf")


def default_nameserver(path: Path = RESOLV_CONF) -> tuple[str, int] | None:
    """The first ``nameserver`` of a resolv.conf as (IP, 53); None when there is none."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                return (str(ipaddress.ip_address(fields[1])), 53)
            except ValueError:
                continue
    return None


def _answers_ours(message: Message, ident: int, name: str, rtype: int) -> bool:
    if message.ident != ident or not message.is_response or len(message.questions) != 1:
        return False
    q = message.questions[0]
    return normalize_name(q.name) == normalize_name(name) and q.rtype == rtype \
        and q.rclass == CLASS_IN


async def _udp_exchange(server: tuple[str, int], query: bytes, ident: int, name: str,
                        rtype: int) -> Message:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        enable_recverr(sock)
        sock.connect(server)
        await loop.sock_sendall(sock, query)
        while True:
            data = await loop.sock_recv(sock, 65535)
            try:
                message = parse_message(data)
            except DnsFormatError as exc:
                if len(data) >= 2 and struct.unpack_from("!H", data)[0] == ident:
                    raise Failed(Outcome.DNS_SERVFAIL, f"malformed reply: {exc}") from None
                continue
            if _answers_ours(message, ident, name, rtype):
                return message


async def _tcp_exchange(server: tuple[str, int], query: bytes, ident: int, name: str,
                        rtype: int) -> Message:
    reader, writer = await asyncio.open_connection(server[0], server[1])
    try:
        writer.write(struct.pack("!H", len(query)) + query)
        await writer.drain()
        try:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            data = await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise Failed(Outcome.DNS_SERVFAIL, "server closed the TCP connection") from None
    finally:
        writer.close()
    try:
        message = parse_message(data)
    except DnsFormatError as exc:
        raise Failed(Outcome.DNS_SERVFAIL, f"malformed reply over TCP: {exc}") from None
    if not _answers_ours(message, ident, name, rtype):
        raise Failed(Outcome.DNS_SERVFAIL, "reply over TCP does not match the query")
    return message


def _normalize_answer(rtype: int, text: str) -> str:
    if rtype == TYPES["TXT"]:
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return " ".join(token.lower().removesuffix(".") for token in text.split())


def judge(message: Message, params: DnsParams, server: tuple[str, int]) -> Attempt:
    """The outcome of a reply for this probe's expectations."""
    rtype = TYPES[params.record_type]
    at = f"{params.name} {params.record_type} @{server[0]}:{server[1]}"
    rcode = message.rcode
    if rcode == NXDOMAIN:
        return Attempt(Outcome.DNS_NXDOMAIN, f"{at}: NXDOMAIN")
    if rcode == FORMERR:
        return Attempt(Outcome.ERROR, f"{at}: FORMERR (the server could not parse the query)")
    if rcode != NOERROR:
        return Attempt(Outcome.DNS_SERVFAIL, f"{at}: {RCODE_NAMES.get(rcode, f'rcode {rcode}')}")
    answers = sorted(r.data for r in message.answers if r.rtype == rtype)
    if not answers:
        return Attempt(Outcome.DNS_NXDOMAIN, f"{at}: no {params.record_type} record (NODATA)")
    got = {_normalize_answer(rtype, a) for a in answers}
    missing = [e for e in params.expect_answers if _normalize_answer(rtype, e) not in got]
    if missing:
        return Attempt(Outcome.DNS_NXDOMAIN,
                       f"{at}: expected answer {missing[0]} missing; got {', '.join(answers)}")
    return Attempt(Outcome.SUCCESS, f"{at}: {', '.join(answers)}")


async def probe_dns(probe: Probe, *, resolv_conf: Path = RESOLV_CONF) -> Attempt:
    """Ask the server for ``target`` once and judge the reply."""
    params = probe.params
    assert isinstance(params, DnsParams)
    server = params.server or default_nameserver(resolv_conf)
    if server is None:
        return Attempt(Outcome.ERROR, f"no server given and no nameserver in {resolv_conf}")
    rtype = TYPES[params.record_type]
    ident = secrets.randbits(16)
    try:
        query = build_query(params.name, rtype, ident=ident)
    except DnsFormatError as exc:
        return Attempt(Outcome.ERROR, f"cannot build query: {exc}")
    try:
        message = await _udp_exchange(server, query, ident, params.name, rtype)
        if message.truncated:
            message = await _tcp_exchange(server, query, ident, params.name, rtype)
    except Failed as failed:
        return failed.attempt
    except OSError as exc:
        return Attempt(outcome_for_oserror(exc),
                       f"query {server[0]}:{server[1]}: {describe_oserror(exc)}")
    return judge(message, params, server)


__all__ = ["RESOLV_CONF", "default_nameserver", "judge", "probe_dns"]
