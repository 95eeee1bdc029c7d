"""A simulated Calico cluster on top of the API emulator.

:class:`SimCluster` seeds the emulator from a :class:`~exporter.sim.scenario.Scenario` (nodes,
namespaces, pools, IPAM blocks and pods allocated like Calico IPAM, policies), runs one simulated
calico-node status reporter per node, and lets tests and the demo change the world: take a BGP
session or a whole BIRD down and up, add and remove nodes and pods, leak an address.

Service accounts: every namespace gets a ``default`` ServiceAccount as kube-controller-manager's
service-account controller creates it (also for namespaces created later), and a pod's service
account is created with the pod when missing, as the workload's manifests would have it (a real
API server's ServiceAccount admission refuses a pod whose service account does not exist).

The BGP model: in a full mesh every node peers with every other node (type NodeMesh, BIRD
protocol ``Mesh_<ip>``); with route reflectors, every other node peers with each reflector and
the reflectors with each other (NodePeer). A node learns, over each established session, the IPAM
blocks affine to the nodes behind that peer (FIB for the first path, RIB for alternatives), and
reports its own blocks (Static blackhole), pod /32s and default route (Kernel) and its subnet
(Direct), as calico-node's route populator does.

Calico's objects are written into the group that holds its data (``ApiServer.calico_group``):
``crd.projectcalico.org/v1``, or native ``projectcalico.org/v3``, where the simulated
kube-controllers also keeps each IPPool's ``Allocatable`` condition as Calico's IP pool controller
does (:meth:`SimCluster.reconcile_pool_conditions`). :meth:`SimCluster.migrate_to_v3` performs
Calico's v1-to-v3 datastore migration while everything runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import time
from collections.abc import Callable
from typing import Any

from exporter.sim import calicoapi
from exporter.sim.apiserver import ApiServer
from exporter.sim.calico_node import BIRD_VERSION, CNS, StatusReporter, bird_since, bird_time
from exporter.sim.errors import ApiError
from exporter.sim.ipam import IpamAllocator
from exporter.sim.resources import CRD_V3_DIR, V3_PLURALS
from exporter.sim.scenario import Scenario, SimNode, SimPod

POOL_CONDITION = "Allocatable"
"""The IPPool condition Calico's IP pool controller keeps (v3 CRDs only)."""


def _pair(a: str, b: str) -> frozenset[str]:
    return frozenset((a, b))


class SimCluster:
    """The simulated cluster: state of nodes, sessions and pods, mirrored into the emulator."""

    def __init__(self, api: ApiServer, scenario: Scenario, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.api = api
        self.scenario = scenario
        self.clock = clock
        self.nodes: dict[str, SimNode] = {}
        self.ipam = IpamAllocator(api, strict_affinity=scenario.strict_affinity)
        self.down_sessions: set[frozenset[str]] = set()
        self.down_birds: set[str] = set()
        self.session_changed: dict[frozenset[str], float] = {}
        self.booted = clock()
        self._reporters: dict[str, StatusReporter] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        """Subscriptions to Calico's group (renewed when the data moves to another group)."""
        self._unsubscribe_namespaces: Callable[[], None] | None = None
        self._container = 0
        self._flapper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Seed the emulator and start the calico-node reporters (needs a running loop)."""
        sc = self.scenario
        self.api.seed(
            [self._namespace(name, labels) for name, labels in sc.namespaces]
            + [self._ippool(pool) for pool in sc.ippools]
        )
        self._unsubscribe_namespaces = self.api.subscribe("namespaces", self._on_namespace)
        for ns in self.api.list("namespaces"):
            self.ensure_service_account(ns["metadata"]["name"], "default")
        for node in sc.nodes:
            self.add_node(node)
        for cidr, node_name in sc.blocks:
            self.ipam.claim_block(node=node_name, cidr=cidr)
        for pod in sc.pods:
            self.add_pod(pod)
        for namespace, name in sc.leaks:
            self.delete_pod(namespace, name, leak=True)
        self.api.seed([self.stored(obj) for obj in sc.objects])
        self._watch_calico()

    def _watch_calico(self) -> None:
        """Subscribe the reporters (and, with v3 CRDs, the IP pool controller) to the group that
        holds Calico's data."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = [self.api.subscribe(self._r(CNS), self._on_status_event)]
        for obj in self.api.list(self._r(CNS)):
            self._on_status_event("ADDED", obj)
        if self.api.calico_group == calicoapi.V3_GROUP:
            self._unsubscribe.append(self.api.subscribe(
                self._r("ippools"), lambda kind, obj: self.reconcile_pool_conditions()))
            self.reconcile_pool_conditions()

    def _r(self, plural: str) -> str:
        """``plural.group`` of a Calico resource in the group that holds the data."""
        return self.api.calico_resource(plural)

    def stored(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A Calico object written as libcalico-go stores it in ``crd.projectcalico.org/v1``
        (scenario objects, and tests' objects with a stored name and metadata annotation), as
        it is in the group that holds Calico's data: itself with v1 CRDs, the object Calico's
        migration makes of it with native v3 CRDs. Other objects are returned as they are."""
        if obj.get("apiVersion") != calicoapi.V1_API or (
                self.api.calico_api_version == calicoapi.V1_API):
            return dict(obj)
        return calicoapi.migrated(obj)

    async def stop(self) -> None:
        if self._flapper is not None:
            self._flapper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flapper
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._unsubscribe_namespaces is not None:
            self._unsubscribe_namespaces()
            self._unsubscribe_namespaces = None
        for reporter in self._reporters.values():
            await reporter.stop()

    def _on_status_event(self, kind: str, obj: dict[str, Any]) -> None:
        for reporter in self._reporters.values():
            reporter.on_event(kind, obj)

    def _on_namespace(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "ADDED":
            self.ensure_service_account(obj["metadata"]["name"], "default")

    def ensure_service_account(self, namespace: str, name: str) -> None:
        """Create the ServiceAccount ``namespace/name`` unless it exists."""
        try:
            self.api.get("serviceaccounts", name, namespace)
        except ApiError:
            self.api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                             "metadata": {"name": name, "namespace": namespace}})

    def node_changed(self, *nodes: str) -> None:
        """Something on these nodes changed outside this class (a pod started there): their
        calico-node reports again."""
        self._poke(*nodes)

    def _poke(self, *nodes: str) -> None:
        for name in nodes or tuple(self._reporters):
            reporter = self._reporters.get(name)
            if reporter is not None:
                reporter.poke()

    # ------------------------------------------------------------------ objects

    @staticmethod
    def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name,
                             "labels": {"kubernetes.io/metadata.name": name, **labels}}}

    def _ippool(self, pool: dict[str, Any]) -> dict[str, Any]:
        spec = {k: v for k, v in pool.items() if k != "name"}
        return {"apiVersion": self.api.calico_api_version, "kind": "IPPool",
                "metadata": {"name": pool["name"]}, "spec": spec}

    def add_node(self, node: SimNode) -> None:
        self.nodes[node.name] = node
        addresses = [{"type": "InternalIP", "address": node.ipv4},
                     {"type": "Hostname", "address": node.name}]
        if node.ipv6:
            addresses.insert(1, {"type": "InternalIP", "address": node.ipv6})
        self.api.create({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name,
                         "labels": {"kubernetes.io/hostname": node.name,
                                    "kubernetes.io/os": "linux", **node.labels},
                         "annotations": {"projectcalico.org/IPv4Address": f"{node.ipv4}/24"}},
            "status": {"addresses": addresses,
                       "conditions": [{"type": "Ready", "status": "True"}]},
        })
        reporter = StatusReporter(self, self.api, node.name, clock=self.clock)
        self._reporters[node.name] = reporter
        for obj in self.api.list(self._r(CNS)):
            reporter.on_event("ADDED", obj)
        self._poke()

    def remove_node(self, name: str) -> None:
        """The node leaves: its pods go (addresses released) and its Node object is deleted."""
        for pod in self.api.list("pods"):
            if (pod.get("spec") or {}).get("nodeName") == name:
                self.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])
        reporter = self._reporters.pop(name, None)
        if reporter is not None:
            for obj_name in list(reporter._specs):
                reporter._cancel(obj_name)
        self.nodes.pop(name, None)
        self.api.delete("nodes", name)
        self._release_node_blocks(name)
        self._poke()

    def _release_node_blocks(self, node: str) -> None:
        """What kube-controllers does for a deleted node: drop its block affinities; delete its
        empty blocks, and keep blocks that still hold addresses without an affinity."""
        for affinity in self.api.list(self._r("blockaffinities")):
            if (affinity.get("spec") or {}).get("node") == node:
                self.api.delete(self._r("blockaffinities"), affinity["metadata"]["name"])
        for block in self.api.list(self._r("ipamblocks")):
            spec = block.get("spec") or {}
            if spec.get("affinity") != f"host:{node}":
                continue
            if all(a is None for a in spec.get("allocations") or []):
                self.api.delete(self._r("ipamblocks"), block["metadata"]["name"])
            else:
                del spec["affinity"]
                self.api.update(block)

    def add_pod(self, pod: SimPod) -> dict[str, Any]:
        self.ensure_service_account(pod.namespace, pod.service_account)
        self._container += 1
        container = f"{self._container:064x}"
        node = self.nodes[pod.node]
        if pod.host_network:
            ips = [node.ipv4] + ([node.ipv6] if node.ipv6 else [])
        else:
            ips = self.ipam.assign(namespace=pod.namespace, pod=pod.name, node=pod.node,
                                   container_id=container, ip_versions=pod.ip_versions,
                                   requested=pod.ips)
        meta: dict[str, Any] = {"name": pod.name, "namespace": pod.namespace,
                                "labels": dict(pod.labels)}
        if not pod.host_network:
            meta["annotations"] = {
                "cni.projectcalico.org/containerID": container,
                "cni.projectcalico.org/podIP": f"{ips[0]}/{32 if ':' not in ips[0] else 128}",
                "cni.projectcalico.org/podIPs": ",".join(
                    f"{ip}/{32 if ':' not in ip else 128}" for ip in ips),
            }
        obj: dict[str, Any] = self.api.create({
            "apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": pod.node, "hostNetwork": pod.host_network,
                     "serviceAccountName": pod.service_account,
                     "containers": [{"name": "main", "image": "registry.example/app:1"}]},
            "status": {"phase": pod.phase, "hostIP": node.ipv4,
                       "podIP": ips[0] if ips else "",
                       "podIPs": [{"ip": ip} for ip in ips],
                       "containerStatuses": [{
                           "name": "main", "image": "registry.example/app:1", "imageID": "",
                           "ready": pod.phase == "Running", "restartCount": 0,
                           "started": pod.phase == "Running"}]},
        })
        self._poke(pod.node)
        return obj

    def delete_pod(self, namespace: str, name: str, *, leak: bool = False) -> None:
        """Delete a pod; its addresses are released unless ``leak`` (a CNI DEL that never ran)."""
        try:
            pod = self.api.get("pods", name, namespace)
        except ApiError:
            return
        if not (pod.get("spec") or {}).get("hostNetwork"):
            if leak:
                self.ipam.leak(namespace=namespace, pod=name)
            else:
                self.ipam.release(namespace=namespace, pod=name)
        self.api.delete("pods", name, namespace)
        self._poke(str((pod.get("spec") or {}).get("nodeName", "")))

    # ------------------------------------------------------------------ BGP world

    def peers_of(self, node: str) -> list[tuple[SimNode, str]]:
        """(peer node, peer type) for every BGP session configured on ``node``."""
        me = self.nodes[node]
        others = [n for n in self.nodes.values() if n.name != node]
        if self.scenario.mesh:
            return [(n, "NodeMesh") for n in others]
        if me.route_reflector:
            return [(n, "NodePeer") for n in others]
        return [(n, "NodePeer") for n in others if n.route_reflector]

    def session_up(self, a: str, b: str) -> bool:
        return (_pair(a, b) not in self.down_sessions
                and a not in self.down_birds and b not in self.down_birds)

    def set_session(self, a: str, b: str, *, up: bool) -> None:
        """Take the BGP session between two nodes down or bring it back up."""
        pair = _pair(a, b)
        if up:
            self.down_sessions.discard(pair)
        else:
            self.down_sessions.add(pair)
        self.session_changed[pair] = self.clock()
        self._poke(a, b)

    def set_bird(self, node: str, *, up: bool) -> None:
        """Stop or start BIRD on a node: its agent is NotReady and all its sessions drop."""
        if up:
            self.down_birds.discard(node)
        else:
            self.down_birds.add(node)
        now = self.clock()
        for other in self.nodes:
            if other != node:
                self.session_changed[_pair(node, other)] = now
        self._poke()

    def agent_status(self, node: str, now: float) -> dict[str, Any]:
        if node in self.down_birds:
            return {"birdV4": {"state": "NotReady"}, "birdV6": {"state": "NotReady"}}
        me = self.nodes[node]
        bird = {"state": "Ready", "version": BIRD_VERSION, "routerID": me.ipv4,
                "lastBootTime": bird_time(self.booted),
                "lastReconfigurationTime": bird_time(self.booted)}
        return {"birdV4": bird, "birdV6": dict(bird)}

    def bgp_status(self, node: str, now: float) -> dict[str, Any]:
        if node in self.down_birds:
            return {}
        v4: list[dict[str, Any]] = []
        v6: list[dict[str, Any]] = []
        me = self.nodes[node]
        for peer, peer_type in self.peers_of(node):
            up = self.session_up(node, peer.name)
            since = bird_since(self.session_changed.get(_pair(node, peer.name), self.booted), now)
            state = "Established" if up else "Active"
            v4.append({"peerIP": peer.ipv4, "type": peer_type, "state": state, "since": since})
            if me.ipv6 and peer.ipv6:
                v6.append({"peerIP": peer.ipv6, "type": peer_type, "state": state,
                           "since": since})
        status: dict[str, Any] = {
            "numberEstablishedV4": sum(p["state"] == "Established" for p in v4),
            "numberNotEstablishedV4": sum(p["state"] != "Established" for p in v4),
            "numberEstablishedV6": sum(p["state"] == "Established" for p in v6),
            "numberNotEstablishedV6": sum(p["state"] != "Established" for p in v6),
        }
        if v4:
            status["peersV4"] = v4
        if v6:
            status["peersV6"] = v6
        return status

    def _blocks_by_node(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for block in self.api.list(self._r("ipamblocks")):
            affinity = (block.get("spec") or {}).get("affinity") or ""
            if affinity.startswith("host:"):
                out.setdefault(affinity[5:], []).append(block["spec"]["cidr"])
        return out

    def route_status(self, node: str) -> dict[str, Any]:
        if node in self.down_birds:
            return {}
        me = self.nodes[node]
        blocks = self._blocks_by_node()
        routes: dict[int, list[dict[str, Any]]] = {4: [], 6: []}

        def add(cidr: str, **route: Any) -> None:
            routes[ipaddress.ip_network(cidr, strict=False).version].append(
                {"destination": cidr, **route})

        add("0.0.0.0/0", type="FIB", gateway=str(ipaddress.ip_network(
            f"{me.ipv4}/24", strict=False).network_address + 1), interface="eth0",
            learnedFrom={"sourceType": "Kernel"})
        add(str(ipaddress.ip_network(f"{me.ipv4}/24", strict=False)), type="FIB",
            gateway="N/A", interface="eth0", learnedFrom={"sourceType": "Direct"})
        for cidr in blocks.get(node, []):
            add(cidr, type="FIB", gateway="N/A", interface="blackhole",
                learnedFrom={"sourceType": "Static"})
        for pod in self.api.list("pods"):
            spec = pod.get("spec") or {}
            if spec.get("nodeName") != node or spec.get("hostNetwork"):
                continue
            for entry in (pod.get("status") or {}).get("podIPs") or []:
                ip = entry["ip"]
                add(f"{ip}/{128 if ':' in ip else 32}", type="FIB", gateway="N/A",
                    interface="cali" + format(abs(hash(pod["metadata"]["name"])), "x")[:11],
                    learnedFrom={"sourceType": "Kernel"})
        for origin, cidrs in sorted(blocks.items()):
            if origin == node or origin not in self.nodes:
                continue
            via = [peer for peer, _ in self.peers_of(node)
                   if self.session_up(node, peer.name)
                   and (peer.name == origin or (not self.scenario.mesh and peer.route_reflector))]
            via.sort(key=lambda p: p.name != origin)
            source = "NodeMesh" if self.scenario.mesh else "BGPPeer"
            gateway = self.nodes[origin].ipv4
            for cidr in cidrs:
                for i, peer in enumerate(via):
                    add(cidr, type="FIB" if i == 0 else "RIB", gateway=gateway,
                        interface="eth0",
                        learnedFrom={"sourceType": source, "peerIP": peer.ipv4})
        for i in range(self.scenario.extra_routes):
            peers = [p for p, _ in self.peers_of(node) if self.session_up(node, p.name)]
            if not peers:
                break
            add(str(ipaddress.ip_network("100.64.0.0/10").network_address + i * 256) + "/24",
                type="FIB", gateway=peers[0].ipv4, interface="eth0",
                learnedFrom={"sourceType": "BGPPeer", "peerIP": peers[0].ipv4})
        status: dict[str, Any] = {}
        if routes[4]:
            status["routesV4"] = routes[4]
        if routes[6]:
            status["routesV6"] = routes[6]
        return status

    # ------------------------------------------------------------------ Calico's API groups

    def reconcile_pool_conditions(self) -> None:
        """What kube-controllers' IP pool controller does after every IPPool change, with v3 CRDs
        (it only runs there): ``reconcileConditions`` in
        ``kube-controllers/pkg/controllers/ippool/pool_controller.go`` (v3.32.1 and master
        87c1590). Pools are taken in order: allocatable ones first, then terminating, then
        not allocatable, then new ones (each by creationTimestamp, then name). A disabled pool is
        ``Allocatable=False`` (``PoolDisabled``); a terminating one ``False``
        (``Terminating``) and still masks overlapping pools; a pool overlapping a pool already
        taken is ``False`` (``CIDROverlap``); any other pool is taken and ``True`` (``OK``).
        A condition is written, through the status subresource, only when it changes
        (``setConditionOnPool``). Finalizers are not simulated: a deleted pool goes at once."""
        resource = self._r("ippools")
        pools = self.api.list(resource)

        def current(pool: dict[str, Any]) -> dict[str, Any] | None:
            for cond in (pool.get("status") or {}).get("conditions") or []:
                if cond.get("type") == POOL_CONDITION:
                    return dict(cond)
            return None

        def category(pool: dict[str, Any]) -> int:
            deleting = bool(pool["metadata"].get("deletionTimestamp"))
            status = (current(pool) or {}).get("status")
            if status == "True" and not deleting:
                return 0
            if deleting:
                return 1
            return 2 if status == "False" else 3

        pools.sort(key=lambda p: (category(p), p["metadata"].get("creationTimestamp") or "",
                                  p["metadata"]["name"]))
        taken: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for pool in pools:
            spec = pool.get("spec") or {}
            try:
                net = ipaddress.ip_network(str(spec.get("cidr")), strict=False)
            except ValueError:
                continue
            if spec.get("disabled"):
                want = ("False", "PoolDisabled", "IPPool.Spec.Disabled is true")
            elif pool["metadata"].get("deletionTimestamp"):
                want = ("False", "Terminating", "IPPool is being deleted")
                taken.append(net)
            elif any(net.version == t.version and net.overlaps(t) for t in taken):
                want = ("False", "CIDROverlap",
                        "CIDR overlaps another pool; disabled to prevent IP allocation conflicts.")
            else:
                want = ("True", "OK", "IPPool is available for IP allocation.")
                taken.append(net)
            have = current(pool)
            if have is not None and (have.get("status"), have.get("reason"),
                                     have.get("message")) == want:
                continue
            condition = {"type": POOL_CONDITION, "status": want[0], "reason": want[1],
                         "message": want[2],
                         "lastTransitionTime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                             time.gmtime(self.clock()))}
            others = [c for c in (pool.get("status") or {}).get("conditions") or []
                      if c.get("type") != POOL_CONDITION]
            pool["status"] = {**(pool.get("status") or {}), "conditions": [*others, condition]}
            sub = "status" if self.api.resolve(resource).status_subresource else None
            with contextlib.suppress(ApiError):  # gone or changed meanwhile: the next event
                self.api.update(pool, subresource=sub)

    def migrate_to_v3(self, *, delete_instances: bool = True) -> None:
        """Calico's v1-to-v3 datastore migration, while everything runs (kube-controllers'
        migration controller, ``kube-controllers/pkg/controllers/migration/`` on master
        87c1590): the native v3 CRDs are installed (replacing the Calico API server's types,
        whose APIService the migration deletes), every v1 object is created in v3 as
        ``migrators.defaultConvert`` copies it (:func:`calicoapi.migrated`: the object as the
        v1 backend reads it, without server-side metadata, under a new uid), calico-node and
        kube-controllers move to v3, and the v1 CRDs are deleted (``delete_instances``: their
        objects first, as the CRD finalizer does)."""
        api = self.api
        if api.calico_group != calicoapi.V1_GROUP:
            raise RuntimeError("Calico's data is not in crd.projectcalico.org/v1: nothing to "
                               "migrate")
        stored = [rt for rt in api.registry.types
                  if rt.group == calicoapi.V1_GROUP and rt.backing is None]
        objects = {rt.plural: (rt.kind, api.list(f"{rt.plural}.{calicoapi.V1_GROUP}"))
                   for rt in stored}
        api.serve_crds(sorted(CRD_V3_DIR.glob("*.yaml")))
        served = {rt.plural: rt for rt in api.registry.types if rt.group == calicoapi.V3_GROUP}
        for plural, (_, items) in sorted(objects.items()):
            rt = served.get(V3_PLURALS.get(plural, plural))
            if rt is None:
                continue
            for obj in items:
                api.create(calicoapi.migrated(obj, kind=rt.kind))
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        api.drop_group(calicoapi.V1_GROUP, delete_instances=delete_instances)
        self._watch_calico()
        self._poke()

    # ------------------------------------------------------------------ demo liveliness

    def start_flapping(self, interval: float, *, down_for: float | None = None) -> None:
        """Take a random BGP session down every ``interval`` seconds, and back up later."""
        self._flapper = asyncio.get_running_loop().create_task(
            self._flap(interval, down_for or interval / 3), name="sim-bgp-flapper")

    async def _flap(self, interval: float, down_for: float) -> None:
        rng = random.Random(42)
        while True:
            await asyncio.sleep(interval)
            names = sorted(self.nodes)
            if len(names) < 2:
                continue
            a, b = rng.sample(names, 2)
            self.set_session(a, b, up=False)
            await asyncio.sleep(down_for)
            self.set_session(a, b, up=True)
