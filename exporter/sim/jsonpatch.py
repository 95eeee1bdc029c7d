"""JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386) and a strategic merge patch for built-ins.

All functions return new documents and never modify their inputs. A patch that cannot be applied
raises :class:`PatchError` (the API server answers 422 for a failed ``test`` and for a path that
does not exist, 400 for a malformed patch document).

Strategic merge patch (served for the built-in kinds only, as on a real server) follows the
subset kubectl sends: maps merge recursively, ``null`` deletes a key, ``$patch: replace`` and
``$patch: delete`` directives, ``$retainKeys``, ``$setElementOrder/<field>`` and
``$deleteFromPrimitiveList/<field>`` are honoured, and lists of maps merge by the merge key of
the list (``name`` for containers, env, volumes..., ``containerPort`` for ports, ``type`` for
conditions and node addresses, ``ip`` for podIPs/hostIPs); other lists are replaced.
"""

from __future__ import annotations

import copy
from typing import Any

# Merge keys of the lists of the built-in kinds served here (from the Go struct tags).
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "conditions": "type",
    "addresses": "type",
    "podIPs": "ip",
    "hostIPs": "ip",
    "ownerReferences": "uid",
    "tolerations": "key",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "taints": "key",
    "images": "names",
}


class PatchError(ValueError):
    """A patch that cannot be applied. ``invalid`` is True for 422 cases, False for 400 ones."""

    def __init__(self, message: str, *, invalid: bool = True) -> None:
        super().__init__(message)
        self.invalid = invalid


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merge_patch(result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _unescape_token(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise PatchError(f"invalid JSON pointer: {path!r}", invalid=False)
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f'JSON pointer must be empty or start with a "/": {path!r}', invalid=False)
    return [_unescape_token(t) for t in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:  # noqa: S105 - a JSON pointer token
        return len(container)
    if not token.isdigit() or (token.startswith("0") and token != "0"):  # noqa: S105
        raise PatchError(f"invalid array index: {token}")
    idx = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if idx > limit:
        raise PatchError(f"array index out of bounds: {idx}")
    return idx


def _resolve(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for tok in tokens:
        if isinstance(cur, dict):
            if tok not in cur:
                raise PatchError(f"doc is missing path: /{'/'.join(tokens)}")
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_index(cur, tok, allow_end=False)]
        else:
            raise PatchError(f"doc is missing path: /{'/'.join(tokens)}")
    return cur


def _parent(doc: Any, tokens: list[str]) -> Any:
    return _resolve(doc, tokens[:-1])


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise PatchError(f"doc is missing path: /{'/'.join(tokens)}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"unable to remove nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, allow_end=False))
    raise PatchError(f"doc is missing path: /{'/'.join(tokens)}")


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902. ``ops`` must be a list of operation objects."""
    if not isinstance(ops, list):
        raise PatchError(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch", invalid=False
        )
    result = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise PatchError(f"invalid JSON patch operation: {op!r}", invalid=False)
        kind = op["op"]
        tokens = _split_pointer(op.get("path"))
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"missing value for {kind} operation", invalid=False)
        if kind == "add":
            result = _add(result, tokens, copy.deepcopy(op["value"]))
        elif kind == "remove":
            result, _ = _remove(result, tokens)
        elif kind == "replace":
            if not tokens:
                result = copy.deepcopy(op["value"])
                continue
            parent = _parent(result, tokens)
            last = tokens[-1]
            if isinstance(parent, dict):
                if last not in parent:
                    raise PatchError("replace operation does not apply: doc is missing key: /"
                                     + "/".join(tokens))
                parent[last] = copy.deepcopy(op["value"])
            elif isinstance(parent, list):
                parent[_index(parent, last, allow_end=False)] = copy.deepcopy(op["value"])
            else:
                raise PatchError(f"doc is missing path: /{'/'.join(tokens)}")
        elif kind in ("move", "copy"):
            src = _split_pointer(op.get("from"))
            if kind == "move":
                if tokens[: len(src)] == src and len(tokens) > len(src):
                    raise PatchError("cannot move a value into one of its children")
                result, value = _remove(result, src)
            else:
                value = copy.deepcopy(_resolve(result, src))
            result = _add(result, tokens, value)
        elif kind == "test":
            have = _resolve(result, tokens)
            if have != op["value"] or (type(have) is not type(op["value"]) and not (
                isinstance(have, int | float) and isinstance(op["value"], int | float)
                and not isinstance(have, bool) and not isinstance(op["value"], bool)
            )):
                raise PatchError(f"testing value /{'/'.join(tokens)} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}", invalid=False)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch for the built-in kinds (see the module docstring)."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object", invalid=False)
    return _smp_map(target if isinstance(target, dict) else {}, patch)


def _smp_map(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    result = dict(target)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            old = result.get(key)
            result[key] = _smp_map(old if isinstance(old, dict) else {}, value)
        elif isinstance(value, list) and key in _MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _smp_list(result[key], value, _MERGE_KEYS[key])
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(target: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    if not all(isinstance(x, dict) for x in target + patch):
        return copy.deepcopy(patch)
    if any(x.get("$patch") == "replace" for x in patch):
        return [copy.deepcopy(x) for x in patch if x.get("$patch") != "replace"]
    result = list(target)
    for item in patch:
        key = item.get(merge_key)
        found = next((i for i, old in enumerate(result) if old.get(merge_key) == key), None)
        if item.get("$patch") == "delete":
            if found is not None:
                result.pop(found)
        elif found is None:
            result.append(_smp_map({}, item))
        else:
            result[found] = _smp_map(result[found], item)
    return result
