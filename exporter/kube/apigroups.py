"""Which API group serves Calico's resources, decided at run time; one per process.

Calico's own rule (``libcalico-go/lib/backend/k8s/discovery.go``, ``UsingV3CRDs``, the same at
v3.32.1 and master 87c1590): a configured group wins (Calico's ``CALICO_API_GROUP``, our
``--calico-api-group``); otherwise the API server's group list decides: ``projectcalico.org/v3``
when ``projectcalico.org`` is served and ``crd.projectcalico.org`` is not (native v3 CRDs, the
v3.32 tech preview and master's default), and ``crd.projectcalico.org/v1`` in every other case.
When both are served, ``projectcalico.org/v3`` is Calico's aggregated API server on top of the v1
CRDs, which are the storage; when neither is, or discovery fails, v1 is Calico's default.

Calico resources are defined once, in the v1 group (:mod:`exporter.kube.resources`).
:meth:`CalicoApi.resolve` maps any of them to the group chosen now: same plural and kind in v3
except where Calico names them differently (``ipamconfigs``/``IPAMConfig`` in v1,
``ipamconfigurations``/``IPAMConfiguration`` in v3: ``resources/ipam_config.go``). Resources of
other groups are never switched.

Whether a resource is served at all is the other question discovery answers
(:meth:`CalicoApi.serves`): some resources exist only on some clusters (Calico's tiers from 3.29,
staged policies from 3.30, ``policy.networking.k8s.io`` ClusterNetworkPolicy where its CRD is
installed). A Calico one is looked up in the group chosen now, in the discovery document of that
group-version (``GET /apis/<group>/<version>``), so that one mechanism decides both where a
Calico resource is and whether it is there; :class:`~exporter.kube.served.OptionalWatch` asks it.

Every Calico informer and writer consults one :class:`CalicoApi`. The group is chosen before the
first Calico request and again only when a request for it gets 404 (:meth:`CalicoApi.rediscover`):
Calico's v1-to-v3 datastore migration ends by deleting the v1 CRDs. A change bumps
:attr:`CalicoApi.generation` and calls every registered callback, so that informers still
streaming from the old group end their watch and relist from the new one. The group is looked up
when a list or watch starts, never per event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from exporter.kube.client import ApiError, KubeApi
from exporter.kube.resources import CALICO_GROUP, Resource
from exporter.model.telemetry import Telemetry

log = structlog.get_logger(__name__)

CALICO_V3_GROUP = "projectcalico.org"
AUTO = "auto"
GROUP_VERSIONS = {f"{CALICO_GROUP}/v1": (CALICO_GROUP, "v1"),
                  f"{CALICO_V3_GROUP}/v3": (CALICO_V3_GROUP, "v3")}
"""The values ``--calico-api-group`` takes besides ``auto``."""
V3_NAMES = {"ipamconfigs": ("ipamconfigurations", "IPAMConfiguration")}
"""v1 plural -> (v3 plural, v3 kind), where Calico's v3 names differ."""


def discovery_path(resource: Resource) -> str:
    """The discovery document (APIResourceList) of the resource's group-version."""
    return f"/apis/{resource.group}/{resource.version}" if resource.group else "/api/v1"


def lists(document: dict[str, Any], resource: Resource) -> bool:
    """Whether an APIResourceList names the resource."""
    return any(isinstance(entry, dict) and entry.get("name") == resource.plural
               for entry in document.get("resources") or [])


async def served(api: KubeApi, resource: Resource) -> bool:
    """Whether the API serves ``resource`` as given (a 404 for its group-version: it does not).
    Other failures raise (:class:`ApiError`, connection errors)."""
    try:
        document = await api.request("GET", discovery_path(resource))
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return lists(document, resource)


@dataclass(frozen=True, slots=True)
class Choice:
    """The group (and version) that holds Calico's data, and why."""

    group: str
    version: str
    reason: str


def choose(groups: Iterable[str]) -> Choice:
    """Calico's ``UsingV3CRDs`` over the names of the served API groups."""
    served = set(groups)
    v1, v3 = CALICO_GROUP in served, CALICO_V3_GROUP in served
    if v3 and not v1:
        return Choice(CALICO_V3_GROUP, "v3",
                      "only projectcalico.org is served: Calico's native v3 CRDs")
    if v1 and v3:
        reason = ("both groups are served: projectcalico.org is the Calico API server on top of "
                  "the crd.projectcalico.org CRDs, which hold the data")
    elif v1:
        reason = "crd.projectcalico.org is served"
    else:
        reason = "neither Calico group is served: Calico's default"
    return Choice(CALICO_GROUP, "v1", reason)


class CalicoApi:
    """The current Calico group, its discovery, and who must follow when it changes."""

    def __init__(self, api: KubeApi, *, telemetry: Telemetry, configured: str = AUTO) -> None:
        """``configured`` is ``auto`` or one of :data:`GROUP_VERSIONS` (then never switched)."""
        self._api = api
        self._telemetry = telemetry
        self._configured = configured
        self._lock = asyncio.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self._resolved: dict[Resource, Resource] = {}
        self.choice: Choice | None = None
        self.generation = 0
        """Bumped by every change of the chosen group (the first choice included)."""

    @staticmethod
    def covers(resource: Resource) -> bool:
        """Whether ``resource`` is one of Calico's, i.e. follows the chosen group."""
        return resource.group == CALICO_GROUP

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (on the loop thread) after each change of the chosen group."""
        self._callbacks.append(callback)

    async def current(self) -> Choice:
        """The chosen group; the first call discovers it (concurrent callers share that)."""
        if self.choice is None:
            async with self._lock:
                if self.choice is None:
                    self._set(await self._decide())
        assert self.choice is not None
        return self.choice

    def resolve(self, resource: Resource) -> Resource:
        """``resource`` as served now: a Calico resource in the chosen group, others as is."""
        choice = self.choice
        if choice is None or choice.group == resource.group or not self.covers(resource):
            return resource
        served = self._resolved.get(resource)
        if served is None:
            plural, kind = V3_NAMES.get(resource.plural, (resource.plural, resource.kind))
            served = Resource(choice.group, choice.version, plural, kind, resource.namespaced)
            self._resolved[resource] = served
        return served

    async def serves(self, resource: Resource) -> Resource | None:
        """``resource`` as served now (a Calico one in the group chosen now, the first call
        choosing it), or None when the API does not serve it there. One discovery request; a
        failure raises (:class:`ApiError`, connection errors)."""
        if self.covers(resource):
            await self.current()
        target = self.resolve(resource)
        return target if await served(self._api, target) else None

    async def rediscover(self, generation: int) -> bool:
        """A request for the group chosen at ``generation`` got 404: decide again. True when the
        group has changed since ``generation`` (by this call or another one)."""
        if self._configured != AUTO:
            return False
        async with self._lock:
            if self.generation != generation:
                return True
            choice = await self._decide()
            if self.choice is not None and choice.group == self.choice.group:
                return False
            self._set(choice)
            return True

    async def _decide(self) -> Choice:
        if self._configured != AUTO:
            group, version = GROUP_VERSIONS[self._configured]
            return Choice(group, version, "configured with --calico-api-group")
        try:
            body = await self._api.request("GET", "/apis")
        except (ApiError, aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.warning("calico_api_discovery_failed", error=str(exc) or repr(exc))
            if self.choice is not None:
                return self.choice
            return Choice(CALICO_GROUP, "v1", "API discovery failed: Calico's default")
        groups = body.get("groups")
        names = [str(g.get("name")) for g in groups if isinstance(g, dict)] if isinstance(
            groups, list) else []
        return choose(names)

    def _set(self, choice: Choice) -> None:
        previous = self.choice
        self.choice = choice
        self.generation += 1
        self._resolved.clear()
        self._telemetry.calico_api = (choice.group, choice.version)
        log.info("calico_api_group", group=choice.group, version=choice.version,
                 reason=choice.reason, previous=previous.group if previous else None)
        if previous is not None:
            for callback in self._callbacks:
                callback()
