"""Issue 2 end to end: the cluster role against the emulator running the simulated nke-lab, in
every Calico flavour (the ``lab`` fixture's ``calico_api``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from exporter.nodestatus.refresher import MANAGED_BY, MANAGER
from tests.e2e.lab import Lab, series, start_lab, stop_lab, value

MASTER = "nke-dev01-89e792-master-0"
WORKER0 = "nke-dev01-89e792-worker-0"
WORKER1 = "nke-dev01-89e792-worker-1"
CNS = "caliconodestatuses"


def established(node: str) -> object:
    return lambda s: value(s, "calico_bgp_peers", node=node, ip_version="4",
                           state="established") == 2


class TestNkeLab:
    async def test_write_up_numbers(self, lab: Lab) -> None:
        """The master has 2 established mesh peers, 2 FIB NodeMesh routes, and per-peer series."""
        got = await lab.wait_for(established(MASTER), what="master's peers")
        assert value(got, "calico_bgp_routes", node=MASTER, ip_version="4", type="FIB",
                     source_type="NodeMesh") == 2
        peers = {s["peer_ip"] for s in series(got, "calico_bgp_peer_up", node=MASTER)}
        assert peers == {"192.168.102.103", "192.168.102.104"}
        assert value(got, "calico_bgp_peer_state", node=MASTER, ip_version="4",
                     peer_ip="192.168.102.103", peer_type="NodeMesh", state="Established") == 1
        assert value(got, "calico_bird_ready", node=MASTER, ip_version="4") == 1

    async def test_one_status_per_node_owned_by_the_node(self, lab: Lab) -> None:
        """Each node gets exactly one CalicoNodeStatus of ours, labelled and owned by its Node;
        the emulator validated every write against the Calico CRD schema and accepted it."""
        for node in (MASTER, WORKER0, WORKER1):
            await lab.wait_for(established(node), what=f"{node}'s status")
        creates = [r for r in lab.apiserver.requests
                   if r.method == "POST" and r.path.endswith("/caliconodestatuses")]
        assert [r.status for r in creates] == [201, 201, 201]
        ours = lab.apiserver.list(lab.calico(CNS), label_selector=f"{MANAGED_BY}={MANAGER}")
        assert sorted(o["spec"]["node"] for o in ours) == sorted([MASTER, WORKER0, WORKER1])
        for obj in ours:
            node = lab.apiserver.get("nodes", obj["spec"]["node"])
            assert obj["metadata"]["ownerReferences"] == [
                {"apiVersion": "v1", "kind": "Node", "name": node["metadata"]["name"],
                 "uid": node["metadata"]["uid"]}]
            assert obj["spec"]["classes"] == ["Agent", "BGP", "Routes"]
            assert obj["spec"]["updatePeriodSeconds"] == 1

    async def test_readyz_after_sync(self, lab: Lab) -> None:
        """/readyz answers 200 once every watched resource has been listed."""
        await lab.wait_for(established(MASTER), what="sync")
        deadline = time.monotonic() + 30
        while (await lab.scrape("/readyz")).strip() != "ok":  # optional watches check discovery
            assert time.monotonic() < deadline, "never ready"
            await asyncio.sleep(0.1)
        assert (await lab.scrape("/healthz")).strip() == "ok"


class TestPeerFlap:
    async def test_peer_down_and_up(self, lab: Lab) -> None:
        """A peer taken down shows calico_bgp_peer_up 0 within one update period plus 2 s."""
        await lab.wait_for(established(MASTER), what="initial peers")
        labels = {"node": MASTER, "ip_version": "4", "peer_ip": "192.168.102.103",
                  "peer_type": "NodeMesh"}
        lab.cluster.set_session(MASTER, WORKER0, up=False)
        got = await lab.wait_for(lambda s: value(s, "calico_bgp_peer_up", **labels) == 0,
                                 timeout=1 + 2, what="peer down")
        assert value(got, "calico_bgp_peers", node=MASTER, ip_version="4",
                     state="not_established") == 1
        lab.cluster.set_session(MASTER, WORKER0, up=True)
        await lab.wait_for(lambda s: value(s, "calico_bgp_peer_up", **labels) == 1,
                           timeout=1 + 2, what="peer up again")


class TestLifecycle:
    async def test_node_leaves(self, lab: Lab) -> None:
        """Deleting a node removes its CalicoNodeStatus and all of its series."""
        await lab.wait_for(established(WORKER1), what="worker-1 peers")
        lab.cluster.remove_node(WORKER1)
        await lab.wait_for(lambda s: not [k for k in s if ("node", WORKER1) in k[1]],
                           what="worker-1 series gone")
        deadline = time.monotonic() + 10
        while [o for o in lab.apiserver.list(lab.calico(CNS)) if o["spec"]["node"] == WORKER1]:
            assert time.monotonic() < deadline, "status of the removed node still exists"
            await asyncio.sleep(0.1)

    async def test_drift_is_repaired(self, lab: Lab) -> None:
        """A drifted spec of ours is patched back; objects not labelled ours are left alone."""
        await lab.wait_for(established(MASTER), what="sync")
        name = f"calico-exporter-{MASTER}"
        cns = lab.calico(CNS)
        lab.apiserver.patch(cns, name, {"spec": {"updatePeriodSeconds": 600}})
        foreign = lab.calico_object(
            "CalicoNodeStatus", "caliconodestatus-master-0",
            spec={"node": MASTER, "classes": ["BGP"], "updatePeriodSeconds": 10})
        lab.apiserver.create(foreign)
        deadline = time.monotonic() + 10
        while lab.apiserver.get(cns, name)["spec"]["updatePeriodSeconds"] != 1:
            assert time.monotonic() < deadline, "drift not repaired"
            await asyncio.sleep(0.1)
        assert lab.apiserver.get(cns, "caliconodestatus-master-0")["spec"]["classes"] == ["BGP"]

    async def test_no_writes_in_steady_state(self, lab: Lab) -> None:
        """After the initial creates the exporter sends no write, however often statuses change."""
        await lab.wait_for(established(MASTER), what="sync")
        await asyncio.sleep(0.5)
        lab.apiserver.clear_requests()
        lab.cluster.set_session(MASTER, WORKER0, up=False)
        await asyncio.sleep(2.5)
        lab.cluster.set_session(MASTER, WORKER0, up=True)
        await asyncio.sleep(1.5)
        writes = [r for r in lab.apiserver.requests if r.method not in ("GET",)]
        assert writes == []


class TestUnmanaged:
    async def test_watch_only(self, tmp_path: Path, calico_api: str) -> None:
        """--no-manage-node-status creates nothing and exports the statuses that exist."""
        running = await start_lab(tmp_path, manage_node_status=False, calico_api=calico_api)
        try:
            running.apiserver.create(running.calico_object(
                "CalicoNodeStatus", "caliconodestatus-master-0",
                spec={"node": MASTER, "classes": ["Agent", "BGP", "Routes"],
                      "updatePeriodSeconds": 1}))
            got = await running.wait_for(established(MASTER), what="user status")
            assert not series(got, "calico_bgp_peers", node=WORKER0)
            assert [r for r in running.apiserver.requests if r.method != "GET"] == []
        finally:
            await stop_lab(running)


class TestStatusSubresource:
    @pytest.mark.parametrize("calico_api", ["v1", "v3"])
    async def test_master_status_subresource(self, tmp_path: Path, calico_api: str) -> None:
        """With Calico master's CalicoNodeStatus status subresource, the exporter still creates,
        repairs and deletes its objects writing only metadata and spec (never /status), and
        calico-node's status writes, through /status, leave the generation alone."""
        running = await start_lab(tmp_path, calico_api=calico_api, cns_status_subresource=True)
        try:
            cns = running.calico(CNS)
            assert running.apiserver.resolve(cns).status_subresource
            await running.wait_for(established(MASTER), what="statuses reported")
            name = f"calico-exporter-{MASTER}"
            running.apiserver.patch(cns, name, {"spec": {"updatePeriodSeconds": 600}})
            deadline = time.monotonic() + 10
            while running.apiserver.get(cns, name)["spec"]["updatePeriodSeconds"] != 1:
                assert time.monotonic() < deadline, "drift not repaired"
                await asyncio.sleep(0.1)
            running.cluster.remove_node(WORKER1)
            await running.wait_for(lambda s: not [k for k in s if ("node", WORKER1) in k[1]],
                                   what="worker-1 series gone")
            lab_obj = running.apiserver.get(cns, f"calico-exporter-{WORKER0}")
            assert lab_obj["status"]["bgp"]["numberEstablishedV4"] == 1
            assert lab_obj["metadata"]["generation"] == 1  # status writes do not count
            writes = [r for r in running.apiserver.requests
                      if r.method != "GET" and "/caliconodestatuses" in r.path]
            assert {r.method for r in writes} >= {"POST", "PATCH"}
            assert all(not r.path.endswith("/status") for r in writes)
            bodies = [orjson.loads(r.body) for r in writes if r.method in ("POST", "PATCH")]
            assert all(set(body) <= {"apiVersion", "kind", "metadata", "spec"}
                       for body in bodies)
        finally:
            await stop_lab(running)
