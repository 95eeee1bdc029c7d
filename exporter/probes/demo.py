"""Loopback targets for the demo's probe agent, and the probe config that points at them.

:func:`serve_demo_targets` starts, on 127.0.0.1 with ports picked by the kernel:

* an HTTP server standing for the guestbook frontend (``/`` answers 200, ``/admin`` 403);
* a TCP listener standing for redis (accepts and closes);
* a *closed* port: a socket bound but not listening, so every connect is refused (RST), which is
  how a rejecting policy looks;
* a tiny DNS server answering ``frontend.guestbook.svc.cluster.local`` A 127.0.0.1, NXDOMAIN for
  every other name.

:meth:`DemoTargets.config` renders the probe config for one source namespace: four probes that
all match their expectation, one of them (the closed port) expected to be denied.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

from aiohttp import web

from exporter.probes.dnsmsg import (
    CLASS_IN,
    NXDOMAIN,
    TYPES,
    DnsFormatError,
    encode_name,
    normalize_name,
    parse_message,
)

FRONTEND_NAME = "frontend.guestbook.svc.cluster.local"


@dataclass(frozen=True, slots=True)
class DemoTargets:
    """Where the loopback targets listen."""

    host: str
    http_port: int
    tcp_port: int
    closed_port: int
    dns_port: int

    def config(self, *, namespace: str = "demo", interval: str = "10s",
               timeout: str = "2s") -> str:
        """The demo probe config (YAML) for agents in ``namespace``."""
        h = self.host
        return f"""\
# Probes of the calico-exporter demo, against targets the demo serves on loopback.
defaults:
  interval: {interval}
  timeout: {timeout}
probes:
  - name: frontend-http
    protocol: http
    target: http://{h}:{self.http_port}/
    expect: allow
    source: {{namespace: {namespace}, labels: {{run: testpod}}}}
  - name: redis-tcp
    protocol: tcp
    target: {h}:{self.tcp_port}
    expect: allow
    source: {{namespace: {namespace}}}
  - name: frontend-dns
    protocol: dns
    target: {FRONTEND_NAME}
    server: {h}:{self.dns_port}
    expect_answers: [{h}]
    expect: allow
    source: {{namespace: {namespace}}}
  - name: blocked-port
    protocol: tcp
    target: {h}:{self.closed_port}
    expect: deny
    source: {{namespace: {namespace}}}
"""


def dns_reply(query: bytes, records: dict[str, str]) -> bytes | None:
    """The answer to a one-question A query: the address from ``records`` (name -> IPv4), an
    empty NOERROR for another type of a known name, NXDOMAIN for an unknown name; None when the
    query is malformed."""
    try:
        message = parse_message(query)
        if message.is_response or len(message.questions) != 1:
            return None
        question = message.questions[0]
        qlen = len(encode_name(question.name)) + 4
    except DnsFormatError:
        return None
    address = records.get(normalize_name(question.name))
    flags = 0x8080 | (message.flags & 0x0100)  # QR, RA, copy RD
    answers = b""
    count = 0
    if address is None:
        flags |= NXDOMAIN
    elif question.rtype == TYPES["A"] and question.rclass == CLASS_IN:
        answers = struct.pack("!HHHIH", 0xC00C, TYPES["A"], CLASS_IN, 30, 4) \
            + ipaddress.IPv4Address(address).packed
        count = 1
    header = struct.pack("!HHHHHH", message.ident, flags, 1, count, 0, 0)
    return header + query[12:12 + qlen] + answers


class _DnsServer(asyncio.DatagramProtocol):
    def __init__(self, records: dict[str, str]) -> None:
        self.records = records
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        reply = dns_reply(data, self.records)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def _frontend(request: web.Request) -> web.Response:
    return web.Response(text="<html><title>Guestbook</title></html>", content_type="text/html")


async def _admin(request: web.Request) -> web.Response:
    return web.Response(status=403, text="forbidden")


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


@contextlib.asynccontextmanager
async def serve_demo_targets(host: str = "127.0.0.1") -> AsyncIterator[DemoTargets]:
    """Start the loopback targets for as long as the context lasts."""
    loop = asyncio.get_running_loop()
    app = web.Application()
    app.router.add_get("/", _frontend)
    app.router.add_get("/admin", _admin)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp: asyncio.Server | None = None
    dns: asyncio.DatagramTransport | None = None
    try:
        site = web.TCPSite(runner, host, 0)
        await site.start()
        http_port = _port_of(runner)
        tcp = await asyncio.start_server(_close_at_once, host, 0)
        closed.bind((host, 0))
        dns, _ = await loop.create_datagram_endpoint(
            lambda: _DnsServer({FRONTEND_NAME: host}), local_addr=(host, 0))
        yield DemoTargets(
            host=host,
            http_port=http_port,
            tcp_port=tcp.sockets[0].getsockname()[1],
            closed_port=closed.getsockname()[1],
            dns_port=dns.get_extra_info("sockname")[1],
        )
    finally:
        if dns is not None:
            dns.close()
        if tcp is not None:
            tcp.close()
            await tcp.wait_closed()
        closed.close()
        await runner.cleanup()


def _port_of(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("the demo HTTP server has no TCP address")


__all__ = ["FRONTEND_NAME", "DemoTargets", "dns_reply", "serve_demo_targets"]
