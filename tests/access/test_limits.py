"""The HTTP endpoint against idle, half-sent and surplus connections (slowloris, defect 9 of
issue 12): real sockets on loopback against the real server. Waits are bounded by the
configured timeouts; what is asserted are counts of connections, never durations."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from exporter.access.limits import REFUSED
from exporter.config import AccessSettings
from tests.access.helpers import endpoint

pytestmark = pytest.mark.timeout(120)

IDLE = 150
HALF_SENT = 150
SETTLE = 30.0
"""Bound of every wait for the server to act on a timeout (far above the timeouts here)."""


async def _open(port: int, n: int, first_bytes: bytes = b""
                ) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    conns = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if first_bytes:
            writer.write(first_bytes)
            await writer.drain()
        conns.append((reader, writer))
    return conns


async def _closed_by_server(reader: asyncio.StreamReader, *, within: float) -> bool:
    """True when the server closed the connection (EOF or reset) within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            data = await reader.read(65536)
            while data:
                data = await reader.read(65536)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def _close_all(conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, writer in conns:
        writer.close()
    for _, writer in conns:
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(
            url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return resp.status, await resp.text()


async def test_idle_and_half_sent_connections_are_closed_and_health_still_answers() -> None:
    """300 connections that send nothing or half a request: /healthz (on the health listener
    and on the main one) and /metrics still answer while they are open, and every one of them
    is closed by the header read timeout, counted as header_timeout."""
    access = AccessSettings(header_read_timeout=2.0, keepalive_timeout=2.0, max_connections=400)
    async with endpoint(access, health=True) as ep:
        idle = await _open(ep.port, IDLE)
        half = await _open(ep.port, HALF_SENT, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        try:
            assert await _get(f"http://127.0.0.1:{ep.health_port}/healthz") == (200, "ok\n")
            assert (await _get(f"{ep.url}/healthz"))[0] == 200
            status, body = await _get(f"{ep.url}/metrics")
            assert status == 200
            assert "test_up 1.0" in body
            closed = await asyncio.gather(*(_closed_by_server(r, within=SETTLE)
                                            for r, _ in idle + half))
            assert closed.count(True) == IDLE + HALF_SENT
            assert ep.stats.closed[("metrics", "header_timeout")] == IDLE + HALF_SENT
            assert ep.stats.open["metrics"] == 0
            assert await _get(f"http://127.0.0.1:{ep.health_port}/healthz") == (200, "ok\n")
        finally:
            await _close_all(idle + half)


async def test_surplus_connections_are_refused_at_once() -> None:
    """With max_connections 20 taken by idle clients, each further connection gets a 503 and
    is closed at once (counted over_limit); once the idle ones are gone, requests are served."""
    access = AccessSettings(header_read_timeout=5.0, max_connections=20)
    async with endpoint(access) as ep:
        idle = await _open(ep.port, 20)
        try:
            async with asyncio.timeout(SETTLE):  # the server has accepted all 20
                while ep.stats.open["metrics"] < 20:  # noqa: ASYNC110  (a counter, no event)
                    await asyncio.sleep(0.01)
            for _ in range(5):
                reader, writer = await asyncio.open_connection("127.0.0.1", ep.port)
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                async with asyncio.timeout(SETTLE):
                    answer = await reader.read()
                writer.close()
                assert answer == REFUSED
            assert ep.stats.closed[("metrics", "over_limit")] == 5
        finally:
            await _close_all(idle)
        async with asyncio.timeout(SETTLE):  # the server has seen the 20 close
            while ep.stats.open["metrics"] > 0:  # noqa: ASYNC110  (a counter, no event)
                await asyncio.sleep(0.01)
        status, _ = await _get(f"{ep.url}/metrics")
        assert status == 200


async def test_keepalive_idle_and_half_sent_next_request_are_closed() -> None:
    """After a full request on a kept-alive connection, an idle connection and one that sends
    only half of its next request are both closed by the keep-alive timeout (not counted as
    header timeouts: those are for the first request only)."""
    access = AccessSettings(header_read_timeout=30.0, keepalive_timeout=1.0)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    async with endpoint(access) as ep:
        conns = await _open(ep.port, 2, request)
        try:
            for reader, _ in conns:
                head = await reader.readuntil(b"ok\n")
                assert head.startswith(b"HTTP/1.1 200")
            conns[1][1].write(b"GET /metrics HTTP/1.1\r\nHost: ")
            closed = await asyncio.gather(*(_closed_by_server(r, within=SETTLE)
                                            for r, _ in conns))
            assert closed == [True, True]
            assert ep.stats.closed[("metrics", "header_timeout")] == 0
        finally:
            await _close_all(conns)
