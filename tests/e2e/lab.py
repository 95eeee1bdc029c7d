"""A running lab: the API emulator, a simulated Calico cluster, and the exporter's cluster role.

The exporter runs in-process through the same ``serve_roles`` the CLI uses and talks to the
emulator over HTTP with the real kubernetes-asyncio client; tests read its real ``/metrics``.

The emulator serves Calico in one flavour (``calico_api``): ``v1`` (crd.projectcalico.org CRDs),
``v3`` (native projectcalico.org CRDs) or ``both`` (v1 CRDs and the Calico API server's v3 on top
of them). The end-to-end suites take the flavour from the ``calico_api`` fixture
(``tests/conftest.py``), so each of them runs against every flavour.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import config
from exporter.app.cluster import build_cluster_role
from exporter.app.run import serve_roles
from exporter.kube.client import connect
from exporter.model.telemetry import Telemetry
from exporter.sim.apiserver import ApiServer
from exporter.sim.cluster import SimCluster
from exporter.sim.scenario import load

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_samples(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str, **labels: str) -> list[dict[str, str]]:
    """Label sets of every sample of ``name`` that has the given labels."""
    want = set(labels.items())
    return [dict(lbl) for (n, lbl) in samples if n == name and want <= set(lbl)]


CALICO_APIS = ("v1", "v3", "both")
"""The Calico flavours every end-to-end suite runs against."""


@dataclass
class Lab:
    apiserver: ApiServer
    cluster: SimCluster
    kubeconfig: Path
    settings: config.Settings
    telemetry: Telemetry = field(default_factory=Telemetry)
    port: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def calico(self, plural: str) -> str:
        """``plural.group`` of a Calico resource where the emulator holds Calico's data."""
        return self.apiserver.calico_resource(plural)

    @property
    def calico_api_version(self) -> str:
        """``crd.projectcalico.org/v1`` or ``projectcalico.org/v3``: where Calico's data is."""
        return self.apiserver.calico_api_version

    def calico_object(self, kind: str, name: str, *, spec: dict[str, Any],
                      namespace: str | None = None, **meta: Any) -> dict[str, Any]:
        """A Calico object in the group that holds Calico's data."""
        metadata: dict[str, Any] = {"name": name, **meta}
        if namespace is not None:
            metadata["namespace"] = namespace
        return {"apiVersion": self.calico_api_version, "kind": kind, "metadata": metadata,
                "spec": spec}

    def stored(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A ``crd.projectcalico.org/v1`` object as libcalico-go stores it, in the group that
        holds Calico's data (see ``SimCluster.stored``)."""
        return self.cluster.stored(obj)

    async def scrape(self, path: str = "/metrics") -> str:
        async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{self.port}{path}"
        ) as resp:
            return await resp.text()

    async def samples(self) -> Samples:
        return parse_samples(await self.scrape())

    async def wait_ready(self, *, timeout: float = 20.0) -> None:
        """Poll /readyz until it answers ok (every store synced); the timeout bounds a hang."""
        deadline = time.monotonic() + timeout
        while (await self.scrape("/readyz")).strip() != "ok":
            if time.monotonic() > deadline:
                pytest.fail("timed out waiting for /readyz")
            await asyncio.sleep(0.1)

    async def wait_for(self, predicate: Callable[[Samples], bool], *, timeout: float = 20.0,
                       what: str = "condition") -> Samples:
        """Scrape until ``predicate`` holds; fail after ``timeout`` seconds (a bound, not a
        performance assertion)."""
        deadline = time.monotonic() + timeout
        while True:
            got = await self.samples()
            if predicate(got):
                return got
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)


def lab_settings(kubeconfig: Path, **overrides: object) -> config.Settings:
    flags = {
        "listen": "127.0.0.1:0",
        "kubeconfig": str(kubeconfig),
        "node_status_update_period": 1,
        "watch_timeout": "5s",
        "inactivity_timeout": "2s",
        "backoff_initial": "50ms",
        "backoff_max": "500ms",
        "list_page_size": 5,
    }
    flags.update(overrides)
    return config.load(flags=flags, environ={})


async def start_lab(tmp_path: Path, *, scenario: str = "nke-lab",
                    rbac_rules: list[dict[str, object]] | None = None, calico_api: str = "v1",
                    cns_status_subresource: bool = False, without_crds: tuple[str, ...] = (),
                    **overrides: object) -> Lab:
    """``without_crds``: plurals whose CRDs the cluster does not have (an older Calico, no
    ClusterNetworkPolicy), in whichever group the flavour serves them."""
    apiserver = ApiServer(token="test-token", rbac_rules=rbac_rules, bookmark_interval=0.5,
                          calico_api=calico_api, cns_status_subresource=cns_status_subresource,
                          without_crds=without_crds)
    await apiserver.start()
    cluster = SimCluster(apiserver, load(scenario))
    try:
        await cluster.start()
        kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
        lab = Lab(apiserver, cluster, kubeconfig, lab_settings(kubeconfig, **overrides))
    except BaseException:
        await cluster.stop()
        await apiserver.stop()
        raise
    serving = asyncio.Event()

    def on_serving(port: int) -> None:
        lab.port = port
        serving.set()

    async def run() -> None:
        async with connect(lab.settings.kube) as api:
            role = build_cluster_role(api, lab.settings, lab.telemetry)
            await serve_roles([role], settings=lab.settings, telemetry=lab.telemetry,
                              stop=lab.stop, on_serving=on_serving)

    lab.task = asyncio.create_task(run(), name="exporter-under-test")
    waiter = asyncio.create_task(serving.wait(), name="wait-serving")
    await asyncio.wait([lab.task, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if lab.task.done():
        await lab.cluster.stop()
        await apiserver.stop()
        lab.task.result()
    return lab


async def stop_lab(lab: Lab) -> None:
    lab.stop.set()
    if lab.task is not None:
        await lab.task
    await lab.cluster.stop()
    await lab.apiserver.stop()


