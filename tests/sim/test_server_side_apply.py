"""Server-side apply in the emulator (PATCH with application/apply-patch+yaml): creation, field
ownership recorded as managedFields, conflicts between managers, force, removal of fields a
manager stops applying, merging keyed lists, and the request checks. Cases follow the Kubernetes
documentation, kubernetes/website content/en/docs/reference/using-api/server-side-apply.md."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from exporter.sim.apiserver import ApiServer
from exporter.sim.resources import CRD_DIR

APPLY = "application/apply-patch+yaml"
MONITORING = Path(__file__).parents[1] / "data" / "crds"
CM_URL = "/api/v1/namespaces/default/configmaps/test-cm"
RULE_URL = "/apis/monitoring.coreos.com/v1/namespaces/default/prometheusrules/r"


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    """The emulator with Calico's and prometheus-operator's CRDs."""
    srv = ApiServer(crd_files=[*CRD_DIR.glob("*.yaml"), *MONITORING.glob("*.yaml")])
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def http(server: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}
    ) as session:
        yield session


async def apply(http: aiohttp.ClientSession, url: str, body: dict[str, Any], *,
                manager: str | None = "kubectl", force: bool | None = None,
                ) -> tuple[int, dict[str, Any]]:
    params = {}
    if manager is not None:
        params["fieldManager"] = manager
    if force is not None:
        params["force"] = "true" if force else "false"
    async with http.patch(url, data=orjson.dumps(body), params=params,
                          headers={"Content-Type": APPLY}) as resp:
        return resp.status, await resp.json()


def configmap(**data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "test-cm", "namespace": "default",
                         "labels": {"test-label": "test"}},
            "data": data}


async def test_apply_creates_with_the_documented_managed_fields(
        http: aiohttp.ClientSession) -> None:
    """Applying an object that does not exist creates it (201) and records exactly the
    managedFields entry of the documentation's ConfigMap example (manager, operation Apply,
    apiVersion, FieldsV1 with f:metadata.f:labels.f:test-label and f:data.f:key)."""
    status, obj = await apply(http, CM_URL, configmap(key="some value"))
    assert status == 201
    (entry,) = obj["metadata"]["managedFields"]
    assert {k: v for k, v in entry.items() if k != "time"} == {
        "manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:key": {}},
                     "f:metadata": {"f:labels": {"f:test-label": {}}}}}
    assert obj["data"] == {"key": "some value"}


async def test_reapplying_the_same_configuration_changes_nothing(
        http: aiohttp.ClientSession) -> None:
    """The same configuration applied again is a no-op: 200, same resourceVersion."""
    _, first = await apply(http, CM_URL, configmap(key="v"))
    status, second = await apply(http, CM_URL, configmap(key="v"))
    assert status == 200
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_conflict_and_force(http: aiohttp.ClientSession) -> None:
    """Another manager setting a field to another value conflicts (409, naming manager and
    field); with force=true it wins and the field moves to it; the same value is shared."""
    await apply(http, CM_URL, configmap(key="one", other="x"))
    status, body = await apply(http, CM_URL, configmap(key="two"), manager="ci")
    assert status == 409
    assert body["reason"] == "Conflict"
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "kubectl": .data.key'
    assert body["details"]["causes"] == [{"reason": "FieldManagerConflict",
                                          "message": 'conflict with "kubectl"',
                                          "field": ".data.key"}]
    status, body = await apply(http, CM_URL, configmap(key="two"), manager="ci", force=True)
    assert status == 200
    assert body["data"] == {"key": "two", "other": "x"}
    owners = {e["manager"]: e["fieldsV1"] for e in body["metadata"]["managedFields"]}
    assert "f:key" not in owners["kubectl"]["f:data"]
    assert owners["ci"]["f:data"] == {"f:key": {}}
    status, body = await apply(http, CM_URL, configmap(other="x"), manager="third")
    assert status == 200  # same value: shared ownership, no conflict


async def test_fields_no_longer_applied_are_removed(http: aiohttp.ClientSession) -> None:
    """A field the manager applied before and leaves out now is removed, unless another manager
    owns it as well."""
    await apply(http, CM_URL, configmap(a="1", b="2", c="3"))
    await apply(http, CM_URL, configmap(c="3"), manager="other")
    status, body = await apply(http, CM_URL, configmap(a="1"))
    assert status == 200
    assert body["data"] == {"a": "1", "c": "3"}


async def test_keyed_list_items_merge_between_managers(http: aiohttp.ClientSession) -> None:
    """PrometheusRule spec.groups is a list map keyed by name: two managers each apply their
    own group and both stay; one dropping its group removes only that one."""
    def rule(*groups: str) -> dict[str, Any]:
        return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                "metadata": {"name": "r", "namespace": "default"},
                "spec": {"groups": [{"name": g, "rules": [{"alert": g.upper(), "expr": "1"}]}
                                    for g in groups]}}
    assert (await apply(http, RULE_URL, rule("a")))[0] == 201
    status, body = await apply(http, RULE_URL, rule("b"), manager="team-b")
    assert status == 200
    assert [g["name"] for g in body["spec"]["groups"]] == ["a", "b"]
    owned = next(e for e in body["metadata"]["managedFields"] if e["manager"] == "team-b")
    assert list(owned["fieldsV1"]["f:spec"]["f:groups"]) == ['k:{"name":"b"}']
    status, body = await apply(http, RULE_URL, {**rule(), "spec": {"groups": []}})
    assert [g["name"] for g in body["spec"]["groups"]] == ["b"]


async def test_request_checks(http: aiohttp.ClientSession) -> None:
    """An apply without fieldManager is 422; force on a merge patch is 422; a name that is not
    the URL's is 400."""
    status, body = await apply(http, CM_URL, configmap(key="v"), manager=None)
    assert status == 422
    assert body["message"] == ('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required '
                               "value: is required for apply patch")
    await apply(http, CM_URL, configmap(key="v"))
    async with http.patch(CM_URL, data=b'{"data": {"key": "w"}}', params={"force": "true"},
                          headers={"Content-Type": "application/merge-patch+json"}) as resp:
        assert resp.status == 422
        assert "force: Forbidden: may not be specified for non-apply patch" in (
            await resp.json())["message"]
    other = configmap(key="v")
    other["metadata"]["name"] = "elsewhere"
    status, _ = await apply(http, CM_URL, other)
    assert status == 400


async def test_apply_validates_against_the_crd_schema(http: aiohttp.ClientSession) -> None:
    """An applied custom resource is validated like a create: a PrometheusRule group without its
    required name is 422."""
    body = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "r", "namespace": "default"},
            "spec": {"groups": [{"rules": [{"alert": "A", "expr": "1"}]}]}}
    status, out = await apply(http, RULE_URL, body)
    assert status == 422, out
