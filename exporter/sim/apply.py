"""Server-side apply (``PATCH`` with ``application/apply-patch+yaml``): field ownership, conflicts
and merging, as the API server's structured-merge-diff does it, for the emulator's store.

What is modelled, after the Kubernetes server-side apply documentation
(``kubernetes/website`` ``content/en/docs/reference/using-api/server-side-apply.md``):

- The applied configuration names the fields its manager (``fieldManager``) wants to own: every
  leaf it sets, every map key on the way, and for lists the whole list (``atomic``), each item
  (``x-kubernetes-list-type: map``, keyed by ``x-kubernetes-list-map-keys``) or each value
  (``set``). Objects record ownership in ``metadata.managedFields`` (``operation: Apply``,
  ``fieldsType: FieldsV1``, the FieldsV1 encoding of the set).
- Applying to an object that does not exist creates it (201).
- A field the configuration sets to a value different from the live one, owned by another
  manager, is a conflict: 409 ``Apply failed with N conflict(s)`` naming manager and field path,
  unless ``force=true``, which moves the field to the applier.
- Fields the manager applied before and no longer applies are removed, unless another manager
  owns them too; applying the same configuration again changes nothing.
- ``null`` in the configuration sets nothing.

Simplifications, stated: lists of the built-in kinds (which have no schema here) are atomic, where
the real server merges some of them by key (containers by name, ports by port and protocol); and
ownership is recorded for applies only, not for the ``Update`` operations of other writes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import orjson

from exporter.sim import errors
from exporter.sim.errors import ApiError
from exporter.sim.resources import ResourceType

__all__ = ["Element", "Path", "apply_configuration", "decode_fields", "encode_fields",
           "field_set"]

Element = tuple[str, str]
"""One step of a field path: ("f", name), ("k", JSON of the key fields) or ("v", JSON value)."""
Path = tuple[Element, ...]

_UNTRACKED_META = frozenset({"name", "namespace", "uid", "resourceVersion", "generation",
                             "creationTimestamp", "deletionTimestamp",
                             "deletionGracePeriodSeconds", "selfLink", "managedFields"})


def _props(schema: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if not schema:
        return None
    sub = (schema.get("properties") or {}).get(key)
    if sub is None and isinstance(schema.get("additionalProperties"), dict):
        sub = schema["additionalProperties"]
    return sub if isinstance(sub, dict) else None


def _list_kind(schema: dict[str, Any] | None) -> tuple[str, list[str]]:
    if not schema:
        return "atomic", []
    kind = str(schema.get("x-kubernetes-list-type") or "atomic")
    return kind, list(schema.get("x-kubernetes-list-map-keys") or [])


def _key(item: Any, keys: list[str]) -> str | None:
    if not isinstance(item, dict) or any(k not in item for k in keys):
        return None
    return orjson.dumps({k: item[k] for k in keys}, option=orjson.OPT_SORT_KEYS).decode()


def _walk(value: Any, schema: dict[str, Any] | None, path: Path) -> Iterator[Path]:
    """Every owned path of ``value``: the leaves, and each map key and list item on the way."""
    if isinstance(value, dict):
        for key, sub in value.items():
            if sub is None:
                continue
            child = (*path, ("f", str(key)))
            yield child
            yield from _walk(sub, _props(schema, key), child)
        return
    if isinstance(value, list):
        kind, keys = _list_kind(schema)
        item_schema = schema.get("items") if schema else None
        if kind == "map" and keys:
            for item in value:
                key = _key(item, keys)
                if key is None:
                    continue
                child = (*path, ("k", key))
                yield child
                yield from _walk(item, item_schema, child)
        elif kind == "set":
            for item in value:
                yield (*path, ("v", orjson.dumps(item).decode()))


def field_set(obj: dict[str, Any], schema: dict[str, Any] | None, *,
              status_subresource: bool) -> set[Path]:
    """The fields an applied configuration sets (apiVersion, kind, name and namespace are not
    owned; status not either where a status subresource owns it)."""
    out: set[Path] = set()
    for key, value in obj.items():
        if key in ("apiVersion", "kind") or value is None or (
                key == "status" and status_subresource):
            continue
        if key == "metadata" and isinstance(value, dict):
            meta = {k: v for k, v in value.items() if k not in _UNTRACKED_META}
            if meta:
                out.add((("f", "metadata"),))
                out.update(_walk(meta, None, (("f", "metadata"),)))
            continue
        out.add((("f", key),))
        out.update(_walk(value, _props(schema, key), (("f", key),)))
    return out


# --------------------------------------------------------------------------------------------
# FieldsV1


def encode_fields(paths: set[Path]) -> dict[str, Any]:
    """The FieldsV1 form of a field set: nested ``f:``/``k:``/``v:`` keys, ``.`` marking a node
    that is owned itself and has owned children."""
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for kind, name in path:
            node = node.setdefault(f"{kind}:{name}", {})
    _mark_dots(root, set(paths), ())
    return root


def _mark_dots(node: dict[str, Any], paths: set[Path], prefix: Path) -> None:
    for key, child in node.items():
        if key == ".":
            continue
        kind, _, name = key.partition(":")
        here = (*prefix, (kind, name))
        if child and here in paths and kind in ("k", "v"):
            child["."] = {}
        _mark_dots(child, paths, here)


def decode_fields(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    """The field set of a FieldsV1 object (inverse of :func:`encode_fields`)."""
    out: set[Path] = set()
    for key, child in fields.items():
        if key == ".":
            continue
        kind, _, name = key.partition(":")
        here = (*prefix, (kind, name))
        out.add(here)
        if isinstance(child, dict):
            out |= decode_fields(child, here)
    return out


def show(path: Path) -> str:
    """A path as structured-merge-diff prints it: ``.spec.containers[name="app"].image``."""
    out = []
    for kind, name in path:
        if kind == "f":
            out.append(f".{name}")
        elif kind == "k":
            fields = orjson.loads(name)
            out.append("[" + ",".join(f"{k}={orjson.dumps(v).decode()}"
                                      for k, v in fields.items()) + "]")
        else:
            out.append(f"[={name}]")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Reading and changing objects along paths


_MISSING = object()


def _find_item(items: list[Any], key: str) -> int | None:
    wanted = orjson.loads(key)
    for i, item in enumerate(items):
        if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items()):
            return i
    return None


def get_path(obj: Any, path: Path) -> Any:
    """The value at ``path`` (``_MISSING`` when absent)."""
    cur = obj
    for kind, name in path:
        if kind == "f":
            if not isinstance(cur, dict) or name not in cur:
                return _MISSING
            cur = cur[name]
        elif kind == "k":
            if not isinstance(cur, list):
                return _MISSING
            index = _find_item(cur, name)
            if index is None:
                return _MISSING
            cur = cur[index]
        else:
            value = orjson.loads(name)
            return value if isinstance(cur, list) and value in cur else _MISSING
    return cur


def remove_path(obj: Any, path: Path) -> None:
    """Delete the field, list item or set value at ``path`` if present."""
    parent = get_path(obj, path[:-1]) if len(path) > 1 else obj
    kind, name = path[-1]
    if kind == "f" and isinstance(parent, dict):
        parent.pop(name, None)
    elif kind == "k" and isinstance(parent, list):
        index = _find_item(parent, name)
        if index is not None:
            del parent[index]
    elif kind == "v" and isinstance(parent, list):
        value = orjson.loads(name)
        if value in parent:
            parent.remove(value)


def merge(live: dict[str, Any], applied: dict[str, Any], schema: dict[str, Any] | None) -> None:
    """Merge the applied configuration into ``live`` in place: maps key by key, keyed lists
    item by item, sets value by value, anything else replaced."""
    for key, value in applied.items():
        if value is None:
            continue
        sub = _props(schema, key)
        current = live.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merge(current, value, sub)
        elif isinstance(value, list) and isinstance(current, list):
            kind, keys = _list_kind(sub)
            if kind == "map" and keys:
                item_schema = sub.get("items") if sub else None
                for item in value:
                    k = _key(item, keys)
                    index = _find_item(current, k) if k is not None else None
                    if index is None:
                        current.append(copy.deepcopy(item))
                    elif isinstance(item, dict) and isinstance(current[index], dict):
                        merge(current[index], item, item_schema)
                    else:
                        current[index] = copy.deepcopy(item)
            elif kind == "set":
                current.extend(copy.deepcopy(v) for v in value if v not in current)
            else:
                live[key] = copy.deepcopy(value)
        else:
            live[key] = copy.deepcopy(value)


# --------------------------------------------------------------------------------------------
# Apply


def _entries(meta: dict[str, Any]) -> list[dict[str, Any]]:
    entries = meta.get("managedFields") or []
    return [e for e in entries if isinstance(e, dict)]


def apply_configuration(rt: ResourceType, live: dict[str, Any] | None, applied: dict[str, Any],
                        *, manager: str, force: bool, now: str) -> dict[str, Any]:
    """The object that results from ``manager`` applying ``applied`` to ``live`` (None: the
    object does not exist yet), with its managedFields; ApiError 409 on conflicts."""
    schema = rt.schema
    wanted = field_set(applied, schema, status_subresource=rt.status_subresource)
    entry = {"manager": manager, "operation": "Apply", "apiVersion": rt.api_version,
             "time": now, "fieldsType": "FieldsV1", "fieldsV1": encode_fields(wanted)}
    if live is None:
        obj = copy.deepcopy(applied)
        obj.setdefault("metadata", {})["managedFields"] = [entry]
        return obj
    obj = copy.deepcopy(live)
    others: list[tuple[dict[str, Any], set[Path]]] = []
    previous: set[Path] = set()
    for e in _entries(live["metadata"]):
        owned = decode_fields(e.get("fieldsV1") or {})
        if e.get("manager") == manager and e.get("operation") == "Apply":
            previous = owned
        else:
            others.append((e, owned))
    conflicts: list[tuple[str, Path]] = []
    for e, owned in others:
        for path in sorted(wanted & owned):
            if (_leafy(applied, path, schema)
                    and get_path(applied, path) != get_path(live, path)):
                conflicts.append((str(e.get("manager", "")), path))
    if conflicts and not force:
        raise _conflict(rt, str(live["metadata"].get("name", "")), conflicts)
    taken = {path for _, path in conflicts}
    kept: list[dict[str, Any]] = []
    still_owned: set[Path] = set()
    for e, owned in others:
        owned = owned - taken
        if owned:
            kept.append({**e, "fieldsV1": encode_fields(owned)})
            still_owned |= owned
    for path in sorted(previous - wanted - still_owned, key=len):  # parents first
        if path == (("f", "metadata"),):
            continue
        remove_path(obj, path)
    merge(obj, {k: v for k, v in applied.items() if k not in ("apiVersion", "kind")}, schema)
    mine = [entry] if wanted else []
    obj["metadata"]["managedFields"] = mine + kept
    return obj


def _schema_at(schema: dict[str, Any] | None, path: Path) -> dict[str, Any] | None:
    for kind, name in path:
        if schema is None:
            return None
        if kind == "f":
            schema = _props(schema, name)
        else:
            items = schema.get("items")
            schema = items if isinstance(items, dict) else None
    return schema


def _leafy(applied: dict[str, Any], path: Path, schema: dict[str, Any] | None) -> bool:
    """True when the applied value at ``path`` is a leaf (a scalar or an atomic list): where a
    value, not just ownership of a container, can conflict."""
    value = get_path(applied, path)
    if value is _MISSING or isinstance(value, dict):
        return False
    if isinstance(value, list):
        return _list_kind(_schema_at(schema, path))[0] == "atomic"
    return True


def _conflict(rt: ResourceType, name: str, conflicts: list[tuple[str, Path]]) -> ApiError:
    n = len(conflicts)
    if n == 1:
        manager, path = conflicts[0]
        detail = f"conflict with {orjson.dumps(manager).decode()}: {show(path)}"
    else:
        lines = []
        for manager in sorted({m for m, _ in conflicts}):
            lines.append(f"conflicts with {orjson.dumps(manager).decode()}:")
            lines += [f"- {show(p)}" for m, p in conflicts if m == manager]
        detail = "\n".join(lines)
    causes = [{"reason": "FieldManagerConflict", "message":
               f"conflict with {orjson.dumps(m).decode()}", "field": show(p)}
              for m, p in conflicts]
    return ApiError(409, f"Apply failed with {n} conflict{'s' if n > 1 else ''}: {detail}",
                    reason="Conflict", details={"name": name, "group": rt.group,
                                                "kind": rt.plural, "causes": causes})


def check_manager(manager: str | None) -> str:
    """The ``fieldManager`` of an apply request; 422 when missing or too long."""
    if not manager:
        raise errors.invalid_patch_options(
            "fieldManager", "Required value: is required for apply patch")
    if len(manager) > 128:
        raise errors.invalid_patch_options(
            "fieldManager", f"Too long: may not be longer than 128 (got {len(manager)})")
    return manager
