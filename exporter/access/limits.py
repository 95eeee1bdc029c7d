"""A guard between the listening socket and aiohttp: connection limit, header read timeout, and
TLS per connection.

aiohttp closes a kept-alive connection after ``keepalive_timeout`` of idleness, but nothing bounds
how long a new connection may take to send its first request (nor, before 3.10, whether it
sends one at all), so idle and half-sent connections pile up until descriptors run out and even
``/healthz`` stops answering (slowloris). The guard is the asyncio protocol of every accepted
connection; it hands the connection to aiohttp's own protocol and adds:

* a connection limit per listener: one over ``max_connections`` is closed at once, after a
  ``503`` when the listener is plain HTTP (a TLS client just sees the connection close), before
  any TLS work is spent on it;
* a header read timeout: the first request's headers (and the TLS handshake before them) must
  arrive within ``header_read_timeout`` of the accept, else the connection is aborted. Later
  requests on a kept-alive connection are bounded by aiohttp's ``keepalive_timeout``, which the
  server sets: it closes a connection idle, or half-way through its next request, that long
  after the previous response;
* TLS per connection (``loop.start_tls`` with the context current at accept time), so a
  reloaded certificate or client CA applies to the next connection.

Each case is counted in :class:`~exporter.model.http.HttpStats` (``closed`` by reason, ``open``
per listener).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from exporter.model.http import HttpStats

log = structlog.get_logger(__name__)

REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\n\r\n"
           b"too many connections\n")
_END_OF_HEADERS = (b"\r\n\r\n", b"\n\n")


@dataclass(slots=True)
class Listener:
    """One listening address's limits and its live connection count."""

    name: str
    """``metrics`` or ``health``: the label of its connection series."""
    stats: HttpStats
    header_read_timeout: float
    max_connections: int
    tls: Callable[[], ssl.SSLContext] | None = None
    """Returns the server context for a new connection; None for plain HTTP."""
    connections: set[ConnectionGuard] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.stats.declare(self.name)


class ConnectionGuard(asyncio.Protocol):
    """The protocol of one accepted connection; aiohttp's protocol sits behind it."""

    def __init__(self, inner: asyncio.Protocol, listener: Listener) -> None:
        self._inner = inner
        self._listener = listener
        self._raw: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tls_task: asyncio.Task[None] | None = None
        self._connected = False  # the inner protocol has its transport
        self._pending: list[bytes] = []
        self._tail = b""
        self._headers_done = False
        self._counted = False
        self._lost = False
        self._closed_by_us = False

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        lst = self._listener
        if len(lst.connections) >= lst.max_connections:
            self._close("over_limit")
            if lst.tls is None:
                transport.write(REFUSED)
                transport.close()
            else:
                transport.abort()
            return
        lst.connections.add(self)
        self._counted = True
        lst.stats.open[lst.name] = len(lst.connections)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(lst.header_read_timeout, self._header_timeout)
        if lst.tls is None:
            self._connect_inner(transport)
            return
        transport.pause_reading()  # nothing is read before start_tls takes the transport over
        self._tls_task = loop.create_task(self._start_tls(lst.tls()), name="http-tls-handshake")

    def data_received(self, data: bytes) -> None:
        if not self._headers_done:
            seen = self._tail + data
            if any(end in seen for end in _END_OF_HEADERS):
                self._headers_done = True
                self._cancel_timer()
            else:
                self._tail = seen[-3:]
        if self._connected:
            self._inner.data_received(data)
        else:
            self._pending.append(data)

    def eof_received(self) -> bool | None:
        if self._connected:
            return self._inner.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._cancel_timer()
        if self._tls_task is not None and not self._tls_task.done():
            self._tls_task.cancel()
        lst = self._listener
        if self._counted:
            lst.connections.discard(self)
            lst.stats.open[lst.name] = len(lst.connections)
        if self._connected:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._connected:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._connected:
            self._inner.resume_writing()

    # ---------------------------------------------------------------- internals

    def _connect_inner(self, transport: asyncio.Transport) -> None:
        self._connected = True
        self._inner.connection_made(transport)
        pending, self._pending = self._pending, []
        for chunk in pending:
            if self._lost:
                break
            self._inner.data_received(chunk)

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        raw = self._raw
        assert raw is not None
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                raw, self, context, server_side=True,
                ssl_handshake_timeout=self._listener.header_read_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any handshake failure closes this connection
            if not self._closed_by_us:
                self._close("tls_handshake")
                log.debug("tls_handshake_failed", listener=self._listener.name, reason=str(exc))
            raw.abort()
            return
        if transport is None or self._lost:
            raw.abort()
            return
        self._connect_inner(transport)

    def _header_timeout(self) -> None:
        self._timer = None
        if self._headers_done or self._lost or self._raw is None:
            return
        self._close("header_timeout")
        self._raw.abort()

    def _close(self, reason: str) -> None:
        self._closed_by_us = True
        self._listener.stats.closed[(self._listener.name, reason)] += 1

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, listener: Listener,
                 backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._listener = listener

    @property
    def name(self) -> str:
        scheme = "https" if self._listener.tls is not None else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server: Any = self._runner.server
        assert server is not None
        listener = self._listener

        def protocol() -> asyncio.Protocol:
            return ConnectionGuard(server(), listener)

        self._server = await loop.create_server(protocol, self._host or None, self._port,
                                                backlog=self._backlog, reuse_address=True)


__all__ = ["REFUSED", "ConnectionGuard", "GuardedSite", "Listener"]
