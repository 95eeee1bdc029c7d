"""Core Kubernetes objects (nodes, namespaces, service accounts, pods), kept lean.

A cluster of 30,000 pods is held in memory, so :class:`Pod` keeps only what some feature needs:
identity, node, phase, hostNetwork, IPs, labels and service account (policy selection), and
whether it is being deleted.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from exporter.model import ParseError, RawObject

_EMPTY: Mapping[str, str] = {}
_intern = sys.intern


_LABEL_MAPS: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}
"""Label maps seen recently, by their items: pods of one workload share one map."""
_LABEL_MAPS_MAX = 20_000


def parse_labels(meta: Mapping[str, Any]) -> Mapping[str, str]:
    """``metadata.labels`` as a map of interned strings; ParseError when not strings.

    Equal label maps are shared (a bounded cache keyed by the items): thousands of pods carry the
    same few label sets, so this saves memory and makes comparing two versions of a pod cheap.
    Callers never mutate the returned map.
    """
    labels = meta.get("labels")
    if labels is None:
        return _EMPTY
    if not isinstance(labels, dict):
        raise ParseError("metadata.labels is not a map of strings")
    items = tuple(labels.items())
    try:
        cached = _LABEL_MAPS.get(items)
    except TypeError:  # an unhashable value (a list or map): not a string either
        raise ParseError("metadata.labels is not a map of strings") from None
    if cached is not None:  # equal to a map of strings, so all strings
        return cached
    # Intern keys and values: thousands of pods share the same few labels.
    try:
        parsed = {_intern(k): _intern(v) for k, v in items}
    except TypeError:  # intern() takes only strings
        raise ParseError("metadata.labels is not a map of strings") from None
    if len(_LABEL_MAPS) >= _LABEL_MAPS_MAX:
        _LABEL_MAPS.clear()
    _LABEL_MAPS[tuple(parsed.items())] = parsed
    return parsed


CALICO_METADATA = "projectcalico.org/metadata"
"""Annotation in which Calico stores the v3 metadata of a ``crd.projectcalico.org/v1`` object
written through its API (calicoctl, the Calico API server)."""
CALICO_V3_API = "projectcalico.org/v3"


def calico_stored_meta(raw: RawObject) -> Mapping[str, Any] | None:
    """The v3 metadata Calico keeps in a stored object's ``projectcalico.org/metadata``
    annotation, as Calico reads it; None when there is none to read.

    libcalico-go converts only what it reads from ``crd.projectcalico.org/v1``
    (``customResourceClient.convertResourceToKVPair`` calls ``ConvertK8sResourceToCalicoResource``
    only for ``BackingAPIGroupV1``: ``libcalico-go/lib/backend/k8s/resources/customresource.go``
    on master 87c1590; v3.32.1 has only that group). A ``projectcalico.org/v3`` object, native or
    the Calico API server's view, which has already removed the annotation, is read as it is.
    ParseError when the annotation does not decode (libcalico-go fails that object).
    """
    meta = raw.get("metadata")
    if not isinstance(meta, dict) or raw.get("apiVersion") == CALICO_V3_API:
        return None
    annotations = meta.get("annotations")
    if annotations is None:
        return None
    if not isinstance(annotations, dict):
        raise ParseError("metadata.annotations is not a map of strings")
    text = annotations.get(CALICO_METADATA)
    if text is None:
        return None
    if not isinstance(text, str):
        raise ParseError(f"metadata.annotations[{CALICO_METADATA}] is not a string")
    try:
        stored = orjson.loads(text)
    except orjson.JSONDecodeError:
        stored = None
    if not isinstance(stored, dict):
        raise ParseError(f"metadata.annotations[{CALICO_METADATA}] is not JSON object metadata")
    return stored


def parse_calico_labels(raw: RawObject) -> Mapping[str, str]:
    """The labels of a Calico object as Calico reads them, in either API group.

    A ``crd.projectcalico.org/v1`` object written through Calico's API keeps its labels in the
    ``projectcalico.org/metadata`` annotation, and only Calico's own labels in
    ``metadata.labels``; Calico merges the two, the annotation's winning
    (``ConvertK8sResourceToCalicoResource``, ``libcalico-go/lib/backend/k8s/resources/
    resources.go`` at v3.32.1). ``projectcalico.org/v3`` objects have plain labels.
    """
    labels = parse_labels(raw.get("metadata") or {})
    stored = calico_stored_meta(raw)
    if stored is None:
        return labels
    extra = parse_labels(stored)
    if not extra:
        return labels
    return parse_labels({"labels": {**labels, **extra}})


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
class ServiceAccount:
    """A service account: its name and labels (``serviceAccountSelector`` matches these), nothing
    else (no secrets, no image pull secrets)."""

    namespace: str
    name: str
    labels: Mapping[str, str]


def parse_service_account(raw: RawObject) -> ServiceAccount:
    meta = _meta(raw)
    namespace = meta.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise ParseError("metadata.namespace missing")
    return ServiceAccount(namespace=_intern(namespace), name=_intern(meta["name"]),
                          labels=parse_labels(meta))


class Pod(NamedTuple):
    """The fields of a pod that IPAM and policy need, nothing more.

    An immutable named tuple rather than a frozen dataclass: the watch builds one per pod event
    (tens of thousands per second in a burst) and compares it with the stored one, and a tuple is
    built and compared in C (a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``).
    """

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
    # The hottest parser (every pod event): exact type checks first, isinstance only when they
    # fail, and one lookup per field.
    meta = raw.get("metadata")
    if type(meta) is not dict and not isinstance(meta, dict):
        raise ParseError("metadata.name missing")
    name = meta.get("name")
    if type(name) is not str and not isinstance(name, str):
        raise ParseError("metadata.name missing")
    spec = raw.get("spec") or {}
    status = raw.get("status") or {}
    if not isinstance(spec, dict) or not isinstance(status, dict):
        raise ParseError("spec or status is not an object")
    ips: tuple[str, ...]
    pod_ips = status.get("podIPs")
    if isinstance(pod_ips, list) and pod_ips:
        first = pod_ips[0]
        if (len(pod_ips) == 1 and type(first) is dict and type(ip := first.get("ip")) is str
                and ip):
            ips = (ip,)  # the common single-stack pod
        else:
            ips = tuple(str(p.get("ip", "")) for p in pod_ips
                        if isinstance(p, dict) and p.get("ip"))
    else:
        pod_ip = status.get("podIP")
        ips = (pod_ip,) if isinstance(pod_ip, str) and pod_ip else ()
    uid = meta.get("uid", "")
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    namespace = meta.get("namespace") or ""
    node = spec.get("nodeName") or ""
    phase = status.get("phase") or ""
    return Pod(
        _intern(namespace if type(namespace) is str else str(namespace)),
        name,
        uid if type(uid) is str else str(uid),
        _intern(node if type(node) is str else str(node)),
        _intern(phase if type(phase) is str else str(phase)),
        bool(spec.get("hostNetwork", False)),
        ips,
        parse_labels(meta),
        _intern(account if type(account) is str else str(account)),
        meta.get("deletionTimestamp") is not None,
    )
