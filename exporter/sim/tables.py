"""Server-side printing: ``meta.k8s.io/v1`` Table responses, which kubectl asks for with
``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``.

Columns follow the real server's printers for pods, nodes, namespaces, service accounts, network
policies and leases (``-o wide`` shows the priority-1 columns); custom resources get Name and
their CRD's ``additionalPrinterColumns`` (the native v3 Calico CRDs declare some, and so does
ClusterNetworkPolicy: Tier, Priority, Age), or Name and Age when it declares none, as
apiextensions-apiserver's table convertor does: a ``date`` cell is the age of the timestamp, a
``string`` cell prints a list or map as compact JSON, and a path matching nothing is an empty
cell. Column paths are the simple JSONPath CRDs use: ``.a.b`` and filters
``[?(@.key=='value')]``. Rows carry the object as
PartialObjectMetadata (``includeObject=Metadata``, the default), the full object with
``includeObject=Object``, or nothing with ``includeObject=None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from exporter.sim.resources import ResourceType

Column = tuple[str, str, int, Callable[[dict[str, Any]], Any]]  # name, type, priority, getter


def wants_table(accept: str) -> bool:
    """True when the Accept header asks for a meta.k8s.io Table first."""
    first = accept.split(",")[0]
    return "as=Table" in first and "g=meta.k8s.io" in first


def _age(obj: dict[str, Any]) -> str:
    return _since(obj["metadata"].get("creationTimestamp"))


def _since(stamp: object) -> str:
    if not stamp:
        return "<unknown>"
    try:
        then = datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<invalid>"
    secs = max(int((datetime.now(UTC) - then).total_seconds()), 0)
    return human_duration(secs)


_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[\?\(@\.([A-Za-z0-9_-]+)=='([^']*)'\)\]")


def _find(obj: Any, path: str) -> list[Any]:
    """The values a CRD column's JSONPath selects (``.a.b``, ``[?(@.k=='v')]`` filters)."""
    values = [obj]
    pos = 0
    while pos < len(path):
        step = _STEP.match(path, pos)
        if step is None:
            return []
        pos = step.end()
        key, field, want = step.groups()
        out: list[Any] = []
        for value in values:
            if key is not None and isinstance(value, dict) and key in value:
                out.append(value[key])
            elif key is None and isinstance(value, list):
                out.extend(v for v in value if isinstance(v, dict) and v.get(field) == want)
        values = out
    return values


def _printer_cell(column: dict[str, Any]) -> Callable[[dict[str, Any]], Any]:
    path, kind = str(column["jsonPath"]), str(column.get("type") or "string")

    def cell(obj: dict[str, Any]) -> Any:
        found = _find(obj, path)
        if not found or found[0] is None:
            return None
        value = found[0]
        if kind == "string":
            if isinstance(value, dict | list):
                return orjson.dumps(value).decode()
            if isinstance(value, bool):
                return "true" if value else "false"
            return str(value)
        if kind == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if kind == "boolean" and isinstance(value, bool):
            return value
        if kind == "date" and isinstance(value, str):
            return _since(value)
        return None

    return cell


def human_duration(secs: int) -> str:
    """``duration.HumanDuration`` of apimachinery for whole seconds."""
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rest = secs % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def _get(obj: dict[str, Any], *keys: str) -> Any:
    cur: Any = obj
    for key in keys:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _pod_ready(obj: dict[str, Any]) -> str:
    containers = _get(obj, "spec", "containers") or []
    statuses = _get(obj, "status", "containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{len(containers)}"


def _pod_status(obj: dict[str, Any]) -> str:
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    return str(_get(obj, "status", "reason") or _get(obj, "status", "phase") or "Unknown")


def _pod_restarts(obj: dict[str, Any]) -> int:
    return sum(int(s.get("restartCount") or 0)
               for s in _get(obj, "status", "containerStatuses") or [])


def _node_status(obj: dict[str, Any]) -> str:
    conds = {c.get("type"): c.get("status") for c in _get(obj, "status", "conditions") or []}
    status = {"True": "Ready", "False": "NotReady"}.get(str(conds.get("Ready")), "Unknown")
    if _get(obj, "spec", "unschedulable"):
        status += ",SchedulingDisabled"
    return status


def _node_roles(obj: dict[str, Any]) -> str:
    labels = obj["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    return ",".join(roles) or "<none>"


def _node_address(kind: str) -> Callable[[dict[str, Any]], str]:
    def get(obj: dict[str, Any]) -> str:
        for addr in _get(obj, "status", "addresses") or []:
            if addr.get("type") == kind:
                return str(addr.get("address"))
        return "<none>"
    return get


def _info(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda o: str(_get(o, "status", "nodeInfo", key) or "<unknown>")


def _selector(obj: dict[str, Any]) -> str:
    sel = _get(obj, "spec", "podSelector") or {}
    labels = sel.get("matchLabels") or {}
    parts = [f"{k}={v}" for k, v in sorted(labels.items())]
    return ",".join(parts) or "<none>"


def _name(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


_COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "pods"): [
        ("Name", "string", 0, _name),
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        ("Restarts", "string", 0, _pod_restarts),
        ("Age", "string", 0, _age),
        ("IP", "string", 1, lambda o: _get(o, "status", "podIP") or "<none>"),
        ("Node", "string", 1, lambda o: _get(o, "spec", "nodeName") or "<none>"),
        ("Nominated Node", "string", 1,
         lambda o: _get(o, "status", "nominatedNodeName") or "<none>"),
        ("Readiness Gates", "string", 1, lambda o: "<none>"),
    ],
    ("", "nodes"): [
        ("Name", "string", 0, _name),
        ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, _node_roles),
        ("Age", "string", 0, _age),
        ("Version", "string", 0, _info("kubeletVersion")),
        ("Internal-IP", "string", 1, _node_address("InternalIP")),
        ("External-IP", "string", 1, _node_address("ExternalIP")),
        ("OS-Image", "string", 1, _info("osImage")),
        ("Kernel-Version", "string", 1, _info("kernelVersion")),
        ("Container-Runtime", "string", 1, _info("containerRuntimeVersion")),
    ],
    ("", "namespaces"): [
        ("Name", "string", 0, _name),
        ("Status", "string", 0, lambda o: _get(o, "status", "phase") or "Active"),
        ("Age", "string", 0, _age),
    ],
    ("", "serviceaccounts"): [
        ("Name", "string", 0, _name),
        ("Secrets", "string", 0, lambda o: len(_get(o, "secrets") or [])),
        ("Age", "string", 0, _age),
    ],
    ("networking.k8s.io", "networkpolicies"): [
        ("Name", "string", 0, _name),
        ("Pod-Selector", "string", 0, _selector),
        ("Age", "string", 0, _age),
    ],
    ("coordination.k8s.io", "leases"): [
        ("Name", "string", 0, _name),
        ("Holder", "string", 0, lambda o: _get(o, "spec", "holderIdentity") or ""),
        ("Age", "string", 0, _age),
    ],
}
_DEFAULT: list[Column] = [("Name", "string", 0, _name), ("Age", "date", 0, _age)]


def columns(rt: ResourceType) -> list[Column]:
    if rt.printer_columns:
        return [("Name", "string", 0, _name)] + [
            (str(c["name"]), str(c.get("type") or "string"), int(c.get("priority") or 0),
             _printer_cell(c)) for c in rt.printer_columns]
    return _COLUMNS.get((rt.group, rt.plural), _DEFAULT)


def column_definitions(rt: ResourceType) -> list[dict[str, Any]]:
    described = {str(c["name"]): str(c.get("description") or "Custom resource definition "
                                      f"column (in JSONPath format): {c['jsonPath']}")
                 for c in rt.printer_columns}
    formats = {str(c["name"]): str(c.get("format") or "") for c in rt.printer_columns}
    return [{"name": name, "type": "integer" if name in ("Restarts", "Secrets") else typ,
             "format": "name" if name == "Name" else formats.get(name, ""),
             "description": described.get(name, name) if name != "Name" else name,
             "priority": prio}
            for name, typ, prio, _ in columns(rt)]


def row(rt: ResourceType, obj: dict[str, Any], include: str) -> dict[str, Any]:
    out: dict[str, Any] = {"cells": [get(obj) for _, _, _, get in columns(rt)]}
    if include == "Object":
        out["object"] = obj
    elif include != "None":
        out["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": obj["metadata"]}
    return out


def table(rt: ResourceType, objs: list[dict[str, Any]], meta: dict[str, Any], include: str, *,
          with_columns: bool = True) -> dict[str, Any]:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(rt) if with_columns else None,
        "rows": [row(rt, o, include) for o in objs],
    }
