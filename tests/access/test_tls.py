"""HTTPS on the exporter's endpoint: certificate and client CA from files, reloaded when a
mounted Secret rotates (the kubelet swaps the ``..data`` symlink), mutual TLS, and the errors
of unusable files. Real TLS over loopback; certificates made by openssl in the test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from pathlib import Path

import aiohttp
import pytest

from exporter.config import AccessSettings, ConfigError
from tests.access.certs import Pair, make_ca, make_cert
from tests.access.helpers import endpoint

pytestmark = pytest.mark.timeout(120)

SETTLE = 30.0


class Secret:
    """A directory laid out like a mounted Secret: ``tls.crt`` -> ``..data/tls.crt``, with
    ``..data`` a symlink to the current timestamped folder, swapped atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> str:
        return str(self.root / name)

    def write(self, files: dict[str, bytes]) -> None:
        self.generation += 1
        folder = self.root / f"..2026_{self.generation:04d}"
        folder.mkdir()
        for name, data in files.items():
            (folder / name).write_bytes(data)
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(folder.name)
        os.replace(tmp, self.root / "..data")


def client_context(ca: Pair, cert: Pair | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


async def served_cn(port: int, ctx: ssl.SSLContext) -> str:
    """The CN of the certificate the server presents to a new connection."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        peer = writer.get_extra_info("peercert")
        return dict(item for rdn in peer["subject"] for item in rdn)["commonName"]
    finally:
        writer.close()
        await writer.wait_closed()


async def status(url: str, ctx: ssl.SSLContext | None) -> int | str:
    """The HTTP status of GET url, or the name of the error that prevented one."""
    try:
        async with aiohttp.ClientSession() as session, session.get(
                url, ssl=ctx if ctx is not None else False,
                timeout=aiohttp.ClientTimeout(total=10)) as resp:
            return resp.status
    except aiohttp.ClientError as exc:
        return type(exc).__name__


async def raw_status(port: int, ctx: ssl.SSLContext) -> int | str:
    """The HTTP status of one GET /metrics on one new TLS connection, or "refused" when the
    server ends the connection instead (exactly one connection, unlike an HTTP client that
    may retry)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    except (ssl.SSLError, ConnectionError):
        return "refused"
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        line = await reader.readline()
    except (ssl.SSLError, ConnectionError):
        return "refused"
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else "refused"


async def eventually(check, *, within: float = SETTLE) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def test_certificate_rotation_through_a_secret_mount(tmp_path: Path) -> None:
    """HTTPS with the Secret's certificate; after the Secret rotates, new connections get the
    new certificate without a restart, and a rotation caught half-way (new certificate, old
    key) keeps the previous certificate until the key follows."""
    ca = make_ca(tmp_path / "ca", "ca")
    a = make_cert(tmp_path / "a", "server-a", ca, server=True)
    b = make_cert(tmp_path / "b", "server-b", ca, server=True)
    c = make_cert(tmp_path / "c", "server-c", ca, server=True)
    secret = Secret(tmp_path / "secret")
    secret.write({"tls.crt": a.cert.read_bytes(), "tls.key": a.key.read_bytes()})
    access = AccessSettings(tls_cert_file=secret.path("tls.crt"),
                            tls_key_file=secret.path("tls.key"))
    ctx = client_context(ca)
    async with endpoint(access, health=True) as ep:
        url = f"https://127.0.0.1:{ep.port}/metrics"
        assert await status(url, ctx) == 200
        assert await served_cn(ep.port, ctx) == "server-a"
        assert await status(f"http://127.0.0.1:{ep.health_port}/healthz", None) == 200

        secret.write({"tls.crt": b.cert.read_bytes(), "tls.key": b.key.read_bytes()})

        async def rotated() -> bool:
            return await served_cn(ep.port, ctx) == "server-b"

        await eventually(rotated)
        assert await status(url, ctx) == 200

        # Half-way: c's certificate with b's key does not load; b stays in use.
        secret.write({"tls.crt": c.cert.read_bytes(), "tls.key": b.key.read_bytes()})
        await asyncio.sleep(1.5)  # past the 1 s check interval: the failed reload has happened
        assert await served_cn(ep.port, ctx) == "server-b"
        secret.write({"tls.crt": c.cert.read_bytes(), "tls.key": c.key.read_bytes()})

        async def completed() -> bool:
            return await served_cn(ep.port, ctx) == "server-c"

        await eventually(completed)


async def test_mutual_tls_and_client_ca_rotation(tmp_path: Path) -> None:
    """With a client CA, a client without a certificate is refused (counted tls_handshake)
    and one with a certificate of that CA is served; after the client CA rotates, the old
    CA's clients are refused and the new CA's served."""
    server_ca = make_ca(tmp_path / "sca", "server-ca")
    server = make_cert(tmp_path / "s", "server", server_ca, server=True)
    ca1, ca2 = make_ca(tmp_path / "ca1", "clients-1"), make_ca(tmp_path / "ca2", "clients-2")
    alice = make_cert(tmp_path / "alice", "alice", ca1, server=False)
    bob = make_cert(tmp_path / "bob", "bob", ca2, server=False)
    secret = Secret(tmp_path / "secret")
    secret.write({"tls.crt": server.cert.read_bytes(), "tls.key": server.key.read_bytes(),
                  "ca.crt": ca1.cert.read_bytes()})
    access = AccessSettings(tls_cert_file=secret.path("tls.crt"),
                            tls_key_file=secret.path("tls.key"),
                            tls_client_ca_file=secret.path("ca.crt"))
    async with endpoint(access) as ep:
        url = f"https://127.0.0.1:{ep.port}/metrics"
        assert await status(url, client_context(server_ca, alice)) == 200
        assert await raw_status(ep.port, client_context(server_ca)) == "refused"
        assert await raw_status(ep.port, client_context(server_ca, bob)) == "refused"
        assert ep.stats.closed[("metrics", "tls_handshake")] == 2

        secret.write({"tls.crt": server.cert.read_bytes(), "tls.key": server.key.read_bytes(),
                      "ca.crt": ca2.cert.read_bytes()})

        async def rotated() -> bool:
            return await raw_status(ep.port, client_context(server_ca, bob)) == 200

        await eventually(rotated)
        assert await raw_status(ep.port, client_context(server_ca, alice)) == "refused"


@pytest.mark.parametrize("broken", ["missing", "mismatched"])
async def test_unusable_files_are_one_config_error(tmp_path: Path, broken: str) -> None:
    """A certificate file that is missing, or a key that does not belong to it, stops start-up
    with one exact message (the CLI prints it and exits 2)."""
    ca = make_ca(tmp_path / "ca", "ca")
    a = make_cert(tmp_path / "a", "a", ca, server=True)
    b = make_cert(tmp_path / "b", "b", ca, server=True)
    cert = str(tmp_path / "nope.crt") if broken == "missing" else str(a.cert)
    access = AccessSettings(tls_cert_file=cert, tls_key_file=str(b.key))
    with pytest.raises(ConfigError) as info:
        async with endpoint(access):
            pass
    expected = ("No such file or directory" if broken == "missing"
                else "[X509: KEY_VALUES_MISMATCH] key values mismatch")
    assert str(info.value).startswith(
        f"invalid value for --tls-cert-file (CALICO_EXPORTER_TLS_CERT_FILE): cannot use "
        f"{cert}, {b.key}: ")
    assert expected in str(info.value)
