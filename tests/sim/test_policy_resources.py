"""The emulator serves what a v1.32 API server with Calico 3.32's policy CRDs serves: core
ServiceAccounts, Tier and the staged policy CRDs, and ClusterNetworkPolicy with its printer
columns, CEL ``isCIDR`` and ``minProperties``; the CRD files are byte-exact upstream copies; the
simulated cluster has the service accounts a real one has."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from exporter.sim.apiserver import ApiError, ApiServer
from exporter.sim.cel import is_cidr
from exporter.sim.cluster import SimCluster
from exporter.sim.resources import CRD_DIR
from exporter.sim.scenario import load

CNP_GROUP, CNP_VERSION = "policy.networking.k8s.io", "v1alpha2"


@pytest.fixture
async def http(server: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}
    ) as session:
        yield session


def cnp(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{CNP_GROUP}/{CNP_VERSION}", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name},
            "spec": {"tier": "Admin", "priority": 10, "subject": {"namespaces": {}}, **spec}}


def test_crd_files_are_the_upstream_blobs() -> None:
    """Every CRD file hashes (as ``git hash-object``) to the upstream blob its README lists."""
    readme = (CRD_DIR / "README.md").read_text()
    listed = dict(re.findall(r"^\| (\S+\.yaml) \| ([0-9a-f]{40}) \|$", readme, re.M))
    files = sorted(p.name for p in CRD_DIR.glob("*.yaml"))
    assert sorted(listed) == files
    for name in files:
        data = (CRD_DIR / name).read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
        assert blob == listed[name], name


async def test_service_accounts_are_core_and_namespaced(server: ApiServer,
                                                        api: client.ApiClient) -> None:
    """serviceaccounts are served in core v1 (namespaced, short name sa) as by a real server."""
    v1 = await client.CoreV1Api(api).get_api_resources()
    by_name = {r.name: r for r in v1.resources}
    assert by_name["serviceaccounts"].namespaced
    assert by_name["serviceaccounts"].short_names == ["sa"]
    core = client.CoreV1Api(api)
    await core.create_namespaced_service_account("default", {
        "metadata": {"name": "intern", "labels": {"role": "intern"}}})
    accounts = await core.list_namespaced_service_account("default")
    assert [(a.metadata.name, a.metadata.labels) for a in accounts.items] == [
        ("intern", {"role": "intern"})]


async def test_policy_crds_are_discovered(api: client.ApiClient) -> None:
    """Tier and the three staged kinds in crd.projectcalico.org/v1, ClusterNetworkPolicy
    (cluster-scoped, short name cnp) in policy.networking.k8s.io/v1alpha2."""
    co = client.CustomObjectsApi(api)
    calico = {r.name: r for r in (await co.get_api_resources(
        "crd.projectcalico.org", "v1")).resources}
    assert not calico["tiers"].namespaced
    assert calico["stagednetworkpolicies"].namespaced
    assert not calico["stagedglobalnetworkpolicies"].namespaced
    assert calico["stagedkubernetesnetworkpolicies"].namespaced
    policy = {r.name: r for r in (await co.get_api_resources(CNP_GROUP, CNP_VERSION)).resources}
    assert not policy["clusternetworkpolicies"].namespaced
    assert policy["clusternetworkpolicies"].short_names == ["cnp"]
    assert "clusternetworkpolicies/status" in policy


def test_cluster_network_policy_validation(server: ApiServer) -> None:
    """The CRD's own rules: tier enum, subject with exactly one property (minProperties and
    maxProperties), networks checked by CEL isCIDR."""
    created = server.create(cnp("ok", egress=[{"action": "Accept", "to": [
        {"networks": ["198.18.0.0/15", "2001:db8::/32"]}]}]))
    assert created["spec"]["subject"] == {"namespaces": {}}
    for name, spec, message in (
        ("tier", {"tier": "Developer"}, 'Unsupported value: "Developer"'),
        ("empty", {"subject": {}}, "should have at least 1 properties"),
        ("both", {"subject": {"namespaces": {}, "pods": {"podSelector": {}}}},
         "must have at most 1 items"),
        ("cidr", {"egress": [{"action": "Deny", "to": [{"networks": ["198.18.0.0/33"]}]}]},
         "Invalid CIDR format provided"),
    ):
        with pytest.raises(ApiError, match=re.escape(message)):
            server.create(cnp(name, **spec))


# Examples from the isCIDR documentation of k8s.io/apiserver pkg/cel/library/cidr.go
# (kubernetes/kubernetes staging), plus what Go's netip.ParsePrefix refuses.
@pytest.mark.parametrize(("text", "ok"), [
    ("192.168.0.0/16", True), ("::1/128", True), ("192.168.0.0/33", False), ("::1/129", False),
    ("::ffff:1.2.3.4/24", False), ("010.0.0.0/8", False), ("10.0.0.0/08", False),
    ("10.0.0.0", False), ("fe80::1%eth0/64", False), ("192.168.0.1/16", True),
])
def test_cel_is_cidr(text: str, ok: bool) -> None:
    """isCIDR accepts what netip.ParsePrefix parses, without IPv4-mapped IPv6 addresses."""
    assert is_cidr(text) is ok


async def test_cluster_network_policy_table(server: ApiServer,
                                            http: aiohttp.ClientSession) -> None:
    """kubectl's table for ClusterNetworkPolicy has the CRD's printer columns: Tier, Priority,
    Age (the apiextensions table convertor; a string column prints the number)."""
    server.create(cnp("ok"))
    async with http.get(f"/apis/{CNP_GROUP}/{CNP_VERSION}/clusternetworkpolicies", headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}) as resp:
        table = await resp.json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Tier", "Priority", "Age"]
    assert table["rows"][0]["cells"][:3] == ["ok", "Admin", "10"]


async def test_sim_cluster_service_accounts(server: ApiServer) -> None:
    """Every namespace gets a "default" ServiceAccount (kube-controller-manager's service-account
    controller), also when created later; a scenario pod's service account exists."""
    cluster = SimCluster(server, load("nke-lab"))
    await cluster.start()
    try:
        accounts = {(a["metadata"]["namespace"], a["metadata"]["name"])
                    for a in server.list("serviceaccounts")}
        namespaces = {n["metadata"]["name"] for n in server.list("namespaces")}
        assert {(ns, "default") for ns in namespaces} <= accounts
        assert {("kube-system", "coredns"), ("kube-system", "calico-node"),
                ("metallb-system", "controller")} <= accounts
        server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "late"}})
        assert server.get("serviceaccounts", "default", "late")["metadata"]["name"] == "default"
    finally:
        await cluster.stop()
