"""A real exporter HTTP endpoint for the access tests: a registry with one gauge, served by
``serve_guarded`` with the given access settings, on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from exporter.access.review import ScraperAuthorizer
from exporter.config import AccessSettings
from exporter.metrics.exposition import render
from exporter.metrics.http import HttpCollector
from exporter.model.http import HttpStats
from exporter.server import make_app, serve_guarded


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Endpoint:
    port: int
    stats: HttpStats
    health_port: int | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def endpoint(access: AccessSettings, *, health: bool = False,
                   authorizer: ScraperAuthorizer | None = None,
                   stats: HttpStats | None = None) -> AsyncIterator[Endpoint]:
    """The exporter's endpoint on 127.0.0.1 (a free port), serving ``test_up 1``; with
    ``health``, the health listener on another free port."""
    import dataclasses

    stats = stats if stats is not None else HttpStats()
    registry = CollectorRegistry()
    Gauge("test_up", "A gauge for the access tests.", registry=registry).set(1)
    registry.register(HttpCollector(stats))
    health_port = free_port() if health else None
    if health_port is not None:
        access = dataclasses.replace(access, health_listen=f"127.0.0.1:{health_port}")
    app = make_app(registry, ready=lambda: True, render=render, authorizer=authorizer)
    async with serve_guarded(app, ready=lambda: True, listen="127.0.0.1:0", access=access,
                             stats=stats) as port:
        yield Endpoint(port, stats, health_port)
