"""Issue 11: Calico's API group changes under a running exporter.

The emulator performs Calico's v1-to-v3 datastore migration while the exporter runs
(``SimCluster.migrate_to_v3``: native v3 CRDs installed, every object copied, calico-node and
kube-controllers moved to v3, the v1 CRDs deleted), starting from v1 CRDs alone or from v1 CRDs
with the Calico API server's v3 on top. The exporter follows without a restart: afterwards every
metric equals the truth computed from the emulator's v3 objects, and no series is missing for
longer than one relist. "One relist" is checked by order, never by time: the emulator's request
log is the clock, and the exporter's first v3 WATCH of a resource is only sent once its v3 LIST
has replaced the store.

Deleting a CRD first deletes its objects (the CRD finalizer: a DELETED event each), then the type
goes; with ``delete_instances=False`` the type goes with its objects unannounced. In the second
case no scrape ever misses a series (the store is replaced by the relist's diff, never emptied);
in the first, series may miss only between the deletion and the exporter's v3 relist.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.kube import resources as r
from exporter.sim.calicoapi import V1_GROUP, V3_GROUP
from tests.e2e.lab import Lab, Samples, parse_samples, series, start_lab, stop_lab, value
from tests.ipam.test_ipam_e2e import lab_reference, mismatches

MASTER = "nke-dev01-89e792-master-0"
CALICO = [res for res in vars(r).values()
          if isinstance(res, r.Resource) and res.group == r.CALICO_GROUP]
"""Every Calico resource the exporter defines (whatever another change adds)."""


def watched(lab: Lab) -> list[r.Resource]:
    """The Calico resources the exporter under test watches (each declares its counters)."""
    return [res for res in CALICO if (res.name, "end") in lab.telemetry.watch_restarts]

Key = tuple[str, frozenset[tuple[str, str]]]


@dataclass
class Scrape:
    first: int
    """Index in the emulator's request log when the scrape started."""
    last: int
    keys: set[Key]


def data_keys(samples: Samples) -> set[Key]:
    """The series of Calico's data (the exporter's own calico_exporter_* families aside)."""
    return {key for key in samples if not key[0].startswith("calico_exporter_")}


def bgp_truth(lab: Lab, samples: Samples) -> bool:
    """calico_bgp_peer_up of every peer equals the state in the emulator's statuses."""
    for obj in lab.apiserver.list(lab.calico("caliconodestatuses")):
        for peer in ((obj.get("status") or {}).get("bgp") or {}).get("peersV4", []):
            want = float(peer["state"] == "Established")
            if value(samples, "calico_bgp_peer_up", node=obj["spec"]["node"], ip_version="4",
                     peer_ip=peer["peerIP"], peer_type=peer["type"]) != want:
                return False
    return True


def policy_truth(lab: Lab, samples: Samples) -> bool:
    """Tiers and staged policies (watched only where served) equal the emulator's objects in the
    group that holds Calico's data now; the lab's policies of every kind keep their selection."""
    tiers = {(o["metadata"]["name"], str(o["spec"]["order"]))
             for o in lab.apiserver.list(lab.calico("tiers"))}
    staged = {(o["metadata"]["namespace"], o["metadata"]["name"], o["spec"]["stagedAction"])
              for o in lab.apiserver.list(lab.calico("stagednetworkpolicies"))}
    return (
        {(s["tier"], s["order"]) for s in series(samples, "calico_network_policy_tiers")} == tiers
        and {(s["namespace"], s["policy"], s["action"]) for s in series(
            samples, "calico_network_policy_staged_enforced_pods", kind="staged")} == staged
        and value(samples, "calico_network_policy_staged_enforced_pods", kind="staged",
                  namespace="guestbook", policy="default-allow-egress", tier="default",
                  action="Delete") == 5
        and value(samples, "calico_network_policy_selected_pods", kind="global", namespace="",
                  policy="security.allow-dns", tier="security") == 22
        and value(samples, "calico_network_policy_selected_pods", kind="cluster", namespace="",
                  policy="kube-system-internal", tier="kube-admin") == 3)


def equal_to_truth(lab: Lab, samples: Samples) -> bool:
    return (not mismatches(samples, lab_reference(lab)) and bgp_truth(lab, samples)
            and value(samples, "calico_network_policy_selected_pods", kind="calico",
                      namespace="guestbook", policy="custom-deny-egress", tier="default") == 5
            and policy_truth(lab, samples))


async def scraper(lab: Lab, out: list[Scrape]) -> None:
    """Scrape as fast as the loop allows, tagging each scrape with the request-log indices."""
    while True:
        first = len(lab.apiserver.requests)
        keys = data_keys(parse_samples(await lab.scrape()))
        out.append(Scrape(first, len(lab.apiserver.requests), keys))
        await asyncio.sleep(0)


@pytest.mark.parametrize("delete_instances", [False, True], ids=["crds-vanish", "crd-finalizer"])
@pytest.mark.parametrize("calico_api", ["v1", "both"])
async def test_live_migration_to_v3(tmp_path: Path, calico_api: str,
                                    delete_instances: bool) -> None:
    """v1 dropped mid-run, the data moved to v3 as Calico's migration does: the exporter relists
    every Calico resource from v3 once, ends equal to the truth, and misses no series for longer
    than one relist (none at all when the v1 objects vanish with their CRDs)."""
    lab = await start_lab(tmp_path, calico_api=calico_api)
    scrapes: list[Scrape] = []
    task: asyncio.Task[None] | None = None
    try:
        await lab.wait_for(
            lambda s: equal_to_truth(lab, s) and value(
                s, "calico_exporter_calico_api_info", group=V1_GROUP, version="v1") == 1,
            what="initial sync from v1")
        await asyncio.sleep(0.5)  # a steady state: every status reported at least once
        truth = data_keys(await lab.samples())
        task = asyncio.create_task(scraper(lab, scrapes), name="scraper")
        await asyncio.sleep(0.2)
        dropped_at = len(lab.apiserver.requests)
        lab.cluster.migrate_to_v3(delete_instances=delete_instances)
        after = await lab.wait_for(
            lambda s: equal_to_truth(lab, s) and value(
                s, "calico_exporter_calico_api_info", group=V3_GROUP, version="v3") == 1
            and all(value(s, "calico_exporter_watch_restarts_total", resource=res.name,
                          reason="group_changed") == 1 for res in watched(lab)),
            what="metrics equal to the truth from v3")
        await asyncio.sleep(0.3)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        task = None
        requests = list(lab.apiserver.requests)
        calico = watched(lab)
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await stop_lab(lab)

    assert value(after, "calico_exporter_calico_api_info", group=V1_GROUP, version="v1") is None
    # Every Calico resource was listed and watched from v3 (names are the definitions').
    v3_watches = {}
    for index, record in enumerate(requests):
        parts = record.path.strip("/").split("/")
        if record.watch and len(parts) > 2 and parts[1] == V3_GROUP:
            v3_watches.setdefault(parts[-1], index)
    assert len(calico) >= 9  # CalicoNodeStatus, the four IPAM kinds, policies, network sets
    assert set(v3_watches) >= {res.plural for res in calico}
    relisted = max(v3_watches.values())
    # One relist at most: a series is missing only after the v1 CRDs went and before the
    # exporter's last first v3 WATCH, which it sends once its v3 LIST has replaced the store.
    missing = [s for s in scrapes if truth - s.keys]
    for scrape in missing:
        assert scrape.last >= dropped_at, "a series was missing before the migration"
        assert scrape.first < relisted, (
            f"series still missing after the v3 relist: {sorted(truth - scrape.keys)[:3]}")
    if not delete_instances:
        assert missing == [], "the store was emptied before the relist"
    assert len([s for s in scrapes if s.first > relisted]) > 0, "scraped after the relist"


STAGED = ("stagednetworkpolicies", "stagedglobalnetworkpolicies",
          "stagedkubernetesnetworkpolicies")


async def test_migration_serves_what_v1_did_not(tmp_path: Path) -> None:
    """From a Calico whose v1 CRDs lack the staged policies (before 3.30) to native v3 CRDs that
    have them: the exporter looks for them again when the group changes, not at its 300 s
    recheck, so a staged policy created in v3 is exported within the wait; no request for a
    staged kind ever went to v1 or got 404."""
    lab = await start_lab(tmp_path, scenario="dual-stack", without_crds=STAGED)
    try:
        await lab.wait_for(lambda s: value(s, "calico_exporter_calico_api_info", group=V1_GROUP,
                                           version="v1") == 1, what="started on v1")
        await lab.wait_ready()
        lab.cluster.migrate_to_v3()
        lab.apiserver.create({
            "apiVersion": f"{V3_GROUP}/v3", "kind": "StagedNetworkPolicy",
            "metadata": {"name": "later", "namespace": "default"},
            "spec": {"stagedAction": "Set", "selector": "all()"}})
        got = await lab.wait_for(
            lambda s: value(s, "calico_network_policy_staged_enforced_pods", kind="staged",
                            namespace="default", policy="later", tier="default",
                            action="Set") == 0, what="the v3 staged policy")
        staged = [r for r in lab.apiserver.requests
                  if r.path.partition("?")[0].rpartition("/")[2] in STAGED]
    finally:
        await stop_lab(lab)
    assert value(got, "calico_exporter_calico_api_info", group=V3_GROUP, version="v3") == 1
    assert staged, "listed and watched from v3"
    assert all(r.path.startswith(f"/apis/{V3_GROUP}/v3/") for r in staged)
    assert [r.path for r in staged if r.status == 404] == []
