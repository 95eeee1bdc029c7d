"""List-then-watch over raw JSON: one :class:`Informer` per resource type keeps one Store exact.

The loop (kopf's ``infinite_watch``/``continuous_watch`` split, in one class):

1. LIST in pages (``limit``/``continue``, one snapshot) and :meth:`Store.replace` the store, which
   also drops objects deleted while we were not watching.
2. WATCH from the list's resourceVersion with ``allowWatchBookmarks`` and ``timeoutSeconds``,
   tracking the resourceVersion of every event, bookmarks included. A stream that ends normally
   is resumed from the last resourceVersion without a new LIST.
3. ``410 Expired`` (as HTTP status or as an ERROR event) means our resourceVersion was compacted
   away: relist. Any other failure (connection reset, a stalled stream past the inactivity
   timeout, 429, 5xx) is retried from the last resourceVersion after a jittered exponential
   backoff that honours ``Retry-After``.

Events are decoded with orjson straight from the chunked body; an object that fails to parse is
logged, counted (``calico_exporter_invalid_objects_total``) and skipped, and the store keeps the
last valid version of it. Nothing here builds kubernetes-asyncio model objects.

A Calico resource is requested from the group a :class:`~exporter.kube.apigroups.CalicoApi`
chooses, looked up at every LIST (and checked before every WATCH), never per event. A 404 for it
re-runs discovery; when the group changed (by this informer or another one, whose change also
ends this informer's open stream or backoff), the informer relists from the new group at once
(reason ``group_changed``) and the store is replaced by the LIST's diff, never emptied first.
An *optional* informer (a resource some clusters do not serve, run by
:class:`~exporter.kube.served.OptionalWatch`) ends with :class:`NotServed` on a 404 that is no
change of Calico's group, instead of retrying it: a missing CRD would otherwise answer 404, and
re-run discovery, at every backoff, forever.
Self-metrics name the resource as it is defined (``ippools.crd.projectcalico.org``) whichever
group serves it (``calico_exporter_calico_api_info`` says which): one stable value per resource,
so counters neither split nor restart across a datastore migration.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import aiohttp
import orjson
import structlog

from exporter.config import WatchSettings
from exporter.kube.apigroups import CalicoApi
from exporter.kube.client import ApiError, KubeApi
from exporter.kube.resources import Resource
from exporter.kube.store import Store
from exporter.model import ObjectKey, ParseError, RawObject, object_key
from exporter.model.telemetry import Telemetry

log = structlog.get_logger(__name__)

T = TypeVar("T")


EVENTS = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")
"""Watch event types, exported with zeros from the start."""
GROUP_CHANGED = "group_changed"
RESTART_REASONS = ("end", "expired", "inactivity", "connection", "throttled", "server_error",
                   "client_error", "malformed", GROUP_CHANGED)
"""Why a watch stream was restarted; a bounded set, exported with zeros from the start."""


class _Expired(Exception):
    """Our resourceVersion is too old: the only cure is a fresh LIST."""


class _GroupChanged(Exception):
    """Calico's API group changed since our LIST: relist from the new one."""


class NotServed(Exception):
    """An optional informer's resource got 404, and Calico's group has not changed: the API does
    not serve it (any more)."""


class _Restart(Exception):
    """The stream broke in a way worth a bounded reason label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def backoff_delay(attempt: int, *, initial: float, maximum: float,
                  retry_after: float | None = None) -> float:
    """Full-jitter exponential backoff; never shorter than the server's Retry-After."""
    delay = random.uniform(0, min(maximum, initial * (2 ** min(attempt, 30))))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class Informer(Generic[T]):
    """Keeps ``store`` equal to the API's view of one resource type, forever."""

    def __init__(
        self,
        api: KubeApi,
        resource: Resource,
        *,
        parse: Callable[[RawObject], T],
        store: Store[T],
        settings: WatchSettings,
        telemetry: Telemetry,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        calico: CalicoApi | None = None,
        optional: bool = False,
    ) -> None:
        """``page_size`` overrides ``settings.list_page_size`` for resources whose objects are
        large, so that one LIST page never has to be decoded whole in memory. ``calico`` decides
        the group of a Calico resource (``resource`` is its definition). ``optional``: a 404 that
        is no change of Calico's group ends :meth:`run` with :class:`NotServed`."""
        self.api = api
        self.resource = resource
        self.parse = parse
        self.store = store
        self.settings = settings
        self.telemetry = telemetry
        self.selectors: dict[str, str] = {}
        if label_selector:
            self.selectors["labelSelector"] = label_selector
        if field_selector:
            self.selectors["fieldSelector"] = field_selector
        self._sleep = sleep
        self._page_size = page_size or settings.list_page_size
        self._calico = calico if calico is not None and calico.covers(resource) else None
        self.optional = optional
        self._generation = 0
        self._wake = asyncio.Event()
        self._resp: aiohttp.ClientResponse | None = None
        self._served = resource
        """The resource as requested now: ``resource`` in the group Calico's data is in."""
        self._name = resource.name
        telemetry.declare(self._name, events=EVENTS, reasons=RESTART_REASONS)
        self._event_keys = {kind: (self._name, kind) for kind in EVENTS}
        if self._calico is not None:
            self._calico.on_change(self._interrupt)

    def _interrupt(self) -> None:
        """Calico's group changed: end the open stream or backoff now (the loop relists)."""
        self._wake.set()
        if self._resp is not None:
            self._resp.close()

    async def _follow_group(self) -> None:
        """Before a LIST: the served resource of the group chosen now."""
        if self._calico is None:
            return
        await self._calico.current()
        self._generation = self._calico.generation
        self._served = self._calico.resolve(self.resource)

    async def run(self) -> None:
        """List, then watch, forever; only cancellation ends it, or, for an optional informer,
        :class:`NotServed`."""
        rv: str | None = None
        attempt = 0
        while True:
            reason: str
            retry_after: float | None = None
            try:
                if rv is None:
                    await self._follow_group()
                    rv = await self.list_once()
                rv = await self.watch_once(rv)
                attempt = 0
                reason = "end"
            except _Expired:
                rv, reason = None, "expired"
            except _GroupChanged:
                rv, reason = None, GROUP_CHANGED
            except _Restart as exc:
                reason = exc.reason
            except ApiError as exc:
                if exc.status == 410:
                    rv, reason = None, "expired"
                elif (exc.status == 404 and self._calico is not None
                      and await self._calico.rediscover(self._generation)):
                    rv, reason = None, GROUP_CHANGED
                elif exc.status == 404 and self.optional:
                    raise NotServed(self._name) from None
                else:
                    reason = (
                        "throttled" if exc.status == 429
                        else "server_error" if exc.status >= 500
                        else "client_error"
                    )
                    retry_after = exc.retry_after
                    if exc.status in (401, 403):
                        log.error("watch_forbidden", resource=self._name, status=exc.status,
                                  message=exc.message)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = "connection"
                log.debug("watch_connection_error", resource=self._name, error=repr(exc))
            if self._calico is not None and self._calico.generation != self._generation:
                rv, reason = None, GROUP_CHANGED  # another watch found the new group: follow
            self.telemetry.watch_restarts[(self._name, reason)] += 1
            if reason in ("end", "expired", GROUP_CHANGED):
                if reason == GROUP_CHANGED:
                    log.info("watch_restarted", resource=self._name, reason=reason)
                else:
                    log.debug("watch_restarted", resource=self._name, reason=reason)
                continue
            self.telemetry.mark("kubernetes", self._name, False)
            delay = backoff_delay(attempt, initial=self.settings.backoff_initial,
                                  maximum=self.settings.backoff_max, retry_after=retry_after)
            attempt += 1
            log.info("watch_restarted", resource=self._name, reason=reason,
                     delay=round(delay, 3))
            if self._calico is None:
                await self._sleep(delay)
            else:  # a change of Calico's group ends the wait
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def list_once(self) -> str:
        """LIST every page of one snapshot into the store; returns the list resourceVersion."""
        objects: dict[ObjectKey, T] = {}
        query = dict(self.selectors)
        query["limit"] = str(self._page_size)
        rv = ""
        while True:
            body = await self.api.list(self._served, query=query)
            items = body.get("items") or []
            for raw in items:
                parsed = self._parse(raw)
                if parsed is not None:
                    objects[parsed[0]] = parsed[1]
                else:
                    self._keep_previous(raw, objects)
            meta = body.get("metadata") or {}
            rv = str(meta.get("resourceVersion") or "")
            cont = meta.get("continue")
            if not cont:
                break
            query["continue"] = str(cont)
        self.store.replace(objects)
        self.telemetry.mark("kubernetes", self._name, True)
        log.debug("listed", resource=self._name, objects=len(objects), resource_version=rv)
        return rv

    async def watch_once(self, rv: str) -> str:
        """Follow one watch stream until the server ends it; returns the last resourceVersion."""
        query = dict(self.selectors)
        query.update(
            watch="true",
            resourceVersion=rv,
            allowWatchBookmarks="true",
            timeoutSeconds=str(max(1, int(self.settings.watch_timeout))),
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.inactivity_timeout)
        if self._calico is not None and self._calico.generation != self._generation:
            raise _GroupChanged
        resp = await self.api.open("GET", self._served.path(), query=query, timeout=timeout)
        self.telemetry.mark("kubernetes", self._name, True)
        parts: list[bytes] = []  # an event split across chunks: its pieces, until its newline
        event = self._event
        self._resp = resp
        async with resp:
            while True:
                try:
                    async with asyncio.timeout(self.settings.inactivity_timeout):
                        chunk = await resp.content.readany()
                except TimeoutError:
                    raise _Restart("inactivity") from None
                if not chunk:
                    if b"".join(parts).strip():
                        raise _Restart("connection")  # stream cut inside an event
                    return rv
                # No copies: orjson reads each complete line in place through a memoryview, and
                # only an event split across chunks is joined (once, when its newline arrives).
                # Copying every chunk and line cost 10% of the time of a 150 kB event.
                find = chunk.find
                end = find(b"\n")
                if end < 0:
                    parts.append(chunk)
                    continue
                start = 0
                if parts:
                    parts.append(chunk[:end])
                    line = b"".join(parts)
                    parts.clear()
                    if line:
                        rv = event(line, rv)
                    start = end + 1
                    end = find(b"\n", start)
                if end >= 0:
                    view = memoryview(chunk)
                    while end >= 0:
                        if end > start:
                            rv = event(view[start:end], rv)
                        start = end + 1
                        end = find(b"\n", start)
                if start < len(chunk):
                    parts.append(chunk[start:])

    def _event(self, line: bytes | memoryview, rv: str) -> str:
        try:
            event = orjson.loads(line)
            kind = event["type"]
            raw = event["object"]
            if not isinstance(raw, dict):
                raise TypeError("object is not a map")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.telemetry.invalid(self._name, reason="malformed watch event")
            raise _Restart("malformed") from None
        self.telemetry.watch_events[self._event_keys.get(kind) or (self._name, str(kind))] += 1
        if kind == "ERROR":
            code = raw.get("code")
            if code == 410:
                raise _Expired
            raise ApiError(int(code or 500), str(raw.get("reason", "")),
                           str(raw.get("message", "")))
        new_rv = (raw.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            return str(new_rv or rv)
        if kind == "DELETED":
            try:
                self.store.delete(object_key(raw))
            except ParseError as exc:
                self.telemetry.invalid(self._name, reason=str(exc))
        elif kind in ("ADDED", "MODIFIED"):
            parsed = self._parse(raw)
            if parsed is not None:
                self.store.upsert(*parsed)
        else:
            log.warning("watch_unknown_event", resource=self._name, type=str(kind))
        return str(new_rv or rv)

    def _parse(self, raw: RawObject) -> tuple[ObjectKey, T] | None:
        try:
            return object_key(raw), self.parse(raw)
        except ParseError as exc:
            name = str((raw.get("metadata") or {}).get("name", ""))
            self.telemetry.invalid(self._name, reason=str(exc), name=name)
            return None

    def _keep_previous(self, raw: RawObject, objects: dict[ObjectKey, T]) -> None:
        """A malformed item in a LIST: keep the last valid version we had of it, if any."""
        try:
            key = object_key(raw)
        except ParseError:
            return
        previous = self.store.get(key)
        if previous is not None:
            objects[key] = previous
