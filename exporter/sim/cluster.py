"""A simulated Calico cluster on top of the API emulator.

:class:`SimCluster` seeds the emulator from a :class:`~exporter.sim.scenario.Scenario` (nodes,
namespaces, pools, IPAM blocks and pods allocated like Calico IPAM, policies), runs one simulated
calico-node status reporter per node, and lets tests and the demo change the world: take a BGP
session or a whole BIRD down and up, add and remove nodes and pods, leak an address.

The BGP model: in a full mesh every node peers with every other node (type NodeMesh, BIRD
protocol ``Mesh_<ip>``); with route reflectors, every other node peers with each reflector and
the reflectors with each other (NodePeer). A node learns, over each established session, the IPAM
blocks affine to the nodes behind that peer (FIB for the first path, RIB for alternatives), and
reports its own blocks (Static blackhole), pod /32s and default route (Kernel) and its subnet
(Direct), as calico-node's route populator does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import time
from collections.abc import Callable
from typing import Any

from exporter.sim.apiserver import ApiServer
from exporter.sim.calico_node import BIRD_VERSION, CNS, StatusReporter, bird_since, bird_time
from exporter.sim.errors import ApiError
from exporter.sim.ipam import IpamAllocator
from exporter.sim.scenario import Scenario, SimNode, SimPod

CALICO = "crd.projectcalico.org/v1"


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
        self._unsubscribe: Callable[[], None] | None = None
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
        for node in sc.nodes:
            self.add_node(node)
        for cidr, node_name in sc.blocks:
            self.ipam.claim_block(node=node_name, cidr=cidr)
        for pod in sc.pods:
            self.add_pod(pod)
        for namespace, name in sc.leaks:
            self.delete_pod(namespace, name, leak=True)
        self.api.seed([dict(obj) for obj in sc.objects])
        self._unsubscribe = self.api.subscribe(CNS, self._on_status_event)
        for obj in self.api.list(CNS):
            self._on_status_event("ADDED", obj)

    async def stop(self) -> None:
        if self._flapper is not None:
            self._flapper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flapper
        if self._unsubscribe is not None:
            self._unsubscribe()
        for reporter in self._reporters.values():
            await reporter.stop()

    def _on_status_event(self, kind: str, obj: dict[str, Any]) -> None:
        for reporter in self._reporters.values():
            reporter.on_event(kind, obj)

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

    @staticmethod
    def _ippool(pool: dict[str, Any]) -> dict[str, Any]:
        spec = {k: v for k, v in pool.items() if k != "name"}
        return {"apiVersion": CALICO, "kind": "IPPool", "metadata": {"name": pool["name"]},
                "spec": spec}

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
        for obj in self.api.list(CNS):
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
        for affinity in self.api.list("blockaffinities"):
            if (affinity.get("spec") or {}).get("node") == node:
                self.api.delete("blockaffinities", affinity["metadata"]["name"])
        for block in self.api.list("ipamblocks"):
            spec = block.get("spec") or {}
            if spec.get("affinity") != f"host:{node}":
                continue
            if all(a is None for a in spec.get("allocations") or []):
                self.api.delete("ipamblocks", block["metadata"]["name"])
            else:
                del spec["affinity"]
                self.api.update(block)

    def add_pod(self, pod: SimPod) -> dict[str, Any]:
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
        for block in self.api.list("ipamblocks"):
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
