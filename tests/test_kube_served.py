"""Watches of resources the API may not serve (``kube.served``) and the store's synced callback,
against the API emulator serving all or some of the CRDs."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from exporter import config
from exporter.kube.client import connect
from exporter.kube.resources import CLUSTER_NETWORK_POLICIES, TIERS, Resource
from exporter.kube.served import OptionalWatch, served
from exporter.kube.store import Store
from exporter.kube.watch import Informer
from exporter.model.policy import ClusterNetworkPolicy, parse_cluster_network_policy
from exporter.model.telemetry import Telemetry
from exporter.sim.apiserver import ApiServer
from exporter.sim.resources import CRD_DIR

WITHOUT_CNP = sorted(p for p in CRD_DIR.glob("*.yaml")
                     if not p.name.startswith("policy.networking"))


async def _started(crd_files: list[Path] | None = None) -> ApiServer:
    server = ApiServer(token="t", crd_files=crd_files)
    await server.start()
    return server


async def test_served_follows_discovery(tmp_path: Path) -> None:
    """A resource is served when its group-version's discovery document lists it; a 404 for the
    group-version, or a document without it, means not served."""
    full, partial = await _started(), await _started(WITHOUT_CNP)
    try:
        for server, cnp in ((full, True), (partial, False)):
            kubeconfig = server.write_kubeconfig(tmp_path / f"kubeconfig-{cnp}")
            async with connect(config.KubeSettings(kubeconfig=str(kubeconfig)),
                               environ={}) as api:
                assert await served(api, CLUSTER_NETWORK_POLICIES) is cnp
                assert await served(api, TIERS)
                assert not await served(api, Resource("crd.projectcalico.org", "v1", "absent",
                                                      "Absent", namespaced=False))
    finally:
        await full.stop()
        await partial.stop()


async def test_optional_watch_of_an_unserved_resource(tmp_path: Path) -> None:
    """Not served: the store is marked listed and empty at once (readiness does not wait), the
    resource is never listed or watched, and discovery is asked again after ``recheck``."""
    server = await _started(WITHOUT_CNP)
    rechecks: list[float] = []

    async def sleep(seconds: float) -> None:
        rechecks.append(seconds)
        if len(rechecks) == 2:
            raise asyncio.CancelledError

    try:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        async with connect(config.KubeSettings(kubeconfig=str(kubeconfig)), environ={}) as api:
            store: Store[ClusterNetworkPolicy] = Store(CLUSTER_NETWORK_POLICIES.name)
            informer = Informer(api, CLUSTER_NETWORK_POLICIES,
                                parse=parse_cluster_network_policy, store=store,
                                settings=config.WatchSettings(), telemetry=Telemetry())
            watch = OptionalWatch(api, informer, recheck=42.0, sleep=sleep)
            with contextlib.suppress(asyncio.CancelledError):
                await watch.run()
        assert store.synced.is_set()
        assert len(store) == 0
        assert rechecks == [42.0, 42.0]
        paths = [r.path.partition("?")[0] for r in server.requests]
        assert paths.count("/apis/policy.networking.k8s.io/v1alpha2") == 2
        assert not [p for p in paths if "clusternetworkpolicies" in p]
    finally:
        await server.stop()


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
