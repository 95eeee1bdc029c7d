"""HTTP endpoints: /metrics (Prometheus text or OpenMetrics), /healthz and /readyz.

``/metrics`` is prometheus-client's aiohttp handler over our own registry: it negotiates the
format from ``Accept`` and compresses when asked. Collectors run synchronously on the event loop
and only read memory. ``/readyz`` answers 200 once every data source of the role has loaded
once (for the cluster role: every watched resource has been listed), 503 before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

log = structlog.get_logger(__name__)

INDEX = """<html><head><title>calico-exporter</title></head><body>
<h1>calico-exporter</h1><p><a href="/metrics">/metrics</a> &middot; <a href="/healthz">/healthz</a>
&middot; <a href="/readyz">/readyz</a></p></body></html>"""


def make_app(registry: CollectorRegistry, *, ready: Callable[[], bool]) -> web.Application:
    """The aiohttp application serving one registry; ``ready()`` decides /readyz."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not ready: initial sync in progress\n")

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=INDEX, content_type="text/html")

    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", index)
    return app


def split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


@asynccontextmanager
async def serve(app: web.Application, *, listen: str) -> AsyncIterator[int]:
    """Serve ``app`` on ``listen`` (host:port, port 0 picks one) and yield the bound port."""
    host, port = split_host_port(listen)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for address in runner.addresses:  # the real port when port 0 was asked for
        bound = int(address[1])
        break
    log.info("serving", address=f"{host}:{bound}")
    try:
        yield bound
    finally:
        await runner.cleanup()
