"""What a scheduler, the kubelet and Calico's CNI plugin do for a pod created through the API
(``kubectl run``, ``kubectl apply``), in the simulated cluster.

A pod without ``spec.nodeName`` is scheduled by a trivial scheduler: the Ready node with the
fewest pods (by name on a tie) is written into ``spec.nodeName``. A pod on a node of the cluster
that has no address yet is then started: Calico IPAM assigns it one address per IP family of the
cluster's enabled pools (as the CNI ADD does, recording the handle and the
``cni.projectcalico.org/*`` annotations), or the node's addresses for a host-network pod, and
its status becomes ``Running`` with the addresses, its conditions and one ready container status
per container. A pod that cannot get an address (the pools are full) stays ``Pending``, as it
would stay in ContainerCreating. A pod on a node the cluster does not have is left alone.

Pods deleted through the API keep their addresses: nothing runs the CNI DEL, which is what the
exporter reports as leaked once ``--leak-grace-period`` has passed.

Everything happens just after the write that created or changed the pod (``call_soon``), as a
controller reacting to a watch event would; the pod is written through the in-process API (spec
and status together), standing for the scheduler's binding and the kubelet's status update.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from exporter.sim.errors import ApiError
from exporter.sim.ipam import IpamError

if TYPE_CHECKING:
    from exporter.sim.apiserver import ApiServer
    from exporter.sim.cluster import SimCluster

__all__ = ["PodLifecycle"]

_log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodLifecycle:
    """Schedules and starts the pods created through the API; :meth:`start` to begin."""

    def __init__(self, api: ApiServer, cluster: SimCluster, *,
                 on_started: Callable[[str], None] | None = None) -> None:
        self.api = api
        self.cluster = cluster
        self.on_started = on_started
        """Called with the node name after a pod was started there (routes changed)."""
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        """Follow pod events, and take care of the pods already waiting."""
        self._unsubscribe = self.api.subscribe("pods", self._on_event)
        for pod in self.api.list("pods"):
            self._reconcile(pod["metadata"]["namespace"], pod["metadata"]["name"])

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED" or (obj.get("status") or {}).get("podIP"):
            return
        meta = obj["metadata"]
        try:
            asyncio.get_running_loop().call_soon(self._reconcile, meta["namespace"],
                                                 meta["name"])
        except RuntimeError:  # no loop: act at once
            self._reconcile(meta["namespace"], meta["name"])

    # ------------------------------------------------------------------------------------------

    def _pick_node(self) -> str | None:
        load = {name: 0 for name, node in self.cluster.nodes.items()
                if name not in self.cluster.down_birds}
        for pod in self.api.list("pods"):
            node = (pod.get("spec") or {}).get("nodeName")
            if node in load:
                load[node] += 1
        return min(sorted(load), key=lambda n: load[n]) if load else None

    def _ip_versions(self) -> tuple[int, ...]:
        versions = {ipaddress.ip_network(str(p["cidr"]), strict=False).version
                    for p in self.cluster.scenario.ippools if not p.get("disabled")}
        return tuple(sorted(versions)) or (4,)

    def _reconcile(self, namespace: str, name: str) -> None:
        try:
            pod = self.api.get("pods", name, namespace)
        except ApiError:
            return
        spec = pod.setdefault("spec", {})
        status = pod.setdefault("status", {})
        if (pod["metadata"].get("deletionTimestamp") or status.get("podIP")
                or status.get("phase") in ("Succeeded", "Failed")):
            return
        node_name = spec.get("nodeName")
        scheduled_now = not node_name
        if scheduled_now:
            node_name = self._pick_node()
            if node_name is None:
                return
            spec["nodeName"] = node_name
        node = self.cluster.nodes.get(node_name)
        if node is None:
            return  # no such node here: the pod waits, as it would for a node that never joins
        if spec.get("hostNetwork"):
            ips = [node.ipv4] + ([node.ipv6] if node.ipv6 else [])
        else:
            container = secrets.token_hex(32)
            try:
                ips = self.cluster.ipam.assign(namespace=namespace, pod=name, node=node_name,
                                               container_id=container,
                                               ip_versions=self._ip_versions())
            except IpamError as exc:
                _log.info("sim pod %s/%s stays pending: %s", namespace, name, exc)
                if scheduled_now:
                    self.api.update(pod)  # bound to its node, waiting for an address
                return
            notes = pod["metadata"].setdefault("annotations", {})
            notes["cni.projectcalico.org/containerID"] = container
            notes["cni.projectcalico.org/podIP"] = f"{ips[0]}/{128 if ':' in ips[0] else 32}"
            notes["cni.projectcalico.org/podIPs"] = ",".join(
                f"{ip}/{128 if ':' in ip else 32}" for ip in ips)
        now = _now()
        status.update({
            "phase": "Running", "hostIP": node.ipv4, "podIP": ips[0],
            "podIPs": [{"ip": ip} for ip in ips], "startTime": status.get("startTime") or now,
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                           for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{
                "name": c.get("name", ""), "image": c.get("image", ""), "imageID": "",
                "containerID": "containerd://" + secrets.token_hex(32), "ready": True,
                "started": True, "restartCount": 0, "state": {"running": {"startedAt": now}},
            } for c in spec.get("containers") or []],
        })
        try:
            self.api.update(pod)
        except ApiError as exc:  # changed meanwhile: its own event brings us back
            _log.info("sim pod %s/%s not started: %s", namespace, name, exc)
            if not spec.get("hostNetwork"):
                self.cluster.ipam.release(namespace=namespace, pod=name)
            return
        if self.on_started is not None:
            self.on_started(node_name)
