"""Watches of resources an API server may not serve: ask discovery first, watch only if served.

Some resources exist only on some clusters: Calico's Tier (3.29 on), staged policies (3.30 on),
and ``policy.networking.k8s.io/v1alpha2`` ClusterNetworkPolicy (where its CRD is installed, as
Calico 3.32 does). :class:`OptionalWatch` asks :meth:`CalicoApi.serves
<exporter.kube.apigroups.CalicoApi.serves>` first: a Calico resource in the group Calico's data
is in now (``crd.projectcalico.org/v1`` or ``projectcalico.org/v3``), any other in its own
group-version. When it is served, the informer runs (list, then watch). When it is not, that is
no error: the store is listed and empty (readiness does not wait for it), nothing is listed or
watched, so nothing answers 404 and nothing re-runs Calico's group discovery; discovery is asked
again every ``recheck`` seconds (a CRD installed later is picked up without a restart), and at
once when Calico's group changes (the other group may serve it).

A resource that stops being served while watched (its CRD deleted) makes the informer's next
request 404: the informer asks Calico's group discovery once (the 404 may be Calico's v1-to-v3
migration, which the informer follows itself) and otherwise ends with
:class:`~exporter.kube.watch.NotServed`; the watch then asks discovery again at once, empties the
store when the resource is confirmed gone, and waits as above. When discovery still lists a
resource that answers 404, the informer is retried after the informer's jittered backoff.
Discovery failures (connection, 5xx, 403) are retried with that backoff too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import structlog

from exporter.kube.apigroups import CalicoApi, discovery_path
from exporter.kube.client import ApiError
from exporter.kube.watch import Informer, NotServed, backoff_delay

log = structlog.get_logger(__name__)

RECHECK_SECONDS = 300.0
"""How often discovery is asked again about a resource that is not served."""


class OptionalWatch:
    """Runs an informer while discovery shows its resource; keeps its store empty otherwise."""

    def __init__(self, calico: CalicoApi, informer: Informer[Any], *,
                 recheck: float = RECHECK_SECONDS,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """``informer`` must be optional (``Informer(..., optional=True)``); ``calico`` answers
        whether its resource is served (in Calico's group now, for a Calico one)."""
        if not informer.optional:
            raise ValueError("OptionalWatch needs an informer created with optional=True")
        self.calico = calico
        self.informer = informer
        self.recheck = recheck
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._name = informer.resource.name
        if calico.covers(informer.resource):
            calico.on_change(self._wake.set)

    async def run(self) -> None:
        """Discover, watch while served, discover again; only cancellation ends it."""
        resource = self.informer.resource
        settings = self.informer.settings
        failures = 0  # discovery failures in a row
        gone = 0  # 404s in a row from a resource discovery still lists
        announced = False
        while True:
            self._wake.clear()
            try:
                target = await self.calico.serves(resource)
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                delay = backoff_delay(failures, initial=settings.backoff_initial,
                                      maximum=settings.backoff_max)
                failures += 1
                log.info("discovery_failed", resource=self._name, error=str(exc) or repr(exc),
                         delay=round(delay, 3))
                await self._pause(delay)
                continue
            failures = 0
            if target is None:
                gone = 0
                if not announced:
                    log.info("resource_not_served", resource=self._name,
                             path=discovery_path(self.calico.resolve(resource)),
                             recheck_seconds=self.recheck)
                    announced = True
                store = self.informer.store
                if not store.synced.is_set() or len(store):
                    store.replace({})  # listed, and empty: it does not exist here
                await self._pause(self.recheck)
                continue
            if gone:
                await self._pause(backoff_delay(gone - 1, initial=settings.backoff_initial,
                                                maximum=settings.backoff_max))
            announced = False
            log.info("resource_served", resource=self._name, api_version=target.api_version)
            try:
                await self.informer.run()
            except NotServed:
                gone += 1
                log.info("resource_not_served", resource=self._name, reason="404")

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less: a change of Calico's group ends the wait at once."""
        if self._wake.is_set():
            return
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            done, _ = await asyncio.wait((sleeping, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            woken.cancel()
        if sleeping in done:
            await sleeping  # an injected sleep may end the watch by raising (tests)
