"""Keep exactly one CalicoNodeStatus of ours per Node.

Ours means named ``<prefix><node>`` and labelled ``app.kubernetes.io/managed-by=calico-exporter``.
For every Node we make sure ours exists with the configured ``spec`` and an ownerReference to the
Node (so Kubernetes garbage-collects it if we are not running when the node goes), repair a
drifted spec, and delete ours whose node is gone. Objects without our label are never touched,
even when they carry our name.

Writes happen only when something changed: node join, node leave, drift. The loop is driven by
store notifications (a queue of node names), never by a timer, so a steady cluster costs zero
API writes. Transient API errors are retried with jittered backoff.

Objects are written in the API group that holds Calico's data now
(:class:`~exporter.kube.apigroups.CalicoApi`); a create answered 404 (the group's CRDs are gone)
re-runs discovery before the retry. Only ``metadata`` and ``spec`` are ever written: where
CalicoNodeStatus has a ``status`` subresource (Calico master), calico-node writes the status
through it and our writes of the object leave it alone; where it has none, our merge patches do
not touch ``status`` either.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from exporter.config import NodeStatusSettings, WatchSettings
from exporter.kube.apigroups import CalicoApi
from exporter.kube.client import ApiError, KubeApi
from exporter.kube.resources import CALICO_NODE_STATUSES, Resource
from exporter.kube.store import Store
from exporter.kube.watch import backoff_delay
from exporter.model import ObjectKey
from exporter.model.core import Node
from exporter.model.nodestatus import CalicoNodeStatus

log = structlog.get_logger(__name__)

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "calico-exporter"
OWNED_SELECTOR = f"{MANAGED_BY}={MANAGER}"
"""Label selector of the CalicoNodeStatus objects we manage."""


class NodeStatusRefresher:
    """Reconciles our CalicoNodeStatus objects against the Node store, one node at a time."""

    def __init__(self, api: KubeApi, *, nodes: Store[Node], statuses: Store[CalicoNodeStatus],
                 settings: NodeStatusSettings, watch: WatchSettings, calico: CalicoApi) -> None:
        self._api = api
        self._calico = calico
        self._nodes = nodes
        self._statuses = statuses
        self._settings = settings
        self._watch = watch
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._warned: set[str] = set()
        nodes.subscribe(self._on_node)
        statuses.subscribe(self._on_status)

    def name_for(self, node: str) -> str:
        return f"{self._settings.node_status_prefix}{node}"

    def _enqueue(self, node: str) -> None:
        if node not in self._queued:
            self._queued.add(node)
            self._queue.put_nowait(node)

    def _on_node(self, key: ObjectKey, old: Node | None, new: Node | None) -> None:
        # Labels change often and do not concern us: react to join, leave and uid change only.
        if old is None or new is None or old.uid != new.uid:
            self._enqueue(key[1])

    def _on_status(self, key: ObjectKey, old: CalicoNodeStatus | None,
                   new: CalicoNodeStatus | None) -> None:
        status = new or old
        if status is None or not self._is_ours(status):
            return
        if new is None or old is None or self._spec_of(old) != self._spec_of(new):
            self._enqueue(status.node)

    def _is_ours(self, status: CalicoNodeStatus) -> bool:
        return status.labels.get(MANAGED_BY) == MANAGER

    @staticmethod
    def _spec_of(status: CalicoNodeStatus) -> tuple[Any, ...]:
        return (status.node, status.classes, status.update_period, status.owner_uids)

    def desired_spec(self, node: str) -> dict[str, Any]:
        return {
            "node": node,
            "classes": list(self._settings.node_status_classes),
            "updatePeriodSeconds": self._settings.node_status_update_period,
        }

    async def run(self) -> None:
        """Wait for both stores, reconcile everything once, then react to changes forever."""
        await self._nodes.synced.wait()
        await self._statuses.synced.wait()
        for node_obj in list(self._nodes.values()):
            self._enqueue(node_obj.name)
        for status in list(self._statuses.values()):
            if self._is_ours(status):
                self._enqueue(status.node)
        while True:
            node = await self._queue.get()
            self._queued.discard(node)  # a change arriving during reconcile queues it again
            attempt = 0
            while True:
                try:
                    await self.reconcile(node)
                    break
                except ApiError as exc:
                    delay = backoff_delay(attempt, initial=self._watch.backoff_initial,
                                          maximum=self._watch.backoff_max,
                                          retry_after=exc.retry_after)
                    attempt += 1
                    log.warning("node_status_write_failed", node=node, status=exc.status,
                                reason=exc.reason, delay=round(delay, 3))
                    await asyncio.sleep(delay)
                except OSError as exc:
                    delay = backoff_delay(attempt, initial=self._watch.backoff_initial,
                                          maximum=self._watch.backoff_max)
                    attempt += 1
                    log.warning("node_status_write_failed", node=node, error=repr(exc),
                                delay=round(delay, 3))
                    await asyncio.sleep(delay)

    async def reconcile(self, node_name: str) -> None:
        """Make the world right for one node: create, repair or delete our status object."""
        node = self._nodes.get(("", node_name))
        name = self.name_for(node_name)
        mine = [s for s in self._statuses.values() if s.node == node_name and self._is_ours(s)]
        existing = self._statuses.get(("", name))
        if existing is not None and not self._is_ours(existing):
            if name not in self._warned:
                self._warned.add(name)
                log.warning("node_status_not_ours", name=name, node=node_name)
            existing = None
        for stale in mine:
            if node is None or stale.name != name:
                await self._delete(stale)
        if node is None:
            return
        if existing is None:
            await self._create(node)
        elif (existing.node, existing.classes, existing.update_period) != (
            node_name, tuple(self._settings.node_status_classes),
            self._settings.node_status_update_period,
        ) or existing.owner_uids != (node.uid,):
            await self._repair(existing, node)

    def _owner(self, node: Node) -> list[dict[str, Any]]:
        return [{"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node.uid}]

    def _resource(self) -> Resource:
        """CalicoNodeStatus in the group that holds Calico's data now."""
        return self._calico.resolve(CALICO_NODE_STATUSES)

    async def _create(self, node: Node) -> None:
        generation = self._calico.generation
        resource = self._resource()
        body = {
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {
                "name": self.name_for(node.name),
                "labels": {MANAGED_BY: MANAGER},
                "ownerReferences": self._owner(node),
            },
            "spec": self.desired_spec(node.name),
        }
        try:
            await self._api.create(resource, body)
        except ApiError as exc:
            if exc.status == 404:
                await self._calico.rediscover(generation)  # the retry uses the group found
            if exc.status != 409:
                raise
            return  # created meanwhile (by an earlier us): the watch brings it, then we check it
        log.info("node_status_created", node=node.name, name=self.name_for(node.name))

    async def _repair(self, existing: CalicoNodeStatus, node: Node) -> None:
        patch = {"metadata": {"ownerReferences": self._owner(node)},
                 "spec": self.desired_spec(node.name)}
        try:
            await self._api.patch_merge(self._resource(), existing.name, patch)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return
        log.info("node_status_repaired", node=node.name, name=existing.name)

    async def _delete(self, status: CalicoNodeStatus) -> None:
        try:
            await self._api.delete(self._resource(), status.name, uid=status.uid or None)
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise
            return
        log.info("node_status_deleted", node=status.node, name=status.name)
