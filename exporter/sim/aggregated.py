"""Writes through the ``projectcalico.org/v3`` types that Calico's aggregated API server serves.

Those types (``ResourceType.backing`` set, ``both`` flavour) are mirrors of the
``crd.projectcalico.org/v1`` buckets (see :mod:`exporter.sim.store`). A write through one
(server-side apply included) is first worked out and checked as the v3 object it would become
(schema, preconditions, resourceVersion, field ownership: a dry run on the mirror, whose
resourceVersions are the storage's), then converted to the stored v1 object
(:func:`exporter.sim.calicoapi.to_v1`) and committed to the backing bucket, which updates the
mirror. What the client gets back is the mirror's object, as the aggregated server answers with
the converted stored object.
"""

from __future__ import annotations

from typing import Any

import orjson

from exporter.sim import calicoapi, errors
from exporter.sim.resources import ResourceType
from exporter.sim.store import Store

Result = tuple[dict[str, Any], list[str]]


def _backing(view: ResourceType) -> ResourceType:
    assert view.backing is not None
    return view.backing


def _stored_name(store: Store, view: ResourceType, ns: str, name: str) -> str:
    """The name of the v1 object behind a v3 one (a default-tier policy stored before v3.32
    is ``default.<name>``)."""
    key = (ns if view.namespaced else "", name)
    origin = store.bucket(view).origin.get(key)
    if origin is None:
        raise errors.not_found(view, name)
    return origin[1]


def _mirrored(store: Store, view: ResourceType, ns: str, name: str) -> dict[str, Any]:
    entry = store.bucket(view).objects.get((ns if view.namespaced else "", name))
    if entry is None:
        raise errors.not_found(view, name)
    return orjson.loads(entry.raw)  # type: ignore[no-any-return]


class Writer:
    """The write verbs of :class:`~exporter.sim.store.Store` (same signatures) for the Calico API
    server's types."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, view: ResourceType, ns: str, body: Any, *, dry_run: bool = False,
               field_validation: str = "Warn") -> Result:
        store = self.store
        obj, warnings = store.create(view, ns, body, dry_run=True,
                                     field_validation=field_validation)
        if dry_run:
            return obj, warnings
        stored = calicoapi.to_v1(obj)
        stored["metadata"].pop("uid", None)
        store.create(_backing(view), ns, stored)
        return _mirrored(store, view, str(obj["metadata"].get("namespace") or ""),
                         str(obj["metadata"]["name"])), warnings

    def update(self, view: ResourceType, ns: str, name: str | None, body: Any, *,
               subresource: str | None = None, dry_run: bool = False,
               field_validation: str = "Warn", require_rv: bool | None = None) -> Result:
        if subresource is not None:
            raise errors.no_route()  # the Calico API server has no status subresource here
        obj, warnings = self.store.update(view, ns, name, body, dry_run=True,
                                          field_validation=field_validation,
                                          require_rv=require_rv)
        return self._write(view, ns, str(obj["metadata"]["name"]), obj, warnings, dry_run)

    def patch(self, view: ResourceType, ns: str, name: str, content_type: str, patch: Any, *,
              subresource: str | None = None, dry_run: bool = False,
              field_validation: str = "Warn") -> Result:
        if subresource is not None:
            raise errors.no_route()
        obj, warnings = self.store.patch(view, ns, name, content_type, patch, dry_run=True,
                                         field_validation=field_validation)
        return self._write(view, ns, name, obj, warnings, dry_run)

    def apply(self, view: ResourceType, ns: str, name: str, body: Any, *, manager: str,
              force: bool, dry_run: bool = False,
              field_validation: str = "Warn") -> tuple[dict[str, Any], list[str], bool]:
        """Server-side apply through the Calico API server: worked out on the v3 object (field
        ownership, conflicts, managedFields), then stored as create or update; (object,
        warnings, created)."""
        store = self.store
        obj, warnings, created = store.apply(view, ns, name, body, manager=manager, force=force,
                                             dry_run=True, field_validation=field_validation)
        if dry_run:
            return obj, warnings, created
        if not created:
            obj, warnings = self._write(view, ns, name, obj, warnings, dry_run=False)
            return obj, warnings, False
        stored = calicoapi.to_v1(obj)
        stored["metadata"].pop("uid", None)
        store.create(_backing(view), ns, stored)
        return _mirrored(store, view, ns if view.namespaced else "", name), warnings, True

    def delete(self, view: ResourceType, ns: str, name: str,
               options: dict[str, Any] | None = None, *, dry_run: bool = False) -> dict[str, Any]:
        store = self.store
        obj = store.delete(view, ns, name, options, dry_run=True)  # the v3 preconditions
        if dry_run:
            return obj
        rest = {k: v for k, v in (options or {}).items() if k != "preconditions"}
        deleted = store.delete(_backing(view), ns, _stored_name(store, view, ns, name), rest)
        return calicoapi.to_v3(deleted, kind=view.kind)

    def _write(self, view: ResourceType, ns: str, name: str, obj: dict[str, Any],
               warnings: list[str], dry_run: bool) -> Result:
        if dry_run:
            return obj, warnings
        store = self.store
        current = _mirrored(store, view, ns, name)
        if obj == current:
            return current, warnings  # a no-op stays one: the stored object is not rewritten
        stored = calicoapi.to_v1(obj)
        stored["metadata"]["name"] = _stored_name(store, view, ns, name)
        stored["metadata"].pop("uid", None)
        store.update(_backing(view), ns, stored["metadata"]["name"], stored, require_rv=False)
        return _mirrored(store, view, ns, name), warnings
