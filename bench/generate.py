"""Generator of large simulated Calico clusters for the API emulator.

A :class:`BenchSpec` (N nodes, R routes per CalicoNodeStatus, P pods, K policies, B IPAM blocks)
becomes either a scenario document (:func:`scenario_doc`, for :mod:`exporter.sim.scenario` and
``SimCluster``, fine for small clusters) or, for big ones, the objects themselves
(:func:`generate`), built directly in the shape Calico and Kubernetes write them and meant for
``ApiServer.seed``: namespaces, one IPPool, Nodes, BlockAffinities, IPAMBlocks with their
allocations, one IPAMHandle per pod, Pods, Kubernetes and Calico policies, and one
CalicoNodeStatus per node exactly as the exporter's refresher would have created it (name prefix,
``managed-by`` label, ownerReference to the Node, spec) with the status calico-node reports.

Topology: a few route reflectors; every other node peers with each reflector, reflectors peer with
every node (``NodePeer``). Block ``j`` is affine to node ``j % N``; pod ``k`` lives in block
``k % B`` at ordinal ``k // B``, so pods spread evenly over the nodes that hold blocks.
Addresses are data for simulated objects only: nodes in 10.128.0.0/16, pods in 172.16.0.0/12.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass, field
from typing import Any

CALICO = "crd.projectcalico.org/v1"
POD_NETWORK = "k8s-pod-network"
BLOCK_SIZE = 26
BLOCK_ADDRESSES = 1 << (32 - BLOCK_SIZE)
NODE_BASE = int(ipaddress.IPv4Address("10.128.0.0"))
POOL_CIDR = "172.16.0.0/12"
POOL_BASE = int(ipaddress.IPv4Address("172.16.0.0"))
EXTRA_BASE = int(ipaddress.IPv4Address("100.64.0.0"))
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "calico-exporter"
STATUS_PREFIX = "calico-exporter-"
CLASSES = ("Agent", "BGP", "Routes")
BIRD_VERSION = "v0.3.3+birdv1.6.8"
BOOT_TIME = "2026-11-01 00:00:00"
TIMESTAMP = "2026-11-01T00:00:00Z"

#: emulator resource names (``ApiServer.list``) of each generated kind
RESOURCES = {
    "Namespace": "namespaces",
    "Node": "nodes",
    "Pod": "pods",
    "IPPool": "ippools",
    "IPAMBlock": "ipamblocks",
    "BlockAffinity": "blockaffinities",
    "IPAMHandle": "ipamhandles",
    "NetworkPolicy/networking.k8s.io/v1": "networkpolicies.networking.k8s.io",
    "NetworkPolicy/crd.projectcalico.org/v1": "networkpolicies.crd.projectcalico.org",
    "GlobalNetworkPolicy": "globalnetworkpolicies",
    "CalicoNodeStatus": "caliconodestatuses.crd.projectcalico.org",
}


@dataclass(frozen=True)
class BenchSpec:
    """The size of one simulated cluster."""

    nodes: int
    routes: int
    pods: int
    policies: int
    blocks: int
    reflectors: int = 3
    pods_per_namespace: int = 100
    apps_per_namespace: int = 10
    update_period: int = 30
    """spec.updatePeriodSeconds of the CalicoNodeStatus objects (the exporter's flag must match)."""

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.blocks < 1:
            raise ValueError("need at least one node and one block")
        if self.pods > self.blocks * (BLOCK_ADDRESSES - 8):
            raise ValueError(f"{self.pods} pods do not fit in {self.blocks} /{BLOCK_SIZE} blocks "
                             "(8 addresses per block are kept free for churn)")
        if self.blocks * BLOCK_ADDRESSES > 1 << 20:
            raise ValueError("too many blocks for the 172.16.0.0/12 pool")

    @property
    def namespaces(self) -> int:
        return max(1, -(-self.pods // self.pods_per_namespace))

    @property
    def reflector_count(self) -> int:
        return min(self.reflectors, self.nodes)


QUICK = BenchSpec(nodes=100, routes=100, pods=3000, policies=300, blocks=100, update_period=10)
FULL = BenchSpec(nodes=1000, routes=1000, pods=30000, policies=3000, blocks=1000)


# ---------------------------------------------------------------------- names and addresses

def node_name(i: int) -> str:
    return f"node-{i:05d}"


def node_ip(i: int) -> str:
    return str(ipaddress.IPv4Address(NODE_BASE + 10 + i))


def node_uid(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/node/{i}"))


def block_cidr(j: int) -> str:
    return f"{ipaddress.IPv4Address(POOL_BASE + j * BLOCK_ADDRESSES)}/{BLOCK_SIZE}"


def block_name(j: int) -> str:
    return block_cidr(j).replace(".", "-").replace("/", "-")


def block_ip(j: int, ordinal: int) -> str:
    return str(ipaddress.IPv4Address(POOL_BASE + j * BLOCK_ADDRESSES + ordinal))


def namespace_name(i: int) -> str:
    return f"ns-{i:04d}"


def container_id(serial: int) -> str:
    return f"{serial:064x}"


def handle_id(serial: int) -> str:
    return f"{POD_NETWORK}.{container_id(serial)}"


def status_name(node: str) -> str:
    return f"{STATUS_PREFIX}{node}"


# ---------------------------------------------------------------------- object builders

@dataclass
class Generated:
    """Objects in seed order, and the bookkeeping the churn driver needs to continue."""

    spec: BenchSpec
    objects: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    """The IPAMBlock objects (index j), as seeded."""
    pod_slots: dict[tuple[str, str], tuple[int, int, int]] = field(default_factory=dict)
    """(namespace, pod) -> (block index, ordinal, handle serial)."""

    def add(self, obj: dict[str, Any]) -> None:
        self.objects.append(obj)
        kind = obj["kind"]
        key = kind if kind != "NetworkPolicy" else f"{kind}/{obj['apiVersion']}"
        resource = RESOURCES[key]
        self.counts[resource] = self.counts.get(resource, 0) + 1


def namespace(i: int) -> dict[str, Any]:
    name = namespace_name(i)
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name,
                                                  "team": f"team-{i % 7}"}}}


def ippool() -> dict[str, Any]:
    return {"apiVersion": CALICO, "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"},
            "spec": {"cidr": POOL_CIDR, "blockSize": BLOCK_SIZE, "ipipMode": "Never",
                     "vxlanMode": "Never", "natOutgoing": True, "nodeSelector": "all()",
                     "allowedUses": ["Workload", "Tunnel"]}}


def node(spec: BenchSpec, i: int) -> dict[str, Any]:
    name = node_name(i)
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", "topology.kubernetes.io/zone": f"zone-{i % 3}"}
    if i < spec.reflector_count:
        labels["route-reflector"] = "true"
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": node_uid(i), "labels": labels,
                     "annotations": {"projectcalico.org/IPv4Address": f"{node_ip(i)}/16"}},
        "spec": {"podCIDR": block_cidr(i % spec.blocks)},
        "status": {
            "addresses": [{"type": "InternalIP", "address": node_ip(i)},
                          {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": TIMESTAMP, "lastTransitionTime": TIMESTAMP}],
            "nodeInfo": {"kubeletVersion": "v1.32.0", "kubeProxyVersion": "v1.32.0",
                         "osImage": "Ubuntu 24.04", "operatingSystem": "linux",
                         "containerRuntimeVersion": "containerd://2.0.0",
                         "kernelVersion": "6.8.0", "architecture": "amd64",
                         "bootID": node_uid(i), "machineID": f"{i:032x}",
                         "systemUUID": node_uid(i)},
        },
    }


def block_affinity(spec: BenchSpec, j: int) -> dict[str, Any]:
    owner = node_name(j % spec.nodes)
    cidr = block_cidr(j)
    return {
        "apiVersion": CALICO, "kind": "BlockAffinity",
        "metadata": {"name": f"{owner}-{block_name(j)}",
                     "labels": {"projectcalico.org/affinity-type": "host",
                                "projectcalico.org/ip-version": "4"}},
        "spec": {"state": "confirmed", "node": owner, "type": "host", "cidr": cidr,
                 "deleted": "false"},
    }


def empty_block(spec: BenchSpec, j: int) -> dict[str, Any]:
    return {
        "apiVersion": CALICO, "kind": "IPAMBlock",
        "metadata": {"name": block_name(j)},
        "spec": {"cidr": block_cidr(j), "affinity": f"host:{node_name(j % spec.nodes)}",
                 "affinityClaimTime": TIMESTAMP,
                 "allocations": [None] * BLOCK_ADDRESSES,
                 "unallocated": list(range(BLOCK_ADDRESSES)),
                 "attributes": [], "strictAffinity": False, "deleted": False,
                 "sequenceNumber": 0, "sequenceNumberForAllocation": {}},
    }


def allocate(block: dict[str, Any], ordinal: int, *, handle: str, namespace: str, pod: str,
             node: str) -> None:
    """Record one allocation in a block, as Calico IPAM does (in place)."""
    spec = block["spec"]
    spec["unallocated"].remove(ordinal)
    spec["attributes"].append({"handle_id": handle,
                               "secondary": {"namespace": namespace, "node": node, "pod": pod,
                                             "timestamp": "2026-11-01 00:00:00 +0000 UTC"}})
    spec["allocations"][ordinal] = len(spec["attributes"]) - 1
    spec["sequenceNumber"] += 1
    spec["sequenceNumberForAllocation"][str(ordinal)] = spec["sequenceNumber"]


def release(block: dict[str, Any], ordinal: int) -> None:
    """Free one allocation and compact the attributes, as Calico IPAM does (in place)."""
    spec = block["spec"]
    allocations: list[int | None] = spec["allocations"]
    allocations[ordinal] = None
    spec["unallocated"].append(ordinal)
    spec["sequenceNumberForAllocation"].pop(str(ordinal), None)
    used = sorted({i for i in allocations if i is not None})
    renumber = {old: new for new, old in enumerate(used)}
    spec["attributes"] = [spec["attributes"][i] for i in used]
    spec["allocations"] = [None if i is None else renumber[i] for i in allocations]
    spec["sequenceNumber"] += 1


def ipam_handle(serial: int, cidr: str) -> dict[str, Any]:
    hid = handle_id(serial)
    return {"apiVersion": CALICO, "kind": "IPAMHandle", "metadata": {"name": hid.lower()},
            "spec": {"handleID": hid, "block": {cidr: 1}, "deleted": False}}


def pod(spec: BenchSpec, k: int, *, ns: str, name: str, node_index: int, ip: str,
        serial: int) -> dict[str, Any]:
    """A pod as a Deployment's ReplicaSet makes it, running, with a Calico address."""
    app = f"app-{k % spec.apps_per_namespace}"
    tier = ("frontend", "backend", "db")[k % 3]
    container = container_id(serial)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {"app": app, "tier": tier, "pod-template-hash": "5d9f7c6b8"},
            "annotations": {"cni.projectcalico.org/containerID": container,
                            "cni.projectcalico.org/podIP": f"{ip}/32",
                            "cni.projectcalico.org/podIPs": f"{ip}/32"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": f"{app}-5d9f7c6b8", "uid": str(uuid.uuid5(
                                     uuid.NAMESPACE_URL, f"bench/rs/{ns}/{app}")),
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "nodeName": node_name(node_index), "serviceAccountName": "default",
            "containers": [{
                "name": "main", "image": "registry.example/app:1.0",
                "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "http"}],
                "env": [{"name": "APP", "value": app}, {"name": "TIER", "value": tier}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                   "periodSeconds": 10},
                "volumeMounts": [{"name": "kube-api-access", "readOnly": True,
                                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
            }],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}],
        },
        "status": {
            "phase": "Running", "hostIP": node_ip(node_index), "podIP": ip,
            "podIPs": [{"ip": ip}], "qosClass": "Burstable", "startTime": TIMESTAMP,
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": TIMESTAMP}
                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": container_statuses(serial),
        },
    }


def container_statuses(serial: int, *, restarts: int = 0) -> list[dict[str, Any]]:
    """``status.containerStatuses`` of a pod (``restarts`` varies it, as a crash loop does)."""
    return [{"name": "main", "ready": True, "restartCount": restarts,
             "image": "registry.example/app:1.0",
             "imageID": "registry.example/app@sha256:" + "ab" * 32,
             "containerID": f"containerd://{container_id(serial)}", "started": True,
             "state": {"running": {"startedAt": TIMESTAMP}}}]


def policy(spec: BenchSpec, i: int, *, edit: int = 0) -> dict[str, Any]:
    """Policy ``i``: a third Kubernetes NetworkPolicies, the rest Calico (some global)."""
    ns = namespace_name(i % spec.namespaces)
    app = f"app-{i % spec.apps_per_namespace}"
    port = 8080 + edit % 10
    meta: dict[str, Any] = {"annotations": {"bench/edit": str(edit)}} if edit else {}
    if i % 3 == 0:
        return {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"k8s-allow-{i}", "namespace": ns, **meta},
            "spec": {"podSelector": {"matchLabels": {"app": app}},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "frontend"}}},
                                           {"namespaceSelector": {"matchLabels": {
                                               "team": f"team-{i % 7}"}}}],
                                  "ports": [{"protocol": "TCP", "port": port}]}]},
        }
    if i % 10 == 4:
        return {
            "apiVersion": CALICO, "kind": "GlobalNetworkPolicy",
            "metadata": {"name": f"global-{i}", **meta},
            "spec": {"order": 100 + i, "selector": f"app == '{app}'",
                     "namespaceSelector": f"team == 'team-{i % 7}'",
                     "types": ["Ingress", "Egress"],
                     "ingress": [{"action": "Allow", "protocol": "TCP",
                                  "source": {"selector": "tier == 'frontend'"},
                                  "destination": {"ports": [port]}}],
                     "egress": [{"action": "Deny", "destination": {"nets": ["8.0.0.0/8"]}}]},
        }
    return {
        "apiVersion": CALICO, "kind": "NetworkPolicy",
        "metadata": {"name": f"calico-{i}", "namespace": ns, **meta},
        "spec": {"order": 10 + i % 100,
                 "selector": f"app == '{app}' && tier in {{'backend', 'db'}}",
                 "types": ["Ingress"],
                 "ingress": [{"action": "Allow", "protocol": "TCP",
                              "source": {"selector": "tier == 'frontend'"},
                              "destination": {"ports": [port]}}]},
    }


# ---------------------------------------------------------------------- CalicoNodeStatus

def peers_of(spec: BenchSpec, i: int) -> list[int]:
    """Indexes of the nodes node ``i`` has BGP sessions with (route-reflector topology)."""
    if i < spec.reflector_count:
        return [p for p in range(spec.nodes) if p != i]
    return list(range(spec.reflector_count))


def node_status(spec: BenchSpec, i: int, *, pods_by_node: dict[int, list[str]] | None = None,
                down: frozenset[int] = frozenset(), tick: int = 0,
                last_updated: str = TIMESTAMP) -> dict[str, Any]:
    """The status calico-node reports for node ``i``: Agent, BGP and exactly ``spec.routes``
    routes. ``down`` are peers whose session is not established; ``tick`` varies the routes
    learned last, as a real status does between reports."""
    me = node_ip(i)
    bird = {"state": "Ready", "version": BIRD_VERSION, "routerID": me,
            "lastBootTime": BOOT_TIME, "lastReconfigurationTime": BOOT_TIME}
    peers = [{"peerIP": node_ip(p), "type": "NodePeer",
              "state": "Active" if p in down else "Established", "since": "00:00:00"}
             for p in peers_of(spec, i)]
    established = sum(p["state"] == "Established" for p in peers)
    routes: list[dict[str, Any]] = [
        {"destination": "0.0.0.0/0", "type": "FIB", "gateway": "10.128.0.1",
         "interface": "eth0", "learnedFrom": {"sourceType": "Kernel"}},
        {"destination": "10.128.0.0/16", "type": "FIB", "gateway": "N/A",
         "interface": "eth0", "learnedFrom": {"sourceType": "Direct"}},
    ]
    for j in range(i, spec.blocks, spec.nodes):
        routes.append({"destination": block_cidr(j), "type": "FIB", "gateway": "N/A",
                       "interface": "blackhole", "learnedFrom": {"sourceType": "Static"}})
    for ip in (pods_by_node or {}).get(i, ()):
        if len(routes) >= spec.routes:
            break
        routes.append({"destination": f"{ip}/32", "type": "FIB", "gateway": "N/A",
                       "interface": "cali" + ip.replace(".", "")[-11:],
                       "learnedFrom": {"sourceType": "Kernel"}})
    up = [p for p in peers_of(spec, i) if p not in down]
    j = 0
    while len(routes) < spec.routes and up:
        origin = j % spec.blocks
        via = up[(j + tick) % len(up)] if origin % spec.nodes != i else up[0]
        if j < spec.blocks and origin % spec.nodes != i:
            routes.append({"destination": block_cidr(origin), "type": "FIB",
                           "gateway": node_ip(origin % spec.nodes), "interface": "eth0",
                           "learnedFrom": {"sourceType": "BGPPeer", "peerIP": node_ip(via)}})
        elif j >= spec.blocks:
            extra = EXTRA_BASE + ((j - spec.blocks + tick) % 16384) * 256
            routes.append({"destination": f"{ipaddress.IPv4Address(extra)}/24", "type": "FIB",
                           "gateway": node_ip(via), "interface": "eth0",
                           "learnedFrom": {"sourceType": "BGPPeer", "peerIP": node_ip(via)}})
        j += 1
    del routes[spec.routes:]
    return {
        "agent": {"birdV4": bird, "birdV6": dict(bird)},
        "bgp": {"numberEstablishedV4": established,
                "numberNotEstablishedV4": len(peers) - established,
                "numberEstablishedV6": 0, "numberNotEstablishedV6": 0, "peersV4": peers},
        "routes": {"routesV4": routes},
        "lastUpdated": last_updated,
    }


def calico_node_status(spec: BenchSpec, i: int, **status: Any) -> dict[str, Any]:
    """Node ``i``'s CalicoNodeStatus as the exporter's refresher creates it, status filled."""
    name = node_name(i)
    return {
        "apiVersion": CALICO, "kind": "CalicoNodeStatus",
        "metadata": {"name": status_name(name), "labels": {MANAGED_BY: MANAGER},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                                          "uid": node_uid(i)}]},
        "spec": {"node": name, "classes": list(CLASSES),
                 "updatePeriodSeconds": spec.update_period},
        "status": node_status(spec, i, **status),
    }


# ---------------------------------------------------------------------- whole clusters

def pod_placement(spec: BenchSpec, k: int) -> tuple[int, int, int]:
    """Pod ``k`` -> (block index, ordinal, node index)."""
    j = k % spec.blocks
    return j, k // spec.blocks, j % spec.nodes


def generate(spec: BenchSpec) -> Generated:
    """Every object of the cluster, in an order ``ApiServer.seed`` accepts."""
    out = Generated(spec)
    for i in range(spec.namespaces):
        out.add(namespace(i))
    out.add(ippool())
    for i in range(spec.nodes):
        out.add(node(spec, i))
    blocks = [empty_block(spec, j) for j in range(spec.blocks)]
    for j in range(spec.blocks):
        out.add(block_affinity(spec, j))
    pods: list[dict[str, Any]] = []
    handles: list[dict[str, Any]] = []
    pods_by_node: dict[int, list[str]] = {}
    for k in range(spec.pods):
        j, ordinal, node_index = pod_placement(spec, k)
        ns_index = k // spec.pods_per_namespace
        ns, name = namespace_name(ns_index), f"pod-{k:06d}"
        serial = k + 1
        ip = block_ip(j, ordinal)
        allocate(blocks[j], ordinal, handle=handle_id(serial), namespace=ns, pod=name,
                 node=node_name(node_index))
        handles.append(ipam_handle(serial, block_cidr(j)))
        pods.append(pod(spec, k, ns=ns, name=name, node_index=node_index, ip=ip, serial=serial))
        pods_by_node.setdefault(node_index, []).append(ip)
        out.pod_slots[(ns, name)] = (j, ordinal, serial)
    for block in blocks:
        out.add(block)
    for handle in handles:
        out.add(handle)
    for p in pods:
        out.add(p)
    for i in range(spec.policies):
        out.add(policy(spec, i))
    for i in range(spec.nodes):
        out.add(calico_node_status(spec, i, pods_by_node=pods_by_node))
    out.blocks = blocks
    return out


def expected_counts(spec: BenchSpec) -> dict[str, int]:
    """How many objects of each resource :func:`generate` makes for ``spec``."""
    k8s = len(range(0, spec.policies, 3))
    gnp = sum(1 for i in range(spec.policies) if i % 3 != 0 and i % 10 == 4)
    return {
        "namespaces": spec.namespaces, "ippools": 1, "nodes": spec.nodes,
        "blockaffinities": spec.blocks, "ipamblocks": spec.blocks, "ipamhandles": spec.pods,
        "pods": spec.pods, "networkpolicies.networking.k8s.io": k8s,
        "globalnetworkpolicies": gnp,
        "networkpolicies.crd.projectcalico.org": spec.policies - k8s - gnp,
        "caliconodestatuses.crd.projectcalico.org": spec.nodes,
    }


def scenario_doc(spec: BenchSpec) -> dict[str, Any]:
    """The same cluster as a scenario document (``exporter.sim.scenario.parse``): SimCluster then
    allocates pod addresses itself and computes routes; fine for small clusters only."""
    nodes = [{"name": node_name(i), "ipv4": node_ip(i)} for i in range(spec.nodes)]
    pods = []
    for k in range(spec.pods):
        j, ordinal, node_index = pod_placement(spec, k)
        pods.append({"namespace": namespace_name(k // spec.pods_per_namespace),
                     "name": f"pod-{k:06d}", "node": node_name(node_index),
                     "ip": block_ip(j, ordinal),
                     "labels": {"app": f"app-{k % spec.apps_per_namespace}"}})
    return {
        "name": f"bench-{spec.nodes}n",
        "description": f"benchmark cluster: {spec.nodes} nodes, {spec.pods} pods",
        "nodes": nodes,
        "bgp": {"mesh": False, "asNumber": 64512,
                "routeReflectors": [node_name(i) for i in range(spec.reflector_count)],
                "extraRoutes": spec.routes},
        "ippools": [{"name": "default-ipv4-ippool", "cidr": POOL_CIDR,
                     "blockSize": BLOCK_SIZE, "ipipMode": "Never", "vxlanMode": "Never",
                     "natOutgoing": True, "nodeSelector": "all()",
                     "allowedUses": ["Workload", "Tunnel"]}],
        "ipam": {"strictAffinity": False,
                 "blocks": [{"cidr": block_cidr(j), "node": node_name(j % spec.nodes)}
                            for j in range(spec.blocks)]},
        "namespaces": [{"name": namespace_name(i), "labels": {"team": f"team-{i % 7}"}}
                       for i in range(spec.namespaces)],
        "pods": pods,
        "objects": [policy(spec, i) for i in range(spec.policies)],
    }
