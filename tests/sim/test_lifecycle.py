"""Pods created through the API are scheduled, get an address from the simulated Calico IPAM and
run; deleting them leaves the address allocated (nothing runs the CNI DEL)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import pytest

from exporter.sim.apiserver import ApiServer
from exporter.sim.cluster import SimCluster
from exporter.sim.lifecycle import PodLifecycle
from exporter.sim.scenario import load

MASTER, WORKER0 = "nke-dev01-89e792-master-0", "nke-dev01-89e792-worker-0"


@pytest.fixture
async def lab(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ApiServer, SimCluster,
                                                                      list[str]]]:
    """nke-lab (or the scenario named by the parameter) with the pod lifecycle running; the
    list collects the nodes reported as changed."""
    api = ApiServer(token=None)
    await api.start()
    cluster = SimCluster(api, load(getattr(request, "param", "nke-lab")))
    await cluster.start()
    started: list[str] = []
    lifecycle = PodLifecycle(api, cluster, on_started=started.append)
    lifecycle.start()
    try:
        yield api, cluster, started
    finally:
        lifecycle.stop()
        await cluster.stop()
        await api.stop()


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"run": name}},
            "spec": {"containers": [{"name": name, "image": "busybox"}], **spec}}


async def _running(api: ApiServer, name: str) -> dict[str, Any]:
    for _ in range(100):
        pod = api.get("pods", name, "default")
        if pod["status"].get("podIP"):
            return pod
        await asyncio.sleep(0.01)
    raise AssertionError(f"pod {name} never got an address: {pod['status']}")


def _allocated(api: ApiServer, ip: str) -> bool:
    for block in api.list("ipamblocks"):
        net = ipaddress.ip_network(block["spec"]["cidr"])
        if ipaddress.ip_address(ip) in net:
            index = int(ipaddress.ip_address(ip)) - int(net.network_address)
            return block["spec"]["allocations"][index] is not None
    return False


async def test_pod_on_a_node_gets_an_address_of_its_block(lab: tuple[ApiServer, SimCluster,
                                                                     list[str]]) -> None:
    """A pod with nodeName gets the next free address of that node's block, the CNI
    annotations, and runs with ready containers; the node's calico-node reports again."""
    api, _, started = lab
    api.create(_pod("a", nodeName=WORKER0))
    pod = await _running(api, "a")
    ip = pod["status"]["podIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("172.20.188.64/26")
    assert _allocated(api, ip)
    notes = pod["metadata"]["annotations"]
    assert notes["cni.projectcalico.org/podIP"] == f"{ip}/32"
    assert len(notes["cni.projectcalico.org/containerID"]) == 64
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["podIPs"] == [{"ip": ip}]
    assert [c["ready"] for c in pod["status"]["containerStatuses"]] == [True]
    assert started == [WORKER0]


async def test_unscheduled_pod_goes_to_the_least_loaded_node(
        lab: tuple[ApiServer, SimCluster, list[str]]) -> None:
    """A pod without nodeName is bound to the node with the fewest pods (nke-lab: the master,
    with its two test pods and calico-node) and started there."""
    api, _, _ = lab
    api.create(_pod("b"))
    pod = await _running(api, "b")
    assert pod["spec"]["nodeName"] == MASTER
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(
        "172.20.85.192/26")


async def test_host_network_pod_has_the_node_address(
        lab: tuple[ApiServer, SimCluster, list[str]]) -> None:
    """A host-network pod takes its node's address and no IPAM allocation."""
    api, _, _ = lab
    before = sum(a is not None for b in api.list("ipamblocks") for a in b["spec"]["allocations"])
    api.create(_pod("h", nodeName=WORKER0, hostNetwork=True))
    pod = await _running(api, "h")
    assert pod["status"]["podIP"] == "192.168.102.103"
    after = sum(a is not None for b in api.list("ipamblocks") for a in b["spec"]["allocations"])
    assert after == before


async def test_pod_on_an_unknown_node_waits(lab: tuple[ApiServer, SimCluster, list[str]]) -> None:
    """A pod bound to a node the cluster does not have stays Pending without an address."""
    api, _, _ = lab
    api.create(_pod("lost", nodeName="no-such-node"))
    await asyncio.sleep(0.1)
    pod = api.get("pods", "lost", "default")
    assert pod["status"].get("phase") == "Pending"
    assert not pod["status"].get("podIP")


async def test_deleted_pod_keeps_its_address(lab: tuple[ApiServer, SimCluster, list[str]]) -> None:
    """Deleting the pod through the API leaves its address allocated: nothing runs the CNI
    DEL, which is the leak the exporter reports after the grace period."""
    api, _, _ = lab
    api.create(_pod("gone", nodeName=WORKER0))
    ip = (await _running(api, "gone"))["status"]["podIP"]
    api.delete("pods", "gone", "default")
    await asyncio.sleep(0.05)
    assert _allocated(api, ip)


@pytest.mark.parametrize("lab", ["ipam-exhaustion"], indirect=True)
async def test_full_pool_leaves_the_pod_pending(lab: tuple[ApiServer, SimCluster,
                                                           list[str]]) -> None:
    """When the pools have no free address the pod stays Pending, bound to its node, as it
    would stay in ContainerCreating."""
    api, cluster, _ = lab
    node = sorted(cluster.nodes)[0]
    for i in range(12):
        api.create(_pod(f"fill-{i}", nodeName=node))
        await asyncio.sleep(0)
    await asyncio.sleep(0.2)
    pods = [api.get("pods", f"fill-{i}", "default") for i in range(12)]
    waiting = [p for p in pods if not p["status"].get("podIP")]
    assert waiting
    assert all(p["status"]["phase"] == "Pending" and p["spec"]["nodeName"] == node
               for p in waiting)
