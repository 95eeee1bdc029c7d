"""Core Kubernetes objects (nodes, namespaces, pods), kept lean.

A cluster of 30,000 pods is held in memory, so :class:`Pod` keeps only what some feature needs:
identity, node, phase, hostNetwork, IPs, labels and service account (policy selection), and
whether it is being deleted.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exporter.model import ParseError, RawObject

_EMPTY: Mapping[str, str] = {}


def parse_labels(meta: Mapping[str, Any]) -> Mapping[str, str]:
    """``metadata.labels`` as a map of interned strings; ParseError when not strings."""
    labels = meta.get("labels")
    if labels is None:
        return _EMPTY
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ParseError("metadata.labels is not a map of strings")
    # Intern keys and values: thousands of pods share the same few labels.
    return {sys.intern(k): sys.intern(v) for k, v in labels.items()}


def _meta(raw: RawObject) -> Mapping[str, Any]:
    meta = raw.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise ParseError("metadata.name missing")
    return meta


def parse_time(value: object) -> float | None:
    """RFC 3339 time (``2021-10-18T13:22:03Z``) as Unix seconds; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseError(f"time {value!r} is not a string")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ParseError(f"time {value!r} is not RFC 3339") from None


@dataclass(frozen=True, slots=True)
class Node:
    """A Kubernetes node: name, uid (for ownerReferences) and labels."""

    name: str
    uid: str
    labels: Mapping[str, str]


def parse_node(raw: RawObject) -> Node:
    meta = _meta(raw)
    return Node(name=meta["name"], uid=str(meta.get("uid", "")), labels=parse_labels(meta))


@dataclass(frozen=True, slots=True)
class Namespace:
    """A namespace and its labels (namespaceSelector matches these)."""

    name: str
    labels: Mapping[str, str]


def parse_namespace(raw: RawObject) -> Namespace:
    meta = _meta(raw)
    return Namespace(name=meta["name"], labels=parse_labels(meta))


@dataclass(frozen=True, slots=True)
class Pod:
    """The fields of a pod that IPAM and policy need, nothing more."""

    namespace: str
    name: str
    uid: str
    node: str
    """spec.nodeName; "" while unscheduled."""
    phase: str
    host_network: bool
    ips: tuple[str, ...]
    """status.podIPs (or status.podIP), in order."""
    labels: Mapping[str, str]
    service_account: str
    deleting: bool
    """metadata.deletionTimestamp is set."""


def parse_pod(raw: RawObject) -> Pod:
    meta = _meta(raw)
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    if not isinstance(spec, dict) or not isinstance(status, dict):
        raise ParseError("spec or status is not an object")
    ips: tuple[str, ...]
    pod_ips = status.get("podIPs")
    if isinstance(pod_ips, list) and pod_ips:
        ips = tuple(str(p.get("ip", "")) for p in pod_ips if isinstance(p, dict) and p.get("ip"))
    elif isinstance(status.get("podIP"), str) and status["podIP"]:
        ips = (status["podIP"],)
    else:
        ips = ()
    return Pod(
        namespace=sys.intern(str(meta.get("namespace") or "")),
        name=meta["name"],
        uid=str(meta.get("uid", "")),
        node=sys.intern(str(spec.get("nodeName") or "")),
        phase=sys.intern(str(status.get("phase") or "")),
        host_network=bool(spec.get("hostNetwork", False)),
        ips=ips,
        labels=parse_labels(meta),
        service_account=sys.intern(
            str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
        ),
        deleting=meta.get("deletionTimestamp") is not None,
    )
