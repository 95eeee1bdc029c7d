"""The emulator's storage: objects, the global resourceVersion, the event log and every write.

The model is etcd's: one global revision (``rv``) bumped by every committed write; each resource
type keeps its objects (``(namespace, name) -> Entry``) and an append-only, RV-ordered event log
with a floor below which history is gone (compaction, or trimming of an over-long log). Reading
the state "as of" an older RV rolls the log back, which is how list chunks all come from one
snapshot and how ``resourceVersionMatch=Exact`` is served.

Stored objects are never mutated after commit: every write builds a new dict. Each entry keeps
the object serialized once (``raw``), so lists and watch events are byte concatenations.

The garbage collector (ownerReferences, propagation policies, namespace termination) runs as a
background step after the write that made it necessary (``call_soon`` when an event loop runs,
otherwise at the end of the write).

Types can be added and removed while serving (CRDs installed and deleted). A removed type's bucket
is marked ``removed`` so that its open watches end. A type with a ``backing`` type (the
``projectcalico.org/v3`` the Calico API server serves from the ``crd.projectcalico.org/v1``
CRDs) is a mirror: every committed change of the backing bucket is committed, converted, into the
mirror in the same step and at the same resourceVersion, as the aggregated server passes the
storage revision through; the mirror is never written on its own.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from exporter.sim import calicoapi, errors, schema
from exporter.sim.apply import apply_configuration
from exporter.sim.errors import ApiError
from exporter.sim.jsonpatch import PatchError, json_patch, merge_patch, strategic_merge_patch
from exporter.sim.resources import Registry, ResourceType
from exporter.sim.selectors import FieldSelector, LabelSelector

Key = tuple[str, str]  # (namespace or "", name)
Subscriber = Callable[[str, dict[str, Any]], None]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_SYSTEM_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                "selfLink", "managedFields")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


def _loads(raw: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads(raw)
    return obj


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clone(obj: Any) -> Any:
    """A deep copy through JSON (also proves the object is JSON)."""
    try:
        return _loads(orjson.dumps(obj))
    except TypeError as exc:
        raise errors.bad_request(f"the object is not valid JSON: {exc}") from exc


class Entry:
    """One stored object and its serialized bytes."""

    __slots__ = ("obj", "raw")

    def __init__(self, obj: dict[str, Any], raw: bytes | None = None) -> None:
        self.obj = obj
        self.raw = raw if raw is not None else orjson.dumps(obj)

    @property
    def rv(self) -> int:
        return int(self.obj["metadata"]["resourceVersion"])

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"].get("uid", ""))


class Event:
    """A committed change: ``entry`` is the new state (for DELETED the last state stamped with the
    deletion RV), ``prev`` the state before (None for ADDED)."""

    __slots__ = ("_lines", "entry", "key", "prev", "rv", "type")

    def __init__(self, rv: int, type_: str, key: Key, entry: Entry, prev: Entry | None) -> None:
        self.rv = rv
        self.type = type_
        self.key = key
        self.entry = entry
        self.prev = prev
        self._lines: dict[str, bytes] = {}

    def line(self, type_: str | None = None) -> bytes:
        """The watch line of this event (optionally re-typed for selector transitions)."""
        t = type_ or self.type
        got = self._lines.get(t)
        if got is None:
            if t == DELETED and self.type != DELETED:
                # The object stopped matching a selector: its previous state at this event's RV.
                assert self.prev is not None
                old = dict(self.prev.obj)
                old["metadata"] = dict(old["metadata"], resourceVersion=str(self.rv))
                raw = orjson.dumps(old)
            else:
                raw = self.entry.raw
            got = b'{"type":"' + t.encode() + b'","object":' + raw + b"}\n"
            self._lines[t] = got
        return got


class Bucket:
    """The objects, event log and waiting watchers of one resource type."""

    __slots__ = ("floor", "log", "log_rvs", "mirrors", "objects", "origin", "removed", "rt",
                 "sorted_keys", "subscribers", "waiters")

    def __init__(self, rt: ResourceType) -> None:
        self.rt = rt
        self.objects: dict[Key, Entry] = {}
        self.log: list[Event] = []
        self.log_rvs: list[int] = []
        self.floor = 0
        self.sorted_keys: list[Key] | None = None
        self.waiters: set[asyncio.Event] = set()
        self.subscribers: list[Subscriber] = []
        self.mirrors: list[Bucket] = []
        """Buckets of the types served from this one (``ResourceType.backing``)."""
        self.origin: dict[Key, Key] = {}
        """For a mirror: the key of each object in the backing bucket."""
        self.removed = False
        """The type is no longer served: open watches end."""

    def keys_sorted(self) -> list[Key]:
        if self.sorted_keys is None:
            self.sorted_keys = sorted(self.objects)
        return self.sorted_keys

    def events_after(self, rv: int) -> list[Event]:
        start = bisect.bisect_right(self.log_rvs, rv)
        return self.log[start:] if start < len(self.log) else []


class Store:
    """All objects of the emulator and every write operation on them (synchronous)."""

    def __init__(self, registry: Registry, *, max_log: int = 200_000,
                 system_namespaces: bool = True) -> None:
        self.registry = registry
        self.rv = 1
        self.compacted_rv = 0
        self.max_log = max_log
        self.buckets: dict[tuple[str, str, str], Bucket] = {
            rt.key: Bucket(rt) for rt in registry.types if rt.backing is None
        }
        self._snapshots: dict[tuple[tuple[str, str, str], int],
                              tuple[list[Key], list[Entry]]] = {}
        self._dispatching = False
        self._pending_notify: list[tuple[Bucket, str, Entry]] = []
        self._dependents: dict[str, set[tuple[tuple[str, str, str], Key]]] = {}
        self._gc_pending: set[tuple[tuple[str, str, str], Key]] = set()
        self._gc_scheduled = False
        self._gc_running = False
        self._gc_defer = 0
        # Owners in foreground deletion and terminating namespaces waiting for dependents
        # or contents to go: any deletion re-checks them.
        self._waiting: set[tuple[tuple[str, str, str], Key]] = set()
        self.rv_waiters: list[asyncio.Future[None]] = []
        self.add_types([rt for rt in registry.types if rt.backing is not None])
        self.ns_rt = registry.by_path("", "v1", "namespaces")
        if system_namespaces and self.ns_rt is not None:
            for name in _SYSTEM_NAMESPACES:
                self.create(self.ns_rt, "", {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": name}})

    # ------------------------------------------------------------------ reading

    def bucket(self, rt: ResourceType) -> Bucket:
        bucket = self.buckets.get(rt.key)
        if bucket is None:
            raise errors.no_route()  # its CRD was deleted meanwhile
        return bucket

    def add_types(self, types: Iterable[ResourceType]) -> None:
        """Start storing more types (the registry serves them); a mirror type is filled from its
        backing bucket at once. A type replacing one with the same key starts empty."""
        for rt in types:
            old = self.buckets.get(rt.key)
            if old is not None:
                self._drop_bucket(old)
            bucket = Bucket(rt)
            self.buckets[rt.key] = bucket
            bucket.floor = self.rv  # a new type has no history to watch from
            if rt.backing is not None:
                backing = self.buckets[rt.backing.key]
                backing.mirrors.append(bucket)
                for key in backing.keys_sorted():
                    entry = backing.objects[key]
                    self._commit_mirror(bucket, ADDED, key, orjson.loads(entry.raw), entry.rv,
                                        log=False)

    def remove_type(self, rt: ResourceType, *, delete_instances: bool = True) -> None:
        """Stop storing a type, as deleting its CRD does: with ``delete_instances`` every object
        is deleted first (watchers see the DELETED events of the CRD finalizer), then the bucket
        and its mirrors are removed and their open watches end."""
        bucket = self.buckets.get(rt.key)
        if bucket is None:
            return
        if delete_instances:
            for ns, name in list(bucket.keys_sorted()):
                if (ns, name) in bucket.objects:
                    final = orjson.loads(bucket.objects[(ns, name)].raw)
                    self._commit(bucket, DELETED, (ns, name), final, bucket.objects[(ns, name)])
        self._drop_bucket(bucket)

    def _drop_bucket(self, bucket: Bucket) -> None:
        for mirror in list(bucket.mirrors):
            self._drop_bucket(mirror)
        if self.buckets.get(bucket.rt.key) is bucket:
            del self.buckets[bucket.rt.key]
        backing = bucket.rt.backing
        if backing is not None and backing.key in self.buckets:
            mirrors = self.buckets[backing.key].mirrors
            if bucket in mirrors:
                mirrors.remove(bucket)
        for uid_deps in self._dependents.values():
            uid_deps.difference_update({ref for ref in uid_deps if ref[0] == bucket.rt.key})
        self._gc_pending = {ref for ref in self._gc_pending if ref[0] != bucket.rt.key}
        self._waiting = {ref for ref in self._waiting if ref[0] != bucket.rt.key}
        self._snapshots = {k: v for k, v in self._snapshots.items() if k[0] != bucket.rt.key}
        bucket.removed = True
        for waiter in bucket.waiters:
            waiter.set()

    def get_entry(self, rt: ResourceType, ns: str, name: str) -> Entry:
        entry = self.buckets[rt.key].objects.get((ns if rt.namespaced else "", name))
        if entry is None:
            raise errors.not_found(rt, name)
        return entry

    def check_rv_not_too_old(self, bucket: Bucket, rv: int) -> None:
        floor = max(bucket.floor, self.compacted_rv)
        if rv < floor:
            raise errors.expired(f"too old resource version: {rv} ({floor})")

    def snapshot(self, rt: ResourceType, rv: int) -> list[Entry]:
        """All entries of ``rt`` as of ``rv`` (<= current), sorted by namespace and name."""
        return self.snapshot_keyed(rt, rv)[1]

    def snapshot_keyed(self, rt: ResourceType, rv: int) -> tuple[list[Key], list[Entry]]:
        """``(sorted keys, entries)`` of ``rt`` as of ``rv``; memoized (history is immutable)."""
        bucket = self.bucket(rt)
        rv = min(rv, self.rv)
        memo = self._snapshots.get((rt.key, rv))
        if memo is not None:
            if rv < self.rv:
                self.check_rv_not_too_old(bucket, rv)
            return memo
        if rv == self.rv:
            keys = bucket.keys_sorted()
            objs = bucket.objects
            result = (keys, [objs[k] for k in keys])
        else:
            self.check_rv_not_too_old(bucket, rv)
            state = dict(bucket.objects)
            for ev in reversed(bucket.events_after(rv)):
                if ev.type == ADDED:
                    state.pop(ev.key, None)
                else:
                    assert ev.prev is not None
                    state[ev.key] = ev.prev
            keys = sorted(state)
            result = (keys, [state[k] for k in keys])
        if len(self._snapshots) >= 16:
            self._snapshots.pop(next(iter(self._snapshots)))
        self._snapshots[(rt.key, rv)] = result
        return result

    # ------------------------------------------------------------------ commit

    def _next_rv(self) -> int:
        return self.rv + 1

    def _commit(self, bucket: Bucket, type_: str, key: Key, obj: dict[str, Any],
                prev: Entry | None) -> Event:
        rv = self.rv + 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(rv)
        entry = Entry(obj)
        self.rv = rv
        if type_ == DELETED:
            del bucket.objects[key]
            bucket.sorted_keys = None
            if self._waiting:
                self._gc_pending.update(self._waiting)
                self._schedule_gc()
        else:
            if key not in bucket.objects:
                bucket.sorted_keys = None
            bucket.objects[key] = entry
        self._index_owners(bucket.rt, key, prev, entry if type_ != DELETED else None)
        event = self._log(bucket, rv, type_, key, entry, prev)
        for mirror in bucket.mirrors:
            self._commit_mirror(mirror, type_, key, orjson.loads(entry.raw), rv)
        for waiter in bucket.waiters:
            waiter.set()
        if self.rv_waiters:
            for fut in self.rv_waiters:
                if not fut.done():
                    fut.set_result(None)
            self.rv_waiters.clear()
        if bucket.subscribers:
            self._notify(bucket, type_, entry)
        return event

    def _log(self, bucket: Bucket, rv: int, type_: str, key: Key, entry: Entry,
             prev: Entry | None) -> Event:
        """Append one event to a bucket's log, trimming an over-long log (raises its floor)."""
        event = Event(rv, type_, key, entry, prev)
        bucket.log.append(event)
        bucket.log_rvs.append(rv)
        if len(bucket.log) > self.max_log:
            cut = len(bucket.log) // 2
            bucket.floor = bucket.log_rvs[cut - 1]
            del bucket.log[:cut]
            del bucket.log_rvs[:cut]
        return event

    def _commit_mirror(self, mirror: Bucket, type_: str, origin: Key, obj: dict[str, Any],
                       rv: int, *, log: bool = True) -> None:
        """Commit the view of one backing change into a mirror bucket, at the backing's RV
        (``log=False``: fill a new mirror, which has no history)."""
        view = calicoapi.to_v3(obj, kind=mirror.rt.kind)
        meta = view["metadata"]
        meta["resourceVersion"] = str(rv)
        key = (str(meta.get("namespace") or ""), str(meta["name"]))
        prev = mirror.objects.get(key)
        if type_ == DELETED:
            if prev is None:
                return
            del mirror.objects[key]
            mirror.origin.pop(key, None)
            mirror.sorted_keys = None
        else:
            type_ = ADDED if prev is None else MODIFIED
            if prev is None:
                mirror.sorted_keys = None
            mirror.objects[key] = Entry(view)
            mirror.origin[key] = origin
        if not log:
            return
        entry = Entry(view) if type_ == DELETED else mirror.objects[key]
        self._log(mirror, rv, type_, key, entry, prev)
        for waiter in mirror.waiters:
            waiter.set()
        if mirror.subscribers:
            self._notify(mirror, type_, entry)

    def _notify(self, bucket: Bucket, type_: str, entry: Entry) -> None:
        self._pending_notify.append((bucket, type_, entry))
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._pending_notify:
                b, t, e = self._pending_notify.pop(0)
                for callback in list(b.subscribers):
                    callback(t, orjson.loads(e.raw))
        finally:
            self._dispatching = False

    def compact(self) -> None:
        """Forget all history up to the current RV for new requests: lists at an older RV,
        continue tokens and watches starting below it get 410. Watches already open keep
        streaming, as they do from a real API server's watch cache."""
        self.compacted_rv = self.rv
        self._snapshots.clear()

    # ------------------------------------------------------------------ validation helpers

    def _check_type(self, rt: ResourceType, obj: Any, *, default_kind: bool) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if default_kind and not rt.custom:
            api_version = api_version or rt.api_version
            kind = kind or rt.kind
        if not kind:
            raise errors.bad_request(f"Object 'Kind' is missing in '{orjson.dumps(obj).decode()}'")
        if not api_version:
            raise errors.bad_request(
                f"Object 'apiVersion' is missing in '{orjson.dumps(obj).decode()}'"
            )
        if api_version != rt.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})"
            )
        if kind != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        meta = obj.get("metadata")
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        ordered: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": meta}
        for k, v in obj.items():
            if k not in ordered:
                ordered[k] = v
        return ordered

    def _validate(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None,
                  field_validation: str) -> list[str]:
        """Prune, default and validate ``obj`` in place; return warnings; raise 400/422."""
        unknown: list[str] = []
        causes: list[dict[str, str]] = []
        name = obj["metadata"].get("name", "") or obj["metadata"].get("generateName", "")
        schema.prune_metadata(obj["metadata"], unknown)
        if rt.schema is not None:
            schema.prune_and_default(rt.schema, obj, unknown)
        if unknown and field_validation == "Strict":
            msgs = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise errors.bad_request(f"strict decoding error: {msgs}")
        causes.extend(schema.validate_metadata(obj["metadata"], rt, creating=old is None))
        if rt.schema is not None:
            causes.extend(schema.validate(rt.schema, obj, old))
        else:
            causes.extend(schema.validate_builtin(rt, obj))
        if causes:
            raise errors.invalid(rt, name, causes)
        if field_validation == "Ignore":
            return []
        return [f'unknown field "{u}"' for u in unknown]

    def _check_namespace(self, rt: ResourceType, ns: str, name: str) -> None:
        if not rt.namespaced or self.ns_rt is None:
            return
        entry = self.buckets[self.ns_rt.key].objects.get(("", ns))
        if entry is None:
            raise errors.not_found(self.ns_rt, ns)
        if entry.obj["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                f'{rt.qualified} "{name}" is forbidden: unable to create new content in '
                f"namespace {ns} because it is being terminated",
                reason="Forbidden",
                details={"name": name, **({"group": rt.group} if rt.group else {}),
                         "kind": rt.plural,
                         "causes": [{"reason": "NamespaceTerminating",
                                     "message": f"namespace {ns} is being terminated",
                                     "field": "metadata.namespace"}]},
            )

    # ------------------------------------------------------------------ create

    def create(self, rt: ResourceType, ns: str, body: Any, *, dry_run: bool = False,
               field_validation: str = "Warn", seeding: bool = False,
               check_namespace: bool = True) -> tuple[dict[str, Any], list[str]]:
        """POST: returns (created object, warnings)."""
        obj = self._check_type(rt, clone(body), default_kind=True)
        meta = obj["metadata"]
        body_ns = meta.get("namespace")
        if rt.namespaced:
            if body_ns and ns and body_ns != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            ns = ns or body_ns or ""
            if not ns:
                raise errors.bad_request("the namespace of the object must be set")
            meta["namespace"] = ns
        else:
            ns = ""
            meta.pop("namespace", None)
        if meta.get("resourceVersion") and not seeding:
            raise ApiError(500, "resourceVersion should not be set on objects to be created")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = str(meta["generateName"]) + "".join(
                secrets.choice(_GENERATE_ALPHABET) for _ in range(5)
            )
        name = str(meta.get("name") or "")
        if check_namespace:
            self._check_namespace(rt, ns, name)
        warnings = self._validate(rt, obj, None, field_validation)
        bucket = self.buckets[rt.key]
        key = (ns, name)
        if key in bucket.objects:
            raise errors.already_exists(rt, name)
        if not (seeding and meta.get("uid")):
            meta["uid"] = str(uuid.uuid4())
        if not (seeding and meta.get("creationTimestamp")):
            meta["creationTimestamp"] = now_rfc3339()
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink",
                      "resourceVersion"):
            meta.pop(field, None)
        if rt.tracks_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        _builtin_defaults(rt, obj)
        if dry_run:
            return obj, warnings
        self._commit(bucket, ADDED, key, obj, None)
        return _loads(bucket.objects[key].raw), warnings

    # ------------------------------------------------------------------ update / patch

    def update(self, rt: ResourceType, ns: str, name: str | None, body: Any, *,
               subresource: str | None = None, dry_run: bool = False,
               field_validation: str = "Warn", require_rv: bool | None = None,
               raw_write: bool = False) -> tuple[dict[str, Any], list[str]]:
        """PUT: returns (stored object, warnings). ``raw_write`` (the in-process API) writes
        spec and status together whatever the subresources."""
        obj = self._check_type(rt, clone(body), default_kind=True)
        meta = obj["metadata"]
        name = name or str(meta.get("name") or "")
        ns = ns if rt.namespaced else ""
        if rt.namespaced:
            ns = ns or str(meta.get("namespace") or "")
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != ns:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        bucket = self.buckets[rt.key]
        old = bucket.objects.get((ns, name))
        if old is None:
            if rt.create_on_update and subresource is None:
                meta.pop("resourceVersion", None)
                meta["name"] = name
                return self.create(rt, ns, obj, dry_run=dry_run,
                                   field_validation=field_validation)
            raise errors.not_found(rt, name)
        if require_rv is None:
            require_rv = not rt.unconditional_update
        if require_rv and not meta.get("resourceVersion"):
            raise errors.invalid(rt, name, [{
                "reason": "FieldValueInvalid", "field": "metadata.resourceVersion",
                "message": "Invalid value: 0x0: must be specified for an update"}])
        self._check_preconditions(rt, name, old, meta)
        return self._apply_update(rt, bucket, (ns, name), old, obj, subresource=subresource,
                                  dry_run=dry_run, field_validation=field_validation,
                                  raw_write=raw_write)

    @staticmethod
    def _check_preconditions(rt: ResourceType, name: str, old: Entry,
                             meta: dict[str, Any]) -> None:
        """A resourceVersion or uid in the written metadata must match the stored object."""
        want_rv = meta.get("resourceVersion")
        if want_rv and str(want_rv) != old.obj["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name, errors.MODIFIED)
        if meta.get("uid") and meta["uid"] != old.uid:
            raise errors.conflict(
                rt, name,
                f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: "
                f"{old.uid}",
            )

    def patch(self, rt: ResourceType, ns: str, name: str, content_type: str, patch: Any, *,
              subresource: str | None = None, dry_run: bool = False,
              field_validation: str = "Warn",
              raw_write: bool = False) -> tuple[dict[str, Any], list[str]]:
        """PATCH with merge, JSON or (built-ins only) strategic merge patch."""
        accepted = [JSON_PATCH, MERGE_PATCH] if rt.custom else [
            JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH]
        if content_type not in accepted:
            raise errors.unsupported_media(accepted)
        ns = ns if rt.namespaced else ""
        bucket = self.buckets[rt.key]
        old = bucket.objects.get((ns, name))
        if old is None:
            raise errors.not_found(rt, name)
        current = orjson.loads(old.raw)
        try:
            if content_type == MERGE_PATCH:
                if not isinstance(patch, dict):
                    raise PatchError(
                        "json: cannot unmarshal array into Go value of type "
                        "map[string]interface {}",
                        invalid=False,
                    )
                new = merge_patch(current, patch)
            elif content_type == JSON_PATCH:
                new = json_patch(current, patch)
            else:
                new = strategic_merge_patch(current, patch)
        except PatchError as exc:
            if exc.invalid:
                raise errors.invalid(rt, name, [{"reason": "FieldValueInvalid", "field": "",
                                                 "message": str(exc)}]) from exc
            raise errors.bad_request(str(exc)) from exc
        obj = self._check_type(rt, new, default_kind=False)
        meta = obj["metadata"]
        for field, was in (("name", name), ("namespace", ns or None)):
            if meta.get(field) != was:
                raise errors.invalid(rt, name, [{
                    "reason": "FieldValueInvalid", "field": f"metadata.{field}",
                    "message": f"Invalid value: {orjson.dumps(meta.get(field)).decode()}: "
                               "field is immutable"}])
        self._check_preconditions(rt, name, old, meta)
        return self._apply_update(rt, bucket, (ns, name), old, obj, subresource=subresource,
                                  dry_run=dry_run, field_validation=field_validation,
                                  raw_write=raw_write)

    def _apply_update(self, rt: ResourceType, bucket: Bucket, key: Key, old: Entry,
                      obj: dict[str, Any], *, subresource: str | None, dry_run: bool,
                      field_validation: str, raw_write: bool,
                      managed_fields: list[Any] | None = None,
                      ) -> tuple[dict[str, Any], list[str]]:
        old_obj = old.obj
        old_meta = old_obj["metadata"]
        if subresource == "status":
            new = {k: v for k, v in old_obj.items() if k != "status"}
            if "status" in obj:
                new["status"] = obj["status"]
            new["metadata"] = dict(old_meta)
            obj = new
        elif rt.status_subresource and not raw_write:
            if "status" in old_obj:
                obj["status"] = old_obj["status"]
            else:
                obj.pop("status", None)
        meta = obj["metadata"]
        for field in _SYSTEM_META:
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        if managed_fields is not None:  # server-side apply owns this
            meta["managedFields"] = managed_fields
        meta["name"] = old_meta["name"]
        if rt.namespaced:
            meta["namespace"] = old_meta["namespace"]
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise errors.invalid(rt, key[1], [{
                    "reason": "FieldValueForbidden", "field": "metadata.finalizers",
                    "message": "Forbidden: no new finalizers can be added if the object is "
                               "being deleted, found new finalizers "
                               + orjson.dumps(sorted(added)).decode()}])
        warnings = self._validate(rt, obj, old_obj, field_validation)
        if rt.tracks_generation:
            gen = int(old_meta.get("generation") or 1)
            if self._spec_changed(rt, old_obj, obj):
                gen += 1
            meta["generation"] = gen
        else:
            meta.pop("generation", None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if obj == old_obj:
            return _loads(old.raw), warnings
        if dry_run:
            return obj, warnings
        spec = obj.get("spec")
        namespace_finalizers = (self.ns_rt is not None and rt.key == self.ns_rt.key
                                and isinstance(spec, dict) and spec.get("finalizers"))
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not (
                namespace_finalizers):
            self._commit(bucket, DELETED, key, obj, old)
            self._schedule_gc()
            return obj, warnings
        self._commit(bucket, MODIFIED, key, obj, old)
        self._after_owner_change(rt, key, obj)
        return _loads(bucket.objects[key].raw), warnings

    def apply(self, rt: ResourceType, ns: str, name: str, body: Any, *, manager: str,
              force: bool, dry_run: bool = False,
              field_validation: str = "Warn") -> tuple[dict[str, Any], list[str], bool]:
        """Server-side apply (see :mod:`exporter.sim.apply`): (object, warnings, created)."""
        obj = self._check_type(rt, clone(body), default_kind=False)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})")
        meta["name"] = name
        ns = ns if rt.namespaced else ""
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        bucket = self.buckets[rt.key]
        old = bucket.objects.get((ns, name))
        if old is None:
            new = apply_configuration(rt, None, obj, manager=manager, force=force,
                                      now=now_rfc3339())
            created, warnings = self.create(rt, ns, new, dry_run=dry_run,
                                            field_validation=field_validation)
            return created, warnings, True
        self._check_preconditions(rt, name, old, meta)
        new = apply_configuration(rt, _loads(old.raw), obj, manager=manager, force=force,
                                  now=now_rfc3339())
        managed = new["metadata"].get("managedFields")
        before = old.obj["metadata"].get("managedFields")
        if _timeless(managed) == _timeless(before):
            managed = before  # the same ownership: keep its times, so a no-op stays a no-op
        updated, warnings = self._apply_update(
            rt, bucket, (ns, name), old, new, subresource=None, dry_run=dry_run,
            field_validation=field_validation, raw_write=False, managed_fields=managed)
        return updated, warnings, False

    @staticmethod
    def _spec_changed(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> bool:
        skip = ("apiVersion", "kind", "metadata", "status") if rt.status_subresource else (
            "apiVersion", "kind", "metadata")
        keys = (set(old) | set(new)) - set(skip)
        return any(old.get(k) != new.get(k) for k in keys)

    # ------------------------------------------------------------------ delete

    def delete(self, rt: ResourceType, ns: str, name: str, options: dict[str, Any] | None = None,
               *, dry_run: bool = False) -> dict[str, Any]:
        """DELETE: returns the deleted object, or the object now pending deletion."""
        ns = ns if rt.namespaced else ""
        bucket = self.buckets[rt.key]
        key = (ns, name)
        old = bucket.objects.get(key)
        if old is None:
            raise errors.not_found(rt, name)
        opts = options or {}
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != old.uid:
            raise errors.conflict(
                rt, name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                f"{old.uid}",
            )
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != old.obj["metadata"][
                "resourceVersion"]:
            raise errors.conflict(
                rt, name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {old.obj['metadata']['resourceVersion']}",
            )
        policy = opts.get("propagationPolicy")
        if policy is None and opts.get("orphanDependents") is not None:
            policy = "Orphan" if opts["orphanDependents"] else "Background"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.invalid(rt, name, [{
                "reason": "FieldValueNotSupported", "field": "propagationPolicy",
                "message": f'Unsupported value: "{policy}": supported values: "Foreground", '
                           '"Background", "Orphan", "nil"'}])
        old_meta = old.obj["metadata"]
        finalizers = list(old_meta.get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        is_namespace = self.ns_rt is not None and rt.key == self.ns_rt.key
        if not finalizers and not is_namespace:
            if dry_run:
                return _loads(old.raw)
            final = orjson.loads(old.raw)
            event = self._commit(bucket, DELETED, key, final, old)
            self._gc_candidates_for(old)
            self._schedule_gc()
            return _loads(event.entry.raw)
        if old_meta.get("deletionTimestamp") and finalizers == list(
                old_meta.get("finalizers") or []):
            return _loads(old.raw)
        obj = _loads(old.raw)
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = now_rfc3339()
            meta["deletionGracePeriodSeconds"] = 0
            if rt.tracks_generation and meta.get("generation"):
                meta["generation"] = int(meta["generation"]) + 1
        if finalizers:
            meta["finalizers"] = finalizers
        if is_namespace:
            obj.setdefault("status", {})["phase"] = "Terminating"
        if dry_run:
            return obj
        self._commit(bucket, MODIFIED, key, obj, old)
        self._gc_pending.add((rt.key, key))
        self._schedule_gc()
        return _loads(bucket.objects[key].raw)

    # ------------------------------------------------------------------ list helpers

    def select(self, rt: ResourceType, entries: Iterable[Entry], ns: str | None,
               labels: LabelSelector | None, fields: FieldSelector | None) -> list[Entry]:
        out = []
        for entry in entries:
            meta = entry.obj["metadata"]
            if ns and meta.get("namespace") != ns:
                continue
            if labels is not None and not labels.matches(meta.get("labels")):
                continue
            if fields is not None and not fields.matches(entry.obj):
                continue
            out.append(entry)
        return out

    # ------------------------------------------------------------------ garbage collection

    def _owner_uids(self, entry: Entry | None) -> set[str]:
        if entry is None:
            return set()
        refs = entry.obj["metadata"].get("ownerReferences") or []
        return {str(r.get("uid")) for r in refs if isinstance(r, dict) and r.get("uid")}

    def _index_owners(self, rt: ResourceType, key: Key, prev: Entry | None,
                      new: Entry | None) -> None:
        before, after = self._owner_uids(prev), self._owner_uids(new)
        if before == after:
            return
        ref = (rt.key, key)
        for uid in before - after:
            deps = self._dependents.get(uid)
            if deps is not None:
                deps.discard(ref)
                if not deps:
                    del self._dependents[uid]
        for uid in after - before:
            self._dependents.setdefault(uid, set()).add(ref)
        if after:
            self._gc_pending.add(ref)
            self._schedule_gc()

    def _after_owner_change(self, rt: ResourceType, key: Key, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            self._gc_pending.add((rt.key, key))
            self._schedule_gc()

    def _gc_candidates_for(self, owner: Entry) -> None:
        for ref in self._dependents.get(owner.uid, ()):
            self._gc_pending.add(ref)

    @contextlib.contextmanager
    def gc_deferred(self) -> Iterator[None]:
        """Hold garbage collection until the block ends (used by seeding)."""
        self._gc_defer += 1
        try:
            yield
        finally:
            self._gc_defer -= 1
            if self._gc_defer == 0 and self._gc_pending:
                self._schedule_gc()

    def _schedule_gc(self) -> None:
        if self._gc_scheduled or self._gc_running or self._gc_defer:
            return
        self._gc_scheduled = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            loop.call_soon(self.run_gc)
        else:
            self.run_gc()

    def _owner_state(self, dep_rt: ResourceType, dep_ns: str, ref: dict[str, Any]) -> str:
        """"absent", "present" or "unresolvable" for one owner reference of a dependent."""
        api_version = str(ref.get("apiVersion") or "")
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
        ort = self.registry.by_kind(api_version, str(ref.get("kind"))) or (
            self.registry.by_kind_name(group, str(ref.get("kind"))))
        if ort is None:
            return "unresolvable"
        if ort.namespaced and not dep_rt.namespaced:
            return "unresolvable"  # OwnerRefInvalidNamespace: never collected
        owner = self.buckets[ort.key].objects.get(
            (dep_ns if ort.namespaced else "", str(ref.get("name"))))
        if owner is None or owner.uid != ref.get("uid"):
            return "absent"
        return "present"

    def run_gc(self) -> None:
        """One garbage-collector pass: repeat until nothing more can be done."""
        self._gc_scheduled = False
        if self._gc_running:
            return
        self._gc_running = True
        try:
            for _ in range(10_000):
                pending, self._gc_pending = self._gc_pending, set()
                if not pending:
                    return
                for rtkey, key in sorted(pending):
                    bucket = self.buckets[rtkey]
                    entry = bucket.objects.get(key)
                    if entry is not None:
                        self._gc_one(bucket, key, entry)
        finally:
            self._gc_running = False

    def _gc_one(self, bucket: Bucket, key: Key, entry: Entry) -> None:
        rt = bucket.rt
        meta = entry.obj["metadata"]
        deleting = bool(meta.get("deletionTimestamp"))
        finalizers = list(meta.get("finalizers") or [])
        if deleting and self.ns_rt is not None and rt.key == self.ns_rt.key:
            self._finish_namespace(bucket, key, entry)
            return
        if deleting and "orphan" in finalizers:
            for dep_key, dep in list(self._dependents.get(entry.uid, ())):
                dep_entry = self.buckets[dep_key].objects.get(dep)
                if dep_entry is None:
                    continue
                new = orjson.loads(dep_entry.raw)
                new["metadata"]["ownerReferences"] = [
                    r for r in new["metadata"].get("ownerReferences", [])
                    if r.get("uid") != entry.uid]
                if not new["metadata"]["ownerReferences"]:
                    del new["metadata"]["ownerReferences"]
                self._commit(self.buckets[dep_key], MODIFIED, dep, new, dep_entry)
            self._remove_finalizer(bucket, key, "orphan")
            return
        if deleting and "foregroundDeletion" in finalizers:
            for dep_key, dep in sorted(self._dependents.get(entry.uid, ())):
                dep_bucket = self.buckets[dep_key]
                dep_entry = dep_bucket.objects.get(dep)
                if dep_entry is None or dep_entry.obj["metadata"].get("deletionTimestamp"):
                    continue
                # Like the real collector: foreground only for a dependent that itself has
                # dependents, background otherwise.
                policy = "Foreground" if self._dependents.get(dep_entry.uid) else "Background"
                self.delete(dep_bucket.rt, dep[0], dep[1], {"propagationPolicy": policy})
            if any(self._blocks_owner(dk, d, entry.uid)
                   for dk, d in self._dependents.get(entry.uid, ())):
                self._waiting.add((rt.key, key))  # re-checked when anything is deleted
                return
            self._waiting.discard((rt.key, key))
            self._remove_finalizer(bucket, key, "foregroundDeletion")
            return
        refs = meta.get("ownerReferences") or []
        if not refs or deleting:
            return
        states = [self._owner_state(rt, key[0], r) for r in refs if isinstance(r, dict)]
        if states and all(s == "absent" for s in states):
            self.delete(rt, key[0], key[1], {"propagationPolicy": "Background"})

    def _blocks_owner(self, rtkey: tuple[str, str, str], key: Key, owner_uid: str) -> bool:
        dep = self.buckets[rtkey].objects.get(key)
        if dep is None:
            return False
        refs = dep.obj["metadata"].get("ownerReferences") or []
        return any(r.get("uid") == owner_uid and r.get("blockOwnerDeletion") for r in refs)

    def _remove_finalizer(self, bucket: Bucket, key: Key, finalizer: str) -> None:
        entry = bucket.objects[key]
        new = orjson.loads(entry.raw)
        fins = [f for f in new["metadata"].get("finalizers", []) if f != finalizer]
        if fins:
            new["metadata"]["finalizers"] = fins
            self._commit(bucket, MODIFIED, key, new, entry)
        else:
            new["metadata"].pop("finalizers", None)
            self._commit(bucket, DELETED, key, new, entry)
            self._gc_candidates_for(entry)

    def _finish_namespace(self, bucket: Bucket, key: Key, entry: Entry) -> None:
        ns = key[1]
        remaining = False
        for other in self.buckets.values():
            if not other.rt.namespaced or other.rt.backing is not None:
                continue  # a mirror empties with its backing bucket
            for okey in [k for k in other.keys_sorted() if k[0] == ns]:
                remaining = True
                if not other.objects[okey].obj["metadata"].get("deletionTimestamp"):
                    self.delete(other.rt, ns, okey[1])
        if remaining and any(k[0] == ns for b in self.buckets.values() if b.rt.namespaced
                             for k in b.objects):
            self._waiting.add((bucket.rt.key, key))  # objects with finalizers remain
            return
        self._waiting.discard((bucket.rt.key, key))
        new = orjson.loads(entry.raw)
        spec = new.get("spec") or {}
        spec.pop("finalizers", None)
        new["spec"] = spec
        meta = new["metadata"]
        if meta.get("finalizers"):
            self._commit(bucket, MODIFIED, key, new, entry)
            return
        self._commit(bucket, DELETED, key, new, entry)


def _timeless(entries: Any) -> Any:
    """managedFields without their ``time``s, to compare ownership."""
    if not isinstance(entries, list):
        return entries
    return [{k: v for k, v in e.items() if k != "time"} if isinstance(e, dict) else e
            for e in entries]


def _builtin_defaults(rt: ResourceType, obj: dict[str, Any]) -> None:
    """The few defaults the real server fills in on create for the built-in kinds."""
    if rt.custom or rt.group:
        return
    if rt.plural == "namespaces":
        name = obj["metadata"]["name"]
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Active")
    elif rt.plural == "pods":
        spec = obj.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Pending")


def dns_label_ok(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS_LABEL_RE.match(name))


def dns_subdomain_ok(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN_RE.match(name))
