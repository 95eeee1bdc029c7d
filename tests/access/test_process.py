"""The access settings through the real command line: exact start-up errors (exit 2), and
``calico-exporter node`` serving HTTPS with scraper authorization against the emulator, with
/healthz and /readyz on a separate plain-HTTP health listener."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from exporter.sim import rbac
from exporter.sim.apiserver import ApiServer
from tests.access.certs import make_ca, make_cert
from tests.access.helpers import free_port
from tests.access.test_authorization import COMPONENT, PROMETHEUS, READER_RULES

pytestmark = pytest.mark.timeout(120)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})}, check=False)


@pytest.mark.parametrize(("env", "message"), [
    ({"CALICO_EXPORTER_TLS_CERT_FILE": "/x.crt"},
     "invalid value for --tls-cert-file (CALICO_EXPORTER_TLS_CERT_FILE): --tls-cert-file and "
     "--tls-key-file go together"),
    ({"CALICO_EXPORTER_TLS_CLIENT_CA_FILE": "/ca.crt"},
     "invalid value for --tls-client-ca-file (CALICO_EXPORTER_TLS_CLIENT_CA_FILE): mutual TLS "
     "needs --tls-cert-file and --tls-key-file"),
    ({"CALICO_EXPORTER_HEALTH_LISTEN": "9809"},
     "invalid value for --health-listen (CALICO_EXPORTER_HEALTH_LISTEN): '9809' is not "
     "host:port, [IPv6]:port or :port"),
    ({"CALICO_EXPORTER_MAX_CONNECTIONS": "0"},
     "invalid value for --max-connections (CALICO_EXPORTER_MAX_CONNECTIONS): must be at least 1"),
    ({"CALICO_EXPORTER_HEADER_READ_TIMEOUT": "0s"},
     "invalid value for --header-read-timeout (CALICO_EXPORTER_HEADER_READ_TIMEOUT): must be "
     "greater than 0"),
    ({"CALICO_EXPORTER_KEEPALIVE_TIMEOUT": "1m30"},
     "invalid value for --keepalive-timeout (CALICO_EXPORTER_KEEPALIVE_TIMEOUT): '1m30' is not a "
     "duration like 30s, 1m30s or 500ms"),
    ({"CALICO_EXPORTER_ACCESS_REVIEW_DENY_TTL": "-30s"},
     "invalid value for --access-review-deny-ttl (CALICO_EXPORTER_ACCESS_REVIEW_DENY_TTL): must "
     "not be negative"),
])
def test_bad_access_settings_exit_2(env: dict[str, str], message: str) -> None:
    """Each inconsistent access setting stops the node role at start-up with one exact message
    and exit code 2."""
    result = cli("node", "--node-name", "n1", env=env)
    assert result.returncode == 2
    assert result.stderr == f"calico-exporter: error: {message}\n"


def test_unreadable_certificate_exits_2(tmp_path: Path) -> None:
    """A role whose certificate file does not exist exits 2 with one message naming it."""
    result = cli("node", "--node-name", "n1", "--listen", f"127.0.0.1:{free_port()}",
                 "--bird-socket", str(tmp_path / "none.ctl"),
                 "--tls-cert-file", str(tmp_path / "tls.crt"),
                 "--tls-key-file", str(tmp_path / "tls.key"))
    assert result.returncode == 2
    assert (f"calico-exporter: error: invalid value for --tls-cert-file "
            f"(CALICO_EXPORTER_TLS_CERT_FILE): cannot use {tmp_path / 'tls.crt'}, "
            f"{tmp_path / 'tls.key'}: No such file or directory\n") in result.stderr


@pytest.fixture
async def apiserver() -> AsyncIterator[ApiServer]:
    srv = ApiServer(token="node-token", rbac_rules=rbac.load_rules(COMPONENT / "clusterrole.yaml"),
                    user="system:serviceaccount:calico-exporter:calico-exporter-node")
    srv.add_user("prometheus-token", PROMETHEUS, rules=READER_RULES)
    await srv.start()
    yield srv
    await srv.stop()


async def test_node_role_over_https_with_authorization(apiserver: ApiServer,
                                                       tmp_path: Path) -> None:
    """calico-exporter node with TLS, --authorize-scrapers and --health-listen: the kubelet's
    plain-HTTP probes answer without a token, /metrics over HTTPS is 401 without a token and 200
    with Prometheus's, and the process stops cleanly on SIGTERM."""
    ca = make_ca(tmp_path / "ca", "ca")
    server = make_cert(tmp_path / "server", "server", ca, server=True)
    port, health = free_port(), free_port()
    out = (tmp_path / "exporter.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "node", "--node-name", "node-1",
        "--listen", f"127.0.0.1:{port}", "--health-listen", f"127.0.0.1:{health}",
        "--bird-socket", str(tmp_path / "none.ctl"), "--bird6-socket", str(tmp_path / "n6.ctl"),
        "--tls-cert-file", str(server.cert), "--tls-key-file", str(server.key),
        "--authorize-scrapers", "--kubeconfig",
        str(apiserver.write_kubeconfig(tmp_path / "kubeconfig")), "--log-format", "json",
        stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    out.close()
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    try:
        async with aiohttp.ClientSession() as session:
            async def get(url: str, token: str | None = None) -> int:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with session.get(url, headers=headers, ssl=ctx,
                                       timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    await resp.read()
                    return resp.status

            for _ in range(200):
                assert proc.returncode is None, (tmp_path / "exporter.log").read_text()
                try:
                    if await get(f"http://127.0.0.1:{health}/healthz") == 200:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            assert await get(f"http://127.0.0.1:{health}/readyz") == 200
            metrics = f"https://127.0.0.1:{port}/metrics"
            assert await get(metrics) == 401
            assert await get(metrics, "prometheus-token") == 200
            assert await get(f"https://127.0.0.1:{port}/healthz") == 200
        assert [r.status for r in apiserver.requests if r.path.endswith("reviews")] == [201, 201]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, (tmp_path / "exporter.log").read_text()
