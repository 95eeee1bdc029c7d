"""The Kubernetes client configuration: kubeconfig and in-cluster service account, over TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import config
from exporter.kube.client import ApiError, connect
from exporter.kube.resources import NODES
from exporter.sim.apiserver import ApiServer


async def test_in_cluster_config(tmp_path: Path) -> None:
    """In a pod: the API URL from KUBERNETES_SERVICE_*, the token and CA from the SA mount."""
    server = ApiServer(token="sa-token-1", tls=True)
    await server.start()
    try:
        assert server.ca_pem is not None
        (tmp_path / "token").write_text("sa-token-1")
        (tmp_path / "ca.crt").write_bytes(server.ca_pem)
        port = server.url.rsplit(":", 1)[1]
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
        async with connect(config.KubeSettings(), environ=env, service_account=tmp_path) as api:
            body = await api.list(NODES)
        assert body["kind"] == "NodeList"
        assert any(r.path == "/api/v1/nodes" and r.status == 200 for r in server.requests)
    finally:
        await server.stop()


async def test_kubeconfig_and_wrong_token(tmp_path: Path) -> None:
    """From a kubeconfig the token is sent; a wrong token gets 401 as an ApiError."""
    server = ApiServer(token="right", tls=True)
    await server.start()
    try:
        path = server.write_kubeconfig(tmp_path / "kubeconfig")
        async with connect(config.KubeSettings(kubeconfig=str(path)), environ={}) as api:
            assert (await api.list(NODES))["kind"] == "NodeList"
        path.write_text(path.read_text().replace("token: right", "token: wrong"))
        async with connect(config.KubeSettings(kubeconfig=str(path)), environ={}) as api:
            with pytest.raises(ApiError) as info:
                await api.list(NODES)
        assert info.value.status == 401
    finally:
        await server.stop()
