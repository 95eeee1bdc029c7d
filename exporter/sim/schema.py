"""OpenAPI v3 structural-schema handling for custom resources, and object-metadata validation.

What a real API server does with a CRD's ``openAPIV3Schema``, in the same order:

1. *Pruning*: fields not in ``properties`` (and not covered by ``additionalProperties`` or
   ``x-kubernetes-preserve-unknown-fields``) are dropped; the caller turns the list of dropped
   paths into ``Warning`` headers (``fieldValidation=Warn``, the default) or a 400 (``Strict``).
2. *Defaulting*: ``default`` values for missing properties (and for ``null`` in a non-nullable
   property).
3. *Validation*, reported as 422 causes: ``type`` (with ``nullable``,
   ``x-kubernetes-int-or-string``), ``required``, ``enum``, ``minimum``/``maximum`` (and the
   exclusive forms), ``minLength``/``maxLength``, ``minItems``/``maxItems``,
   ``minProperties``/``maxProperties``, ``pattern``,
   ``format`` for strings (``date-time``, ``date``, ``cidr``, ``ipv4``, ``ipv6``, ``uuid``; as on a
   real server, formats of integers such as ``int32`` are not enforced), duplicate entries of an
   ``x-kubernetes-list-type: set`` list, and ``x-kubernetes-validations`` CEL rules (see
   :mod:`exporter.sim.cel`; transition rules with ``oldSelf`` run on updates only).

``metadata`` follows ObjectMeta: unknown metadata fields are pruned, and name, labels,
annotations, finalizers and ownerReferences are validated like the real server does.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import uuid
from typing import Any

from exporter.sim import cel
from exporter.sim.errors import ApiError
from exporter.sim.resources import ResourceType
from exporter.sim.selectors import validate_label_key, validate_label_value

Cause = dict[str, str]

OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
})
_OWNER_REF_FIELDS = frozenset({"apiVersion", "kind", "name", "uid", "controller",
                               "blockOwnerDeletion"})
_DATE_TIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$"
)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_DNS_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_PATTERN_CACHE: dict[str, re.Pattern[str]] = {}


def go_json(value: Any) -> str:
    """A value as Go's ``%#v``-like quoting in field errors: strings quoted, others bare."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return str(value)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------------------- pruning + defaults


def prune_and_default(root: dict[str, Any], obj: dict[str, Any], unknown: list[str]) -> None:
    """Prune unknown fields (appending their paths to ``unknown``) and apply defaults, in place.
    ``metadata``, ``apiVersion`` and ``kind`` at the root are left to the caller."""
    props = root.get("properties") or {}
    for key in list(obj):
        if key in ("apiVersion", "kind", "metadata"):
            continue
        sub = props.get(key)
        if sub is None:
            if not root.get("x-kubernetes-preserve-unknown-fields"):
                unknown.append(key)
                del obj[key]
            continue
        obj[key] = _prune_value(sub, obj[key], key, unknown)
    _apply_defaults(props, obj, skip=("apiVersion", "kind", "metadata"))


def _apply_defaults(props: dict[str, Any], obj: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    for key, sub in props.items():
        if key in skip or "default" not in sub:
            continue
        if key not in obj or (obj[key] is None and not sub.get("nullable")):
            obj[key] = copy.deepcopy(sub["default"])


def _prune_value(schema: dict[str, Any], value: Any, path: str, unknown: list[str]) -> Any:
    if isinstance(value, dict):
        if schema.get("x-kubernetes-embedded-resource"):
            return value
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        for key in list(value):
            sub = props.get(key) if props else None
            if sub is None and isinstance(addl, dict):
                sub = addl
            if sub is None:
                if not preserve and addl is not True:
                    unknown.append(_join(path, key))
                    del value[key]
                continue
            value[key] = _prune_value(sub, value[key], _join(path, key), unknown)
        if props:
            _apply_defaults(props, value)
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [_prune_value(items, v, f"{path}[{i}]", unknown) for i, v in enumerate(value)]
    return value


# ---------------------------------------------------------------------------- validation


def validate(root: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    """All schema violations of ``obj`` (metadata excluded), as 422 causes."""
    causes: list[Cause] = []
    props = root.get("properties") or {}
    for key in root.get("required") or []:
        if key not in obj:
            causes.append({"reason": "FieldValueRequired", "field": key,
                           "message": "Required value"})
    for key, value in obj.items():
        if key == "metadata":
            continue
        sub = props.get(key)
        if sub is not None:
            old_value = old.get(key, _MISSING) if old is not None else _MISSING
            _validate_value(sub, value, key, old_value, causes)
    _run_rules(root, obj, "", old if old is not None else _MISSING, causes)
    return causes


class _Missing:
    pass


_MISSING: Any = _Missing()


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _validate_value(schema: dict[str, Any], value: Any, path: str, old: Any,
                    causes: list[Cause]) -> None:
    expected = schema.get("type")
    if value is None:
        if schema.get("nullable") or not expected:
            return
        causes.append({
            "reason": "FieldValueTypeInvalid", "field": path,
            "message": f'Invalid value: "null": {path} in body must be of type {expected}: "null"',
        })
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            causes.append({
                "reason": "FieldValueTypeInvalid", "field": path,
                "message": f"Invalid value: {go_json(value)}: {path} in body must be of type "
                           f'integer,string: "{type_name(value)}"',
            })
            return
    elif expected and not _type_ok(expected, value):
        causes.append({
            "reason": "FieldValueTypeInvalid", "field": path,
            "message": f"Invalid value: {go_json(value)}: {path} in body must be of type "
                       f'{expected}: "{type_name(value)}"',
        })
        return
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        supported = ", ".join(go_json(e) for e in enum)
        causes.append({
            "reason": "FieldValueNotSupported", "field": path,
            "message": f"Unsupported value: {go_json(value)}: supported values: {supported}",
        })
    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(schema, value, path, causes)
    elif isinstance(value, str):
        _check_string(schema, value, path, causes)
    elif isinstance(value, list):
        _check_array(schema, value, path, old, causes)
    elif isinstance(value, dict):
        _check_object(schema, value, path, old, causes)
    _run_rules(schema, value, path, old, causes)


def _check_number(schema: dict[str, Any], value: float, path: str, causes: list[Cause]) -> None:
    if "maximum" in schema:
        top = schema["maximum"]
        if value > top or (schema.get("exclusiveMaximum") and value == top):
            rel = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
            causes.append({"reason": "FieldValueInvalid", "field": path,
                           "message": f"Invalid value: {go_json(value)}: {path} in body should "
                                      f"be {rel} {top}"})
    if "minimum" in schema:
        low = schema["minimum"]
        if value < low or (schema.get("exclusiveMinimum") and value == low):
            rel = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
            causes.append({"reason": "FieldValueInvalid", "field": path,
                           "message": f"Invalid value: {go_json(value)}: {path} in body should "
                                      f"be {rel} {low}"})
    if "multipleOf" in schema and schema["multipleOf"] and value % schema["multipleOf"]:
        causes.append({"reason": "FieldValueInvalid", "field": path,
                       "message": f"Invalid value: {go_json(value)}: {path} in body should be "
                                  f"a multiple of {schema['multipleOf']}"})


def _format_ok(fmt: str, value: str) -> bool:
    try:
        if fmt in ("date-time", "datetime"):
            return bool(_DATE_TIME_RE.match(value))
        if fmt == "date":
            return bool(_DATE_RE.match(value))
        if fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
            return "/" in value
        if fmt == "ipv4":
            ipaddress.IPv4Address(value)
        elif fmt == "ipv6":
            ipaddress.IPv6Address(value)
        elif fmt == "uuid":
            uuid.UUID(value)
    except ValueError:
        return False
    return True


def _check_string(schema: dict[str, Any], value: str, path: str, causes: list[Cause]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        causes.append({"reason": "FieldValueTooLong", "field": path,
                       "message": f"Too long: may not be more than {schema['maxLength']} bytes"})
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append({"reason": "FieldValueInvalid", "field": path,
                       "message": f"Invalid value: {go_json(value)}: {path} in body should be at "
                                  f"least {schema['minLength']} chars long"})
    pattern = schema.get("pattern")
    if pattern:
        compiled = _PATTERN_CACHE.get(pattern)
        if compiled is None:
            compiled = _PATTERN_CACHE[pattern] = re.compile(pattern)
        if not compiled.search(value):
            causes.append({"reason": "FieldValueInvalid", "field": path,
                           "message": f"Invalid value: {go_json(value)}: {path} in body should "
                                      f"match '{pattern}'"})
    fmt = schema.get("format")
    if fmt and schema.get("type") == "string" and not _format_ok(fmt, value):
        causes.append({"reason": "FieldValueInvalid", "field": path,
                       "message": f"Invalid value: {go_json(value)}: {path} in body must be of "
                                  f"type {fmt}: {go_json(value)}"})


def _check_array(schema: dict[str, Any], value: list[Any], path: str, old: Any,
                 causes: list[Cause]) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append({"reason": "FieldValueTooMany", "field": path,
                       "message": f"Too many: {len(value)}: must have at most "
                                  f"{schema['maxItems']} items"})
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append({"reason": "FieldValueInvalid", "field": path,
                       "message": f"Invalid value: {len(value)}: {path} in body should have at "
                                  f"least {schema['minItems']} items"})
    if schema.get("x-kubernetes-list-type") == "set" or schema.get("uniqueItems"):
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                causes.append({"reason": "FieldValueDuplicate", "field": f"{path}[{i}]",
                               "message": f"Duplicate value: {go_json(item)}"})
            else:
                seen.append(item)
    items = schema.get("items")
    if isinstance(items, dict):
        old_items = old if isinstance(old, list) and schema.get(
            "x-kubernetes-list-type") == "set" else None
        for i, item in enumerate(value):
            old_item = item if old_items is not None and item in old_items else _MISSING
            _validate_value(items, item, f"{path}[{i}]", old_item, causes)


def _check_object(schema: dict[str, Any], value: dict[str, Any], path: str, old: Any,
                  causes: list[Cause]) -> None:
    for key in schema.get("required") or []:
        if key not in value:
            causes.append({"reason": "FieldValueRequired", "field": _join(path, key),
                           "message": "Required value"})
    props = schema.get("properties") or {}
    addl = schema.get("additionalProperties")
    old_map = old if isinstance(old, dict) else {}
    for key, sub_value in value.items():
        sub = props.get(key)
        if sub is None and isinstance(addl, dict):
            sub = addl
        if sub is not None:
            _validate_value(sub, sub_value, _join(path, key), old_map.get(key, _MISSING), causes)
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append({"reason": "FieldValueTooMany", "field": path,
                       "message": f"Too many: {len(value)}: must have at most "
                                  f"{schema['maxProperties']} items"})
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append({"reason": "FieldValueInvalid", "field": path,
                       "message": f"Invalid value: {len(value)}: {path} in body should have at "
                                  f"least {schema['minProperties']} properties"})


def _run_rules(schema: dict[str, Any], value: Any, path: str, old: Any,
               causes: list[Cause]) -> None:
    rules = schema.get("x-kubernetes-validations")
    if not rules:
        return
    for rule in rules:
        expr = rule["rule"]
        transition = "oldSelf" in expr
        if transition and old is _MISSING:
            continue
        env = {"self": value}
        if transition:
            env["oldSelf"] = old
        reason = rule.get("reason", "FieldValueInvalid")
        try:
            ok = cel.evaluate(expr, env)
        except cel.CelError as exc:
            causes.append({"reason": "FieldValueInvalid", "field": path,
                           "message": f"Invalid value: {go_json(value)}: {exc}"})
            continue
        if ok is True:
            continue
        message = rule.get("message") or f"failed rule: {expr}"
        prefix = {"FieldValueForbidden": "Forbidden", "FieldValueRequired": "Required value",
                  "FieldValueDuplicate": f"Duplicate value: {go_json(value)}"}.get(
            reason, f'Invalid value: "{type_name(value)}"')
        field_path = str(rule.get("fieldPath") or "").lstrip(".")
        causes.append({"reason": reason, "field": _join(path, field_path) if field_path else path,
                       "message": f"{prefix}: {message}"})


# ---------------------------------------------------------------------------- metadata


def prune_metadata(meta: dict[str, Any], unknown: list[str]) -> None:
    """Drop unknown ObjectMeta fields; reject wrongly typed ones with 400 like the decoder."""
    for key in list(meta):
        if key not in OBJECT_META_FIELDS:
            unknown.append(f"metadata.{key}")
            del meta[key]
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is None:
            meta.pop(key, None)
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ApiError(400, f"json: cannot unmarshal {type_name(value)} into Go struct field "
                                f"ObjectMeta.metadata.{key} of type map[string]string")
    for key in ("finalizers", "ownerReferences"):
        value = meta.get(key)
        if value is None:
            meta.pop(key, None)
        elif not isinstance(value, list):
            raise ApiError(400, f"json: cannot unmarshal {type_name(value)} into Go struct field "
                                f"ObjectMeta.metadata.{key} of type []")
    for ref in meta.get("ownerReferences") or []:
        if not isinstance(ref, dict):
            raise ApiError(400, "json: cannot unmarshal into Go struct field "
                                "ObjectMeta.metadata.ownerReferences of type v1.OwnerReference")
        for key in list(ref):
            if key not in _OWNER_REF_FIELDS:
                unknown.append(f"metadata.ownerReferences.{key}")
                del ref[key]


def validate_metadata(meta: dict[str, Any], rt: ResourceType, *, creating: bool) -> list[Cause]:
    causes: list[Cause] = []
    name = meta.get("name")
    if not name:
        causes.append({"reason": "FieldValueRequired", "field": "metadata.name",
                       "message": "Required value: name or generateName is required"})
    elif not isinstance(name, str):
        causes.append({"reason": "FieldValueInvalid", "field": "metadata.name",
                       "message": f"Invalid value: {go_json(name)}: must be a string"})
    elif rt.plural == "namespaces" and not rt.group:
        if len(name) > 63 or not _DNS_LABEL_RE.match(name):
            causes.append({"reason": "FieldValueInvalid", "field": "metadata.name",
                           "message": f"Invalid value: {go_json(name)}: {_DNS_LABEL_MSG}"})
    elif len(name) > 253 or not _DNS_SUBDOMAIN_RE.match(name):
        causes.append({"reason": "FieldValueInvalid", "field": "metadata.name",
                       "message": f"Invalid value: {go_json(name)}: {_DNS_SUBDOMAIN_MSG}"})
    for key, value in (meta.get("labels") or {}).items():
        why = validate_label_key(key)
        if why:
            causes.append({"reason": "FieldValueInvalid", "field": "metadata.labels",
                           "message": f"Invalid value: {go_json(key)}: {why}"})
        why = validate_label_value(value)
        if why:
            causes.append({"reason": "FieldValueInvalid", "field": "metadata.labels",
                           "message": f"Invalid value: {go_json(value)}: {why}"})
    annotations = meta.get("annotations") or {}
    for key in annotations:
        why = validate_label_key(key.lower())
        if why:
            causes.append({"reason": "FieldValueInvalid", "field": "metadata.annotations",
                           "message": f"Invalid value: {go_json(key)}: {why}"})
    if sum(len(k) + len(v) for k, v in annotations.items()) > 262144:
        causes.append({"reason": "FieldValueTooLong", "field": "metadata.annotations",
                       "message": "Too long: may not be more than 262144 bytes"})
    for i, fin in enumerate(meta.get("finalizers") or []):
        why = validate_label_key(fin) if isinstance(fin, str) else "must be a string"
        if why:
            causes.append({"reason": "FieldValueInvalid", "field": f"metadata.finalizers[{i}]",
                           "message": f"Invalid value: {go_json(fin)}: {why}"})
    controllers = 0
    for ref in meta.get("ownerReferences") or []:
        for key, what in (("apiVersion", "version"), ("kind", "kind"), ("name", "name"),
                          ("uid", "uid")):
            if not ref.get(key):
                causes.append({"reason": "FieldValueInvalid",
                               "field": f"metadata.ownerReferences.{key}",
                               "message": f'Invalid value: "": {what} must not be empty'})
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        causes.append({"reason": "FieldValueInvalid", "field": "metadata.ownerReferences",
                       "message": "Invalid value: \"array\": Only one reference can have "
                                  "Controller set to true"})
    gen = meta.get("generation")
    if gen is not None and (not isinstance(gen, int) or gen < 0):
        causes.append({"reason": "FieldValueInvalid", "field": "metadata.generation",
                       "message": f"Invalid value: {go_json(gen)}: must be greater than or "
                                  "equal to 0"})
    return causes


def validate_builtin(rt: ResourceType, obj: dict[str, Any]) -> list[Cause]:
    """The checks of the built-in kinds that typed clients depend on."""
    causes: list[Cause] = []
    if rt.group or rt.plural != "pods":
        return causes
    spec = obj.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list) or not containers:
        causes.append({"reason": "FieldValueRequired", "field": "spec.containers",
                       "message": "Required value"})
        return causes
    for i, container in enumerate(containers):
        if not isinstance(container, dict):
            causes.append({"reason": "FieldValueInvalid", "field": f"spec.containers[{i}]",
                           "message": f"Invalid value: {go_json(container)}: must be an object"})
            continue
        cname = container.get("name")
        if not cname:
            causes.append({"reason": "FieldValueRequired", "field": f"spec.containers[{i}].name",
                           "message": "Required value"})
        elif not isinstance(cname, str) or len(cname) > 63 or not _DNS_LABEL_RE.match(cname):
            causes.append({"reason": "FieldValueInvalid", "field": f"spec.containers[{i}].name",
                           "message": f"Invalid value: {go_json(cname)}: {_DNS_LABEL_MSG}"})
        if not container.get("image"):
            causes.append({"reason": "FieldValueRequired",
                           "field": f"spec.containers[{i}].image", "message": "Required value"})
    return causes
