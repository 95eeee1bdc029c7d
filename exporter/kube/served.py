"""Watches of resources an API server may not serve: ask discovery first, watch only if served.

Some resources exist only on some clusters: Calico's Tier (3.29 on), staged policies (3.30 on),
and ``policy.networking.k8s.io/v1alpha2`` ClusterNetworkPolicy (where its CRD is installed, as
Calico 3.32 does). :class:`OptionalWatch` looks the resource up in the discovery document of its
group-version (``GET /apis/<group>/<version>``; 404 means the group-version is not served). When
it is served, the informer runs (list, then watch, forever). When it is not, that is no error: the
store is marked listed and empty (readiness does not wait for it), nothing is watched, and
discovery is asked again every ``recheck`` seconds, so that a CRD installed later is picked up
without a restart. Discovery failures (connection, 5xx, 403) are retried with the informer's
jittered backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import structlog

from exporter.kube.client import ApiError, KubeApi
from exporter.kube.resources import Resource
from exporter.kube.watch import Informer, backoff_delay

log = structlog.get_logger(__name__)

RECHECK_SECONDS = 300.0
"""How often discovery is asked again about a resource that is not served."""


def discovery_path(resource: Resource) -> str:
    """The discovery document of the resource's group-version."""
    return f"/apis/{resource.group}/{resource.version}" if resource.group else "/api/v1"


def lists(document: dict[str, Any], resource: Resource) -> bool:
    """Whether an APIResourceList names the resource."""
    return any(isinstance(entry, dict) and entry.get("name") == resource.plural
               for entry in document.get("resources") or [])


async def served(api: KubeApi, resource: Resource) -> bool:
    """Whether the API serves the resource (a 404 for its group-version means it does not)."""
    try:
        document = await api.request("GET", discovery_path(resource))
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return lists(document, resource)


class OptionalWatch:
    """Runs an informer once discovery shows its resource; keeps its store empty until then."""

    def __init__(self, api: KubeApi, informer: Informer[Any], *,
                 recheck: float = RECHECK_SECONDS,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.api = api
        self.informer = informer
        self.recheck = recheck
        self._sleep = sleep

    async def run(self) -> None:
        """Discover, then watch forever if served; only cancellation ends it."""
        resource = self.informer.resource
        attempt = 0
        announced = False
        while True:
            try:
                ok = await served(self.api, resource)
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                settings = self.informer.settings
                delay = backoff_delay(attempt, initial=settings.backoff_initial,
                                      maximum=settings.backoff_max)
                attempt += 1
                log.info("discovery_failed", resource=resource.name, error=str(exc),
                         delay=round(delay, 3))
                await self._sleep(delay)
                continue
            attempt = 0
            if ok:
                log.info("resource_served", resource=resource.name)
                await self.informer.run()
                return  # unreachable: Informer.run ends only by cancellation
            if not announced:
                log.info("resource_not_served", resource=resource.name,
                         path=discovery_path(resource), recheck_seconds=self.recheck)
                announced = True
            if not self.informer.store.synced.is_set():
                self.informer.store.replace({})
            await self._sleep(self.recheck)
