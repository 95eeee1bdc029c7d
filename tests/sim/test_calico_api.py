"""The emulator's Calico API flavours (v1, native v3, both) and the live v1-to-v3 switch.

The conversions between the groups are checked against cases from Calico's own tests
(projectcalico/calico v3.32.1, ``libcalico-go/lib/backend/k8s/conversion/conversion_test.go`` and
``libcalico-go/lib/backend/k8s/resources/customresource_test.go``); the IP pool conditions
against kube-controllers' FV test (master 87c1590,
``kube-controllers/pkg/controllers/ippool/pool_controller_test.go``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from exporter.sim import calicoapi
from exporter.sim.apiserver import ApiError, ApiServer
from exporter.sim.cluster import SimCluster
from exporter.sim.resources import CRD_DIR, CRD_V3_DIR
from exporter.sim.scenario import load

V1, V3 = "crd.projectcalico.org", "projectcalico.org"


def git_blob(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def ippool(name: str, cidr: str, *, api: str = f"{V1}/v1", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": "IPPool", "metadata": {"name": name, **meta},
            "spec": {"cidr": cidr}}


@pytest.fixture
async def both() -> AsyncIterator[ApiServer]:
    srv = ApiServer(token=None, calico_api="both", bookmark_interval=0.2)
    await srv.start()
    yield srv
    await srv.stop()


async def get(srv: ApiServer, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(srv.url + path) as resp:
        return resp.status, await resp.json()


def test_v3_crds_are_byte_exact_copies() -> None:
    """Every file of crds-v3/ has the upstream blob hash its README lists (git hash-object)."""
    table = dict(re.findall(r"^\| (projectcalico\.org_\w+\.yaml) \| ([0-9a-f]{40}) \|$",
                            (CRD_V3_DIR / "README.md").read_text(), re.MULTILINE))
    files = sorted(CRD_V3_DIR.glob("*.yaml"))
    assert sorted(table) == [f.name for f in files]
    for path in files:
        assert git_blob(path) == table[path.name], path.name


@pytest.mark.parametrize(("flavour", "groups"), [
    ("v1", {V1}), ("v3", {V3}), ("both", {V1, V3})])
async def test_flavours_in_discovery(flavour: str, groups: set[str]) -> None:
    """v1 serves crd.projectcalico.org, v3 projectcalico.org, both serves the two; the Calico
    API server of ``both`` serves neither IPAMBlock nor IPAMHandle (storage_calico.go, v3.32.1)."""
    srv = ApiServer(token=None, calico_api=flavour)
    await srv.start()
    try:
        _, doc = await get(srv, "/apis")
        calico = {g["name"] for g in doc["groups"]} & {V1, V3}
        assert calico == groups
        if V3 in groups:
            _, resources = await get(srv, f"/apis/{V3}/v3")
            plurals = {r["name"] for r in resources["resources"]}
            assert {"ippools", "caliconodestatuses", "blockaffinities", "networksets"} <= plurals
            assert ("ipamblocks" in plurals) == (flavour == "v3")
        assert srv.calico_group == (V1 if V1 in groups else V3)
    finally:
        await srv.stop()


def test_v1_flavour_is_every_crd_file() -> None:
    """The v1 flavour serves one type per file of crds/, whatever files another change adds."""
    srv = ApiServer(token=None)
    custom = {(rt.group, rt.plural) for rt in srv.registry.types if rt.custom}
    assert len(custom) == len(list(CRD_DIR.glob("*.yaml")))


@pytest.mark.parametrize("flavour", ["v1", "v3", "both"])
def test_without_crds_in_every_flavour(flavour: str) -> None:
    """``without_crds`` leaves a CRD out of any flavour, in whichever group it is served (a
    Calico before 3.30 has no staged policies; the Calico API server then shows none either)."""
    staged = {"stagednetworkpolicies", "stagedglobalnetworkpolicies",
              "stagedkubernetesnetworkpolicies"}
    full = {rt.plural for rt in ApiServer(token=None, calico_api=flavour).registry.types}
    srv = ApiServer(token=None, calico_api=flavour, without_crds=[*staged,
                                                                  "clusternetworkpolicies"])
    plurals = {rt.plural for rt in srv.registry.types}
    assert staged | {"clusternetworkpolicies"} <= full
    assert plurals == full - staged - {"clusternetworkpolicies"}


def test_stored_objects_where_calicos_data_is() -> None:
    """A v1 object as libcalico-go stores it is itself with v1 CRDs and, with native v3 CRDs,
    the object Calico's migration makes of it (v3 name from the metadata annotation)."""
    stored = {"apiVersion": f"{V1}/v1", "kind": "GlobalNetworkPolicy", "metadata": {
        "name": "default.p", "annotations": {calicoapi.METADATA_ANNOTATION: '{"name":"p"}'}},
        "spec": {"selector": "all()"}}
    for flavour, api_version, name in (("v1", f"{V1}/v1", "default.p"),
                                       ("both", f"{V1}/v1", "default.p"),
                                       ("v3", f"{V3}/v3", "p")):
        cluster = SimCluster(ApiServer(token=None, calico_api=flavour), load("dual-stack"))
        obj = cluster.stored(stored)
        assert (obj["apiVersion"], obj["metadata"]["name"]) == (api_version, name)
    node = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    assert cluster.stored(node) == node


def test_convert_uid_as_calico() -> None:
    """ConvertUID of Calico's own test case, and its inverse (conversion_test.go, v3.32.1)."""
    original = "30316465-6365-4463-ad63-3564622d3638"
    assert calicoapi.convert_uid(original) == "0c8c26a6-c6a6-44c6-adc6-ac2646b46c1c"
    assert calicoapi.convert_uid(calicoapi.convert_uid(original)) == original


def test_labels_and_annotations_v3_to_v1_and_back() -> None:
    """customresource_test.go "should handle converting labels and annotations from v3 -> v1":
    only labels and annotations of ours stay on the v1 object; reading merges back the stored
    ones with labels added on the v1 object; writing again sanitizes."""
    ours = {"foo": "bar", "projectcalico.org/foo": "bar", "operator.tigera.io/foo": "bar"}
    v3 = {"apiVersion": f"{V3}/v3", "kind": "BGPPeer",
          "metadata": {"name": "peer1", "resourceVersion": "rv",
                       "uid": "0c8c26a6-c6a6-44c6-adc6-ac2646b46c1c",
                       "labels": dict(ours), "annotations": dict(ours)}, "spec": {}}
    v1 = calicoapi.to_v1(v3)
    assert v1["metadata"]["labels"] == {"projectcalico.org/foo": "bar",
                                        "operator.tigera.io/foo": "bar"}
    assert "foo" not in v1["metadata"]["annotations"]
    assert v1["metadata"]["annotations"]["projectcalico.org/foo"] == "bar"
    assert v1["metadata"]["uid"] == "30316465-6365-4463-ad63-3564622d3638"
    v1["metadata"]["labels"].update({"foo2": "bar2", "operator.tigera.io/foo2": "bar2"})
    v1["metadata"]["annotations"].update({"foo2": "bar2", "projectcalico.org/foo2": "bar2"})
    back = calicoapi.to_v3(v1)
    assert back["metadata"]["annotations"] == {**ours, "foo2": "bar2",
                                               "projectcalico.org/foo2": "bar2"}
    assert back["metadata"]["labels"] == {**ours, "foo2": "bar2",
                                          "operator.tigera.io/foo2": "bar2"}
    assert back["metadata"]["uid"] == v3["metadata"]["uid"]
    again = calicoapi.to_v1(back)
    assert "foo2" not in again["metadata"]["annotations"]
    assert "foo2" not in again["metadata"]["labels"]
    assert {"projectcalico.org/foo", "operator.tigera.io/foo"} <= set(again["metadata"]["labels"])


def test_policy_names_and_block_affinities() -> None:
    """A default-tier policy stored as default.<name> shows as <name> (determinePolicyName,
    resources.go v3.32.1); another tier keeps its name; BlockAffinity.spec.deleted becomes a
    bool in v3 and a string again in v1."""
    stored = {"apiVersion": f"{V1}/v1", "kind": "GlobalNetworkPolicy",
              "metadata": {"name": "default.allow-dns", "annotations": {
                  calicoapi.METADATA_ANNOTATION: '{"creationTimestamp":null}'}},
              "spec": {"tier": "default"}}
    assert calicoapi.to_v3(stored)["metadata"]["name"] == "allow-dns"
    stored["spec"]["tier"] = "security"
    stored["metadata"]["name"] = "security.allow-dns"
    assert calicoapi.to_v3(stored)["metadata"]["name"] == "security.allow-dns"
    affinity = {"apiVersion": f"{V1}/v1", "kind": "BlockAffinity", "metadata": {"name": "a"},
                "spec": {"deleted": "true", "state": "confirmed"}}
    assert calicoapi.to_v3(affinity)["spec"]["deleted"] is True
    assert calicoapi.to_v1(calicoapi.to_v3(affinity))["spec"]["deleted"] == "true"


async def test_both_serves_the_stored_objects_as_v3(both: ApiServer) -> None:
    """In ``both`` the v3 group shows the v1 objects converted, at the storage's
    resourceVersions; its watch follows v1 writes; a v3 write is stored as Calico stores it."""
    stored = both.create(ippool("p1", "10.0.0.0/16", labels={"a": "b"}))
    status, view = await get(both, f"/apis/{V3}/v3/ippools/p1")
    assert status == 200
    assert view["apiVersion"] == f"{V3}/v3"
    assert view["metadata"]["uid"] == calicoapi.convert_uid(stored["metadata"]["uid"])
    assert view["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    assert view["metadata"]["labels"] == {"a": "b"}
    rv = both.resource_version
    async with aiohttp.ClientSession() as session:
        async with session.get(both.url + f"/apis/{V3}/v3/ippools",
                               params={"watch": "1", "resourceVersion": str(rv),
                                       "timeoutSeconds": "1"}) as resp:
            both.patch(f"ippools.{V1}", "p1", {"spec": {"disabled": True}})
            lines = [orjson.loads(line) for line in (await resp.read()).splitlines()]
        assert [(e["type"], e["object"]["spec"].get("disabled")) for e in lines] == [
            ("MODIFIED", True)]
        created = {"apiVersion": f"{V3}/v3", "kind": "IPPool",
                   "metadata": {"name": "p2", "labels": {"x": "y"}},
                   "spec": {"cidr": "10.1.0.0/16"}}
        async with session.post(both.url + f"/apis/{V3}/v3/ippools", json=created) as resp:
            assert resp.status == 201
            answer = await resp.json()
    v1 = both.get(f"ippools.{V1}", "p2")
    assert "labels" not in v1["metadata"]
    assert orjson.loads(v1["metadata"]["annotations"][calicoapi.METADATA_ANNOTATION])[
        "labels"] == {"x": "y"}
    assert answer["metadata"]["labels"] == {"x": "y"}
    assert answer["metadata"]["uid"] == calicoapi.convert_uid(v1["metadata"]["uid"])
    both.delete(f"ippools.{V3}", "p2")
    with pytest.raises(ApiError):
        both.get(f"ippools.{V1}", "p2")


async def test_server_side_apply_through_the_calico_api_server(both: ApiServer) -> None:
    """In ``both``, server-side apply to a v3 type is worked out on the v3 object and stored as
    the Calico API server stores a v3 write (the v1 object, its v3 metadata in the annotation,
    managedFields included): created, reapplied as a no-op, a second manager's conflicting field
    refused (409) until forced, and the v1 object follows."""
    url = f"{both.url}/apis/{V3}/v3/ippools/p1"
    headers = {"Content-Type": "application/apply-patch+yaml"}

    async def apply(body: dict[str, Any], manager: str,
                    force: bool = False) -> tuple[int, dict[str, Any]]:
        params = {"fieldManager": manager, **({"force": "true"} if force else {})}
        async with aiohttp.ClientSession() as session, session.patch(
                url, data=orjson.dumps(body), params=params, headers=headers) as resp:
            return resp.status, await resp.json()

    pool = {"apiVersion": f"{V3}/v3", "kind": "IPPool",
            "metadata": {"name": "p1", "labels": {"team": "net"}},
            "spec": {"cidr": "10.0.0.0/16", "disabled": False}}
    status, created = await apply(pool, "kubectl")
    assert status == 201
    assert created["apiVersion"] == f"{V3}/v3"
    assert created["metadata"]["labels"] == {"team": "net"}
    (entry,) = created["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("kubectl", "Apply")
    stored = both.get(f"ippools.{V1}", "p1")
    assert stored["spec"]["cidr"] == "10.0.0.0/16"
    assert "labels" not in stored["metadata"]
    kept = orjson.loads(stored["metadata"]["annotations"][calicoapi.METADATA_ANNOTATION])
    assert kept["labels"] == {"team": "net"}
    assert kept["managedFields"][0]["manager"] == "kubectl"
    status, again = await apply(pool, "kubectl")
    assert status == 200
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    other = {**pool, "spec": {"cidr": "10.0.0.0/16", "disabled": True}}
    status, conflict = await apply(other, "ops")
    assert status == 409
    assert conflict["reason"] == "Conflict"
    status, forced = await apply(other, "ops", force=True)
    assert status == 200, forced["message"]
    assert forced["spec"]["disabled"] is True
    assert both.get(f"ippools.{V1}", "p1")["spec"]["disabled"] is True


async def test_drop_group_deletes_objects_then_ends_watches(both: ApiServer) -> None:
    """Deleting the v1 CRDs: a watcher gets a DELETED event per object (the CRD finalizer),
    then its stream ends; the group leaves discovery with the Calico API server's types served
    from it; requests get 404; the other groups are untouched."""
    both.create(ippool("p1", "10.0.0.0/16"))
    both.create(ippool("p2", "10.1.0.0/16"))
    rv = both.resource_version
    async with aiohttp.ClientSession() as session:
        async with session.get(both.url + f"/apis/{V1}/v1/ippools",
                               params={"watch": "1", "resourceVersion": str(rv)}) as resp:
            both.drop_group(V1)
            lines = [orjson.loads(line) for line in (await resp.read()).splitlines()]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [
            ("DELETED", "p1"), ("DELETED", "p2")]
        _, doc = await get(both, "/apis")
        assert {g["name"] for g in doc["groups"]} & {V1, V3} == set()
        for path in (f"/apis/{V1}/v1/ippools", f"/apis/{V3}/v3/ippools"):
            async with session.get(both.url + path) as resp:
                assert resp.status == 404
        async with session.get(both.url + "/api/v1/namespaces") as resp:
            assert resp.status == 200
    assert both.calico_group == ""


async def test_status_subresource_option() -> None:
    """With Calico master's CalicoNodeStatus status subresource, a write of the object keeps the
    stored status, a write of /status only changes the status (and not the generation)."""
    srv = ApiServer(token=None, calico_api="v3", cns_status_subresource=True)
    await srv.start()
    try:
        cns = {"apiVersion": f"{V3}/v3", "kind": "CalicoNodeStatus",
               "metadata": {"name": "n1"},
               "spec": {"node": "n1", "classes": ["BGP"], "updatePeriodSeconds": 10}}
        created = srv.create(cns)
        obj = dict(created, status={"lastUpdated": "2026-01-01T00:00:00Z"})
        written = srv.update(obj, subresource="status")
        assert written["status"] == {"lastUpdated": "2026-01-01T00:00:00Z"}
        assert written["metadata"]["generation"] == created["metadata"]["generation"]
        async with aiohttp.ClientSession() as session, session.patch(
            srv.url + f"/apis/{V3}/v3/caliconodestatuses/n1",
            data=orjson.dumps({"spec": {"updatePeriodSeconds": 5}, "status": {}}),
            headers={"Content-Type": "application/merge-patch+json"},
        ) as resp:
            patched = await resp.json()
        assert patched["spec"]["updatePeriodSeconds"] == 5
        assert patched["status"] == {"lastUpdated": "2026-01-01T00:00:00Z"}
        _, resources = await get(srv, f"/apis/{V3}/v3")
        assert "caliconodestatuses/status" in {r["name"] for r in resources["resources"]}
    finally:
        await srv.stop()


@pytest.mark.parametrize("flavour", ["v1", "both"])
async def test_migration_moves_the_data_to_v3(flavour: str) -> None:
    """SimCluster.migrate_to_v3: the same objects (names, specs, labels) end up in native v3
    CRDs under new uids, the v1 group is gone, and the simulated Calico writes into v3 after."""
    srv = ApiServer(token=None, calico_api=flavour)
    await srv.start()
    cluster = SimCluster(srv, load("nke-lab"))
    try:
        await cluster.start()
        def contents(resource: str) -> dict[tuple[str, str], Any]:
            return {(o["metadata"].get("namespace", ""), o["metadata"]["name"]):
                    (o["spec"], o["metadata"].get("labels")) for o in srv.list(resource)}

        plurals = ("ippools", "ipamblocks", "ipamhandles", "networkpolicies", "caliconodestatuses")
        before = {plural: contents(f"{plural}.{V1}") for plural in plurals}
        cluster.migrate_to_v3()
        assert srv.calico_group == V3
        for plural, objects in before.items():
            assert contents(f"{plural}.{V3}") == objects, plural
        affinity = srv.list(f"blockaffinities.{V3}")[0]
        assert affinity["spec"]["deleted"] is False
        pod = next(p for p in load("nke-lab").pods if not p.host_network)
        cluster.delete_pod(pod.namespace, pod.name)
        handles = {o["metadata"]["name"] for o in srv.list(f"ipamhandles.{V3}")}
        assert len(handles) == len(before["ipamhandles"]) - 1
    finally:
        await cluster.stop()
        await srv.stop()


async def test_pool_conditions_as_calicos_controller() -> None:
    """pool_controller_test.go "should mark overlapping IP pools with a status condition"
    (kube-controllers, master 87c1590), step by step: the first pool stays allocatable, pools
    overlapping it are not, a pool overlapping only a masked one is; after deletions the oldest
    remaining pool takes over. Creation times one second apart, as the test sleeps."""
    srv = ApiServer(token=None, calico_api="v3")
    await srv.start()
    cluster = SimCluster(srv, load("nke-lab"))
    try:
        await cluster.start()

        def allocatable() -> dict[str, str]:
            return {p["metadata"]["name"]: p["status"]["conditions"][0]["status"]
                    for p in srv.list(f"ippools.{V3}")
                    if p["metadata"]["name"] != "default-ipv4-ippool"}

        def create(name: str, cidr: str, second: int) -> None:
            srv.seed([ippool(name, cidr, api=f"{V3}/v3",
                             creationTimestamp=f"2026-01-01T00:00:0{second}Z")])

        create("test-pool", "192.168.1.0/24", 0)
        create("overlapping-pool", "192.168.0.0/16", 1)
        create("another-overlapping-pool", "192.168.0.0/16", 2)
        create("non-overlapping-pool", "192.168.2.0/24", 3)
        assert allocatable() == {"test-pool": "True", "overlapping-pool": "False",
                                 "another-overlapping-pool": "False",
                                 "non-overlapping-pool": "True"}
        reasons = {p["metadata"]["name"]: p["status"]["conditions"][0]["reason"]
                   for p in srv.list(f"ippools.{V3}")}
        assert reasons["overlapping-pool"] == "CIDROverlap"
        srv.delete(f"ippools.{V3}", "test-pool")
        assert allocatable()["overlapping-pool"] == "False"
        srv.delete(f"ippools.{V3}", "non-overlapping-pool")
        assert allocatable() == {"overlapping-pool": "True", "another-overlapping-pool": "False"}
        srv.delete(f"ippools.{V3}", "overlapping-pool")
        assert allocatable() == {"another-overlapping-pool": "True"}
    finally:
        await cluster.stop()
        await srv.stop()
