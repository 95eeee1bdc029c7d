"""Fixtures for the probe tests: loopback servers and a probe factory from config YAML."""

from __future__ import annotations

import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.probes.config import Probe, parse_probe_config
from tests.probes.servers import (
    DnsServer,
    HttpServer,
    closed_port,
    dns_server,
    http_server,
    self_signed_cert,
)

MakeProbe = Callable[..., Probe]


@pytest.fixture
def make_probe() -> MakeProbe:
    """Build one Probe through the real config parser: ``make_probe(protocol, target, **keys)``."""

    def make(protocol: str, target: str, **keys: Any) -> Probe:
        raw = {"name": keys.pop("name", "p"), "protocol": protocol, "target": target,
               "expect": keys.pop("expect", "allow"),
               "source": keys.pop("source", {"namespace": "testns"}),
               "timeout": keys.pop("timeout", "2s"), **keys}
        config, errors = parse_probe_config(yaml.safe_dump({"probes": [raw]}))
        assert not errors, errors
        assert config is not None
        return config.probes[0]

    return make


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    """A dnspython DNS server on 127.0.0.1 (UDP and TCP)."""
    async with dns_server() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[HttpServer]:
    """An HTTP server on 127.0.0.1."""
    async with http_server() as server:
        yield server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make a test certificate")
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def https(tls_files: tuple[Path, Path]) -> AsyncIterator[HttpServer]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
    async with http_server(ssl_context=context) as server:
        yield server


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback TCP port that refuses connections."""
    sock = closed_port()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def ipv6_loopback() -> None:
    """Skip unless ::1 is usable."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        pytest.skip("IPv6 loopback is not available")
