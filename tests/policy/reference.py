"""Test helpers: conformance data, raw objects, a store-backed cluster, a brute-force oracle.

The oracle answers "which pods does each policy select" the slow, obvious way: it builds each
pod's workload-endpoint labels as a plain dict exactly as Calico's conversion does (profile
labels first, then the pod's own labels, then the implicit ``projectcalico.org/*`` labels on
top), and evaluates every policy's effective selector against every pod.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.kube.store import Store
from exporter.model.core import Namespace, Pod, parse_namespace, parse_pod
from exporter.model.policy import (
    CalicoPolicy,
    K8sNetworkPolicy,
    NetworkSet,
    parse_calico_network_policy,
    parse_global_network_policy,
    parse_k8s_network_policy,
    parse_network_set,
)
from exporter.model.telemetry import Telemetry
from exporter.policy.effective import PolicySelectorError, effective_selector
from exporter.policy.index import PolicyIndex, PolicyKey, counted
from exporter.policy.selector import SelectorCache, SelectorError
from exporter.policy.wiring import wire_policy_index

DATA = Path(__file__).resolve().parent / "data"
SHARED_SELECTORS = Path(__file__).resolve().parents[2].parent / "shared/calico/selectors"
"""Where CI keeps the originals of the conformance files (beside the repository)."""

CONFORMANCE_FILES = ("match-cases.yaml", "canonical-cases.yaml", "invalid-cases.yaml")


def cases(name: str) -> list[dict[str, Any]]:
    """The cases of one conformance file (the copy under tests/policy/data)."""
    loaded = yaml.safe_load((DATA / name).read_text())
    assert isinstance(loaded, list)
    return loaded


def sample(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((DATA / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


# --------------------------------------------------------------------------------------------
# Raw objects


def raw_namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A namespace with the kubernetes.io/metadata.name label the API server adds."""
    all_labels = {"kubernetes.io/metadata.name": name, **(labels or {})}
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": all_labels}}


def raw_pod(namespace: str, name: str, labels: dict[str, str] | None = None, *,
            node: str = "node-1", phase: str = "Running", host_network: bool = False,
            service_account: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": node, "hostNetwork": host_network}
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": spec, "status": {"phase": phase}}


def raw_k8s_policy(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def raw_calico_policy(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def raw_global_policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


# The write-up's three policies, as applied there.
MYPOLICY = raw_k8s_policy("guestbook", "mypolicy", {
    "policyTypes": ["Ingress"],
    "ingress": [{"from": [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "testns"}}}]}],
})
CUSTOM_DENY_EGRESS = raw_calico_policy("guestbook", "custom-deny-egress", {
    "order": 10, "types": ["Egress"],
    "egress": [{"action": "Deny", "destination": {"nets": ["8.0.0.0/8"]}}],
})
DEFAULT_ALLOW_EGRESS = raw_calico_policy("guestbook", "default-allow-egress", {
    "order": 20, "types": ["Egress"],
    "egress": [{"action": "Allow", "destination": {"nets": ["0.0.0.0/0"]}}],
})

# The write-up's pods (kubectl get pods -o wide), plus its two test pods.
WRITEUP_PODS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("guestbook", "frontend-795b566649-4zkqc", {"app": "guestbook", "tier": "frontend"}),
    ("guestbook", "frontend-795b566649-8tf76", {"app": "guestbook", "tier": "frontend"}),
    ("guestbook", "frontend-795b566649-j4r75", {"app": "guestbook", "tier": "frontend"}),
    ("guestbook", "redis-follower-5ffdf87b7d-4lqlr", {"app": "redis", "role": "follower"}),
    ("guestbook", "redis-leader-c767d6dbb-t5t8j", {"app": "redis", "role": "leader"}),
    ("kube-system", "calico-kube-controllers-5cd67d7657-52km8",
     {"k8s-app": "calico-kube-controllers"}),
    ("kube-system", "coredns-6fb596b5df-p7mhq", {"k8s-app": "kube-dns"}),
    ("kube-system", "coredns-6fb596b5df-4kkrc", {"k8s-app": "kube-dns"}),
    ("ntnx-system", "fluent-bit-v8gdt", {"k8s-app": "fluent-bit"}),
    ("ntnx-system", "fluent-bit-t9d7c", {"k8s-app": "fluent-bit"}),
    ("default", "testpod", {"run": "testpod"}),
    ("testns", "testpod", {"run": "testpod"}),
)


# --------------------------------------------------------------------------------------------
# A cluster of real stores


@dataclass
class Cluster:
    """The seven stores the policy index reads, with the index wired to them."""

    telemetry: Telemetry = field(default_factory=Telemetry)
    pods: Store[Pod] = field(default_factory=lambda: Store("pods"))
    namespaces: Store[Namespace] = field(default_factory=lambda: Store("namespaces"))
    k8s_policies: Store[K8sNetworkPolicy] = field(
        default_factory=lambda: Store("networkpolicies"))
    calico_policies: Store[CalicoPolicy] = field(
        default_factory=lambda: Store("networkpolicies"))
    global_policies: Store[CalicoPolicy] = field(
        default_factory=lambda: Store("globalnetworkpolicies"))
    network_sets: Store[NetworkSet] = field(default_factory=lambda: Store("networksets"))
    global_network_sets: Store[NetworkSet] = field(
        default_factory=lambda: Store("globalnetworksets"))
    index: PolicyIndex = field(init=False)

    def __post_init__(self) -> None:
        self.index = self.wire(self.telemetry)

    def wire(self, telemetry: Telemetry) -> PolicyIndex:
        """A new index over these stores (replaying what they hold)."""
        return wire_policy_index(
            pods=self.pods, namespaces=self.namespaces, k8s_policies=self.k8s_policies,
            calico_policies=self.calico_policies, global_policies=self.global_policies,
            network_sets=self.network_sets, global_network_sets=self.global_network_sets,
            telemetry=telemetry)

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.namespaces.upsert(("", name), parse_namespace(raw_namespace(name, labels)))

    def pod(self, namespace: str, name: str, labels: dict[str, str] | None = None,
            **kwargs: Any) -> None:
        self.pods.upsert((namespace, name), parse_pod(raw_pod(namespace, name, labels, **kwargs)))

    def k8s(self, raw: dict[str, Any]) -> None:
        meta = raw["metadata"]
        self.k8s_policies.upsert((meta["namespace"], meta["name"]), parse_k8s_network_policy(raw))

    def calico(self, raw: dict[str, Any]) -> None:
        meta = raw["metadata"]
        self.calico_policies.upsert((meta["namespace"], meta["name"]),
                                    parse_calico_network_policy(raw))

    def gnp(self, raw: dict[str, Any]) -> None:
        self.global_policies.upsert(("", raw["metadata"]["name"]),
                                    parse_global_network_policy(raw))

    def network_set(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        raw = {"metadata": {"name": name, "namespace": namespace, "labels": labels},
               "spec": {"nets": ["198.18.0.0/24"]}}
        self.network_sets.upsert((namespace, name), parse_network_set(raw))


def writeup_cluster() -> Cluster:
    """The write-up's cluster after it applied its three policies."""
    cluster = Cluster()
    for ns in ("default", "guestbook", "kube-system", "ntnx-system", "testns"):
        cluster.namespace(ns)
    for ns, name, labels in WRITEUP_PODS:
        cluster.pod(ns, name, labels)
    cluster.k8s(MYPOLICY)
    cluster.calico(CUSTOM_DENY_EGRESS)
    cluster.calico(DEFAULT_ALLOW_EGRESS)
    return cluster


# --------------------------------------------------------------------------------------------
# Oracle


def endpoint_labels(pod: Pod, namespace_labels: dict[str, str]) -> dict[str, str]:
    """A pod's workload-endpoint labels as one dict, built the way Calico builds them."""
    labels = {f"pcns.{k}": v for k, v in namespace_labels.items()}
    labels["pcns.projectcalico.org/name"] = pod.namespace
    labels["pcsa.projectcalico.org/name"] = pod.service_account
    labels.update(pod.labels)
    labels.update({
        "projectcalico.org/namespace": pod.namespace,
        "projectcalico.org/orchestrator": "k8s",
        "projectcalico.org/serviceaccount": pod.service_account,
    })
    return labels


@dataclass
class Expected:
    """What the index should hold, computed by brute force."""

    selected: dict[PolicyKey, set[tuple[str, str]]]
    isolation: dict[str, tuple[int, int, int]]
    invalid: set[PolicyKey]


def oracle(cluster: Cluster) -> Expected:
    """Every policy's effective selector evaluated against every counted pod's label dict."""
    cache = SelectorCache()
    policies: list[tuple[PolicyKey, CalicoPolicy | K8sNetworkPolicy]] = []
    policies += [(("k8s", k[0], k[1]), p) for k, p in cluster.k8s_policies.items()]
    policies += [(("calico", k[0], k[1]), p) for k, p in cluster.calico_policies.items()]
    policies += [(("global", "", k[1]), p) for k, p in cluster.global_policies.items()]
    namespace_labels = {ns.name: dict(ns.labels) for ns in cluster.namespaces.values()}
    pods = [p for p in cluster.pods.values() if counted(p)]
    labels = {(p.namespace, p.name): endpoint_labels(p, namespace_labels.get(p.namespace, {}))
              for p in pods}
    selected: dict[PolicyKey, set[tuple[str, str]]] = {}
    invalid: set[PolicyKey] = set()
    types: dict[PolicyKey, tuple[bool, bool]] = {}
    for key, policy in policies:
        types[key] = (policy.ingress, policy.egress)
        try:
            selector = cache.parse(effective_selector(policy, cache))
        except (SelectorError, PolicySelectorError):
            invalid.add(key)
            selected[key] = set()
            continue
        if isinstance(policy, CalicoPolicy) and (policy.do_not_track or policy.pre_dnat):
            selected[key] = set()  # untracked / pre-DNAT: host endpoints only
            continue
        selected[key] = {pod_key for pod_key, pod_labels in labels.items()
                         if selector.matches(pod_labels)}
    isolation: dict[str, tuple[int, int, int]] = {}
    for pod in pods:
        key = (pod.namespace, pod.name)
        ingress = any(types[p][0] for p, keys in selected.items() if key in keys)
        egress = any(types[p][1] for p, keys in selected.items() if key in keys)
        total, iso_in, iso_eg = isolation.get(pod.namespace, (0, 0, 0))
        isolation[pod.namespace] = (total + 1, iso_in + ingress, iso_eg + egress)
    return Expected(selected, isolation, invalid)


def index_state(index: PolicyIndex) -> Expected:
    """The same view, read from an index (and checked for internal consistency on the way)."""
    keys = index.policy_keys()
    selected = {key: index.selected_by(key) for key in keys}
    for key, pods in selected.items():
        assert index.selected_count(key) == len(pods), key
        for pod in pods:
            assert key in index.policies_of(*pod), (key, pod)
    isolation = {s.namespace: (s.pods, s.ingress_isolated, s.egress_isolated)
                 for s in index.isolation()}
    invalid = {key for key in keys if index.policy_selector(key) == ""}
    return Expected(selected, isolation, invalid)
