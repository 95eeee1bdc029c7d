"""The resource types the emulator serves, with the scope, verbs, subresources and field labels
of a real v1.32 API server, and for the Calico kinds the schema of the CRD files in ``crds/``
(``crd.projectcalico.org/v1``, and any other group's CRD there) and ``crds-v3/`` (native
``projectcalico.org/v3``).

Which Calico group is served is a flavour (:func:`calico_types`): ``v1`` (every release so far),
``v3`` (native v3 CRDs: v3.32 tech preview, master's default) or ``both`` (v1 CRDs plus the
``projectcalico.org/v3`` that Calico's aggregated API server serves from them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CRD_DIR = Path(__file__).parent / "crds"
CRD_V3_DIR = Path(__file__).parent / "crds-v3"
CALICO_GROUP = "crd.projectcalico.org"
CALICO_V3_GROUP = "projectcalico.org"
CALICO_APIS = ("v1", "v3", "both")
"""The Calico API flavours the emulator serves (see :func:`calico_types`)."""

V3_PLURALS = {"ipamconfigs": "ipamconfigurations"}
"""v1 plurals whose v3 plural differs (``libcalico-go/lib/backend/k8s/resources/ipam_config.go``:
``IPAMConfigs`` in v1, ``IPAMConfigurations`` in v3); every other plural is the same."""

NOT_AGGREGATED = frozenset({"ipamblocks", "ipamhandles"})
"""v3 plurals the Calico API server does not serve (``apiserver/pkg/registry/projectcalico/rest/
storage_calico.go`` at v3.32.1 has no storage for them)."""

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


def _path(obj: dict[str, Any], *keys: str) -> Any:
    cur: Any = obj
    for key in keys:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _str_field(*keys: str) -> Callable[[dict[str, Any]], str]:
    def get(obj: dict[str, Any]) -> str:
        value = _path(obj, *keys)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return get


def _pod_ips(obj: dict[str, Any]) -> str:
    ips = _path(obj, "status", "podIPs") or []
    return ",".join(str(ip.get("ip", "")) for ip in ips if isinstance(ip, dict))


_META_FIELDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "metadata.name": _str_field("metadata", "name"),
    "metadata.namespace": _str_field("metadata", "namespace"),
}


@dataclass(slots=True)
class ResourceType:
    """One served resource type."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    list_kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    schema: dict[str, Any] | None = None  # openAPIV3Schema for custom resources
    status_subresource: bool = False
    tracks_generation: bool = True
    unconditional_update: bool = False  # PUT without metadata.resourceVersion allowed
    create_on_update: bool = False  # PUT of a missing object creates it
    field_labels: dict[str, Callable[[dict[str, Any]], str]] = field(
        default_factory=lambda: dict(_META_FIELDS)
    )
    printer_columns: tuple[dict[str, Any], ...] = ()
    """The CRD version's ``additionalPrinterColumns`` (server-side tables)."""
    backing: ResourceType | None = None
    """For a type the Calico API server serves (``both`` flavour): the ``crd.projectcalico.org``
    type it stores its objects in; None for every type stored in its own right."""

    @property
    def custom(self) -> bool:
        return self.schema is not None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``plural.group`` (just ``plural`` for the core group), as in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    def discovery(self) -> list[dict[str, Any]]:
        """The APIResource entries of this type (and of its status subresource)."""
        entry: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        out = [entry]
        if self.status_subresource:
            out.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        return out


def builtin_types() -> list[ResourceType]:
    """The built-in kinds served: v1 nodes, pods, namespaces, services, configmaps,
    serviceaccounts; NetworkPolicy; Lease; apps/v1 Deployment and DaemonSet; the RBAC kinds.
    Scopes, short names, categories and status subresources as a v1.32 server has them."""
    pod_fields = dict(_META_FIELDS)
    pod_fields.update(
        {
            "spec.nodeName": _str_field("spec", "nodeName"),
            "spec.restartPolicy": _str_field("spec", "restartPolicy"),
            "spec.schedulerName": _str_field("spec", "schedulerName"),
            "spec.serviceAccountName": _str_field("spec", "serviceAccountName"),
            "spec.hostNetwork": lambda o: "true" if _path(o, "spec", "hostNetwork") else "false",
            "status.phase": _str_field("status", "phase"),
            "status.podIP": _str_field("status", "podIP"),
            "status.podIPs": _pod_ips,
            "status.nominatedNodeName": _str_field("status", "nominatedNodeName"),
        }
    )
    node_fields = {
        "metadata.name": _META_FIELDS["metadata.name"],
        "spec.unschedulable": lambda o: "true" if _path(o, "spec", "unschedulable") else "false",
    }
    ns_fields = {
        "metadata.name": _META_FIELDS["metadata.name"],
        "status.phase": _str_field("status", "phase"),
    }
    return [
        ResourceType(
            "", "v1", "nodes", "node", "Node", "NodeList", False, ("no",),
            status_subresource=True, tracks_generation=False, unconditional_update=True,
            field_labels=node_fields,
        ),
        ResourceType(
            "", "v1", "pods", "pod", "Pod", "PodList", True, ("po",), ("all",),
            status_subresource=True, tracks_generation=False, unconditional_update=True,
            field_labels=pod_fields,
        ),
        ResourceType(
            "", "v1", "namespaces", "namespace", "Namespace", "NamespaceList", False, ("ns",),
            status_subresource=True, tracks_generation=False, unconditional_update=True,
            field_labels=ns_fields,
        ),
        ResourceType(
            "", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount",
            "ServiceAccountList", True, ("sa",), tracks_generation=False,
            unconditional_update=True,
        ),
        ResourceType(
            "networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy",
            "NetworkPolicyList", True, ("netpol",), unconditional_update=True,
        ),
        ResourceType(
            "coordination.k8s.io", "v1", "leases", "lease", "Lease", "LeaseList", True,
            tracks_generation=False, unconditional_update=True, create_on_update=True,
        ),
        # What an installation applies (deploy/base): workloads, their Services, config, RBAC.
        ResourceType(
            "", "v1", "services", "service", "Service", "ServiceList", True, ("svc",), ("all",),
            status_subresource=True, tracks_generation=False, unconditional_update=True,
        ),
        ResourceType(
            "", "v1", "configmaps", "configmap", "ConfigMap", "ConfigMapList", True, ("cm",),
            tracks_generation=False, unconditional_update=True,
        ),
        ResourceType(
            "apps", "v1", "deployments", "deployment", "Deployment", "DeploymentList", True,
            ("deploy",), ("all",), status_subresource=True, unconditional_update=True,
        ),
        ResourceType(
            "apps", "v1", "daemonsets", "daemonset", "DaemonSet", "DaemonSetList", True,
            ("ds",), ("all",), status_subresource=True, unconditional_update=True,
        ),
        *(ResourceType(
            "rbac.authorization.k8s.io", "v1", plural, plural[:-1], kind, kind + "List",
            namespaced, tracks_generation=False, unconditional_update=True,
        ) for plural, kind, namespaced in (
            ("clusterroles", "ClusterRole", False),
            ("clusterrolebindings", "ClusterRoleBinding", False),
            ("roles", "Role", True),
            ("rolebindings", "RoleBinding", True),
        )),
    ]


def crd_types(paths: Iterable[Path] | None = None) -> list[ResourceType]:
    """Resource types from CRD YAML files (default: every CRD file in ``crds/``)."""
    files = sorted(paths) if paths is not None else sorted(CRD_DIR.glob("*.yaml"))
    out: list[ResourceType] = []
    for path in files:
        spec = load_crd(path)["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            selectable = {
                sf["jsonPath"].lstrip("."): _str_field(*sf["jsonPath"].lstrip(".").split("."))
                for sf in version.get("selectableFields", [])
            }
            labels = dict(_META_FIELDS)
            labels.update(selectable)
            out.append(
                ResourceType(
                    spec["group"], version["name"], names["plural"],
                    names.get("singular", names["kind"].lower()), names["kind"],
                    names.get("listKind", names["kind"] + "List"),
                    spec["scope"] == "Namespaced",
                    tuple(names.get("shortNames", ())), tuple(names.get("categories", ())),
                    schema=version["schema"]["openAPIV3Schema"],
                    status_subresource="status" in (version.get("subresources") or {}),
                    field_labels=labels,
                    printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
                )
            )
    return out


@functools.cache
def load_crd(path: Path) -> dict[str, Any]:
    """One CRD file, parsed once per process (the files are package data and never change;
    callers treat the result as read-only)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open() as fh:
        crd: dict[str, Any] = yaml.load(fh, Loader=loader)  # noqa: S506  (a safe loader)
    return crd


def crd_group(path: Path) -> str:
    """``spec.group`` of a CRD file."""
    return str(load_crd(path)["spec"]["group"])


def calico_types(calico_api: str = "v1", *, cns_status_subresource: bool = False,
                 without: Iterable[str] = ()) -> list[ResourceType]:
    """The custom resource types of one Calico flavour.

    * ``v1``: every CRD file of ``crds/`` (the ``crd.projectcalico.org`` ones and any other
      group's, such as ``policy.networking.k8s.io``);
    * ``v3``: the ``crds/`` files of groups other than ``crd.projectcalico.org``, and every file
      of ``crds-v3/``;
    * ``both``: ``v1`` plus, for every v3 kind the Calico API server serves and whose v1 CRD is
      here, a ``projectcalico.org/v3`` type backed by the v1 one (:attr:`ResourceType.backing`;
      the aggregated server has no status subresource for these kinds).

    ``cns_status_subresource`` gives CalicoNodeStatus a ``status`` subresource in the group that
    stores it, as the CRDs of Calico master do (calico-node writes its status through it).
    ``without`` names plurals whose CRDs the cluster does not have, in any group (a Calico before
    3.30 has no staged policies; a cluster may lack ClusterNetworkPolicy); the Calico API server
    then serves no v3 view of them either.
    """
    if calico_api not in CALICO_APIS:
        raise ValueError(f"unknown Calico API flavour {calico_api!r}; one of "
                         f"{', '.join(CALICO_APIS)}")
    absent = frozenset(without)
    v1_files = sorted(CRD_DIR.glob("*.yaml"))
    if calico_api == "v3":
        files = [p for p in v1_files if crd_group(p) != CALICO_GROUP]
        files += sorted(CRD_V3_DIR.glob("*.yaml"))
    else:
        files = v1_files
    types = [rt for rt in crd_types(files) if rt.plural not in absent]
    if cns_status_subresource:
        for rt in types:
            if rt.plural == "caliconodestatuses" and rt.group in (CALICO_GROUP, CALICO_V3_GROUP):
                rt.status_subresource = True
    if calico_api == "both":
        stored = {rt.plural: rt for rt in types if rt.group == CALICO_GROUP}
        v1_plural = {v3: v1 for v1, v3 in V3_PLURALS.items()}
        for rt in crd_types(sorted(CRD_V3_DIR.glob("*.yaml"))):
            backing = stored.get(v1_plural.get(rt.plural, rt.plural))
            if backing is None or rt.plural in NOT_AGGREGATED:
                continue
            rt.status_subresource = False
            rt.backing = backing
            types.append(rt)
    return types


class Registry:
    """Lookup of served types by path parts, by kubectl-style name and by apiVersion/kind."""

    def __init__(self, types: Iterable[ResourceType]) -> None:
        self.types: list[ResourceType] = []
        self._by_key: dict[tuple[str, str, str], ResourceType] = {}
        self._by_gvk: dict[tuple[str, str], ResourceType] = {}
        self.add(types)

    def add(self, types: Iterable[ResourceType]) -> None:
        """Serve more types (a type with the key of a served one replaces it)."""
        for rt in types:
            old = self._by_key.get(rt.key)
            if old is not None:
                self.types.remove(old)
                self._by_gvk.pop((old.api_version, old.kind), None)
            self.types.append(rt)
            self._by_key[rt.key] = rt
            self._by_gvk[(rt.api_version, rt.kind)] = rt

    def remove(self, rt: ResourceType) -> None:
        """Stop serving one type."""
        if self._by_key.get(rt.key) is rt:
            self.types.remove(rt)
            del self._by_key[rt.key]
            self._by_gvk.pop((rt.api_version, rt.kind), None)

    def by_path(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_key.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return self._by_gvk.get((api_version, kind))

    def by_kind_name(self, group: str, kind: str) -> ResourceType | None:
        """The type for an owner reference (any served version of ``group``)."""
        for t in self.types:
            if t.group == group and t.kind == kind:
                return t
        return None

    def resolve(self, name: str) -> ResourceType:
        """Resolve ``pods``, ``ippools.crd.projectcalico.org``, ``ippools``... (ValueError if
        unknown or ambiguous)."""
        matches = [
            t for t in self.types
            if name in (t.plural, t.qualified, f"{t.plural}.{t.version}.{t.group}")
        ]
        if not matches:
            matches = [t for t in self.types if name in (t.singular, t.kind, *t.short_names)]
        if len(matches) > 1:
            exact = [t for t in matches if name == t.qualified]
            if len(exact) == 1:
                return exact[0]
            options = ", ".join(sorted(t.qualified for t in matches))
            raise ValueError(f"resource {name!r} is ambiguous: use one of {options}")
        if not matches:
            raise ValueError(f"unknown resource {name!r}")
        return matches[0]

    def groups(self) -> dict[str, list[str]]:
        """Non-core group name to its versions, in registration order."""
        out: dict[str, list[str]] = {}
        for t in self.types:
            if t.group and t.version not in out.setdefault(t.group, []):
                out[t.group].append(t.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.types if t.group == group and t.version == version]
