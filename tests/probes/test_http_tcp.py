"""HTTP and TCP probers against real servers on loopback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from exporter.probes.outcome import Outcome
from exporter.probes.probers import run_attempt
from tests.probes.conftest import MakeProbe
from tests.probes.servers import HttpServer


async def test_http_success(make_probe: MakeProbe, http: HttpServer) -> None:
    """A 200 inside the default 200-299 is success."""
    attempt = await run_attempt(make_probe("http", f"http://127.0.0.1:{http.port}/ok"))
    assert attempt.outcome is Outcome.SUCCESS
    assert attempt.detail == "status 200"


async def test_http_status_mismatch(make_probe: MakeProbe, http: HttpServer) -> None:
    """A status outside expect_status is http_status_mismatch."""
    attempt = await run_attempt(make_probe("http", f"http://127.0.0.1:{http.port}/status/503"))
    assert attempt.outcome is Outcome.HTTP_STATUS_MISMATCH
    assert attempt.detail == "status 503 not in expect_status"


async def test_http_expect_status_ranges(make_probe: MakeProbe, http: HttpServer) -> None:
    """expect_status accepts single codes and ranges."""
    url = f"http://127.0.0.1:{http.port}/status/404"
    assert (await run_attempt(make_probe("http", url, expect_status=["400-499"]))).outcome \
        is Outcome.SUCCESS
    assert (await run_attempt(make_probe("http", url, expect_status=[200, 404]))).outcome \
        is Outcome.SUCCESS
    assert (await run_attempt(make_probe("http", url, expect_status=[200, "500-599"]))).outcome \
        is Outcome.HTTP_STATUS_MISMATCH


async def test_http_method(make_probe: MakeProbe, http: HttpServer) -> None:
    """The configured method is sent (the /ok route answers any method)."""
    for method in ("POST", "HEAD", "DELETE"):
        probe = make_probe("http", f"http://127.0.0.1:{http.port}/ok", method=method)
        assert (await run_attempt(probe)).outcome is Outcome.SUCCESS
    assert http.hits == 3


async def test_http_redirect_not_followed(make_probe: MakeProbe, http: HttpServer) -> None:
    """A redirect is the answer: 302 mismatches by default and matches when expected."""
    url = f"http://127.0.0.1:{http.port}/redirect"
    assert (await run_attempt(make_probe("http", url))).outcome is Outcome.HTTP_STATUS_MISMATCH
    assert (await run_attempt(make_probe("http", url, expect_status=[302]))).outcome \
        is Outcome.SUCCESS
    assert http.hits == 0


async def test_http_refused(make_probe: MakeProbe, refused_port: int) -> None:
    """A closed port answers RST: refused."""
    attempt = await run_attempt(make_probe("http", f"http://127.0.0.1:{refused_port}/"))
    assert attempt.outcome is Outcome.REFUSED
    assert "ECONNREFUSED" in attempt.detail


async def test_http_timeout_enforced(make_probe: MakeProbe, http: HttpServer) -> None:
    """A server that never answers is cut at the timeout: timeout."""
    probe = make_probe("http", f"http://127.0.0.1:{http.port}/hang", timeout="200ms")
    attempt = await run_attempt(probe)
    assert attempt.outcome is Outcome.TIMEOUT


async def test_https_self_signed_is_tls_error(make_probe: MakeProbe, https: HttpServer) -> None:
    """An untrusted (self-signed) certificate is tls_error."""
    attempt = await run_attempt(make_probe("http", f"https://127.0.0.1:{https.port}/ok"))
    assert attempt.outcome is Outcome.TLS_ERROR
    assert "certificate verify failed" in attempt.detail


async def test_https_with_ca_file(make_probe: MakeProbe, https: HttpServer,
                                  tls_files: tuple[Path, Path]) -> None:
    """Trusting the certificate through ca_file makes the same target a success."""
    probe = make_probe("http", f"https://127.0.0.1:{https.port}/ok", ca_file=str(tls_files[0]))
    assert (await run_attempt(probe)).outcome is Outcome.SUCCESS


async def test_https_to_plain_http_is_tls_error(make_probe: MakeProbe, http: HttpServer) -> None:
    """A TLS handshake with a server that does not speak TLS is tls_error."""
    attempt = await run_attempt(make_probe("http", f"https://127.0.0.1:{http.port}/ok"))
    assert attempt.outcome is Outcome.TLS_ERROR


async def test_http_missing_ca_file_is_error(make_probe: MakeProbe, https: HttpServer,
                                             tmp_path: Path) -> None:
    """A ca_file that cannot be read means the probe could not run: error."""
    probe = make_probe("http", f"https://127.0.0.1:{https.port}/ok",
                       ca_file=str(tmp_path / "missing.pem"))
    attempt = await run_attempt(probe)
    assert attempt.outcome is Outcome.ERROR
    assert attempt.detail.startswith("cannot load ca_file")


async def test_tcp_success_and_refused(make_probe: MakeProbe, http: HttpServer,
                                       refused_port: int) -> None:
    """A listening port is success, a closed one refused."""
    ok = await run_attempt(make_probe("tcp", f"127.0.0.1:{http.port}"))
    assert ok.outcome is Outcome.SUCCESS
    refused = await run_attempt(make_probe("tcp", f"127.0.0.1:{refused_port}"))
    assert refused.outcome is Outcome.REFUSED
    assert refused.detail == f"connect 127.0.0.1:{refused_port}: ECONNREFUSED (Connection refused)"


@pytest.mark.usefixtures("ipv6_loopback")
async def test_tcp_ipv6_refused(make_probe: MakeProbe) -> None:
    """IPv6 targets are written [addr]:port; a closed ::1 port is refused."""
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        port = sock.getsockname()[1]
        attempt = await run_attempt(make_probe("tcp", f"[::1]:{port}"))
    assert attempt.outcome is Outcome.REFUSED

