"""Which API group serves Calico's resources: Calico's rule, and the discovery against the emulator.

The rule is ``UsingV3CRDs`` in projectcalico/calico ``libcalico-go/lib/backend/k8s/discovery.go``
(v3.32.1, unchanged on master 87c1590): a configured group wins, else ``v3present && !v1present``
picks projectcalico.org/v3 and everything else crd.projectcalico.org/v1. Calico ships no unit
test for it; the cases are the four combinations of that expression, plus its two fall-backs
(discovery failed, nothing served).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from exporter import config
from exporter.kube.apigroups import CalicoApi, choose
from exporter.kube.client import KubeApi, connect
from exporter.kube.resources import CALICO_GROUP, IPPOOLS, NODES, Resource
from exporter.model.telemetry import Telemetry
from exporter.sim.apiserver import ApiServer
from exporter.sim.resources import CRD_V3_DIR

V3 = "projectcalico.org"


@pytest.mark.parametrize(("served", "group"), [
    ({CALICO_GROUP}, CALICO_GROUP),
    ({V3}, V3),
    ({CALICO_GROUP, V3}, CALICO_GROUP),
    (set(), CALICO_GROUP),
])
def test_calicos_rule(served: set[str], group: str) -> None:
    """projectcalico.org/v3 only when it is served and crd.projectcalico.org is not."""
    choice = choose(["apps", "networking.k8s.io", *served])
    assert (choice.group, choice.version) == (group, "v3" if group == V3 else "v1")
    assert choice.reason


@asynccontextmanager
async def running(tmp_path: Path, flavour: str) -> AsyncIterator[tuple[ApiServer, KubeApi]]:
    server = ApiServer(token="t", calico_api=flavour)
    await server.start()
    try:
        path = server.write_kubeconfig(tmp_path / "kubeconfig")
        async with connect(config.KubeSettings(kubeconfig=str(path)), environ={}) as api:
            yield server, api
    finally:
        await server.stop()


@pytest.mark.parametrize(("flavour", "group"), [
    ("v1", CALICO_GROUP), ("v3", V3), ("both", CALICO_GROUP)])
async def test_discovery_per_flavour(tmp_path: Path, flavour: str, group: str) -> None:
    """Discovered once (one GET /apis for concurrent callers), exported in the telemetry;
    Calico resources map to the chosen group, others never."""
    async with running(tmp_path, flavour) as (server, api):
        telemetry = Telemetry()
        calico = CalicoApi(api, telemetry=telemetry)
        first, second = await asyncio.gather(calico.current(), calico.current())
        assert first is second
        assert first.group == group
        assert [r.path for r in server.requests].count("/apis") == 1
        assert telemetry.calico_api == (group, "v3" if group == V3 else "v1")
        served = calico.resolve(IPPOOLS)
        assert (served.group, served.plural, served.kind) == (group, "ippools", "IPPool")
        assert calico.resolve(NODES) is NODES
        assert (await api.list(served))["kind"] == "IPPoolList"


async def test_plural_that_differs(tmp_path: Path) -> None:
    """IPAMConfig is ipamconfigs in v1 and ipamconfigurations (kind IPAMConfiguration) in v3
    (resources/ipam_config.go); the v3 name is one the emulator's byte-exact v3 CRDs serve."""
    ipamconfigs = Resource(CALICO_GROUP, "v1", "ipamconfigs", "IPAMConfig", namespaced=False)
    async with running(tmp_path, "v3") as (server, api):
        calico = CalicoApi(api, telemetry=Telemetry())
        await calico.current()
        served = calico.resolve(ipamconfigs)
        assert (served.api_version, served.plural, served.kind) == (
            "projectcalico.org/v3", "ipamconfigurations", "IPAMConfiguration")
        assert server.registry.by_kind(served.api_version, served.kind).plural == served.plural


async def test_configured_group_is_never_switched(tmp_path: Path) -> None:
    """--calico-api-group wins over discovery (no GET /apis), and a 404 does not switch it."""
    async with running(tmp_path, "both") as (server, api):
        calico = CalicoApi(api, telemetry=Telemetry(), configured="projectcalico.org/v3")
        assert (await calico.current()).group == V3
        server.drop_group(V3)
        assert not await calico.rediscover(calico.generation)
        assert "/apis" not in [r.path for r in server.requests]


async def test_failed_discovery_defaults_to_v1(tmp_path: Path) -> None:
    """A failing discovery falls back to crd.projectcalico.org/v1, Calico's default."""
    async with running(tmp_path, "v3") as (server, api):
        server.inject("status", path="/apis", code=503)
        calico = CalicoApi(api, telemetry=Telemetry())
        choice = await calico.current()
        assert choice.group == CALICO_GROUP
        assert "failed" in choice.reason


async def test_rediscovery_after_the_group_goes(tmp_path: Path) -> None:
    """After v1 is dropped, rediscover() from the old generation switches to v3 once, notifies
    the followers once, and a caller still on the old generation learns the group changed
    without a second discovery."""
    async with running(tmp_path, "both") as (server, api):
        calico = CalicoApi(api, telemetry=Telemetry())
        await calico.current()
        generation = calico.generation
        notified: list[str] = []
        calico.on_change(lambda: notified.append(calico.resolve(IPPOOLS).group))
        assert not await calico.rediscover(generation)  # nothing changed yet
        server.drop_group(V3)  # the Calico API server goes first, as in the migration
        server.drop_group(CALICO_GROUP)
        assert not await calico.rediscover(generation)  # neither group: Calico's default, v1
        server.serve_crds(sorted(CRD_V3_DIR.glob("*.yaml")))
        calls = [r.path for r in server.requests].count("/apis")
        assert await calico.rediscover(generation)
        assert await calico.rediscover(generation)
        assert [r.path for r in server.requests].count("/apis") == calls + 1
        assert notified == [V3]
        assert calico.resolve(IPPOOLS).group == V3
