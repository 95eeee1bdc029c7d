"""The OpenAPI v3 documents the emulator serves (``/openapi/v3`` and one per group-version).

kubectl needs them: ``kubectl apply``/``create`` look up whether the PATCH operation of a kind
accepts ``fieldValidation`` (then they let the server validate) and, for ``apply``, the schema
of custom kinds. Each group-version document has the collection, object and (where it exists)
status paths with their operations tagged ``x-kubernetes-group-version-kind``, and for custom
resources the CRD's ``openAPIV3Schema`` under ``components.schemas``. Built-in kinds get no
component schema, so kubectl falls back to its compiled-in types for strategic merge patches.
/openapi/v2 stays 404 (kubectl then uses v3).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from exporter.sim.resources import Registry, ResourceType

_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "pretty")


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(rt: ResourceType) -> str:
    prefix = ".".join(reversed(rt.group.split("."))) if rt.group else "io.k8s.api.core"
    return f"{prefix}.{rt.version}.{rt.kind}"


def _operation(rt: ResourceType, verb: str, action: str, *, body: bool) -> dict[str, Any]:
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    op: dict[str, Any] = {
        "operationId": f"{verb}{rt.kind}",
        "parameters": [{"name": p, "in": "query", "schema": {"type": "string"}}
                       for p in _QUERY_PARAMS],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if body:
        op["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}},
                             "required": True}
    return op


def group_version_doc(registry: Registry, group: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of one group-version."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in registry.in_group_version(group, version):
        base = f"/{_gv_path(group, version)}"
        scoped = f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else (
            f"{base}/{rt.plural}")
        paths[scoped] = {
            "get": _operation(rt, "list", "list", body=False),
            "post": _operation(rt, "create", "post", body=True),
            "delete": _operation(rt, "deletecollection", "deletecollection", body=False),
        }
        if rt.namespaced:
            paths[f"{base}/{rt.plural}"] = {"get": _operation(rt, "listForAllNamespaces",
                                                              "list", body=False)}
        item = {
            "get": _operation(rt, "read", "get", body=False),
            "put": _operation(rt, "replace", "put", body=True),
            "patch": _operation(rt, "patch", "patch", body=True),
            "delete": _operation(rt, "delete", "delete", body=False),
        }
        paths[f"{scoped}/{{name}}"] = item
        if rt.status_subresource:
            paths[f"{scoped}/{{name}}/status"] = {
                "get": _operation(rt, "readStatus", "get", body=False),
                "put": _operation(rt, "replaceStatus", "put", body=True),
                "patch": _operation(rt, "patchStatus", "patch", body=True),
            }
        if rt.schema is not None:
            schema = dict(rt.schema)
            schema["x-kubernetes-group-version-kind"] = [
                {"group": rt.group, "version": rt.version, "kind": rt.kind}]
            schemas[_schema_name(rt)] = schema
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.4"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


class OpenApiDocs:
    """The serialized documents and the discovery root that points at them by hash."""

    def __init__(self, registry: Registry) -> None:
        self.docs: dict[str, bytes] = {}
        root: dict[str, Any] = {}
        gvs = [("", "v1")] + [(g, v) for g, vs in registry.groups().items() for v in vs]
        for group, version in gvs:
            raw = orjson.dumps(group_version_doc(registry, group, version))
            key = _gv_path(group, version)
            digest = hashlib.sha512(raw).hexdigest()[:128].upper()
            self.docs[key] = raw
            root[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
        self.root = orjson.dumps({"paths": root})
