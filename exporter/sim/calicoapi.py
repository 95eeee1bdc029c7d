"""How one Calico object looks in the other API group, as Calico converts it.

Calico stores its resources as ``crd.projectcalico.org/v1`` CRDs and shows them as
``projectcalico.org/v3``, through its aggregated API server (reads and writes go through
``libcalico-go/lib/backend/k8s/resources/resources.go`` at v3.32.1) or, after the v1-to-v3
datastore migration (``kube-controllers/pkg/controllers/migration/migrators/convert.go`` on
master 87c1590), as objects of their own in native v3 CRDs. The conversions here follow those
sources:

- the v3 ``uid`` is the v1 one with the bits of every byte reversed except bytes 6 and 8 (the UUID
  version and variant), which is its own inverse (``conversion.ConvertUID``);
- v3 metadata written through the Calico API server is stored in the v1 object's
  ``projectcalico.org/metadata`` annotation (a JSON ObjectMeta): only labels and annotations that
  contain ``projectcalico.org/`` or ``operator.tigera.io/`` stay on the v1 object itself; reading
  merges the v1 labels with the stored ones (stored win) and takes the stored name when there is
  one (``ConvertCalicoResourceToK8sResource`` / ``ConvertK8sResourceToCalicoResource``);
- a (staged) (global) network policy of the default tier stored as ``default.<name>`` (releases
  before v3.32) shows as ``<name>`` (``determinePolicyName``);
- ``projectcalico.org/v3`` owner references stored on v1 objects carry the v1 apiVersion and the
  converted uid, and are converted back on read;
- ``BlockAffinity.spec.deleted`` is a string in v1 (``strconv.ParseBool``) and a bool in v3; the
  IPAM configuration is ``IPAMConfig``/``ipamconfigs`` in v1, ``IPAMConfiguration``/
  ``ipamconfigurations`` in v3.

This module is pure (dicts in, dicts out) and imports nothing of the exporter.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import orjson

V1_GROUP = "crd.projectcalico.org"
V3_GROUP = "projectcalico.org"
V1_API = f"{V1_GROUP}/v1"
V3_API = f"{V3_GROUP}/v3"
METADATA_ANNOTATION = "projectcalico.org/metadata"
POLICY_KINDS = frozenset({"NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy",
                          "StagedGlobalNetworkPolicy"})
"""Kinds whose v3 name is kept in the metadata annotation and may carry a tier prefix in v1."""
V3_KINDS = {"IPAMConfig": "IPAMConfiguration"}
V1_KINDS = {v3: v1 for v1, v3 in V3_KINDS.items()}
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def convert_uid(uid: str) -> str:
    """``conversion.ConvertUID``: bit-reverse every byte but the version and variant bytes."""
    raw = uuid.UUID(uid).bytes
    out = bytearray(int(f"{b:08b}"[::-1], 2) for b in raw)
    out[6], out[8] = raw[6], raw[8]
    return str(uuid.UUID(bytes=bytes(out)))


def _ours(key: str) -> bool:
    return "projectcalico.org/" in key or "operator.tigera.io/" in key


def _owner_refs(refs: list[dict[str, Any]], *, to: str) -> list[dict[str, Any]]:
    """Owner references with Calico owners translated to the ``to`` API (and the owner uid
    converted): v3 owners when storing, v1 and v3 owners when reading."""
    sources = (V1_API, V3_API) if to == V3_API else (V3_API,)
    out = []
    for ref in refs:
        ref = dict(ref)
        if ref.get("apiVersion") in sources:
            ref["apiVersion"] = to
            if ref.get("uid"):
                ref["uid"] = convert_uid(str(ref["uid"]))
        out.append(ref)
    return out


def policy_name(name: str, tier: object) -> str:
    """``determinePolicyName``: the v3 name of a policy stored under ``name``."""
    if tier in ("default", "", None):
        return name.removeprefix("default.")
    return name


def _deleted_as_bool(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if obj.get("kind") == "BlockAffinity" and isinstance(spec, dict) and "deleted" in spec:
        value = spec["deleted"]
        spec["deleted"] = value if isinstance(value, bool) else str(value) in _TRUE


def to_v3(obj: dict[str, Any], *, kind: str | None = None) -> dict[str, Any]:
    """The ``projectcalico.org/v3`` view of a stored ``crd.projectcalico.org/v1`` object (what
    the Calico API server returns for it)."""
    out = copy.deepcopy(obj)
    out["apiVersion"] = V3_API
    out["kind"] = kind or V3_KINDS.get(str(obj.get("kind")), str(obj.get("kind")))
    _deleted_as_bool(out)
    meta: dict[str, Any] = out["metadata"]
    if meta.get("uid"):
        meta["uid"] = convert_uid(str(meta["uid"]))
    annotations: dict[str, str] = dict(meta.get("annotations") or {})
    stored_raw = annotations.pop(METADATA_ANNOTATION, None)
    if stored_raw is None:
        return out  # not written through the Calico API: only the uid changes
    stored: dict[str, Any] = orjson.loads(stored_raw)
    labels = dict(meta.get("labels") or {})
    labels.update(stored.get("labels") or {})
    annotations.update(stored.get("annotations") or {})
    new = {k: v for k, v in stored.items() if v is not None}
    if new.get("ownerReferences"):
        new["ownerReferences"] = _owner_refs(new["ownerReferences"], to=V3_API)
    if not new.get("name"):
        name = str(meta.get("name"))
        new["name"] = (policy_name(name, (out.get("spec") or {}).get("tier"))
                       if out["kind"] in POLICY_KINDS else name)
    for field in ("namespace", "resourceVersion", "uid"):
        if meta.get(field):
            new[field] = meta[field]
        else:
            new.pop(field, None)
    new.pop("labels", None)
    new.pop("annotations", None)
    if labels:
        new["labels"] = labels
    if annotations:
        new["annotations"] = annotations
    if not new.get("creationTimestamp") and meta.get("creationTimestamp"):
        new["creationTimestamp"] = meta["creationTimestamp"]
    out["metadata"] = new
    return out


def to_v1(obj: dict[str, Any]) -> dict[str, Any]:
    """The ``crd.projectcalico.org/v1`` object the Calico API server stores for a v3 one."""
    kind = str(obj.get("kind"))
    meta: dict[str, Any] = obj.get("metadata") or {}
    kept = {k: v for k, v in meta.items() if k not in ("namespace", "resourceVersion", "uid")}
    if kind not in POLICY_KINDS:
        kept.pop("name", None)
    kept.setdefault("creationTimestamp", None)
    if kept.get("ownerReferences"):
        kept["ownerReferences"] = _owner_refs(kept["ownerReferences"], to=V1_API)
    annotations = {METADATA_ANNOTATION: orjson.dumps(kept).decode()}
    annotations.update({k: v for k, v in (meta.get("annotations") or {}).items() if _ours(k)})
    v1_meta: dict[str, Any] = {"name": meta.get("name"), "annotations": annotations}
    for field in ("namespace", "resourceVersion"):
        if meta.get(field):
            v1_meta[field] = meta[field]
    if meta.get("uid"):
        v1_meta["uid"] = convert_uid(str(meta["uid"]))
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if _ours(k)}
    if labels:
        v1_meta["labels"] = labels
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k != "metadata"}
    out["apiVersion"] = V1_API
    out["kind"] = V1_KINDS.get(kind, kind)
    out["metadata"] = v1_meta
    spec = out.get("spec")
    if kind == "BlockAffinity" and isinstance(spec, dict) and isinstance(spec.get("deleted"),
                                                                         bool):
        spec["deleted"] = "true" if spec["deleted"] else "false"
    return out


def migrated(obj: dict[str, Any], *, kind: str | None = None) -> dict[str, Any]:
    """The native v3 object Calico's v1-to-v3 migration creates for a stored v1 object: its v3
    view without server-side metadata (``defaultConvert``); the new object gets its own uid."""
    out = to_v3(obj, kind=kind)
    meta = out["metadata"]
    for field in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
                  "selfLink"):
        meta.pop(field, None)
    return out
