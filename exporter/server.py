"""HTTP endpoints: /metrics (Prometheus text or OpenMetrics), /healthz and /readyz.

``/metrics`` negotiates the format from ``Accept`` exactly as prometheus-client's aiohttp handler
does (its ``choose_encoder``) and compresses when asked. When the app is given a ``render``
function (the CLI passes ``exporter.metrics.exposition.render``), the formats Prometheus and plain
clients get, text 0.0.4 and OpenMetrics with the default ``underscores`` escaping, are rendered by
it (the same bytes, faster); any other negotiated format, and ``name[]`` filtering, go through
prometheus-client itself. Collectors run synchronously on the event loop and only read memory.
``/readyz`` answers 200 once every data source of the role has loaded once (for the cluster role:
every watched resource has been listed), 503 before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import structlog
from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry, generate_latest, openmetrics
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest

from exporter.config import ENV_PREFIX, ConfigError, split_listen

Render = Callable[[CollectorRegistry, bool, str], bytes]
"""``render(registry, openmetrics, version)``: the exposition of ``registry`` in that format."""

log = structlog.get_logger(__name__)

INDEX = """<html><head><title>calico-exporter</title></head><body>
<h1>calico-exporter</h1><p><a href="/metrics">/metrics</a> &middot; <a href="/healthz">/healthz</a>
&middot; <a href="/readyz">/readyz</a></p></body></html>"""


def make_app(registry: CollectorRegistry, *, ready: Callable[[], bool],
             render: Render | None = None) -> web.Application:
    """The aiohttp application serving one registry; ``ready()`` decides /readyz; ``render``
    renders /metrics in the common formats (prometheus-client's handler without it)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not ready: initial sync in progress\n")

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=INDEX, content_type="text/html")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(registry, render))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", index)
    return app


def metrics_handler(registry: CollectorRegistry, render: Render | None
                    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The /metrics handler: prometheus-client's, with ``render`` for the common formats."""
    fallback = make_aiohttp_handler(registry)
    if render is None:
        return fallback

    async def handler(request: web.Request) -> web.StreamResponse:
        if "name[]" in request.query:
            return await fallback(request)
        accept = ",".join(request.headers.getall(hdrs.ACCEPT, []))
        encoder, content_type = choose_encoder(accept)
        fast = fast_format(encoder)
        if fast is None:
            return await fallback(request)
        body = render(registry, fast[0], fast[1])
        response = web.Response(body=body, headers={"Content-Type": content_type})
        response.enable_compression()
        return response

    return handler


def fast_format(encoder: object) -> tuple[bool, str] | None:
    """(openmetrics, version) when prometheus-client chose an encoder our renderer reproduces."""
    if encoder is generate_latest:
        return False, ""
    if (isinstance(encoder, partial) and encoder.func is om_generate_latest
            and encoder.keywords.get("escaping") == openmetrics.exposition.UNDERSCORES):
        version = str(encoder.keywords.get("version", "1.0.0"))
        return True, version
    return None


def split_host_port(address: str) -> tuple[str, int]:
    """(host, port) of a listen address; host "" means every interface (``:9808``)."""
    return split_listen(address)


def display_address(address: str, port: int) -> str:
    """``host:port`` a local client can use for the address being served on ``port``."""
    host, _ = split_listen(address)
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@asynccontextmanager
async def serve(app: web.Application, *, listen: str,
                setting: str = "listen") -> AsyncIterator[int]:
    """Serve ``app`` on ``listen`` (host:port, [IPv6]:port, or :port for every interface; port 0
    picks one) and yield the bound port. ``setting`` names the option the address came from, for
    the error when it cannot be bound."""
    host, port = split_host_port(listen)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or None, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        flag, env = "--" + setting.replace("_", "-"), ENV_PREFIX + setting.upper()
        raise ConfigError(f"invalid value for {flag} ({env}): cannot listen on {listen}: "
                          f"{exc.strerror or exc}") from None
    bound = port
    for address in runner.addresses:  # the real port when port 0 was asked for
        bound = int(address[1])
        break
    log.info("serving", address=f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}")
    try:
        yield bound
    finally:
        await runner.cleanup()
