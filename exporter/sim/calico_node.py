"""A simulated calico-node status reporter, one per node.

It treats CalicoNodeStatus exactly as calico-node's reporter does (``calico-model.md`` §1.3):

- only objects whose ``spec.node`` is this node; an object without ``updatePeriodSeconds`` is
  ignored;
- the status is collected on create and on every spec change, then every
  ``updatePeriodSeconds`` (``0``: never periodically);
- only the classes in ``spec.classes`` are filled; ``since`` is ``HH:MM:SS`` within 20 hours of
  the state change, else ``YYYY-MM-DD``; ``lastUpdated`` changes only when the content changes,
  and an unchanged status is not written at all;
- the status is written through the main resource when CalicoNodeStatus has no status
  subresource (v3.32.1), through ``/status`` when it has one (master: ``UpdateStatus()``).

The objects live in whichever group holds Calico's data (``crd.projectcalico.org/v1`` or native
``projectcalico.org/v3``), looked up at every report, so a reporter follows a datastore migration.

The BGP facts themselves (which sessions are up, which blocks each node announces) come from the
:class:`~exporter.sim.cluster.SimCluster` that owns the reporters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from exporter.sim.errors import ApiError

if TYPE_CHECKING:
    from exporter.sim.apiserver import ApiServer
    from exporter.sim.cluster import SimCluster

CNS = "caliconodestatuses"
"""The plural; the group is the one holding Calico's data (``ApiServer.calico_resource``)."""
BIRD_VERSION = "v0.3.3+birdv1.6.8"


def bird_since(changed: float, now: float) -> str:
    """BIRD's ``since`` column: time of day within 20 hours, else the date (tf_proto)."""
    moment = datetime.fromtimestamp(changed, UTC)
    if now - changed < 20 * 3600:
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d")


def bird_time(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


class StatusReporter:
    """Reports one node's status into every CalicoNodeStatus that asks for it."""

    def __init__(self, cluster: SimCluster, api: ApiServer, node: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.cluster = cluster
        self.api = api
        self.node = node
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._specs: dict[str, Any] = {}
        self._wake: dict[str, asyncio.Event] = {}

    def on_event(self, kind: str, obj: dict[str, Any]) -> None:
        """Emulator subscription callback for CalicoNodeStatus events."""
        name = obj["metadata"]["name"]
        spec = obj.get("spec") or {}
        wanted = (kind != "DELETED" and spec.get("node") == self.node
                  and spec.get("updatePeriodSeconds") is not None)
        if not wanted:
            self._cancel(name)
            return
        if self._specs.get(name) == spec:
            return  # our own status write, or a label change: not a new spec
        self._specs[name] = spec
        if name in self._tasks:
            self._wake[name].set()
        else:
            self._wake[name] = asyncio.Event()
            self._tasks[name] = asyncio.get_running_loop().create_task(
                self._report_loop(name), name=f"sim-status-{name}")

    def poke(self) -> None:
        """Cluster state changed: report now to every object with a non-zero period."""
        for name, wake in self._wake.items():
            if self._specs.get(name, {}).get("updatePeriodSeconds"):
                wake.set()

    def _cancel(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        self._specs.pop(name, None)
        self._wake.pop(name, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for name in list(self._tasks):
            self._cancel(name)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _report_loop(self, name: str) -> None:
        while True:
            wake = self._wake[name]
            wake.clear()
            self.report(name)
            period = self._specs[name].get("updatePeriodSeconds") or 0
            if period > 0:
                try:
                    async with asyncio.timeout(period):
                        await wake.wait()
                except TimeoutError:
                    pass
            else:
                await wake.wait()  # period 0: only on spec changes

    def report(self, name: str) -> None:
        """Collect and write the status once; skip the write when nothing changed."""
        resource = self.api.calico_resource(CNS)
        try:
            obj = self.api.get(resource, name)
        except (ApiError, ValueError):
            return
        classes = (obj.get("spec") or {}).get("classes") or []
        now = self.clock()
        status: dict[str, Any] = {}
        if "Agent" in classes:
            status["agent"] = self.cluster.agent_status(self.node, now)
        if "BGP" in classes:
            status["bgp"] = self.cluster.bgp_status(self.node, now)
        if "Routes" in classes:
            status["routes"] = self.cluster.route_status(self.node)
        old = dict(obj.get("status") or {})
        old.pop("lastUpdated", None)
        if old == status and (obj.get("status") or {}).get("lastUpdated"):
            return
        status["lastUpdated"] = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        obj["status"] = status
        subresource = "status" if self.api.resolve(resource).status_subresource else None
        try:
            self.api.update(obj, subresource=subresource)
        except ApiError:
            return  # conflict or gone: the next event or tick reports again
