"""Contract tests of the Kubernetes API emulator: one test per semantic of the checklist in
``../shared/docs/testing.md`` section 1.3, through the real kubernetes-asyncio client (and raw
HTTP where a wire detail is the point). Written so they could run against a real cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from exporter.sim.apiserver import ApiServer
from tests.sim.conftest import make_client

G, V = "crd.projectcalico.org", "v1"
CNS = "caliconodestatuses"
MERGE = "application/merge-patch+json"


def cns(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{G}/{V}", "kind": "CalicoNodeStatus", "metadata": {"name": name},
            "spec": {"node": name, "classes": ["BGP"], "updatePeriodSeconds": 10, **spec}}


def pod(name: str, ns: str = "default", *, node: str = "n1", phase: str = "Running",
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": phase}}


def ippool(name: str, cidr: str = "10.0.0.0/16", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{G}/{V}", "kind": "IPPool", "metadata": {"name": name},
            "spec": {"cidr": cidr, "blockSize": 26, **spec}}


@pytest.fixture
async def co(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
async def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
async def http(server: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A raw HTTP session with the bearer token, for wire-level assertions."""
    async with aiohttp.ClientSession(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}
    ) as session:
        yield session


async def events(stream: AsyncIterator[dict[str, Any]], n: int) -> list[tuple[str, str]]:
    """The (type, name) of the next ``n`` non-bookmark events."""
    out: list[tuple[str, str]] = []
    async for ev in stream:
        if ev["type"] == "BOOKMARK":
            continue
        out.append((ev["type"], ev["raw_object"]["metadata"]["name"]))
        if len(out) == n:
            break
    return out


# ---------------------------------------------------------------- routing, discovery, errors


async def test_cluster_scoped_crd_under_namespace_path_is_404(http: aiohttp.ClientSession,
                                                              server: ApiServer) -> None:
    """A namespaced path for the cluster-scoped caliconodestatuses is 404 with a Status body."""
    server.create(cns("a"))
    async with http.get(f"/apis/{G}/{V}/namespaces/default/{CNS}") as resp:
        assert resp.status == 404
        body = await resp.json()
    assert body["kind"] == "Status"
    assert body["reason"] == "NotFound"
    async with http.get(f"/apis/{G}/{V}/{CNS}/a") as resp:
        assert resp.status == 200


async def test_discovery_documents(api: client.ApiClient, http: aiohttp.ClientSession) -> None:
    """/api, /apis, /apis/{g} and /apis/{g}/{v} list the served types with real scopes."""
    core = await client.CoreApi(api).get_api_versions()
    assert core.versions == ["v1"]
    groups = await client.ApisApi(api).get_api_versions()
    names = {g.name for g in groups.groups}
    assert {G, "networking.k8s.io", "coordination.k8s.io"} <= names
    resources = await client.CustomObjectsApi(api).get_api_resources(G, V)
    by_name = {r.name: r for r in resources.resources}
    assert by_name[CNS].namespaced is False
    assert by_name["networkpolicies"].namespaced is True
    assert f"{CNS}/status" not in by_name
    v1 = await client.CoreV1Api(api).get_api_resources()
    v1_names = {r.name: r for r in v1.resources}
    assert v1_names["pods"].namespaced
    assert not v1_names["nodes"].namespaced
    assert "pods/status" in v1_names
    async with http.get(f"/apis/{G}") as resp:
        group = await resp.json()
    assert group["kind"] == "APIGroup"
    assert group["preferredVersion"]["groupVersion"] == f"{G}/{V}"


async def test_version_with_and_without_slash(api: client.ApiClient,
                                              http: aiohttp.ClientSession) -> None:
    """/version and /version/ both answer a complete VersionInfo (the typed model accepts it)."""
    info = await client.VersionApi(api).get_code()
    assert info.major == "1"
    assert info.build_date
    assert info.go_version
    assert info.platform
    async with http.get("/version") as resp:
        assert (await resp.json())["gitVersion"] == info.git_version


async def test_errors_are_status_objects(co: client.CustomObjectsApi) -> None:
    """A 404 carries a Status with reason, message, details (name, group, kind) and code."""
    with pytest.raises(ApiException) as exc:
        await co.get_cluster_custom_object(G, V, CNS, "missing")
    body = orjson.loads(exc.value.body)
    assert exc.value.status == 404
    assert body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f'{CNS}.{G} "missing" not found', "reason": "NotFound",
        "details": {"name": "missing", "group": G, "kind": CNS}, "code": 404,
    }


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True"])
async def test_query_booleans_parse_like_go(http: aiohttp.ClientSession, value: str) -> None:
    """watch=<any Go ParseBool true spelling> starts a watch; a bad spelling is a 400."""
    async with http.get(f"/apis/{G}/{V}/{CNS}",
                        params={"watch": value, "timeoutSeconds": "1"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers.get("Transfer-Encoding") == "chunked"
    async with http.get(f"/apis/{G}/{V}/{CNS}", params={"watch": "yes"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["reason"] == "BadRequest"


async def test_bearer_token_required(server: ApiServer, tmp_path: Path) -> None:
    """No token or a wrong token is 401 Unauthorized; the right one works."""
    async with await make_client(server, tmp_path, token="wrong") as bad:
        with pytest.raises(ApiException) as exc:
            await client.CoreV1Api(bad).list_node()
        assert exc.value.status == 401
        assert orjson.loads(exc.value.body)["reason"] == "Unauthorized"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/api/v1/nodes") as resp:
            assert resp.status == 401
        async with session.get(f"{server.url}/version") as resp:
            assert resp.status == 200
    async with await make_client(server, tmp_path) as good:
        assert (await client.CoreV1Api(good).list_node()).items == []


async def test_auth_disabled_with_token_none(tmp_path: Path) -> None:
    """token=None disables authentication."""
    srv = ApiServer(token=None)
    await srv.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(
                f"{srv.url}/api/v1/namespaces") as resp:
            assert resp.status == 200
    finally:
        await srv.stop()


# ---------------------------------------------------------------- create, get, list


async def test_create_sets_system_metadata(co: client.CustomObjectsApi,
                                           http: aiohttp.ClientSession) -> None:
    """POST is 201 with uid, string resourceVersion, RFC 3339 creationTimestamp, generation 1."""
    async with http.post(f"/apis/{G}/{V}/{CNS}", json=cns("a")) as resp:
        assert resp.status == 201
        meta = (await resp.json())["metadata"]
    assert len(meta["uid"]) == 36
    assert isinstance(meta["resourceVersion"], str)
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    got = await co.get_cluster_custom_object(G, V, CNS, "a")
    assert got["metadata"] == meta


async def test_create_generate_name(co: client.CustomObjectsApi) -> None:
    """generateName produces a unique name with a random 5-character suffix."""
    body = cns("x")
    body["metadata"] = {"generateName": "status-"}
    a = await co.create_cluster_custom_object(G, V, CNS, body)
    b = await co.create_cluster_custom_object(G, V, CNS, body)
    assert a["metadata"]["name"].startswith("status-")
    assert len(a["metadata"]["name"]) == 12
    assert a["metadata"]["name"] != b["metadata"]["name"]


async def test_create_conflicts_and_bad_bodies(co: client.CustomObjectsApi) -> None:
    """Duplicate name is 409 AlreadyExists; no name is 422; a kind/apiVersion mismatch is 400."""
    await co.create_cluster_custom_object(G, V, CNS, cns("a"))
    with pytest.raises(ApiException) as exc:
        await co.create_cluster_custom_object(G, V, CNS, cns("a"))
    assert exc.value.status == 409
    assert orjson.loads(exc.value.body)["reason"] == "AlreadyExists"
    nameless = cns("a")
    nameless["metadata"] = {}
    with pytest.raises(ApiException) as exc:
        await co.create_cluster_custom_object(G, V, CNS, nameless)
    assert exc.value.status == 422
    wrong = dict(cns("b"), kind="IPPool")
    with pytest.raises(ApiException) as exc:
        await co.create_cluster_custom_object(G, V, CNS, wrong)
    assert exc.value.status == 400
    wrong = dict(cns("b"), apiVersion="crd.projectcalico.org/v2")
    with pytest.raises(ApiException) as exc:
        await co.create_cluster_custom_object(G, V, CNS, wrong)
    assert exc.value.status == 400


async def test_create_in_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    """Creating a namespaced object in a namespace that does not exist is 404."""
    with pytest.raises(ApiException) as exc:
        await core.create_namespaced_pod("nope", pod("p", "nope"))
    assert exc.value.status == 404
    assert orjson.loads(exc.value.body)["details"]["kind"] == "namespaces"


async def test_builtin_create_through_typed_api(core: client.CoreV1Api) -> None:
    """Typed CoreV1Api create/read of pods, nodes and namespaces get full metadata."""
    ns = await core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": "guestbook"}})
    assert ns.status.phase == "Active"
    assert ns.metadata.uid
    node = await core.create_node({"apiVersion": "v1", "kind": "Node",
                                   "metadata": {"name": "n1"}})
    assert node.metadata.resource_version
    assert node.metadata.creation_timestamp
    created = await core.create_namespaced_pod("guestbook", pod("web", "guestbook"))
    assert created.metadata.namespace == "guestbook"
    assert created.metadata.uid
    read = await core.read_namespaced_pod("web", "guestbook")
    assert read.spec.node_name == "n1"


async def test_list_sorted_typed_with_list_rv(server: ApiServer,
                                              co: client.CustomObjectsApi) -> None:
    """LIST returns <Kind>List, items sorted by namespace/name with apiVersion/kind, and the RV."""
    for name in ("c", "a", "b"):
        server.create(cns(name))
    lst = await co.list_cluster_custom_object(G, V, CNS)
    assert lst["kind"] == "CalicoNodeStatusList"
    assert lst["apiVersion"] == f"{G}/{V}"
    assert [i["metadata"]["name"] for i in lst["items"]] == ["a", "b", "c"]
    assert all(i["kind"] == "CalicoNodeStatus" for i in lst["items"])
    assert lst["metadata"]["resourceVersion"] == str(server.resource_version)


async def test_list_resource_version_rules(server: ApiServer, co: client.CustomObjectsApi) -> None:
    """RV unset/0 is current; Exact N is the state at N; Exact below compaction is 410;
    resourceVersionMatch without resourceVersion is a 422."""
    server.create(cns("a"))
    rv_one = server.resource_version
    server.create(cns("b"))
    cur = await co.list_cluster_custom_object(G, V, CNS, resource_version="0")
    assert len(cur["items"]) == 2
    old = await co.list_cluster_custom_object(G, V, CNS, resource_version=str(rv_one),
                                              resource_version_match="Exact")
    assert [i["metadata"]["name"] for i in old["items"]] == ["a"]
    assert old["metadata"]["resourceVersion"] == str(rv_one)
    newer = await co.list_cluster_custom_object(G, V, CNS, resource_version=str(rv_one),
                                                resource_version_match="NotOlderThan")
    assert len(newer["items"]) == 2
    with pytest.raises(ApiException) as exc:
        await co.list_cluster_custom_object(G, V, CNS, resource_version_match="Exact")
    assert exc.value.status == 422
    server.compact()
    with pytest.raises(ApiException) as exc:
        await co.list_cluster_custom_object(G, V, CNS, resource_version=str(rv_one),
                                            resource_version_match="Exact")
    assert exc.value.status == 410
    assert orjson.loads(exc.value.body)["reason"] == "Expired"


async def test_list_chunking_one_snapshot(server: ApiServer, co: client.CustomObjectsApi) -> None:
    """limit/continue pages all come from the first page's snapshot and carry its RV."""
    for i in range(5):
        server.create(cns(f"n{i}"))
    first = await co.list_cluster_custom_object(G, V, CNS, limit=2)
    snap_rv = first["metadata"]["resourceVersion"]
    assert [i["metadata"]["name"] for i in first["items"]] == ["n0", "n1"]
    assert first["metadata"]["remainingItemCount"] == 3
    server.delete(f"{CNS}.{G}", "n3")
    server.create(cns("n9"))
    names = [i["metadata"]["name"] for i in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        page = await co.list_cluster_custom_object(G, V, CNS, limit=2, _continue=token)
        assert page["metadata"]["resourceVersion"] == snap_rv
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert names == ["n0", "n1", "n2", "n3", "n4"]


async def test_expired_continue_token_is_410(server: ApiServer,
                                             co: client.CustomObjectsApi) -> None:
    """A continue token whose snapshot was compacted away is 410 Expired."""
    for i in range(3):
        server.create(cns(f"n{i}"))
    first = await co.list_cluster_custom_object(G, V, CNS, limit=1)
    server.create(cns("later"))
    server.compact()
    with pytest.raises(ApiException) as exc:
        await co.list_cluster_custom_object(G, V, CNS, limit=1,
                                            _continue=first["metadata"]["continue"])
    assert exc.value.status == 410
    assert orjson.loads(exc.value.body)["reason"] == "Expired"


# ---------------------------------------------------------------- watch (basics)


async def test_watch_from_list_rv_is_lossless_and_ordered(server: ApiServer,
                                                          co: client.CustomObjectsApi) -> None:
    """A watch from the list RV gets exactly the later changes, in RV order, nothing replayed."""
    server.create(cns("a"))
    lst = await co.list_cluster_custom_object(G, V, CNS)
    server.create(cns("b"))
    server.patch(f"{CNS}.{G}", "a", {"spec": {"updatePeriodSeconds": 5}})
    server.delete(f"{CNS}.{G}", "b")
    async with watch.Watch() as w:
        stream = w.stream(co.list_cluster_custom_object, G, V, CNS,
                          resource_version=lst["metadata"]["resourceVersion"], timeout_seconds=2)
        got = []
        rvs = []
        async for ev in stream:
            got.append((ev["type"], ev["raw_object"]["metadata"]["name"]))
            rvs.append(int(ev["raw_object"]["metadata"]["resourceVersion"]))
            if len(got) == 3:
                break
    assert got == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert rvs == sorted(rvs)
    assert rvs[-1] == server.resource_version
