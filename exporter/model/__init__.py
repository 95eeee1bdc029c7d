"""Typed, frozen views of the Kubernetes and Calico objects the exporter reads.

Raw JSON (``dict``) enters here through the ``parse_*`` functions of each submodule and leaves as
frozen, slotted dataclasses. Nothing above this layer indexes raw dicts. A ``parse_*`` function
raises :class:`ParseError` with a short reason when an object is malformed; the watch engine logs
that, counts it in ``calico_exporter_invalid_objects_total{resource}`` and skips the object.
"""

from __future__ import annotations

from typing import Any

RawObject = dict[str, Any]
"""A Kubernetes object exactly as decoded from the API's JSON."""

ObjectKey = tuple[str, str]
"""(namespace, name); the namespace is ``""`` for cluster-scoped objects."""


class ParseError(ValueError):
    """A Kubernetes object does not have the shape we need; the message says what is wrong."""


def object_key(raw: RawObject) -> ObjectKey:
    """The (namespace, name) key of a raw object; raises ParseError without a name."""
    meta = raw.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise ParseError("metadata.name missing")
    ns = meta.get("namespace") or ""
    if not isinstance(ns, str):
        raise ParseError("metadata.namespace is not a string")
    return (ns, meta["name"])
