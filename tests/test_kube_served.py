"""Resources the API may not serve (``kube.served``), looked up where Calico's data is
(``kube.apigroups``), and the store's synced callback, against the API emulator serving every
Calico flavour, with or without some CRDs.

The boundary under test is the one question both modules share: "is this resource served, and
where?". A Calico resource is served in the group ``CalicoApi`` chose (tiers and staged policies
are ``projectcalico.org/v3`` resources on native v3 CRDs); an unserved one is never listed or
watched, so it never answers 404 and never re-runs Calico's group discovery; a change of Calico's
group asks again at once; a resource whose CRD goes away while watched costs one group discovery
and one discovery of its group-version, then nothing until the recheck.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from exporter import config
from exporter.kube.apigroups import CalicoApi, served
from exporter.kube.client import KubeApi, connect
from exporter.kube.resources import (
    CALICO_GROUP,
    CLUSTER_NETWORK_POLICIES,
    STAGED_NETWORK_POLICIES,
    TIERS,
    Resource,
)
from exporter.kube.served import OptionalWatch
from exporter.kube.store import Store
from exporter.kube.watch import Informer
from exporter.model import RawObject
from exporter.model.policy import parse_cluster_network_policy, parse_staged_network_policy
from exporter.model.telemetry import Telemetry
from exporter.sim.apiserver import ApiServer
from exporter.sim.resources import CRD_V3_DIR

V3 = "projectcalico.org"
STAGED = ("stagednetworkpolicies", "stagedglobalnetworkpolicies",
          "stagedkubernetesnetworkpolicies")
"""The CRDs a Calico before 3.30 does not have."""
SETTINGS = config.WatchSettings(backoff_initial=0.01, backoff_max=0.05, watch_timeout=5.0)


@asynccontextmanager
async def running(tmp_path: Path, flavour: str = "v1", *,
                  without: tuple[str, ...] = ()) -> AsyncIterator[tuple[ApiServer, KubeApi]]:
    server = ApiServer(token="t", calico_api=flavour, without_crds=without,
                       bookmark_interval=0.2)
    await server.start()
    try:
        path = server.write_kubeconfig(tmp_path / "kubeconfig")
        async with connect(config.KubeSettings(kubeconfig=str(path)), environ={}) as api:
            yield server, api
    finally:
        await server.stop()


def paths(server: ApiServer) -> list[str]:
    return [r.path.partition("?")[0] for r in server.requests]


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``check()`` until true; the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


class Blocking:
    """An injected sleep that records each wait. It then waits until cancelled (so the next
    discovery happens only when Calico's group changes), or, with ``stop_after``, returns at once
    and ends the watch by raising at that wait."""

    def __init__(self, *, stop_after: int | None = None) -> None:
        self.waits: list[float] = []
        self.stop_after = stop_after

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.stop_after is None:
            await asyncio.Event().wait()
        elif len(self.waits) >= self.stop_after:
            raise asyncio.CancelledError


def optional_watch(api: KubeApi, calico: CalicoApi, resource: Resource,
                   parse: Callable[[RawObject], Any], *, sleep: Blocking,
                   telemetry: Telemetry | None = None) -> tuple[OptionalWatch, Store[Any]]:
    store: Store[Any] = Store(resource.name)
    informer = Informer(api, resource, parse=parse, store=store, settings=SETTINGS,
                        telemetry=telemetry or Telemetry(), calico=calico, optional=True)
    return OptionalWatch(calico, informer, recheck=42.0, sleep=sleep), store


@asynccontextmanager
async def watching(watch: OptionalWatch) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(watch.run(), name="optional-watch-under-test")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_served_follows_discovery(tmp_path: Path) -> None:
    """A resource is served when its group-version's discovery document lists it; a 404 for the
    group-version, or a document without it, means not served."""
    async with running(tmp_path, without=("clusternetworkpolicies",)) as (_, api):
        assert not await served(api, CLUSTER_NETWORK_POLICIES)
        assert await served(api, TIERS)
        assert not await served(api, Resource(CALICO_GROUP, "v1", "absent", "Absent",
                                              namespaced=False))
    async with running(tmp_path) as (_, api):
        assert await served(api, CLUSTER_NETWORK_POLICIES)


@pytest.mark.parametrize(("flavour", "group"), [
    ("v1", CALICO_GROUP), ("v3", V3), ("both", CALICO_GROUP)])
async def test_serves_asks_in_calicos_group(tmp_path: Path, flavour: str, group: str) -> None:
    """Tiers and staged policies are looked up in the group CalicoApi chose (projectcalico.org/v3
    on native v3 CRDs, whose crd.projectcalico.org/v1 discovery is 404), ClusterNetworkPolicy in
    its own group; without the staged CRDs (a Calico before 3.30) they are not served in any
    flavour, while tiers still are."""
    async with running(tmp_path, flavour) as (server, api):
        calico = CalicoApi(api, telemetry=Telemetry())
        tiers = await calico.serves(TIERS)
        assert tiers is not None
        assert (tiers.group, tiers.plural) == (group, "tiers")
        assert (await calico.serves(CLUSTER_NETWORK_POLICIES)) == CLUSTER_NETWORK_POLICIES
        assert paths(server).count("/apis") == 1, "the group is chosen once"
        assert f"/apis/{group}/{tiers.version}" in paths(server)
    async with running(tmp_path, flavour, without=STAGED) as (server, api):
        calico = CalicoApi(api, telemetry=Telemetry())
        assert await calico.serves(STAGED_NETWORK_POLICIES) is None
        assert await calico.serves(TIERS) is not None


async def test_optional_watch_of_an_unserved_resource(tmp_path: Path) -> None:
    """Not served: the store is marked listed and empty at once (readiness does not wait), the
    resource is never listed or watched, and discovery is asked again after ``recheck``."""
    async with running(tmp_path, without=("clusternetworkpolicies",)) as (server, api):
        calico = CalicoApi(api, telemetry=Telemetry())
        sleep = Blocking(stop_after=2)
        watch, store = optional_watch(api, calico, CLUSTER_NETWORK_POLICIES,
                                      parse_cluster_network_policy, sleep=sleep)
        with contextlib.suppress(asyncio.CancelledError):
            await watch.run()
    assert store.synced.is_set()
    assert len(store) == 0
    assert sleep.waits == [42.0, 42.0]
    assert paths(server).count("/apis/policy.networking.k8s.io/v1alpha2") == 2
    assert not [p for p in paths(server) if "clusternetworkpolicies" in p]


@pytest.mark.parametrize("flavour", ["v1", "v3", "both"])
async def test_unserved_calico_resource_causes_no_404(tmp_path: Path, flavour: str) -> None:
    """Staged policies on a Calico before 3.30, in every flavour: one discovery of Calico's
    group-version, no request for the resource, no 404 and no second group discovery; the store
    is listed and empty."""
    async with running(tmp_path, flavour, without=STAGED) as (server, api):
        calico = CalicoApi(api, telemetry=Telemetry())
        sleep = Blocking()
        watch, store = optional_watch(api, calico, STAGED_NETWORK_POLICIES,
                                      parse_staged_network_policy, sleep=sleep)
        async with watching(watch):
            await until(lambda: sleep.waits == [42.0], "the recheck wait")
        group = calico.resolve(STAGED_NETWORK_POLICIES).api_version
        assert store.synced.is_set()
        assert len(store) == 0
        assert paths(server) == ["/apis", f"/apis/{group}"]
        assert [r for r in server.requests if r.status == 404] == []


async def test_group_change_asks_again_at_once(tmp_path: Path) -> None:
    """An optional Calico resource not served in v1 is looked up again as soon as Calico's group
    changes (not after the recheck): native v3 CRDs that have it are installed and v1 goes, as
    Calico's migration does; the watch then lists and watches it from projectcalico.org/v3."""
    async with running(tmp_path, "v1", without=STAGED) as (server, api):
        calico = CalicoApi(api, telemetry=Telemetry())
        sleep = Blocking()
        watch, store = optional_watch(api, calico, STAGED_NETWORK_POLICIES,
                                      parse_staged_network_policy, sleep=sleep)
        async with watching(watch):
            await until(lambda: sleep.waits == [42.0], "not served in v1")
            generation = calico.generation
            server.serve_crds(sorted(CRD_V3_DIR.glob("*.yaml")))
            server.create({"apiVersion": f"{V3}/v3", "kind": "StagedNetworkPolicy",
                           "metadata": {"name": "p", "namespace": "default"},
                           "spec": {"stagedAction": "Delete"}})
            server.drop_group(CALICO_GROUP)
            assert await calico.rediscover(generation)
            await until(lambda: len(store) == 1, "the v3 staged policy")
        assert sleep.waits == [42.0], "woken by the group change, not by the recheck"
        v3 = [p for p in paths(server) if p.startswith(f"/apis/{V3}/v3/")]
        assert v3
        assert all(p.endswith("/stagednetworkpolicies") for p in v3)


async def test_crd_deleted_while_watched(tmp_path: Path) -> None:
    """A watched optional resource whose CRD is deleted (Calico's group unchanged): its objects
    go, and the 404 costs one group discovery and one discovery of its group-version, then no
    request until the recheck; installed again, it is picked up at the recheck."""
    async with running(tmp_path, "v1") as (server, api):
        server.create({"apiVersion": "policy.networking.k8s.io/v1alpha2",
                       "kind": "ClusterNetworkPolicy", "metadata": {"name": "c"},
                       "spec": {"tier": "Admin", "priority": 1, "subject": {"namespaces": {}}}})
        calico = CalicoApi(api, telemetry=Telemetry())
        await calico.current()
        sleep = Blocking()
        watch, store = optional_watch(api, calico, CLUSTER_NETWORK_POLICIES,
                                      parse_cluster_network_policy, sleep=sleep)
        async with watching(watch):
            await until(lambda: len(store) == 1, "the policy listed")
            await until(lambda: any(r.watch for r in server.requests), "watching")
            before = len(server.requests)
            server.drop_group("policy.networking.k8s.io")
            await until(lambda: sleep.waits == [42.0], "not served any more")
            after = paths(server)[before:]
            assert len(store) == 0
            assert after.count("/apis/policy.networking.k8s.io/v1alpha2") == 1
            assert "/apis" not in after, "not a Calico resource: no group discovery"
            assert [r.path.partition("?")[0] for r in server.requests[before:]
                    if r.status == 404] == [CLUSTER_NETWORK_POLICIES.path(),
                                            "/apis/policy.networking.k8s.io/v1alpha2"]


async def test_calico_crd_deleted_while_watched(tmp_path: Path) -> None:
    """The same for a Calico resource: its 404 re-runs Calico's group discovery exactly once
    (the 404 might have been the v1-to-v3 migration), then discovery of its group-version once."""
    async with running(tmp_path, "v1") as (server, api):
        calico = CalicoApi(api, telemetry=Telemetry())
        sleep = Blocking()
        watch, store = optional_watch(api, calico, STAGED_NETWORK_POLICIES,
                                      parse_staged_network_policy, sleep=sleep)
        async with watching(watch):
            await until(lambda: any(r.watch for r in server.requests), "watching")
            before = len(server.requests)
            server.drop_group(CALICO_GROUP)  # neither group left: Calico's default stays v1
            await until(lambda: sleep.waits == [42.0], "not served any more")
            after = paths(server)[before:]
        assert after.count("/apis") == 1
        assert after.count(f"/apis/{CALICO_GROUP}/v1") == 1
        assert [p for p in after if p.endswith("/stagednetworkpolicies")] == [
            STAGED_NETWORK_POLICIES.path()], "one 404, never retried"
        assert store.synced.is_set()
        assert len(store) == 0


def test_optional_watch_needs_an_optional_informer() -> None:
    """An informer that retries 404s forever cannot be an optional watch's."""
    api: Any = object()
    calico = CalicoApi(api, telemetry=Telemetry())
    informer = Informer(api, TIERS, parse=lambda raw: raw, store=Store("t"), settings=SETTINGS,
                        telemetry=Telemetry(), calico=calico)
    with pytest.raises(ValueError, match="optional=True"):
        OptionalWatch(calico, informer)


def test_store_when_synced_runs_once_after_the_first_list() -> None:
    """The callback runs once, after the subscribers saw the first LIST (at once if already)."""
    store: Store[str] = Store("things")
    seen: list[str] = []
    store.subscribe(lambda key, old, new: seen.append(f"event {key[1]}"))
    store.when_synced(lambda: seen.append("synced"))
    store.upsert(("", "a"), "A")
    store.replace({("", "a"): "A", ("", "b"): "B"})
    store.replace({("", "b"): "B"})
    store.when_synced(lambda: seen.append("late"))
    assert seen == ["event a", "event b", "synced", "event a", "late"]
