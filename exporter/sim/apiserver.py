"""``ApiServer``: a Kubernetes API server emulator over HTTP (aiohttp), plus a synchronous
in-process control API, faithful to the semantics of a real v1.32 API server that a
watch-based client and kubectl rely on.

Served: v1 nodes, pods, namespaces, services, configmaps, serviceaccounts;
networking.k8s.io/v1 networkpolicies; coordination.k8s.io/v1 leases; apps/v1 deployments and
daemonsets; rbac.authorization.k8s.io/v1 clusterroles, clusterrolebindings, roles, rolebindings;
and Calico's CRDs in one of three flavours (``calico_api``, see
:func:`exporter.sim.resources.calico_types`): ``v1``, every CRD of ``crds/`` (the
``crd.projectcalico.org/v1`` ones, none with a status subresource in v3.32.1, so
``.../caliconodestatuses/NAME/status`` is 404, and ``policy.networking.k8s.io/v1alpha2``
clusternetworkpolicies); ``v3``, the non-Calico CRDs of ``crds/`` and the native
``projectcalico.org/v3`` CRDs of ``crds-v3/`` (IPPool has a status subresource); ``both``, the
v1 flavour plus the ``projectcalico.org/v3`` that Calico's aggregated API server serves from it
(the same objects, converted as Calico converts them, at the storage's resourceVersions; writes,
server-side apply included, go through to the v1 objects: :mod:`exporter.sim.aggregated`).
Scopes, schemas, subresources and printer columns come from the CRD files;
``cns_status_subresource=True`` gives CalicoNodeStatus the ``status`` subresource of Calico
master; ``without_crds`` leaves some CRDs out of the flavour (a Calico before 3.30 has no staged
policies) and ``crd_files`` serves exactly the given CRDs instead of a flavour. CRDs can be
installed (``serve_crds``) and a whole group deleted (``drop_group``) while serving, as Calico's
v1-to-v3 datastore migration does: the CRD finalizer deletes every object (DELETED events), then
the group leaves discovery, its requests get 404 and its open watches end.

HTTP semantics (each has a contract test in ``tests/sim/test_apiserver_contract.py``):

* Routing and discovery: ``/api``, ``/api/v1``, ``/apis``, ``/apis/{g}``, ``/apis/{g}/{v}``
  (legacy discovery; aggregated-discovery Accept headers get the legacy documents, which
  client-go accepts), ``/version`` and ``/version/`` with every VersionInfo field,
  ``/openapi/v3`` (see :mod:`exporter.sim.openapi`; ``/openapi/v2`` is 404 and kubectl does not
  need it), ``/healthz``, ``/livez``, ``/readyz``. A namespaced path for a cluster-scoped type
  is 404. ``Accept: ...;as=Table;g=meta.k8s.io`` gets server-side tables (get, list, watch).
* Every error is a ``Status`` object; query booleans are parsed like Go's ``strconv.ParseBool``.
* Auth: ``Authorization: Bearer <token>`` (401 when missing or wrong; ``token=None`` disables
  auth). kubectl sends tokens only over TLS: ``tls=True`` serves HTTPS with a self-signed
  certificate that ``write_kubeconfig`` embeds as the cluster CA. ``/version``, ``/healthz``,
  ``/livez`` and ``/readyz`` are readable without a token (as the
  ``system:public-info-viewer`` role allows). Optional RBAC from ClusterRole rules (403);
  discovery and other non-resource URLs are always allowed to an authenticated user (as
  ``system:discovery`` does). ``rbac_hits`` counts the index of the rule that allowed each
  request.
* Reviews (:mod:`exporter.sim.reviews`): ``POST`` TokenReview and SubjectAccessReview, evaluated
  against the emulator's users (``add_user``: a token, a username, RBAC rules) and group grants
  (``grant_group``), nonResourceURLs included; creating them needs ``create`` on
  ``tokenreviews`` / ``subjectaccessreviews`` when RBAC is on.
* Create (201; uid, resourceVersion, creationTimestamp, generation; generateName; 409
  AlreadyExists; 400 on an apiVersion/kind mismatch; 404 when the namespace does not exist, 403
  when it is terminating); get; list (sorted by namespace/name, apiVersion/kind on items, the list
  RV; ``resourceVersion``/``resourceVersionMatch`` rules; ``limit``/``continue`` from one snapshot,
  410 for a token older than the compaction point; ``resourceVersion=0`` ignores ``limit`` as the
  watch cache does); replace (RV mandatory for custom resources, 409 on mismatch); patch (merge,
  JSON, strategic merge for built-ins only, server-side apply: :mod:`exporter.sim.apply`; 415
  for anything else);
  no-op writes keep the RV and emit no event; generation rules; ``dryRun=All``;
  ``fieldValidation`` (Warn adds ``Warning`` headers, Strict is 400, Ignore); delete (returns the
  object; finalizers set ``deletionTimestamp``; preconditions; propagation policies);
  deletecollection; garbage collection of ownerReferences as a background step.
* Label and field selectors on list and watch (pods support ``spec.nodeName``, ``status.phase``
  and the other pod field labels of the real server).
* Watch: 200 chunked ``application/json``, headers flushed at once, one event per line, strictly
  RV-ordered; RV unset or "0" replays the current objects as ADDED; RV older than the compaction
  point gives an ERROR 410 event then close (or HTTP 410 with ``watch_expired_as_http=True``);
  BOOKMARKs only with ``allowWatchBookmarks`` every ``bookmark_interval`` seconds and just before a
  timeout close; ``timeoutSeconds``; ``max_watch_seconds`` caps every watch.

Deliberate simplifications (documented here, not hidden): pods are deleted immediately (no
kubelet to confirm a graceful deletion); managedFields are recorded by server-side apply only
(not for Update operations), and the lists of built-in kinds are atomic to it; built-in kinds
have no schema, so only their metadata is pruned and validated (plus the pod fields typed
clients require: containers with name and image), and their spec gets no defaults (a
Deployment's strategy, a Service's clusterIP); the ``serviceaccounts/token`` subresource
(TokenRequest) is not served; the in-process API writes spec
and status together (it stands for etcd-level writes by controllers); ``seed()`` upserts and
keeps given uids and creationTimestamps. The request log keeps the last ``request_log_limit``
requests (bodies cut at 64 KiB).

The in-process control API is synchronous and must be called on the event loop thread when
the server runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import builtins
import fnmatch
import logging
import ssl
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from exporter.sim import aggregated, errors, rbac, reviews, tables
from exporter.sim.apply import check_manager
from exporter.sim.errors import ApiError
from exporter.sim.openapi import OpenApiDocs
from exporter.sim.resources import (
    CALICO_GROUP,
    CALICO_V3_GROUP,
    Registry,
    ResourceType,
    builtin_types,
    calico_types,
    crd_types,
)
from exporter.sim.selectors import FieldSelector, LabelSelector, SelectorError
from exporter.sim.store import (
    APPLY_PATCH,
    DELETED,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    Entry,
    Event,
    Store,
)
from exporter.sim.tls import self_signed

__all__ = ["ApiError", "ApiServer", "RequestRecord"]

_log = logging.getLogger(__name__)

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4",
    "gitCommit": "59526cd4867447956156ae3a602fcbac10a2c335",
    "gitTreeState": "clean",
    "buildDate": "2025-04-22T16:02:27Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_PUBLIC_PATHS = frozenset({"/version", "/version/", "/healthz", "/livez", "/readyz"})
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
FAULTS = ("status", "watch_error_410", "drop", "stall", "delay")


@dataclass(slots=True)
class RequestRecord:
    """One HTTP request as the server saw it (``status`` is set as soon as it is decided)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    user_agent: str
    time: float
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def watch(self) -> bool:
        return self.query.get("watch", "") in _TRUE


@dataclass(slots=True)
class _Fault:
    kind: str
    path: str
    method: str | None
    remaining: int | None
    params: dict[str, Any]


def parse_bool(value: str | None, name: str) -> bool:
    """Go's ``strconv.ParseBool``; a bad value is a 400 like the real parameter decoder."""
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errors.bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax ({name})')


def _parse_int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(
            f'strconv.ParseInt: parsing "{value}": invalid syntax ({name})') from None


class _Route:
    __slots__ = ("name", "namespace", "rt", "subresource")

    def __init__(self, rt: ResourceType, namespace: str, name: str, subresource: str) -> None:
        self.rt = rt
        self.namespace = namespace
        self.name = name
        self.subresource = subresource


class ApiServer:
    """The emulator: HTTP server plus synchronous in-process control API."""

    def __init__(
        self,
        *,
        token: str | None = "sim-token",  # noqa: S107 - a test token, not a secret
        rbac_rules: list[dict[str, Any]] | str | Path | None = None,
        bookmark_interval: float = 1.0,
        max_watch_seconds: float | None = None,
        watch_expired_as_http: bool = False,
        system_namespaces: bool = True,
        user: str = "system:serviceaccount:calico-exporter:calico-exporter",
        crd_files: Iterable[Path] | None = None,
        tls: bool = False,
        request_log_limit: int = 100_000,
        calico_api: str = "v1",
        cns_status_subresource: bool = False,
        without_crds: Iterable[str] = (),
    ) -> None:
        """``crd_files`` serves exactly those CRDs instead of a Calico flavour; ``without_crds``
        leaves the CRDs of those plurals out of the flavour (:func:`calico_types`)."""
        self.cns_status_subresource = cns_status_subresource
        custom = crd_types(crd_files) if crd_files is not None else calico_types(
            calico_api, cns_status_subresource=cns_status_subresource, without=without_crds)
        self.registry = Registry([*builtin_types(), *custom])
        self.store = Store(self.registry, system_namespaces=system_namespaces)
        self.token = token
        self.user = user
        self.rbac_rules: list[dict[str, Any]] | None = (
            rbac.load_rules(rbac_rules) if isinstance(rbac_rules, str | Path) else rbac_rules
        )
        self.rbac_hits: Counter[int] = Counter()
        self.bookmark_interval = bookmark_interval
        self.max_watch_seconds = max_watch_seconds
        self.watch_expired_as_http = watch_expired_as_http
        self.requests: list[RequestRecord] = []
        self.request_log_limit = request_log_limit
        self.url = ""
        self._faults: list[_Fault] = []
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._stop_event: asyncio.Event | None = None
        self._watchers = 0
        self.tls = tls
        self.ca_pem: bytes | None = None
        self._tls_dir: tempfile.TemporaryDirectory[str] | None = None
        self.openapi = OpenApiDocs(self.registry)
        self.users: dict[str, reviews.Identity] = {}
        """Bearer token -> user, for TokenReviews (the main token is added at start)."""
        self.grants: dict[str, list[dict[str, Any]]] = {}
        """Username or ``group:<name>`` -> RBAC rules, for SubjectAccessReviews."""

    def add_user(self, token: str, username: str, *,
                 rules: Iterable[dict[str, Any]] = ()) -> reviews.Identity:
        """A user that TokenReviews authenticate by ``token`` and SubjectAccessReviews evaluate
        with ``rules`` (a service account's groups for ``system:serviceaccount:NS:NAME``)."""
        identity = reviews.identity_for(username)
        self.users[token] = identity
        self.grants.setdefault(username, []).extend(rules)
        return identity

    def grant_group(self, group: str, rules: Iterable[dict[str, Any]]) -> None:
        """Bind ``rules`` to every member of ``group`` (as a ClusterRoleBinding to a Group)."""
        self.grants.setdefault(f"group:{group}", []).extend(rules)

    # ================================================================== lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on ``host:port`` (0 picks a free port); ``url`` is set afterwards."""
        self._closing = False
        self._stop_event = asyncio.Event()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                               shutdown_timeout=0.2)
        await runner.setup()
        ssl_context = await asyncio.to_thread(self._ssl_context) if self.tls else None
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        self._runner = runner
        addr = runner.addresses[0]
        shown = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        self.url = f"{'https' if self.tls else 'http'}://{shown}:{addr[1]}"

    def _ssl_context(self) -> ssl.SSLContext:
        """A server context with a new self-signed certificate (blocking: run in a thread)."""
        if self._tls_dir is None:
            cert, key = self_signed()
            self._tls_dir = tempfile.TemporaryDirectory(prefix="sim-apiserver-")
            Path(self._tls_dir.name, "tls.crt").write_bytes(cert)
            key_path = Path(self._tls_dir.name, "tls.key")
            key_path.touch(mode=0o600)
            key_path.write_bytes(key)
            self.ca_pem = cert
        folder = Path(self._tls_dir.name)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(folder / "tls.crt", folder / "tls.key")
        return ctx

    async def stop(self) -> None:
        """Stop serving; open watches end at once."""
        self._closing = True
        if self._stop_event is not None:
            self._stop_event.set()
        for bucket in self.store.buckets.values():
            for waiter in bucket.waiters:
                waiter.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._tls_dir is not None:
            self._tls_dir.cleanup()
            self._tls_dir = None

    @property
    def open_watches(self) -> int:
        """How many watch streams are open right now."""
        return self._watchers

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion (etcd revision)."""
        return self.store.rv

    @property
    def calico_group(self) -> str:
        """The group whose CRDs hold Calico's data: ``crd.projectcalico.org`` while its CRDs are
        served, else ``projectcalico.org`` when native v3 CRDs are; "" when neither is."""
        stored = {rt.group for rt in self.registry.types if rt.backing is None}
        for group in (CALICO_GROUP, CALICO_V3_GROUP):
            if group in stored:
                return group
        return ""

    @property
    def calico_api_version(self) -> str:
        """``crd.projectcalico.org/v1`` or ``projectcalico.org/v3``: where Calico writes."""
        group = self.calico_group
        return {CALICO_GROUP: f"{CALICO_GROUP}/v1",
                CALICO_V3_GROUP: f"{CALICO_V3_GROUP}/v3"}.get(group, "")

    def calico_resource(self, plural: str) -> str:
        """``plural.group`` of a Calico resource in the group that holds the data."""
        return f"{plural}.{self.calico_group}"

    def serve_crds(self, paths: Iterable[Path]) -> list[ResourceType]:
        """Install CRDs while serving: their types join discovery (a type with the key of a
        served one, such as the Calico API server's, replaces it: its watches end)."""
        types = crd_types(paths)
        for rt in types:
            if self.cns_status_subresource and rt.plural == "caliconodestatuses":
                rt.status_subresource = True
            old = self.registry.by_path(rt.group, rt.version, rt.plural)
            if old is not None:
                self.store.remove_type(old, delete_instances=False)
        self.registry.add(types)
        self.store.add_types(types)
        self.openapi = OpenApiDocs(self.registry)
        return types

    def drop_group(self, group: str, *, delete_instances: bool = True) -> None:
        """Delete every CRD of ``group`` while serving, as ``kubectl delete crd`` does: each
        object is deleted first (``delete_instances``), then the types leave discovery (with the
        Calico API server types served from them), requests get 404 and open watches end."""
        gone = [rt for rt in self.registry.types
                if rt.group == group or (rt.backing is not None and rt.backing.group == group)]
        for rt in gone:
            self.store.remove_type(rt, delete_instances=delete_instances and rt.backing is None)
            self.registry.remove(rt)
        self.openapi = OpenApiDocs(self.registry)

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig for this server (URL, token, and the CA when serving TLS) usable by
        kubectl and kubernetes-asyncio. kubectl sends the token only over TLS (``tls=True``)."""
        if not self.url:
            raise RuntimeError("start() the server before writing a kubeconfig")
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_pem is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sim", "cluster": cluster}],
            "users": [{"name": "sim", "user": user}],
            "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "sim",
                                                     "namespace": "default"}}],
            "current-context": "sim",
            "preferences": {},
        }
        out = Path(path)
        out.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return out

    # ================================================================== in-process control API

    def resolve(self, resource: str) -> ResourceType:
        """The type for ``pods``, ``ippools.crd.projectcalico.org``, ``ippools``..."""
        return self.registry.resolve(resource)

    def _type_of(self, obj: dict[str, Any]) -> ResourceType:
        rt = self.registry.by_kind(str(obj.get("apiVersion")), str(obj.get("kind")))
        if rt is None:
            raise ValueError(f"no served type for apiVersion={obj.get('apiVersion')!r} "
                             f"kind={obj.get('kind')!r}")
        return rt

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` (type from apiVersion/kind); validated like a POST; emits ADDED."""
        rt = self._type_of(obj)
        ns = str((obj.get("metadata") or {}).get("namespace") or "")
        if rt.backing is not None:
            return aggregated.Writer(self.store).create(rt, ns, obj)[0]
        created, _ = self.store.create(rt, ns, obj)
        return created

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """One object (a copy); ``ApiError`` 404 when absent."""
        rt = self.resolve(resource)
        return orjson.loads(self.store.get_entry(rt, namespace or "", name).raw)  # type: ignore[no-any-return]

    def list(self, resource: str, namespace: str | None = None, *,
             label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        """Current objects (copies), sorted by namespace and name."""
        rt = self.resolve(resource)
        try:
            labels = LabelSelector(label_selector) if label_selector else None
            fields = FieldSelector(field_selector, rt.field_labels) if field_selector else None
        except SelectorError as exc:
            raise ValueError(str(exc)) from exc
        entries = self.store.select(rt, self.store.snapshot(rt, self.store.rv), namespace,
                                    labels, fields)
        return [orjson.loads(e.raw) for e in entries]

    def update(self, obj: dict[str, Any], *, subresource: str | None = None) -> dict[str, Any]:
        """Replace ``obj`` (spec and status); checks ``metadata.resourceVersion`` when present.
        ``subresource="status"`` writes only the status, as a PUT to ``.../status`` does (404
        when the type has no status subresource)."""
        rt = self._type_of(obj)
        meta = obj.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if rt.backing is not None:
            return aggregated.Writer(self.store).update(rt, ns, name, obj,
                                                        subresource=subresource,
                                                        require_rv=False)[0]
        if subresource is not None:
            if subresource != "status" or not rt.status_subresource:
                raise errors.no_route()
            updated, _ = self.store.update(rt, ns, name, obj, subresource=subresource,
                                           require_rv=False)
            return updated
        updated, _ = self.store.update(rt, ns, name, obj, require_rv=False, raw_write=True)
        return updated

    def patch(self, resource: str, name: str, patch: dict[str, Any] | builtins.list[Any], *,
              namespace: str | None = None, patch_type: str = "merge") -> dict[str, Any]:
        """Patch with ``patch_type`` "merge" (RFC 7386), "json" (RFC 6902) or "strategic"."""
        rt = self.resolve(resource)
        content_type = {"merge": MERGE_PATCH, "json": JSON_PATCH,
                        "strategic": STRATEGIC_PATCH}.get(patch_type)
        if content_type is None:
            raise ValueError(f"unknown patch_type {patch_type!r}")
        if rt.backing is not None:
            return aggregated.Writer(self.store).patch(rt, namespace or "", name, content_type,
                                                       patch)[0]
        patched, _ = self.store.patch(rt, namespace or "", name, content_type, patch,
                                      raw_write=True)
        return patched

    def delete(self, resource: str, name: str, namespace: str | None = None, *,
               propagation_policy: str | None = None) -> dict[str, Any] | None:
        """Delete; returns the deleted object, or the object now pending deletion (finalizers)."""
        rt = self.resolve(resource)
        opts = {"propagationPolicy": propagation_policy} if propagation_policy else None
        if rt.backing is not None:
            return aggregated.Writer(self.store).delete(rt, namespace or "", name, opts)
        return self.store.delete(rt, namespace or "", name, opts)

    def subscribe(self, resource: str,
                  callback: Callable[[str, dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback(event_type, obj)`` after each committed change of ``resource``;
        returns the unsubscribe function."""
        bucket = self.store.bucket(self.resolve(resource))
        bucket.subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in bucket.subscribers:
                bucket.subscribers.remove(callback)

        return unsubscribe

    def seed(self, objs: Iterable[dict[str, Any]]) -> None:
        """Create (or replace, when present) many objects in any order: namespaces first, and
        garbage collection runs only once all are in."""
        items = list(objs)
        items.sort(key=lambda o: 0 if o.get("kind") == "Namespace" else 1)
        store = self.store
        with store.gc_deferred():
            for obj in items:
                rt = self._type_of(obj)
                meta = obj.get("metadata") or {}
                ns = str(meta.get("namespace") or "") if rt.namespaced else ""
                name = str(meta.get("name") or "")
                if rt.backing is not None and (ns, name) in store.bucket(rt).objects:
                    body = dict(obj, metadata={k: v for k, v in meta.items()
                                               if k != "resourceVersion"})
                    aggregated.Writer(store).update(rt, ns, name, body, require_rv=False)
                elif rt.backing is not None:
                    aggregated.Writer(store).create(rt, ns, obj)
                elif name and (ns, name) in store.bucket(rt).objects:
                    body = dict(obj, metadata={k: v for k, v in meta.items()
                                               if k != "resourceVersion"})
                    store.update(rt, ns, name, body, require_rv=False, raw_write=True)
                else:
                    store.create(rt, ns, obj, seeding=True)

    def compact(self) -> None:
        """Forget the event log up to now: older RVs and continue tokens get 410."""
        self.store.compact()

    def run_gc(self) -> None:
        """Run the garbage collector now (it also runs by itself after each relevant write)."""
        self.store.run_gc()

    def inject(self, fault: str, *, path: str = "*", count: int = 1, **params: Any) -> None:
        """Inject a fault for the next ``count`` requests whose URL path matches the glob
        ``path`` (``count=0``: every matching request until ``clear_faults()``).

        * ``status``: answer ``code`` (500, 503, 429, 410...) instead of handling the request;
          ``retry_after`` seconds adds a ``Retry-After`` header.
        * ``watch_error_410``: a watch sends an ERROR event with code 410 after ``after_events``
          events (default 0) or ``after_seconds``, then closes. Matches watch requests only.
        * ``drop``: the connection is reset mid-response (for a watch after ``after_events``
          events, default 0).
        * ``stall``: a watch stays open but sends nothing at all (not even bookmarks) for
          ``seconds`` (default: until closed), then goes on; other requests wait that long.
        * ``delay``: wait ``seconds`` before handling the request.

        ``method=...`` restricts the fault to one HTTP method.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        method = params.pop("method", None)
        self._faults.append(_Fault(fault, path, method.upper() if method else None,
                                   None if count == 0 else count, params))

    def clear_faults(self) -> None:
        self._faults.clear()

    def clear_requests(self) -> None:
        self.requests.clear()

    # ================================================================== HTTP

    def _take_fault(self, request: web.Request, is_watch: bool) -> _Fault | None:
        for fault in self._faults:
            if fault.method and fault.method != request.method:
                continue
            if fault.kind == "watch_error_410" and not is_watch:
                continue
            if not fnmatch.fnmatchcase(request.path, fault.path):
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
            return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read() if request.can_read_body else b""
        except web.HTTPRequestEntityTooLarge as exc:
            return self._error_response(ApiError(413, exc.text or "Request entity too large"))
        record = RequestRecord(
            method=request.method, path=request.path, query=dict(request.query),
            content_type=request.headers.get("Content-Type", ""),
            user_agent=request.headers.get("User-Agent", ""), time=time.time(),
            headers=dict(request.headers), body=body if len(body) <= 65536 else body[:65536],
        )
        self.requests.append(record)
        if len(self.requests) > self.request_log_limit:
            del self.requests[: len(self.requests) - self.request_log_limit // 2]
        try:
            resp = await self._dispatch(request, body, record)
        except ApiError as exc:
            resp = self._error_response(exc)
        except web.HTTPException as exc:
            resp = self._error_response(ApiError(exc.status, exc.reason))
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:  # a bug in the emulator: answer like the real server does
            _log.exception("sim apiserver: internal error on %s %s", request.method, request.path)
            resp = self._error_response(ApiError(500, f"Internal error occurred: {exc!r}"))
        if record.status == 0:
            record.status = resp.status
        return resp

    @staticmethod
    def _error_response(exc: ApiError) -> web.Response:
        return web.Response(status=exc.status, body=orjson.dumps(exc.to_status()),
                            content_type="application/json", headers=exc.headers)

    def _check_auth(self, request: web.Request) -> None:
        if self.token is None:
            return
        header = request.headers.get("Authorization")
        if header is None and request.path in _PUBLIC_PATHS:
            return
        if header != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized")

    async def _sleep(self, seconds: float | None) -> None:
        assert self._stop_event is not None
        try:
            await asyncio.wait_for(self._stop_event.wait(), seconds)
        except TimeoutError:
            return

    async def _dispatch(self, request: web.Request, body: bytes,
                        record: RequestRecord) -> web.StreamResponse:
        self._check_auth(request)
        query = request.query
        is_watch = request.method == "GET" and parse_bool(query.get("watch"), "watch")
        fault = self._take_fault(request, is_watch)
        if fault is not None:
            if fault.kind == "status":
                code = int(fault.params.get("code", 500))
                headers = {}
                if fault.params.get("retry_after") is not None:
                    headers["Retry-After"] = str(fault.params["retry_after"])
                message = {429: "Too many requests, please try again later.",
                           410: "too old resource version",
                           503: "the server is currently unable to handle the request"}.get(
                    code, "Internal error occurred: injected fault")
                raise ApiError(code, message, headers=headers, details=(
                    {"retryAfterSeconds": int(fault.params["retry_after"])}
                    if fault.params.get("retry_after") is not None else None))
            if fault.kind == "delay" or (fault.kind == "stall" and not is_watch):
                await self._sleep(fault.params.get("seconds"))
                fault = None
        path = request.path
        if path in reviews.PATHS:
            return self._review(request.method, path, body)
        if path in _PUBLIC_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            if path.startswith("/version"):
                return self._json(VERSION_INFO)
            return web.Response(text="ok", content_type="text/plain")
        if path.startswith("/openapi/"):
            return self._openapi(path)
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in ("api", "apis"):
            if path == "/":
                return self._json({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez",
                                             "/readyz", "/version"]})
            raise errors.no_route()
        discovery = self._discovery(parts)
        if discovery is not None:
            return self._json(discovery)
        route = self._route(parts)
        verb = self._verb(request.method, route, is_watch)
        self._authorize(verb, route, query)
        if verb == "watch":
            return await self._watch(request, route, record, fault)
        resp = await self._serve(request, route, verb, body)
        if fault is not None and fault.kind == "drop":
            return await self._drop(request, resp, record)
        return resp

    def _review(self, method: str, path: str, body: bytes) -> web.Response:
        group, plural = reviews.PATHS[path]
        if method != "POST":
            raise ApiError(405, "the server does not allow this method on the requested "
                                "resource", reason="MethodNotAllowed", details={})
        if self.rbac_rules is not None:
            index = rbac.allowed_by(self.rbac_rules, verb="create", group=group,
                                    resource=plural, name="")
            if index is None:
                raise ApiError(403, f'{plural}.{group} is forbidden: User "{self.user}" cannot '
                                    f'create resource "{plural}" in API group "{group}" at the '
                                    "cluster scope", reason="Forbidden",
                               details={"group": group, "kind": plural})
            self.rbac_hits[index] += 1
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise errors.bad_request("the body is not JSON") from None
        if plural == "tokenreviews":
            users = dict(self.users)
            if self.token is not None:
                users.setdefault(self.token, reviews.identity_for(self.user))
            return self._json(reviews.token_review(obj, users), status=201)
        return self._json(reviews.subject_access_review(obj, self.grants), status=201)

    def _openapi(self, path: str) -> web.Response:
        if path.rstrip("/") == "/openapi/v3":
            return web.Response(body=self.openapi.root, content_type="application/json")
        doc = self.openapi.docs.get(path[len("/openapi/v3/"):].strip("/")) if path.startswith(
            "/openapi/v3/") else None
        if doc is None:
            raise errors.no_route()
        return web.Response(body=doc, content_type="application/json")

    @staticmethod
    def _json(obj: Any, status: int = 200) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json")

    # ------------------------------------------------------------------ discovery

    def _discovery(self, parts: builtins.list[str]) -> dict[str, Any] | None:
        reg = self.registry
        if parts == ["api"]:
            host = self.url.split("://", 1)[-1]
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                    "serverAddress": host}]}
        if parts == ["api", "v1"]:
            return self._resource_list("", "v1")
        if parts == ["apis"]:
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [self._group(g, vs) for g, vs in reg.groups().items()]}
        if len(parts) == 2 and parts[0] == "apis":
            versions = reg.groups().get(parts[1])
            if versions is None:
                raise errors.no_route()
            return {"kind": "APIGroup", "apiVersion": "v1", **self._group(parts[1], versions)}
        if len(parts) == 3 and parts[0] == "apis":
            if not reg.in_group_version(parts[1], parts[2]):
                raise errors.no_route()
            return self._resource_list(parts[1], parts[2])
        return None

    @staticmethod
    def _group(name: str, versions: builtins.list[str]) -> dict[str, Any]:
        vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"name": name, "versions": vs, "preferredVersion": vs[0]}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources: builtins.list[dict[str, Any]] = []
        for rt in self.registry.in_group_version(group, version):
            resources.extend(rt.discovery())
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources}

    def _route(self, parts: builtins.list[str]) -> _Route:
        if parts[0] == "api":
            if len(parts) < 3 or parts[1] != "v1":
                raise errors.no_route()
            group, version, rest = "", "v1", parts[2:]
        else:
            if len(parts) < 4:
                raise errors.no_route()
            group, version, rest = parts[1], parts[2], parts[3:]
        reg = self.registry
        namespace = ""
        nested = reg.by_path(group, version, rest[2]) if (
            rest[0] == "namespaces" and len(rest) >= 3) else None
        if nested is not None and nested.namespaced:
            rt = nested
            namespace, rest = rest[1], rest[2:]
        elif rest[0] == "namespaces" and len(rest) >= 3 and not (group == "" and len(rest) == 3):
            raise errors.no_route()
        else:
            found = reg.by_path(group, version, rest[0])
            if found is None:
                raise errors.no_route()
            rt = found
        if len(rest) > 3:
            raise errors.no_route()
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and not (sub == "status" and rt.status_subresource):
            raise errors.no_route()
        if rt.namespaced and not namespace and name:
            raise errors.no_route()  # namespaced objects only exist under /namespaces/{ns}/
        return _Route(rt, namespace, name, sub)

    @staticmethod
    def _verb(method: str, route: _Route, is_watch: bool) -> str:
        if method == "GET":
            if route.name:
                return "get"
            return "watch" if is_watch else "list"
        if route.rt.namespaced and not route.namespace:
            pass  # the all-namespaces collection only serves list and watch
        elif method == "POST" and not route.name:
            return "create"
        elif method == "PUT" and route.name:
            return "update"
        elif method == "PATCH" and route.name:
            return "patch"
        elif method == "DELETE":
            return "delete" if route.name else "deletecollection"
        raise ApiError(405, "the server does not allow this method on the requested resource",
                       reason="MethodNotAllowed", details={})

    def _authorize(self, verb: str, route: _Route, query: Any) -> None:
        if self.rbac_rules is None:
            return
        rt = route.rt
        resource = f"{rt.plural}/{route.subresource}" if route.subresource else rt.plural
        name = route.name
        if not name and verb in ("list", "watch"):
            fs = query.get("fieldSelector")
            if fs:
                try:
                    name = FieldSelector(fs, rt.field_labels).name_equals() or ""
                except SelectorError:
                    name = ""
        index = rbac.allowed_by(self.rbac_rules, verb=verb, group=rt.group, resource=resource,
                                name=name)
        if index is not None:
            self.rbac_hits[index] += 1
            return
        scope = (f'in the namespace "{route.namespace}"' if route.namespace
                 else "at the cluster scope")
        subject = f'{rt.qualified} "{route.name}"' if route.name else rt.qualified
        raise ApiError(
            403,
            f'{subject} is forbidden: User "{self.user}" cannot {verb} resource "{resource}" in '
            f'API group "{rt.group}" {scope}',
            reason="Forbidden",
            details={**({"name": route.name} if route.name else {}),
                     **({"group": rt.group} if rt.group else {}), "kind": rt.plural},
        )

    # ------------------------------------------------------------------ non-watch verbs

    @staticmethod
    def _dry_run(query: Any) -> bool:
        values = query.getall("dryRun", [])
        for value in values:
            if value != "All":
                raise errors.bad_request(f'Invalid dry run value: "{value}"')
        return bool(values)

    @staticmethod
    def _field_validation(query: Any) -> str:
        value = query.get("fieldValidation") or "Warn"
        if value not in ("Ignore", "Warn", "Strict"):
            raise errors.bad_request(
                f"fieldValidation: Unsupported value: \"{value}\": supported values: "
                '"Ignore", "Strict", "Warn"')
        return str(value)

    @staticmethod
    def _decode(request: web.Request, body: bytes, *, patch: bool = False) -> Any:
        ctype = (request.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if not patch and ctype not in ("application/json", "application/yaml", "*/*"):
            raise errors.unsupported_media(["application/json", "application/yaml"])
        try:
            if ctype in ("application/yaml", APPLY_PATCH):
                return yaml.safe_load(body)
            return orjson.loads(body)
        except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
            raise errors.bad_request(
                f"the body of the request could not be decoded: {exc}") from exc

    def _write_response(self, obj: dict[str, Any], warnings: builtins.list[str],
                        status: int) -> web.Response:
        resp = web.Response(status=status, body=orjson.dumps(obj), content_type="application/json")
        for warning in warnings:
            resp.headers.add("Warning", f'299 - "{warning.replace(chr(34), chr(92) + chr(34))}"')
        return resp

    async def _serve(self, request: web.Request, route: _Route, verb: str,
                     body: bytes) -> web.StreamResponse:
        store, rt, query = self.store, route.rt, request.query
        ns = route.namespace
        writer: Store | aggregated.Writer = aggregated.Writer(store) if rt.backing else store
        if verb == "get":
            entry = store.get_entry(rt, ns, route.name)
            if self._as_table(request):
                obj = orjson.loads(entry.raw)
                return self._json(tables.table(
                    rt, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]},
                    self._include(request)))
            return web.Response(body=entry.raw, content_type="application/json")
        if verb == "list":
            return await self._list(request, route)
        if verb == "create":
            obj = self._decode(request, body)
            created, warnings = writer.create(rt, ns, obj, dry_run=self._dry_run(query),
                                              field_validation=self._field_validation(query))
            return self._write_response(created, warnings, 201)
        if verb == "update":
            obj = self._decode(request, body)
            existed = (ns if rt.namespaced else "", route.name) in store.bucket(rt).objects
            updated, warnings = writer.update(
                rt, ns, route.name, obj, subresource=route.subresource or None,
                dry_run=self._dry_run(query), field_validation=self._field_validation(query))
            return self._write_response(updated, warnings, 200 if existed else 201)
        if verb == "patch":
            ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip()
            accepted = [JSON_PATCH, MERGE_PATCH, *([] if rt.custom else [STRATEGIC_PATCH]),
                        APPLY_PATCH]
            if ctype not in accepted:
                raise errors.unsupported_media(accepted)
            force = parse_bool(query.get("force"), "force") if "force" in query else None
            patch = self._decode(request, body, patch=True)
            if ctype == APPLY_PATCH:
                applied, warnings, is_new = writer.apply(
                    rt, ns, route.name, patch, manager=check_manager(query.get("fieldManager")),
                    force=bool(force), dry_run=self._dry_run(query),
                    field_validation=self._field_validation(query))
                return self._write_response(applied, warnings, 201 if is_new else 200)
            if force is not None:
                raise errors.invalid_patch_options(
                    "force", "Forbidden: may not be specified for non-apply patch")
            patched, warnings = writer.patch(
                rt, ns, route.name, ctype, patch, subresource=route.subresource or None,
                dry_run=self._dry_run(query), field_validation=self._field_validation(query))
            return self._write_response(patched, warnings, 200)
        if verb == "delete":
            options = self._delete_options(request, body)
            deleted = writer.delete(rt, ns, route.name, options, dry_run=self._dry_run(query))
            return self._json(deleted)
        # deletecollection
        options = self._delete_options(request, body)
        labels, fields = self._selectors(rt, query)
        dry_run = self._dry_run(query)
        items = store.select(rt, store.snapshot(rt, store.rv), ns or None, labels, fields)
        out: builtins.list[dict[str, Any]] = []
        for entry in items:
            meta = entry.obj["metadata"]
            try:
                out.append(writer.delete(rt, str(meta.get("namespace") or ""), meta["name"],
                                         options, dry_run=dry_run))
            except ApiError as exc:
                if exc.status != 404:
                    raise
        return self._json({"apiVersion": rt.api_version, "kind": rt.list_kind,
                           "metadata": {"resourceVersion": str(store.rv)}, "items": out})

    def _delete_options(self, request: web.Request, body: bytes) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if body.strip():
            decoded = self._decode(request, body)
            if not isinstance(decoded, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
            options.update(decoded)
        query = request.query
        if query.get("propagationPolicy"):
            options["propagationPolicy"] = query["propagationPolicy"]
        if query.get("orphanDependents"):
            options["orphanDependents"] = parse_bool(query["orphanDependents"], "orphanDependents")
        _parse_int(query.get("gracePeriodSeconds"), "gracePeriodSeconds")
        return options

    @staticmethod
    def _selectors(rt: ResourceType, query: Any) -> tuple[LabelSelector | None,
                                                          FieldSelector | None]:
        try:
            ls, fs = query.get("labelSelector"), query.get("fieldSelector")
            labels = LabelSelector(ls) if ls else None
            fields = FieldSelector(fs, rt.field_labels) if fs else None
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc
        return (labels if labels is not None and not labels.empty else None,
                fields if fields is not None and not fields.empty else None)

    async def _wait_for_rv(self, rv: int) -> None:
        """Block up to 3 s until the store reaches ``rv``, like the watch cache; else 504."""
        store = self.store
        deadline = time.monotonic() + 3.0
        while store.rv < rv:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApiError(
                    504, f"Too large resource version: {rv}, current: {store.rv}",
                    reason="Timeout",
                    details={"causes": [{"reason": "ResourceVersionTooLarge",
                                         "message": "Too large resource version"}],
                             "retryAfterSeconds": 1})
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            store.rv_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, left)
            except TimeoutError:
                continue

    async def _list(self, request: web.Request, route: _Route) -> web.StreamResponse:
        store, rt, query = self.store, route.rt, request.query
        labels, fields = self._selectors(rt, query)
        rv_param = query.get("resourceVersion") or ""
        match = query.get("resourceVersionMatch") or ""
        limit = _parse_int(query.get("limit"), "limit")
        token = query.get("continue") or ""
        if match and not rv_param:
            raise errors.invalid_list_options(
                "resourceVersionMatch", match,
                "resourceVersionMatch is forbidden unless resourceVersion is provided")
        if match and match not in ("Exact", "NotOlderThan"):
            raise errors.invalid_list_options(
                "resourceVersionMatch", match,
                'Unsupported value: "' + match + '": supported values: "Exact", "NotOlderThan"')
        if match == "Exact" and rv_param == "0":
            raise errors.invalid_list_options(
                "resourceVersionMatch", match,
                'resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
        if token and rv_param and rv_param != "0":
            raise errors.bad_request("specifying resource version is not allowed when using "
                                     "continue")
        start_key: tuple[str, str] | None = None
        if token:
            snap_rv, start_key = self._decode_continue(token)
            if snap_rv < store.compacted_rv or snap_rv < store.bucket(rt).floor:
                raise errors.expired(
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter, or use "
                    "the continue value from the response to create a new list.")
        elif rv_param and rv_param != "0":
            try:
                want = int(rv_param)
            except ValueError:
                raise errors.bad_request(
                    f'invalid resource version: strconv.ParseUint: parsing "{rv_param}": '
                    "invalid syntax") from None
            if want > store.rv:
                await self._wait_for_rv(want)
            if match == "Exact":
                store.check_rv_not_too_old(store.bucket(rt), want)
                snap_rv = want
            else:
                snap_rv = store.rv
        else:
            snap_rv = store.rv
            if rv_param == "0":
                limit = None  # served from the watch cache, which does not paginate
        ns = route.namespace or None
        keys, entries = store.snapshot_keyed(rt, snap_rv)
        lo, hi = 0, len(keys)
        if ns is not None:
            lo = bisect.bisect_left(keys, (ns, ""))
            hi = bisect.bisect_left(keys, (ns + "\x00", ""))
        if start_key is not None:
            lo = max(lo, bisect.bisect_right(keys, start_key))
        meta: dict[str, Any] = {"resourceVersion": str(snap_rv)}
        if limit is not None and limit > 0:
            page: builtins.list[Entry] = []
            pos = lo
            while pos < hi and len(page) < limit:
                entry = entries[pos]
                pos += 1
                if self._matches(entry, None, labels, fields):
                    page.append(entry)
            more = pos < hi and (
                (labels is None and fields is None)
                or any(self._matches(entries[i], None, labels, fields) for i in range(pos, hi)))
            if page and more:
                last = page[-1].obj["metadata"]
                meta["continue"] = self._encode_continue(
                    snap_rv, (last.get("namespace", ""), last["name"]))
                if labels is None and fields is None:
                    meta["remainingItemCount"] = hi - pos
            items = page
        else:
            items = store.select(rt, entries[lo:hi], None, labels, fields)
        if self._as_table(request):
            return self._json(tables.table(rt, [orjson.loads(e.raw) for e in items], meta,
                                           self._include(request)))
        body = b"".join([
            b'{"apiVersion":"', rt.api_version.encode(), b'","kind":"', rt.list_kind.encode(),
            b'","metadata":', orjson.dumps(meta), b',"items":[',
            b",".join(e.raw for e in items), b"]}",
        ])
        return web.Response(body=body, content_type="application/json")

    @staticmethod
    def _matches(entry: Entry, ns: str | None, labels: LabelSelector | None,
                 fields: FieldSelector | None) -> bool:
        meta = entry.obj["metadata"]
        if ns and meta.get("namespace") != ns:
            return False
        if labels is not None and not labels.matches(meta.get("labels")):
            return False
        return fields is None or fields.matches(entry.obj)

    @staticmethod
    def _encode_continue(rv: int, key: tuple[str, str]) -> str:
        raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(key)})
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = orjson.loads(raw)
            return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
        except (binascii.Error, ValueError, KeyError, TypeError, IndexError):
            raise errors.bad_request("continue key is not valid: incorrect encoded start "
                                     "resourceVersion (version meta.k8s.io/v1)") from None

    async def _drop(self, request: web.Request, resp: web.StreamResponse,
                    record: RequestRecord) -> web.StreamResponse:
        """Send the headers and half the body, then reset the connection."""
        body = resp.body if isinstance(resp, web.Response) and isinstance(resp.body, bytes) else b""
        record.status = resp.status
        stream = web.StreamResponse(status=resp.status, headers={
            "Content-Type": "application/json", "Content-Length": str(len(body) + 1)})
        await stream.prepare(request)
        await stream.write(body[: len(body) // 2])
        self._abort(request)
        return stream

    @staticmethod
    def _abort(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise asyncio.CancelledError

    # ------------------------------------------------------------------ watch

    async def _watch(self, request: web.Request, route: _Route, record: RequestRecord,
                     fault: _Fault | None) -> web.StreamResponse:
        store, rt, query = self.store, route.rt, request.query
        labels, fields = self._selectors(rt, query)
        ns = route.namespace or None
        if query.get("resourceVersionMatch"):
            raise errors.invalid_list_options(
                "resourceVersionMatch", query["resourceVersionMatch"],
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided")
        bookmarks = parse_bool(query.get("allowWatchBookmarks"), "allowWatchBookmarks")
        timeout = _parse_int(query.get("timeoutSeconds"), "timeoutSeconds")
        limit_s: float | None = float(timeout) if timeout is not None and timeout > 0 else None
        if self.max_watch_seconds is not None:
            limit_s = self.max_watch_seconds if limit_s is None else min(limit_s,
                                                                         self.max_watch_seconds)
        rv_param = query.get("resourceVersion") or ""
        bucket = store.bucket(rt)
        initial: builtins.list[Entry] = []
        expired_msg = ""
        if rv_param in ("", "0"):
            pos = store.rv
            initial = [e for e in store.snapshot(rt, pos) if self._matches(e, ns, labels, fields)]
        else:
            try:
                pos = int(rv_param)
            except ValueError:
                raise errors.bad_request(
                    f'invalid resource version: strconv.ParseUint: parsing "{rv_param}": '
                    "invalid syntax") from None
            if pos > store.rv:
                await self._wait_for_rv(pos)
            floor = max(bucket.floor, store.compacted_rv)
            if pos < floor:
                expired_msg = f"too old resource version: {pos} ({floor})"
                if self.watch_expired_as_http:
                    raise errors.expired(expired_msg)
        waiter = asyncio.Event()
        bucket.waiters.add(waiter)
        self._watchers += 1
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        record.status = 200
        sent = 0
        try:
            await resp.prepare(request)
            if expired_msg:
                await resp.write(self._error_line(410, "Expired", expired_msg))
                await resp.write_eof()
                return resp
            loop = asyncio.get_running_loop()
            start = loop.time()
            deadline = start + limit_s if limit_s is not None else None
            error_at: float | None = None
            trigger: tuple[int, str] | None = None  # (after this many events, action)
            stall_for: float | None = None
            if fault is not None:
                after = int(fault.params.get("after_events", 0))
                timed = fault.params.get("after_seconds")
                if fault.kind == "watch_error_410" and timed is not None:
                    error_at = start + float(timed)
                elif fault.kind in ("watch_error_410", "drop", "stall"):
                    trigger = (after, fault.kind)
                    stall_for = fault.params.get("seconds")
            pending: builtins.list[bytes] = [b'{"type":"ADDED","object":' + e.raw + b"}\n"
                                    for e in initial]
            last_bookmark = start
            as_table = self._as_table(request)
            include = self._include(request)
            filtered = labels is not None or fields is not None or ns is not None
            while True:
                waiter.clear()
                scanned_rv = store.rv
                if pos < bucket.floor:
                    # The log was trimmed past this watcher: it fell too far behind.
                    await resp.write(self._error_line(
                        410, "Expired", f"too old resource version: {pos} ({bucket.floor})"))
                    break
                events = bucket.events_after(pos)
                if events:
                    pos = events[-1].rv
                    for ev in events:
                        line = self._event_line(ev, ns, labels, fields) if filtered else ev.line()
                        if line is not None:
                            pending.append(line)
                if trigger is not None and sent + len(pending) >= trigger[0]:
                    head = max(trigger[0] - sent, 0)
                    if head:
                        await resp.write(b"".join(pending[:head]))
                        sent += head
                        pending = pending[head:]
                    action, trigger = trigger[1], None
                    if action == "watch_error_410":
                        await resp.write(self._error_line(
                            410, "Expired", f"too old resource version: {pos} ({pos + 1})"))
                        break
                    if action == "drop":
                        self._abort(request)
                    await self._sleep(stall_for)
                    last_bookmark = loop.time()
                    if self._closing:
                        break
                    continue
                if pending:
                    if as_table:
                        pending = [self._table_line(rt, line, include, first=sent + i == 0)
                                   for i, line in enumerate(pending)]
                    await resp.write(b"".join(pending))
                    sent += len(pending)
                    pending = []
                if self._closing or bucket.removed:
                    break  # stopping, or the type's CRD was deleted
                now = loop.time()
                if error_at is not None and now >= error_at:
                    await resp.write(self._error_line(
                        410, "Expired", f"too old resource version: {pos} ({pos + 1})"))
                    break
                if deadline is not None and now >= deadline:
                    if bookmarks:
                        await resp.write(self._bookmark_line(rt, scanned_rv))
                    break
                if bookmarks and now - last_bookmark >= self.bookmark_interval:
                    await resp.write(self._bookmark_line(rt, scanned_rv))
                    last_bookmark = now
                wake = [t for t in (deadline, error_at) if t is not None]
                if bookmarks:
                    wake.append(last_bookmark + self.bookmark_interval)
                try:
                    if wake:
                        async with asyncio.timeout_at(min(wake)):
                            await waiter.wait()
                    else:
                        await waiter.wait()
                except TimeoutError:
                    pass
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            bucket.waiters.discard(waiter)
            self._watchers -= 1
        return resp

    @staticmethod
    def _as_table(request: web.Request) -> bool:
        return tables.wants_table(request.headers.get("Accept", ""))

    @staticmethod
    def _include(request: web.Request) -> str:
        value = request.query.get("includeObject") or "Metadata"
        if value not in ("None", "Metadata", "Object"):
            raise errors.bad_request(f'includeObject: Unsupported value: "{value}"')
        return str(value)

    @staticmethod
    def _table_line(rt: ResourceType, line: bytes, include: str, *, first: bool) -> bytes:
        event = orjson.loads(line)
        obj = event["object"]
        event["object"] = tables.table(
            rt, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}, include,
            with_columns=first)
        return orjson.dumps(event) + b"\n"

    @staticmethod
    def _event_line(ev: Event, ns: str | None, labels: LabelSelector | None,
                    fields: FieldSelector | None) -> bytes | None:
        cur = ev.type != DELETED and ApiServer._matches(ev.entry, ns, labels, fields)
        old = ev.prev is not None and ApiServer._matches(ev.prev, ns, labels, fields)
        if cur and old:
            return ev.line("MODIFIED")
        if cur:
            return ev.line("ADDED")
        if old:
            return ev.line(DELETED)
        return None

    @staticmethod
    def _error_line(code: int, reason: str, message: str) -> bytes:
        status = ApiError(code, message, reason=reason).to_status()
        return b'{"type":"ERROR","object":' + orjson.dumps(status) + b"}\n"

    @staticmethod
    def _bookmark_line(rt: ResourceType, rv: int) -> bytes:
        obj = {"kind": rt.kind, "apiVersion": rt.api_version,
               "metadata": {"resourceVersion": str(rv)}}
        return b'{"type":"BOOKMARK","object":' + orjson.dumps(obj) + b"}\n"
