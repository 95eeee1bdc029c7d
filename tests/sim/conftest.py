"""Fixtures for the emulator's tests: a started ``ApiServer`` and real kubernetes-asyncio
clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from exporter.sim.apiserver import ApiServer


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    """A started emulator with a short bookmark interval."""
    srv = ApiServer(bookmark_interval=0.2)
    await srv.start()
    yield srv
    await srv.stop()


async def make_client(srv: ApiServer, tmp_path: Path, *, token: str | None = None,
                      name: str = "kubeconfig") -> client.ApiClient:
    """A kubernetes-asyncio ApiClient configured from the emulator's kubeconfig."""
    path = srv.write_kubeconfig(tmp_path / name)
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(path), client_configuration=cfg)
    if token is not None:
        cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


@pytest.fixture
async def api(server: ApiServer, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    """A kubernetes-asyncio ApiClient for ``server``."""
    async with await make_client(server, tmp_path) as api_client:
        yield api_client
