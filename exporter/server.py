"""HTTP endpoints: /metrics (Prometheus text or OpenMetrics), /healthz and /readyz.

``/metrics`` negotiates the format from ``Accept`` exactly as prometheus-client's aiohttp handler
does (its ``choose_encoder``) and compresses when asked. When the app is given a ``render``
function (the CLI passes ``exporter.metrics.exposition.render``), the formats Prometheus and plain
clients get, text 0.0.4 and OpenMetrics with the default ``underscores`` escaping, are rendered by
it (the same bytes, faster); any other negotiated format, and ``name[]`` filtering, go through
prometheus-client itself. Collectors run synchronously on the event loop and only read memory.
``/readyz`` answers 200 once every data source of the role has loaded once (for the cluster role:
every watched resource has been listed), 503 before.

Access (``exporter.access``, settings ``AccessSettings``): every connection goes through a guard
with a connection limit and a header read timeout (aiohttp's keep-alive timeout bounds the rest);
HTTPS with a reloading certificate and optional client CA; optional scraper authorization
(TokenReview + SubjectAccessReview) on every path but ``/healthz`` and ``/readyz``; and an
optional separate health listener serving only those two, plain HTTP, so a flood of scrapers
or idle connections cannot fail the liveness probe.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

import structlog
from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry, generate_latest, openmetrics
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest

from exporter.access.limits import GuardedSite, Listener
from exporter.access.review import UNPROTECTED, ScraperAuthorizer
from exporter.access.tls import TlsFiles
from exporter.config import ENV_PREFIX, AccessSettings, ConfigError, split_listen
from exporter.model.http import HttpStats

Render = Callable[[CollectorRegistry, bool, str], bytes]
"""``render(registry, openmetrics, version)``: the exposition of ``registry`` in that format."""

log = structlog.get_logger(__name__)

INDEX = """<html><head><title>calico-exporter</title></head><body>
<h1>calico-exporter</h1><p><a href="/metrics">/metrics</a> &middot; <a href="/healthz">/healthz</a>
&middot; <a href="/readyz">/readyz</a></p></body></html>"""


HEALTH_MAX_CONNECTIONS = 32
"""Connection limit of the separate health listener (the kubelet opens one per probe)."""


def make_app(registry: CollectorRegistry, *, ready: Callable[[], bool],
             render: Render | None = None,
             authorizer: ScraperAuthorizer | None = None) -> web.Application:
    """The aiohttp application serving one registry; ``ready()`` decides /readyz; ``render``
    renders /metrics in the common formats (prometheus-client's handler without it);
    ``authorizer`` guards every path but /healthz and /readyz."""

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=INDEX, content_type="text/html")

    app = make_health_app(ready, middlewares=[] if authorizer is None
                          else [authorization_middleware(authorizer)])
    app.router.add_get("/metrics", metrics_handler(registry, render))
    app.router.add_get("/", index)
    return app


def make_health_app(ready: Callable[[], bool], *,
                    middlewares: list[Callable[..., Awaitable[web.StreamResponse]]] | None = None,
                    ) -> web.Application:
    """An application serving /healthz (always 200 while the loop runs) and /readyz."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not ready: initial sync in progress\n")

    app = web.Application(middlewares=middlewares or [])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def authorization_middleware(authorizer: ScraperAuthorizer
                             ) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Refuses, before routing, every request the authorizer does not let through."""

    @web.middleware
    async def authorize(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                        ) -> web.StreamResponse:
        if request.path not in UNPROTECTED:
            denial = await authorizer.check(request.headers.get(hdrs.AUTHORIZATION),
                                            method=request.method, path=request.path)
            if denial is not None:
                headers = {"WWW-Authenticate": "Bearer"} if denial.status == 401 else None
                return web.Response(status=denial.status, text=denial.message, headers=headers)
        return await handler(request)

    return authorize


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


def load_tls(access: AccessSettings) -> TlsFiles | None:
    """The reloading TLS context of the settings, or None for plain HTTP; ConfigError when the
    files do not make one."""
    if not access.tls_cert_file:
        return None
    files = [f for f in (access.tls_cert_file, access.tls_key_file, access.tls_client_ca_file)
             if f]
    try:
        return TlsFiles(access.tls_cert_file, access.tls_key_file, access.tls_client_ca_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(
            "invalid value for --tls-cert-file (CALICO_EXPORTER_TLS_CERT_FILE): cannot use "
            f"{', '.join(files)}: {reason}") from None


@asynccontextmanager
async def serve(app: web.Application, *, listen: str, listener: Listener | None = None,
                keepalive_timeout: float = 75.0, setting: str = "listen"
                ) -> AsyncIterator[int]:
    """Serve ``app`` on ``listen`` (host:port, [IPv6]:port, or :port for every interface; port 0
    picks one) and yield the bound port.

    Connections go through ``listener``'s guard (limit, header timeout, TLS); without one, a
    plain-HTTP listener with the AccessSettings defaults. ``setting`` names the option the
    address came from, for the error when it cannot be bound."""
    host, port = split_host_port(listen)
    if listener is None:
        defaults = AccessSettings()
        listener = Listener("metrics", HttpStats(), defaults.header_read_timeout,
                            defaults.max_connections)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None,
                           keepalive_timeout=keepalive_timeout)
    await runner.setup()
    site = GuardedSite(runner, host, port, listener=listener)
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
    log.info("serving", address=f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}",
             listener=listener.name, tls=listener.tls is not None)
    try:
        yield bound
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve_guarded(app: web.Application, *, ready: Callable[[], bool], listen: str,
                        access: AccessSettings, stats: HttpStats, setting: str = "listen",
                        health: bool = True) -> AsyncIterator[int]:
    """Serve ``app`` on ``listen`` with the access settings (TLS, limits, timeouts) and, when
    ``health`` and ``access.health_listen`` is set, /healthz and /readyz (``ready()``) on that
    address too; yields the bound port of ``listen``. ``setting`` names the option ``listen``
    came from."""
    tls = load_tls(access)
    metrics = Listener("metrics", stats, access.header_read_timeout, access.max_connections,
                       tls=None if tls is None else tls.context)
    async with AsyncExitStack() as stack:
        port = await stack.enter_async_context(serve(
            app, listen=listen, listener=metrics, keepalive_timeout=access.keepalive_timeout,
            setting=setting))
        if health and access.health_listen:
            listener = Listener("health", stats, access.header_read_timeout,
                                HEALTH_MAX_CONNECTIONS)
            await stack.enter_async_context(serve(
                make_health_app(ready), listen=access.health_listen, listener=listener,
                keepalive_timeout=access.keepalive_timeout, setting="health_listen"))
        yield port
