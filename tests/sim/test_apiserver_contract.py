"""Contract tests of the Kubernetes API emulator: one test per semantic of the checklist in
``../shared/docs/testing.md`` section 1.3, through the real kubernetes-asyncio client (and raw
HTTP where a wire detail is the point). Written so they could run against a real cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from exporter.sim.apiserver import ApiError, ApiServer
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


async def watch_all(list_fn: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every event of one watch stream, read with kubernetes-asyncio's Watch until it ends."""
    async with watch.Watch() as w:
        return [ev async for ev in w.stream(list_fn, *args, **kwargs)]


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


async def test_path_and_method_rules(http: aiohttp.ClientSession) -> None:
    """Namespaced objects exist only under /namespaces/{ns}/; the all-namespaces collection
    serves only list and watch (405 otherwise); unknown subresources are 404; all as Status."""
    async with http.get("/api/v1/pods/web") as resp:
        assert resp.status == 404
    async with http.post("/api/v1/pods", json={}) as resp:
        assert resp.status == 405
        assert (await resp.json())["reason"] == "MethodNotAllowed"
    async with http.get("/api/v1/namespaces/default/status") as resp:
        assert resp.status == 200
        assert (await resp.json())["metadata"]["name"] == "default"
    async with http.get("/api/v1/namespaces/default/pods/web/exec") as resp:
        assert resp.status == 404
        assert (await resp.json())["kind"] == "Status"


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


# ---------------------------------------------------------------- replace, patch, writes


async def test_replace_requires_rv_for_custom_resources(co: client.CustomObjectsApi,
                                                        core: client.CoreV1Api) -> None:
    """PUT of a CR without resourceVersion is 422; a stale RV is 409 Conflict; built-ins may
    be replaced unconditionally."""
    created = await co.create_cluster_custom_object(G, V, CNS, cns("a"))
    body = cns("a", updatePeriodSeconds=20)
    with pytest.raises(ApiException) as exc:
        await co.replace_cluster_custom_object(G, V, CNS, "a", body)
    assert exc.value.status == 422
    assert "must be specified for an update" in orjson.loads(exc.value.body)["message"]
    body["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    replaced = await co.replace_cluster_custom_object(G, V, CNS, "a", body)
    assert replaced["spec"]["updatePeriodSeconds"] == 20
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    with pytest.raises(ApiException) as exc:
        await co.replace_cluster_custom_object(G, V, CNS, "a", body)
    assert exc.value.status == 409
    conflict = orjson.loads(exc.value.body)
    assert conflict["reason"] == "Conflict"
    assert "the object has been modified" in conflict["message"]
    await core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    node = await core.replace_node("n1", {"apiVersion": "v1", "kind": "Node",
                                          "metadata": {"name": "n1", "labels": {"a": "b"}}})
    assert node.metadata.labels == {"a": "b"}


async def test_merge_patch_semantics(co: client.CustomObjectsApi) -> None:
    """application/merge-patch+json: null deletes a key, lists are replaced, maps merge."""
    await co.create_cluster_custom_object(G, V, "ippools", ippool(
        "p", natOutgoing=True, allowedUses=["Workload", "Tunnel"]))
    got = await co.patch_cluster_custom_object(
        G, V, "ippools", "p", {"spec": {"natOutgoing": None, "allowedUses": ["Workload"],
                                        "disabled": True}}, _content_type=MERGE)
    assert "natOutgoing" not in got["spec"]
    assert got["spec"]["allowedUses"] == ["Workload"]
    assert got["spec"]["disabled"] is True
    assert got["spec"]["cidr"] == "10.0.0.0/16"


async def test_json_patch_semantics(co: client.CustomObjectsApi) -> None:
    """application/json-patch+json applies RFC 6902 ops; a failing test op is 422 and changes
    nothing."""
    await co.create_cluster_custom_object(G, V, CNS, cns("a"))
    got = await co.patch_cluster_custom_object(G, V, CNS, "a", [
        {"op": "test", "path": "/spec/updatePeriodSeconds", "value": 10},
        {"op": "replace", "path": "/spec/updatePeriodSeconds", "value": 60},
        {"op": "add", "path": "/spec/classes/-", "value": "Routes"},
    ])
    assert got["spec"]["updatePeriodSeconds"] == 60
    assert got["spec"]["classes"] == ["BGP", "Routes"]
    with pytest.raises(ApiException) as exc:
        await co.patch_cluster_custom_object(G, V, CNS, "a", [
            {"op": "test", "path": "/spec/updatePeriodSeconds", "value": 1},
            {"op": "replace", "path": "/spec/node", "value": "other"},
        ])
    assert exc.value.status == 422
    assert (await co.get_cluster_custom_object(G, V, CNS, "a"))["spec"]["node"] == "a"


async def test_patch_content_types(server: ApiServer, http: aiohttp.ClientSession) -> None:
    """Strategic merge on a CR and unknown types are 415, naming the accepted types as a real
    server does for a CR (testing.md 1.3 item 11); a body that does not match its content type
    is a 4xx; strategic merge works on built-ins."""
    server.create(cns("a"))
    url = f"/apis/{G}/{V}/{CNS}/a"
    for ctype in ("application/strategic-merge-patch+json", "text/plain", "application/json"):
        async with http.patch(url, data=b"{}", headers={"Content-Type": ctype}) as resp:
            assert resp.status == 415, ctype
            status = await resp.json()
            assert status["reason"] == "UnsupportedMediaType"
            assert status["message"].endswith(
                "accepted media types include: application/json-patch+json, "
                "application/merge-patch+json, application/apply-patch+yaml")
    async with http.patch(url, data=orjson.dumps({"spec": {"node": "x"}}),
                          headers={"Content-Type": "application/json-patch+json"}) as resp:
        assert 400 <= resp.status < 500
    async with http.patch(url, data=orjson.dumps([{"op": "add", "path": "/x", "value": 1}]),
                          headers={"Content-Type": MERGE}) as resp:
        assert 400 <= resp.status < 500
    server.create(pod("web"))
    smp = {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]},
           "metadata": {"labels": {"tier": "web"}}}
    async with http.patch("/api/v1/namespaces/default/pods/web", data=orjson.dumps(smp),
                          headers={"Content-Type": "application/strategic-merge-patch+json"}
                          ) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["spec"]["containers"] == [{"name": "c", "image": "busybox:2"}]
    assert body["metadata"]["labels"] == {"tier": "web"}


async def test_noop_write_keeps_rv_and_emits_nothing(server: ApiServer,
                                                     co: client.CustomObjectsApi) -> None:
    """A patch or replace that changes nothing keeps the RV and emits no watch event."""
    created = await co.create_cluster_custom_object(G, V, CNS, cns("a"))
    rv = created["metadata"]["resourceVersion"]
    same = await co.patch_cluster_custom_object(G, V, CNS, "a", {"spec": {"node": "a"}},
                                                _content_type=MERGE)
    assert same["metadata"]["resourceVersion"] == rv
    replaced = await co.replace_cluster_custom_object(G, V, CNS, "a", created)
    assert replaced["metadata"]["resourceVersion"] == rv
    assert server.resource_version == int(rv)
    server.create(cns("marker"))
    async with watch.Watch() as w:
        got = await events(w.stream(co.list_cluster_custom_object, G, V, CNS,
                                    resource_version=rv, timeout_seconds=2), 1)
    assert got == [("ADDED", "marker")]


async def test_generation_bumps_on_any_non_metadata_change(co: client.CustomObjectsApi) -> None:
    """Without a status subresource, spec and status changes bump generation, metadata does not."""
    await co.create_cluster_custom_object(G, V, CNS, cns("a"))
    got = await co.patch_cluster_custom_object(G, V, CNS, "a", {"metadata": {"labels": {
        "x": "y"}}}, _content_type=MERGE)
    assert got["metadata"]["generation"] == 1
    got = await co.patch_cluster_custom_object(G, V, CNS, "a", {"spec": {"node": "b"}},
                                               _content_type=MERGE)
    assert got["metadata"]["generation"] == 2
    got = await co.patch_cluster_custom_object(G, V, CNS, "a", {"status": {"agent": {
        "birdV4": {"state": "Ready"}}}}, _content_type=MERGE)
    assert got["metadata"]["generation"] == 3


async def test_status_subresource_only_where_declared(server: ApiServer,
                                                      co: client.CustomObjectsApi,
                                                      core: client.CoreV1Api) -> None:
    """caliconodestatuses/NAME/status is 404 (no subresource), .status is written through the
    main resource; pods/status writes only status and the main resource ignores status."""
    await co.create_cluster_custom_object(G, V, CNS, cns("a"))
    with pytest.raises(ApiException) as exc:
        await co.patch_cluster_custom_object_status(G, V, CNS, "a", {"status": {}},
                                                    _content_type=MERGE)
    assert exc.value.status == 404
    with pytest.raises(ApiException) as exc:
        await co.get_cluster_custom_object_status(G, V, CNS, "a")
    assert exc.value.status == 404
    got = await co.patch_cluster_custom_object(G, V, CNS, "a", {"status": {"agent": {
        "birdV4": {"state": "Ready"}}}}, _content_type=MERGE)
    assert got["status"]["agent"]["birdV4"]["state"] == "Ready"
    server.create(pod("web", phase="Pending"))
    patched = await core.patch_namespaced_pod(
        "web", "default", {"status": {"phase": "Running"}, "spec": {"nodeName": "n1"}})
    assert patched.status.phase == "Pending"
    patched = await core.patch_namespaced_pod_status(
        "web", "default", {"status": {"phase": "Running"}, "metadata": {"labels": {"a": "b"}}})
    assert patched.status.phase == "Running"
    assert not patched.metadata.labels


async def test_schema_prunes_unknown_fields_with_warning(server: ApiServer,
                                                         http: aiohttp.ClientSession) -> None:
    """Unknown fields are pruned with a Warning header (fieldValidation=Warn, the default),
    rejected with 400 under Strict, dropped silently under Ignore."""
    body = cns("a")
    body["spec"]["bogus"] = 1
    body["metadata"]["extra"] = "x"
    async with http.post(f"/apis/{G}/{V}/{CNS}", json=body) as resp:
        assert resp.status == 201
        warnings = resp.headers.getall("Warning")
        created = await resp.json()
    assert '299 - "unknown field \\"spec.bogus\\""' in warnings
    assert "bogus" not in created["spec"]
    assert "extra" not in created["metadata"]
    body["metadata"] = {"name": "b"}
    async with http.post(f"/apis/{G}/{V}/{CNS}", json=body,
                         params={"fieldValidation": "Strict"}) as resp:
        assert resp.status == 400
        assert 'unknown field "spec.bogus"' in (await resp.json())["message"]
    async with http.post(f"/apis/{G}/{V}/{CNS}", json=body,
                         params={"fieldValidation": "Ignore"}) as resp:
        assert resp.status == 201
        assert "Warning" not in resp.headers


async def test_schema_violations_are_422_with_causes(co: client.CustomObjectsApi) -> None:
    """Type, required, enum, bounds, length, items, format and CEL violations are 422 Invalid
    with one cause per violation."""
    bad = cns("a", updatePeriodSeconds="often", classes=["BGP", "Nope"])
    bad["status"] = {"bgp": {"numberEstablishedV4": 1}, "lastUpdated": "yesterday"}
    with pytest.raises(ApiException) as exc:
        await co.create_cluster_custom_object(G, V, CNS, bad)
    status = orjson.loads(exc.value.body)
    assert exc.value.status == 422
    assert status["reason"] == "Invalid"
    fields = {c["field"]: c["reason"] for c in status["details"]["causes"]}
    assert fields["spec.updatePeriodSeconds"] == "FieldValueTypeInvalid"
    assert fields["spec.classes[1]"] == "FieldValueNotSupported"
    assert fields["status.bgp.numberEstablishedV6"] == "FieldValueRequired"
    assert fields["status.lastUpdated"] == "FieldValueInvalid"
    assert status["message"].startswith(f'CalicoNodeStatus.{G} "a" is invalid: [')
    pool = ippool("p", blockSize=200, cidr="10.0.0.0/8", ipipMode="Always", vxlanMode="Always",
                  allowedUses=["Workload"] * 11)
    with pytest.raises(ApiException) as exc:
        await co.create_cluster_custom_object(G, V, "ippools", pool)
    reasons = {(c["field"], c["reason"]) for c in orjson.loads(exc.value.body)["details"]["causes"]}
    assert ("spec.blockSize", "FieldValueInvalid") in reasons
    assert ("spec.allowedUses", "FieldValueTooMany") in reasons
    assert ("spec.allowedUses[1]", "FieldValueDuplicate") in reasons
    assert ("spec", "FieldValueForbidden") in reasons  # CEL: ipip and vxlan both enabled
    with pytest.raises(ApiException) as exc:
        await co.create_cluster_custom_object(G, V, "ippools", ippool("p", cidr="x" * 50))
    reasons = {(c["field"], c["reason"]) for c in orjson.loads(exc.value.body)["details"]["causes"]}
    assert ("spec.cidr", "FieldValueTooLong") in reasons


async def test_schema_defaults_nullable_and_int_or_string(co: client.CustomObjectsApi) -> None:
    """Defaults are applied, nullable fields accept null, int-or-string accepts both, and a
    transition rule (self == oldSelf) rejects a blockSize change on update."""
    pool = await co.create_cluster_custom_object(G, V, "ippools", ippool("p"))
    assert pool["spec"]["assignmentMode"] == "Automatic"
    status = cns("a")
    status["status"] = {"lastUpdated": None}
    got = await co.create_cluster_custom_object(G, V, CNS, status)
    assert got["status"]["lastUpdated"] is None
    policy = {"apiVersion": f"{G}/{V}", "kind": "GlobalNetworkPolicy",
              "metadata": {"name": "allow"},
              "spec": {"ingress": [{"action": "Allow", "protocol": "TCP",
                                    "destination": {"ports": [80, "443", "8000:8080"]}}]}}
    assert (await co.create_cluster_custom_object(G, V, "globalnetworkpolicies", policy))
    with pytest.raises(ApiException) as exc:
        await co.patch_cluster_custom_object(G, V, "ippools", "p", {"spec": {"blockSize": 24}},
                                             _content_type=MERGE)
    assert exc.value.status == 422
    assert "Block size cannot be changed" in orjson.loads(exc.value.body)["message"]


async def test_dry_run_persists_nothing(server: ApiServer, http: aiohttp.ClientSession) -> None:
    """dryRun=All validates and returns the result without storing it or bumping the RV."""
    rv = server.resource_version
    async with http.post(f"/apis/{G}/{V}/{CNS}", json=cns("a"),
                         params={"dryRun": "All"}) as resp:
        assert resp.status == 201
        assert (await resp.json())["metadata"]["name"] == "a"
    assert server.list(CNS) == []
    server.create(cns("b"))
    rv = server.resource_version
    async with http.patch(f"/apis/{G}/{V}/{CNS}/b", params={"dryRun": "All"},
                          data=orjson.dumps({"spec": {"node": "z"}}),
                          headers={"Content-Type": MERGE}) as resp:
        assert (await resp.json())["spec"]["node"] == "z"
    async with http.delete(f"/apis/{G}/{V}/{CNS}/b", params={"dryRun": "All"}) as resp:
        assert resp.status == 200
    assert server.get(CNS, "b")["spec"]["node"] == "b"
    assert server.resource_version == rv
    async with http.post(f"/apis/{G}/{V}/{CNS}", json=cns("c"),
                         params={"dryRun": "Some"}) as resp:
        assert resp.status == 400


# ---------------------------------------------------------------- delete


async def test_delete_returns_object_with_deletion_rv(server: ApiServer,
                                                      co: client.CustomObjectsApi) -> None:
    """DELETE answers 200 with the object; the DELETED event carries the deletion RV."""
    created = server.create(cns("a"))
    rv = created["metadata"]["resourceVersion"]
    deleted = await co.delete_cluster_custom_object(G, V, CNS, "a")
    assert deleted["metadata"]["uid"] == created["metadata"]["uid"]
    async with watch.Watch() as w:
        async for ev in w.stream(co.list_cluster_custom_object, G, V, CNS, resource_version=rv,
                                 timeout_seconds=2):
            assert ev["type"] == "DELETED"
            assert int(ev["raw_object"]["metadata"]["resourceVersion"]) == server.resource_version
            assert int(ev["raw_object"]["metadata"]["resourceVersion"]) > int(rv)
            break
    with pytest.raises(ApiException) as exc:
        await co.delete_cluster_custom_object(G, V, CNS, "a")
    assert exc.value.status == 404


async def test_finalizers_defer_deletion(server: ApiServer, co: client.CustomObjectsApi) -> None:
    """With finalizers DELETE only sets deletionTimestamp (MODIFIED); removing the last
    finalizer removes the object (DELETED)."""
    body = cns("a")
    body["metadata"]["finalizers"] = ["example.com/keep"]
    created = await co.create_cluster_custom_object(G, V, CNS, body)
    pending = await co.delete_cluster_custom_object(G, V, CNS, "a")
    assert pending["metadata"]["deletionTimestamp"]
    assert pending["metadata"]["generation"] == 2
    await co.patch_cluster_custom_object(G, V, CNS, "a", {"metadata": {"finalizers": None}},
                                         _content_type=MERGE)
    async with watch.Watch() as w:
        got = await events(w.stream(co.list_cluster_custom_object, G, V, CNS,
                                    resource_version=created["metadata"]["resourceVersion"],
                                    timeout_seconds=2), 2)
    assert got == [("MODIFIED", "a"), ("DELETED", "a")]
    assert server.list(CNS) == []


async def test_delete_preconditions_conflict(server: ApiServer,
                                             co: client.CustomObjectsApi) -> None:
    """DeleteOptions preconditions on uid or resourceVersion that do not match are 409."""
    created = server.create(cns("a"))
    for pre in ({"uid": "00000000-0000-0000-0000-000000000000"}, {"resourceVersion": "1"}):
        with pytest.raises(ApiException) as exc:
            await co.delete_cluster_custom_object(G, V, CNS, "a",
                                                  body=client.V1DeleteOptions(preconditions=pre))
        assert exc.value.status == 409
        assert "Precondition failed" in orjson.loads(exc.value.body)["message"]
    ok = client.V1DeleteOptions(preconditions={"uid": created["metadata"]["uid"]})
    await co.delete_cluster_custom_object(G, V, CNS, "a", body=ok)
    assert server.list(CNS) == []


async def test_delete_collection_honours_selectors(server: ApiServer,
                                                   co: client.CustomObjectsApi) -> None:
    """deletecollection deletes exactly the objects matching the selectors."""
    for name, team in (("a", "x"), ("b", "y"), ("c", "x")):
        body = cns(name)
        body["metadata"]["labels"] = {"team": team}
        server.create(body)
    await co.delete_collection_cluster_custom_object(G, V, CNS, label_selector="team=x")
    assert [o["metadata"]["name"] for o in server.list(CNS)] == ["b"]


# ---------------------------------------------------------------- garbage collection


def owned(name: str, *owners: dict[str, Any]) -> dict[str, Any]:
    body = cns(name)
    body["metadata"]["ownerReferences"] = [
        {"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
         "uid": o["metadata"]["uid"]} for o in owners]
    return body


async def settle() -> None:
    """Let the background garbage collector run (it is scheduled with call_soon)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_gc_needs_all_owners_absent(server: ApiServer) -> None:
    """A dependent is collected only once every owner is gone (background propagation)."""
    n1 = server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    n2 = server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}})
    server.create(owned("dep", n1, n2))
    server.delete("nodes", "n1")
    await settle()
    assert server.get(CNS, "dep")
    server.delete("nodes", "n2")
    await settle()
    with pytest.raises(ApiError) as exc:
        server.get(CNS, "dep")
    assert exc.value.status == 404


async def test_gc_uid_mismatch_counts_as_absent(server: ApiServer) -> None:
    """An owner reference whose uid does not match the live object with that name is absent."""
    node = server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    stale = dict(node, metadata=dict(node["metadata"], uid="00000000-dead-beef-0000-000000000000"))
    server.create(owned("dep", stale))
    server.create(owned("kept", node))
    await settle()
    assert [o["metadata"]["name"] for o in server.list(CNS)] == ["kept"]


async def test_gc_never_collects_cluster_scoped_dependent_of_namespaced_owner(
        server: ApiServer) -> None:
    """A cluster-scoped object owned by a namespaced kind has an unresolvable owner reference
    and is never garbage collected."""
    owner = server.create(pod("owner"))
    server.create(owned("dep", owner))
    server.delete("pods", "owner", "default")
    await settle()
    server.run_gc()
    assert server.get(CNS, "dep")


async def test_gc_propagation_policies(server: ApiServer, http: aiohttp.ClientSession) -> None:
    """Orphan strips the owner reference and keeps dependents; Foreground deletes dependents
    (blockOwnerDeletion) before the owner; Background deletes the owner first."""
    n1 = server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    server.create(owned("orphan", n1))
    async with http.delete("/api/v1/nodes/n1", params={"propagationPolicy": "Orphan"}) as resp:
        assert resp.status == 200
    await settle()
    assert "ownerReferences" not in server.get(CNS, "orphan")["metadata"]
    n2 = server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}})
    dep = owned("fg", n2)
    dep["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = True
    server.create(dep)
    seen: list[tuple[str, str, bool]] = []
    unsubscribe = [server.subscribe(r, lambda t, o: seen.append(
        (t, o["metadata"]["name"], bool(o["metadata"].get("deletionTimestamp")))))
        for r in ("nodes", CNS)]
    async with http.delete("/api/v1/nodes/n2", json={"propagationPolicy": "Foreground"}) as resp:
        body = await resp.json()
    assert body["metadata"]["finalizers"] == ["foregroundDeletion"]
    await settle()
    for stop in unsubscribe:
        stop()
    assert seen == [("MODIFIED", "n2", True), ("DELETED", "fg", False),
                    ("DELETED", "n2", True)]


async def test_gc_foreground_waits_for_blocking_dependents(server: ApiServer) -> None:
    """A foreground-deleted owner stays (deletionTimestamp, foregroundDeletion finalizer) until
    its blockOwnerDeletion dependents are really gone."""
    node = server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    dep = owned("held", node)
    dep["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = True
    dep["metadata"]["finalizers"] = ["example.com/hold"]
    server.create(dep)
    server.delete("nodes", "n1", propagation_policy="Foreground")
    await settle()
    assert server.get("nodes", "n1")["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert server.get(CNS, "held")["metadata"]["deletionTimestamp"]
    server.patch(CNS, "held", {"metadata": {"finalizers": None}})
    await settle()
    assert server.list("nodes") == []
    assert server.list(CNS) == []


async def test_namespace_deletion_removes_contents(server: ApiServer,
                                                   core: client.CoreV1Api) -> None:
    """Deleting a namespace marks it Terminating, refuses new content, then removes its objects
    and itself."""
    server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}})
    server.create(pod("p", "gone"))
    terminating = server.delete("namespaces", "gone")
    assert terminating is not None
    assert terminating["status"]["phase"] == "Terminating"
    with pytest.raises(ApiError) as exc:
        server.create(pod("q", "gone"))
    assert exc.value.status == 403
    server.patch("namespaces", "gone", {"metadata": {"labels": {"touched": "yes"}}})
    assert server.get("namespaces", "gone")["status"]["phase"] == "Terminating"
    await settle()
    assert server.list("pods", "gone") == []
    with pytest.raises(ApiException) as api_exc:
        await core.read_namespace("gone")
    assert api_exc.value.status == 404


# ---------------------------------------------------------------- selectors


async def test_label_selector_operators(server: ApiServer, co: client.CustomObjectsApi) -> None:
    """=, ==, !=, in, notin, exists, !exists and commas (AND) select like Kubernetes; bad
    syntax is 400."""
    for name, labels in (("a", {"env": "prod", "tier": "web"}), ("b", {"env": "dev"}),
                         ("c", {})):
        body = cns(name)
        body["metadata"]["labels"] = labels
        server.create(body)
    cases = {
        "env=prod": ["a"], "env==dev": ["b"], "env!=prod": ["b", "c"],
        "env in (prod,dev)": ["a", "b"], "env notin (prod)": ["b", "c"], "tier": ["a"],
        "!tier": ["b", "c"], "env,!tier": ["b"], "env=prod,tier=web": ["a"], "": ["a", "b", "c"],
    }
    for selector, want in cases.items():
        got = await co.list_cluster_custom_object(G, V, CNS, label_selector=selector)
        assert [i["metadata"]["name"] for i in got["items"]] == want, selector
    for bad in ("env in prod", "env=(", "a b", "=x", "env in ()"):
        with pytest.raises(ApiException) as exc:
            await co.list_cluster_custom_object(G, V, CNS, label_selector=bad)
        assert exc.value.status == 400, bad
        assert orjson.loads(exc.value.body)["reason"] == "BadRequest"


async def test_field_selectors(server: ApiServer, co: client.CustomObjectsApi,
                               core: client.CoreV1Api) -> None:
    """CRs support metadata.name/namespace with =, ==, !=; other fields are 400; pods also
    support spec.nodeName and status.phase."""
    for name in ("a", "b"):
        server.create(cns(name))
    got = await co.list_cluster_custom_object(G, V, CNS, field_selector="metadata.name=b")
    assert [i["metadata"]["name"] for i in got["items"]] == ["b"]
    got = await co.list_cluster_custom_object(G, V, CNS, field_selector="metadata.name!=b")
    assert [i["metadata"]["name"] for i in got["items"]] == ["a"]
    with pytest.raises(ApiException) as exc:
        await co.list_cluster_custom_object(G, V, CNS, field_selector="spec.node=a")
    assert exc.value.status == 400
    assert orjson.loads(exc.value.body)["message"] == "field label not supported: spec.node"
    server.create(pod("p1", node="n1", phase="Running"))
    server.create(pod("p2", node="n2", phase="Running"))
    server.create(pod("p3", node="n1", phase="Failed"))
    pods = await core.list_pod_for_all_namespaces(
        field_selector="spec.nodeName=n1,status.phase!=Failed")
    assert [p.metadata.name for p in pods.items] == ["p1"]
    pods = await core.list_namespaced_pod("default", field_selector="metadata.namespace==default")
    assert len(pods.items) == 3


async def test_selectors_on_watch_track_matching(server: ApiServer,
                                                 co: client.CustomObjectsApi) -> None:
    """A watch with a selector sees ADDED when an object starts matching and DELETED when it
    stops, and nothing for objects that never match."""
    server.create(cns("a"))
    rv = str(server.resource_version)
    server.create(cns("never"))
    server.patch(CNS, "a", {"metadata": {"labels": {"watched": "yes"}}})
    server.patch(CNS, "a", {"spec": {"node": "x"}})
    server.patch(CNS, "a", {"metadata": {"labels": {"watched": "no"}}})
    async with watch.Watch() as w:
        stream = w.stream(co.list_cluster_custom_object, G, V, CNS, resource_version=rv,
                          label_selector="watched=yes", timeout_seconds=2)
        got = []
        async for ev in stream:
            got.append((ev["type"], ev["raw_object"]["metadata"]["labels"]["watched"]))
            if len(got) == 3:
                break
    assert got == [("ADDED", "yes"), ("MODIFIED", "yes"), ("DELETED", "yes")]


# ---------------------------------------------------------------- watch


async def test_watch_headers_flushed_before_any_event(http: aiohttp.ClientSession) -> None:
    """A watch answers 200 chunked application/json at once, even with nothing to send."""
    async with http.get(f"/apis/{G}/{V}/{CNS}", params={"watch": "true"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["Transfer-Encoding"] == "chunked"


async def test_watch_without_rv_replays_current_objects(server: ApiServer,
                                                        co: client.CustomObjectsApi) -> None:
    """RV unset or "0" delivers a synthetic ADDED for every current object, then changes."""
    for rv, new in ((None, "x"), ("0", "y")):
        server.create(cns("a" + new))
        existing = [("ADDED", o["metadata"]["name"]) for o in server.list(CNS)]
        async with watch.Watch() as w:
            stream = w.stream(co.list_cluster_custom_object, G, V, CNS, resource_version=rv,
                              timeout_seconds=2)
            assert await events(stream, len(existing)) == existing
            server.create(cns(new))
            assert await events(stream, 1) == [("ADDED", new)]


async def test_watch_too_old_rv_gets_error_410_event(server: ApiServer,
                                                     http: aiohttp.ClientSession) -> None:
    """Watching from an RV below the compaction point yields one ERROR event (410 Expired)
    and the stream ends."""
    server.create(cns("a"))
    old = server.resource_version
    server.create(cns("b"))
    server.compact()
    async with http.get(f"/apis/{G}/{V}/{CNS}",
                        params={"watch": "1", "resourceVersion": str(old)}) as resp:
        assert resp.status == 200
        lines = [orjson.loads(line) async for line in resp.content]
    assert len(lines) == 1
    assert lines[0]["type"] == "ERROR"
    assert lines[0]["object"]["code"] == 410
    assert lines[0]["object"]["reason"] == "Expired"
    assert lines[0]["object"]["message"].startswith(f"too old resource version: {old} (")


async def test_compaction_keeps_open_watches(server: ApiServer,
                                             co: client.CustomObjectsApi) -> None:
    """compact() affects new requests only: an open watch still gets every event, even those
    committed just before the compaction."""
    async with watch.Watch() as w:
        stream = w.stream(co.list_cluster_custom_object, G, V, CNS, timeout_seconds=3)
        server.create(cns("a"))
        assert await events(stream, 1) == [("ADDED", "a")]
        server.create(cns("b"))
        server.compact()
        server.create(cns("c"))
        assert await events(stream, 2) == [("ADDED", "b"), ("ADDED", "c")]


async def test_watch_too_old_rv_http_410_mode(tmp_path: Path) -> None:
    """With watch_expired_as_http=True an expired watch is an HTTP 410 Status (kubernetes-asyncio
    raises ApiException 410)."""
    srv = ApiServer(watch_expired_as_http=True)
    await srv.start()
    try:
        srv.create(cns("a"))
        old = srv.resource_version
        srv.create(cns("b"))
        srv.compact()
        async with await make_client(srv, tmp_path) as api:
            co = client.CustomObjectsApi(api)
            with pytest.raises(ApiException) as exc:
                await watch_all(co.list_cluster_custom_object, G, V, CNS,
                                resource_version=str(old), timeout_seconds=2)
            assert exc.value.status == 410
        assert srv.requests[-1].status == 410
    finally:
        await srv.stop()


async def test_bookmarks_only_when_allowed(server: ApiServer, http: aiohttp.ClientSession) -> None:
    """BOOKMARKs (kind, apiVersion, metadata.resourceVersion only) come every interval and
    right before a timeout close, and never without allowWatchBookmarks."""
    server.create(cns("a"))
    rv = str(server.resource_version)
    async with http.get(f"/apis/{G}/{V}/{CNS}", params={
            "watch": "1", "resourceVersion": rv, "timeoutSeconds": "1",
            "allowWatchBookmarks": "true"}) as resp:
        lines = [orjson.loads(line) async for line in resp.content]
    assert len(lines) >= 2
    assert {ev["type"] for ev in lines} == {"BOOKMARK"}
    assert lines[-1]["object"] == {"kind": "CalicoNodeStatus", "apiVersion": f"{G}/{V}",
                                   "metadata": {"resourceVersion": rv}}
    async with http.get(f"/apis/{G}/{V}/{CNS}", params={
            "watch": "1", "resourceVersion": rv, "timeoutSeconds": "1"}) as resp:
        assert [line async for line in resp.content] == []


async def test_watch_timeout_and_max_duration(server: ApiServer,
                                              co: client.CustomObjectsApi) -> None:
    """timeoutSeconds ends the stream cleanly (the client's iteration just stops); the
    max_watch_seconds cap ends watches that asked for longer."""
    async with watch.Watch() as w:
        got = [ev async for ev in w.stream(co.list_cluster_custom_object, G, V, CNS,
                                           timeout_seconds=1)]
    assert got == []
    server.max_watch_seconds = 0.3
    async with watch.Watch() as w:
        got = [ev async for ev in w.stream(co.list_cluster_custom_object, G, V, CNS,
                                           timeout_seconds=300)]
    assert got == []
    assert [r.query.get("timeoutSeconds") for r in server.requests[-2:]] == ["1", "300"]


async def test_list_then_watch_with_bookmarks_advances_rv(server: ApiServer,
                                                          co: client.CustomObjectsApi) -> None:
    """Changes to other resources advance the bookmark RV, so a quiet watch can resume later."""
    lst = await co.list_cluster_custom_object(G, V, CNS)
    server.create(ippool("p"))
    async with watch.Watch() as w:
        async for ev in w.stream(co.list_cluster_custom_object, G, V, CNS,
                                 resource_version=lst["metadata"]["resourceVersion"],
                                 allow_watch_bookmarks=True, timeout_seconds=5):
            assert ev["type"] == "BOOKMARK"
            assert int(ev["raw_object"]["metadata"]["resourceVersion"]) == server.resource_version
            break


# ---------------------------------------------------------------- faults and request log


async def test_fault_status_codes(server: ApiServer, co: client.CustomObjectsApi) -> None:
    """Injected 429 (with Retry-After), 500 and 503 replace the next matching requests only."""
    server.inject("status", path=f"/apis/{G}/*", code=429, retry_after=3)
    server.inject("status", path=f"/apis/{G}/*", code=500)
    server.inject("status", path=f"/apis/{G}/*", code=503, method="GET")
    with pytest.raises(ApiException) as exc:
        await co.list_cluster_custom_object(G, V, CNS)
    assert exc.value.status == 429
    assert exc.value.headers["Retry-After"] == "3"
    assert orjson.loads(exc.value.body)["reason"] == "TooManyRequests"
    for code in (500, 503):
        with pytest.raises(ApiException) as exc:
            await co.list_cluster_custom_object(G, V, CNS)
        assert exc.value.status == code
    assert (await co.list_cluster_custom_object(G, V, CNS))["items"] == []


async def test_fault_drop_resets_connection(server: ApiServer, co: client.CustomObjectsApi,
                                            http: aiohttp.ClientSession) -> None:
    """A dropped response or watch stream fails in the client with a payload error."""
    server.create(cns("a"))
    server.inject("drop", path=f"/apis/{G}/{V}/{CNS}")
    with pytest.raises(aiohttp.ClientPayloadError):
        await co.list_cluster_custom_object(G, V, CNS)
    server.inject("drop", path=f"/apis/{G}/{V}/{CNS}", after_events=1)
    lines: list[bytes] = []

    async def read_watch() -> None:
        async with http.get(f"/apis/{G}/{V}/{CNS}", params={"watch": "1"}) as resp:
            async for line in resp.content:
                lines.append(line)

    with pytest.raises(aiohttp.ClientPayloadError):
        await read_watch()
    assert [orjson.loads(line)["type"] for line in lines] == ["ADDED"]


async def test_fault_watch_error_410(server: ApiServer, co: client.CustomObjectsApi) -> None:
    """watch_error_410 sends an ERROR 410 event mid-stream; kubernetes-asyncio raises 410."""
    server.create(cns("a"))
    server.inject("watch_error_410", path=f"/apis/{G}/{V}/{CNS}", after_events=1)
    seen: list[str] = []

    async def consume() -> None:
        async with watch.Watch() as w:
            async for ev in w.stream(co.list_cluster_custom_object, G, V, CNS,
                                     timeout_seconds=5):
                seen.append(ev["type"])

    with pytest.raises(ApiException) as exc:
        await consume()
    assert exc.value.status == 410
    assert seen == ["ADDED"]


async def test_fault_stall_sends_nothing(server: ApiServer, http: aiohttp.ClientSession) -> None:
    """A stalled watch sends nothing, not even bookmarks, until the stall ends; then events
    flow again."""
    server.inject("stall", path=f"/apis/{G}/{V}/{CNS}", seconds=0.6)
    async with http.get(f"/apis/{G}/{V}/{CNS}", params={
            "watch": "1", "allowWatchBookmarks": "1"}) as resp:
        server.create(cns("a"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(resp.content.readline(), 0.3)
        first = orjson.loads(await asyncio.wait_for(resp.content.readline(), 5))
    assert first["type"] == "ADDED"


async def test_fault_delay_and_path_glob(server: ApiServer, core: client.CoreV1Api,
                                         co: client.CustomObjectsApi) -> None:
    """A delay fault holds only the requests whose path matches its glob."""
    server.inject("delay", path="/api/v1/nodes", seconds=0.2, count=0)
    slow = asyncio.create_task(core.list_node())
    fast = await co.list_cluster_custom_object(G, V, CNS)
    assert not slow.done()
    assert fast["items"] == []
    assert (await slow).items == []
    server.clear_faults()


async def test_request_log(server: ApiServer, co: client.CustomObjectsApi) -> None:
    """Every request is recorded with method, path, query, content type, status and agent."""
    server.clear_requests()
    await co.create_cluster_custom_object(G, V, CNS, cns("a"))
    await co.patch_cluster_custom_object(G, V, CNS, "a", {"spec": {"node": "b"}},
                                         _content_type=MERGE)
    with pytest.raises(ApiException):
        await co.get_cluster_custom_object(G, V, CNS, "zz")
    got = [(r.method, r.path, r.status, r.content_type.split(";")[0]) for r in server.requests]
    assert got == [
        ("POST", f"/apis/{G}/{V}/{CNS}", 201, "application/json"),
        ("PATCH", f"/apis/{G}/{V}/{CNS}/a", 200, MERGE),
        ("GET", f"/apis/{G}/{V}/{CNS}/zz", 404, "application/json"),
    ]
    assert server.requests[0].user_agent.startswith("OpenAPI-Generator")
    assert orjson.loads(server.requests[0].body)["metadata"]["name"] == "a"


async def test_stop_closes_open_watches_promptly(tmp_path: Path) -> None:
    """stop() ends open watch streams at once (the client sees the stream end)."""
    srv = ApiServer()
    await srv.start()
    async with await make_client(srv, tmp_path) as api:
        co = client.CustomObjectsApi(api)

        async def consume() -> list[str]:
            async with watch.Watch() as w:
                return [ev["type"] async for ev in w.stream(
                    co.list_cluster_custom_object, G, V, CNS, timeout_seconds=60)]

        task = asyncio.create_task(consume())
        while srv.open_watches == 0:  # noqa: ASYNC110 - waiting on the server's own state
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await srv.stop()
        assert await asyncio.wait_for(task, 2) == []
        assert loop.time() - started < 1.0


# ---------------------------------------------------------------- RBAC


RULES = [
    {"apiGroups": [G], "resources": [CNS], "verbs": ["get", "list", "watch", "create"]},
    {"apiGroups": [G], "resources": [CNS], "verbs": ["patch", "delete"],
     "resourceNames": ["mine"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
]


async def test_rbac_forbidden_and_rule_hits(tmp_path: Path) -> None:
    """Requests no rule allows are 403 Forbidden with a real message; rbac_hits shows which
    rule allowed each request, so every rule can be shown to be needed."""
    srv = ApiServer(rbac_rules=RULES)
    await srv.start()
    try:
        async with await make_client(srv, tmp_path) as api:
            co, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
            await co.create_cluster_custom_object(G, V, CNS, cns("mine"))
            await co.create_cluster_custom_object(G, V, CNS, cns("other"))
            await co.list_cluster_custom_object(G, V, CNS)
            await co.patch_cluster_custom_object(G, V, CNS, "mine", {"spec": {"node": "x"}},
                                                 _content_type=MERGE)
            with pytest.raises(ApiException) as exc:
                await co.patch_cluster_custom_object(G, V, CNS, "other", {"spec": {}},
                                                     _content_type=MERGE)
            status = orjson.loads(exc.value.body)
            assert exc.value.status == 403
            assert status["reason"] == "Forbidden"
            assert status["message"] == (
                f'{CNS}.{G} "other" is forbidden: User "{srv.user}" cannot patch resource '
                f'"{CNS}" in API group "{G}" at the cluster scope')
            await core.list_node()
            with pytest.raises(ApiException) as exc:
                await core.list_namespaced_pod("default")
            assert exc.value.status == 403
            assert 'in the namespace "default"' in orjson.loads(exc.value.body)["message"]
            with pytest.raises(ApiException) as exc:
                await co.patch_cluster_custom_object_status(G, V, CNS, "mine", {},
                                                            _content_type=MERGE)
            assert exc.value.status == 404  # routing (no status subresource) comes first
            assert await client.VersionApi(api).get_code()
        assert srv.rbac_hits == {0: 3, 1: 1, 2: 1}
    finally:
        await srv.stop()


async def test_rbac_rules_from_clusterrole_yaml(tmp_path: Path) -> None:
    """Rules can be loaded from a (multi-document) ClusterRole YAML file; subresources and
    resourceNames with a metadata.name field selector are honoured."""
    role = tmp_path / "role.yaml"
    role.write_text(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n"
        "rules:\n- apiGroups: ['']\n  resources: [pods/status]\n  verbs: [patch]\n"
        "- apiGroups: ['']\n  resources: [pods]\n  verbs: [create, watch]\n"
        "  resourceNames: [web]\n- apiGroups: ['']\n  resources: [pods]\n  verbs: [create]\n")
    srv = ApiServer(rbac_rules=role)
    await srv.start()
    try:
        async with await make_client(srv, tmp_path) as api:
            core = client.CoreV1Api(api)
            await core.create_namespaced_pod("default", pod("web"))
            await core.patch_namespaced_pod_status("web", "default", {"status": {}})
            with pytest.raises(ApiException) as exc:
                await core.patch_namespaced_pod("web", "default", {"metadata": {}})
            assert exc.value.status == 403
            async with watch.Watch() as w:
                async for _ in w.stream(core.list_namespaced_pod, "default",
                                        field_selector="metadata.name=web", timeout_seconds=1):
                    break
            with pytest.raises(ApiException) as exc:
                await watch_all(core.list_namespaced_pod, "default", timeout_seconds=1)
            assert exc.value.status == 403
        assert srv.rbac_hits == {0: 1, 1: 1, 2: 1}
    finally:
        await srv.stop()


# ---------------------------------------------------------------- TLS and the in-process API


async def test_tls_with_kubeconfig_ca(tmp_path: Path) -> None:
    """With tls=True the server speaks HTTPS with its own CA, carried in the kubeconfig."""
    srv = ApiServer(tls=True)
    await srv.start()
    try:
        assert srv.url.startswith("https://127.0.0.1:")
        async with await make_client(srv, tmp_path) as api:
            assert (await client.CoreV1Api(api).list_namespace()).items
    finally:
        await srv.stop()


async def test_in_process_api(server: ApiServer) -> None:
    """The control API resolves names (ambiguous ones raise), seeds in any order, notifies
    subscribers after each committed change, and compacts."""
    assert server.resolve("ippools").plural == "ippools"
    with pytest.raises(ValueError, match="ambiguous"):
        server.list("networkpolicies")
    assert server.list("networkpolicies.crd.projectcalico.org") == []
    seen: list[tuple[str, str]] = []
    stop = server.subscribe("pods", lambda t, o: seen.append((t, o["metadata"]["name"])))
    server.seed([pod("p", "late"), {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": "late"}}])
    server.update(dict(server.get("pods", "p", "late"), status={"phase": "Succeeded"}))
    assert server.get("pods", "p", "late")["status"]["phase"] == "Succeeded"
    server.delete("pods", "p", "late")
    stop()
    server.create(pod("q"))
    assert seen == [("ADDED", "p"), ("MODIFIED", "p"), ("DELETED", "p")]
    with pytest.raises(ApiError) as exc:
        server.get("pods", "p", "late")
    assert exc.value.status == 404
    assert exc.value.reason == "NotFound"


async def test_list_rv_zero_ignores_limit_and_too_large_rv_times_out(
        server: ApiServer, co: client.CustomObjectsApi) -> None:
    """resourceVersion=0 is served from the cache and ignores limit; an RV from the future
    waits for it, then fails with 504 ResourceVersionTooLarge."""
    for name in ("a", "b", "c"):
        server.create(cns(name))
    got = await co.list_cluster_custom_object(G, V, CNS, resource_version="0", limit=1)
    assert len(got["items"]) == 3
    assert "continue" not in got["metadata"]
    future = str(server.resource_version + 1)
    waiting = asyncio.create_task(co.list_cluster_custom_object(G, V, CNS,
                                                                resource_version=future))
    await asyncio.sleep(0.1)
    server.create(cns("d"))
    assert len((await waiting)["items"]) == 4
    with pytest.raises(ApiException) as exc:
        await co.list_cluster_custom_object(G, V, CNS,
                                            resource_version=str(server.resource_version + 5))
    assert exc.value.status == 504
