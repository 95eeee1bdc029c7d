"""Real loopback servers for the prober tests: DNS (dnspython), HTTP and HTTPS (aiohttp), TCP.

The DNS server is written with dnspython, not with our own wire code, so the client is checked
against an independent implementation. Special names select a behaviour:

* ``servfail.test`` SERVFAIL, ``refused.test`` REFUSED, ``formerr.test`` FORMERR;
* ``drop.test`` no reply at all;
* ``big.test`` TXT: over UDP a truncated (TC) empty reply, over TCP the full answer;
* ``spoof.test`` A: first a reply with the wrong ID, then the right one;
* ``garbage.test``: a reply with our ID followed by bytes that do not parse;
* ``cname.test`` A: a CNAME to ``web.test`` plus its A record;
* names in ``records`` answer those records; any other name is NXDOMAIN.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from aiohttp import web

RECORDS: dict[tuple[str, str], list[str]] = {
    ("web.test.", "A"): ["127.0.0.1", "127.0.0.2"],
    ("web.test.", "AAAA"): ["::1"],
    ("web.test.", "TXT"): ['"v=spf1" " -all"'],
    ("_http._tcp.web.test.", "SRV"): ["10 5 8080 web.test."],
    ("alias.test.", "CNAME"): ["web.test."],
    ("big.test.", "TXT"): ['"' + "x" * 200 + '"'] * 5,
}


def dns_answer(query: dns.message.Message, *, tcp: bool) -> list[bytes]:
    """The datagrams (or TCP messages) the test server sends back for one query."""
    question = query.question[0]
    name = question.name.to_text().lower()
    rtype = dns.rdatatype.to_text(question.rdtype)
    response = dns.message.make_response(query)
    codes = {"servfail.test.": dns.rcode.SERVFAIL, "refused.test.": dns.rcode.REFUSED,
             "formerr.test.": dns.rcode.FORMERR}
    if name == "drop.test.":
        return []
    if name in codes:
        response.set_rcode(codes[name])
        return [response.to_wire()]
    if name == "garbage.test.":
        return [response.to_wire()[:2] + b"\x81\x80\x00\x01\x00\x01\xff"]
    if name == "spoof.test.":
        response.answer.append(dns.rrset.from_text(name, 30, "IN", "A", "10.9.9.9"))
        wrong = dns.message.make_response(query)
        wrong.id = (query.id + 1) % 65536
        wrong.answer.append(dns.rrset.from_text(name, 30, "IN", "A", "10.6.6.6"))
        return [wrong.to_wire(), response.to_wire()]
    if name == "cname.test.":
        response.answer.append(dns.rrset.from_text(name, 30, "IN", "CNAME", "web.test."))
        response.answer.append(dns.rrset.from_text("web.test.", 30, "IN", "A", "127.0.0.1"))
        return [response.to_wire()]
    if name == "big.test." and not tcp:
        response.flags |= dns.flags.TC
        return [response.to_wire()]
    known = {n for n, _ in RECORDS}
    if name not in known:
        response.set_rcode(dns.rcode.NXDOMAIN)
        return [response.to_wire()]
    values = RECORDS.get((name, rtype), [])
    if values:
        response.answer.append(dns.rrset.from_text_list(name, 30, "IN", rtype, values))
    return [response.to_wire(max_size=65535)]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        self.server.queries.append((query.question[0].name.to_text(), "udp"))
        for reply in dns_answer(query, tcp=False):
            self.transport.sendto(reply, addr)


@dataclass
class DnsServer:
    """A dnspython-backed DNS server on UDP and TCP of the same loopback port."""

    host: str
    port: int = 0
    queries: list[tuple[str, str]] = field(default_factory=list)

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = int.from_bytes(await reader.readexactly(2), "big")
            query = dns.message.from_wire(await reader.readexactly(size))
            self.queries.append((query.question[0].name.to_text(), "tcp"))
            for reply in dns_answer(query, tcp=True):
                writer.write(len(reply).to_bytes(2, "big") + reply)
            await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def dns_server(host: str = "127.0.0.1") -> AsyncIterator[DnsServer]:
    """Start the DNS server on a free port (UDP and TCP) for the context's duration."""
    loop = asyncio.get_running_loop()
    server = DnsServer(host)
    for _ in range(20):
        udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(server), local_addr=(host, 0))
        port = udp.get_extra_info("sockname")[1]
        try:
            tcp = await asyncio.start_server(server._tcp, host, port)
        except OSError:
            udp.close()
            continue
        break
    else:
        raise RuntimeError("no port free for UDP and TCP at once")
    server.port = port
    try:
        yield server
    finally:
        udp.close()
        tcp.close()
        await tcp.wait_closed()


@dataclass
class HttpServer:
    """An aiohttp server on loopback that records how many requests were in flight at most."""

    port: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    hits: int = 0
    flaky: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)


def _app(state: HttpServer) -> web.Application:
    async def status(request: web.Request) -> web.Response:
        state.hits += 1
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def ok(request: web.Request) -> web.Response:
        state.hits += 1
        return web.Response(text="ok")

    async def hang(request: web.Request) -> web.Response:
        await state.release.wait()
        return web.Response(text="late")

    async def busy(request: web.Request) -> web.Response:
        state.hits += 1
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            await asyncio.sleep(0.05)
        finally:
            state.in_flight -= 1
        return web.Response(text="busy")

    async def flaky(request: web.Request) -> web.Response:
        state.flaky += 1
        return web.Response(status=200 if state.flaky % 2 else 500, text="flaky")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/hang", hang)
    app.router.add_get("/busy", busy)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/flaky", flaky)
    return app


@contextlib.asynccontextmanager
async def http_server(host: str = "127.0.0.1", *, ssl_context: ssl.SSLContext | None = None
                      ) -> AsyncIterator[HttpServer]:
    """Start the HTTP(S) server on a free port for the context's duration."""
    state = HttpServer()
    runner = web.AppRunner(_app(state), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
        await site.start()
        state.port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def closed_port(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound but not listening: connects to its port are refused (RST). The
    caller closes it; while it is open, no one else can take the port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    return sock
