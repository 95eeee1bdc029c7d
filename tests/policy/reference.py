"""Test helpers: conformance data, raw objects, a store-backed cluster, a brute-force oracle.

The oracle answers "which pods does each policy select, which pods are isolated" the slow,
obvious way: it builds each pod's workload-endpoint labels as a plain dict exactly as Calico's
conversion does (profile labels first: the namespace's ``pcns.*``, and the service account's
``pcsa.*`` while that ServiceAccount exists; then the pod's own labels; then the implicit
``projectcalico.org/*`` labels on top), evaluates every policy's effective selector against every
pod, and isolates a pod in a direction when an enforced policy applying there is in a tier whose
default action is not Pass (a tier that does not exist drops, as Felix's empty action does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.model.core import Pod, parse_namespace, parse_pod, parse_service_account
from exporter.model.policy import (
    BUILTIN_TIERS,
    STAGED_KINDS,
    CalicoPolicy,
    ClusterNetworkPolicy,
    K8sNetworkPolicy,
    PolicyKind,
    parse_calico_network_policy,
    parse_cluster_network_policy,
    parse_global_network_policy,
    parse_k8s_network_policy,
    parse_network_set,
    parse_staged_global_network_policy,
    parse_staged_k8s_network_policy,
    parse_staged_network_policy,
    parse_tier,
)
from exporter.model.telemetry import Telemetry
from exporter.policy.effective import PolicySelectorError, effective_selector
from exporter.policy.index import PolicyIndex, PolicyKey, SeriesKey, counted
from exporter.policy.selector import SelectorCache, SelectorError
from exporter.policy.wiring import PolicyStores, wire_policy_index

DATA = Path(__file__).resolve().parent / "data"
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


def raw_staged_policy(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "StagedNetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def raw_staged_global_policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "StagedGlobalNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def raw_staged_k8s_policy(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "StagedKubernetesNetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def raw_cluster_policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def raw_tier(name: str, order: float | None = None, action: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if order is not None:
        spec["order"] = order
    if action is not None:
        spec["defaultAction"] = action
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "Tier", "metadata": {"name": name},
            "spec": spec}


def raw_service_account(namespace: str, name: str,
                        labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}}}


def v1_stored(raw: dict[str, Any], v3_name: str) -> dict[str, Any]:
    """A policy as libcalico-go stores it on crd.projectcalico.org/v1: its v3 name in the
    projectcalico.org/metadata annotation (``ConvertCalicoResourceToK8sResource``)."""
    meta = dict(raw["metadata"])
    meta["annotations"] = {"projectcalico.org/metadata":
                           f'{{"name":"{v3_name}","creationTimestamp":null}}'}
    return {**raw, "metadata": meta}


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


_PARSERS: dict[PolicyKind, Any] = {
    "k8s": parse_k8s_network_policy,
    "calico": parse_calico_network_policy,
    "global": parse_global_network_policy,
    "staged": parse_staged_network_policy,
    "staged_global": parse_staged_global_network_policy,
    "staged_k8s": parse_staged_k8s_network_policy,
    "cluster": parse_cluster_network_policy,
}


@dataclass
class Cluster:
    """The stores the policy index reads, with the index wired to them."""

    telemetry: Telemetry = field(default_factory=Telemetry)
    stores: PolicyStores = field(default_factory=PolicyStores)
    index: PolicyIndex = field(init=False)

    def __post_init__(self) -> None:
        self.index = self.wire(self.telemetry)

    def wire(self, telemetry: Telemetry) -> PolicyIndex:
        """A new index over these stores (replaying what they hold)."""
        return wire_policy_index(self.stores, telemetry=telemetry)

    def store(self, kind: PolicyKind) -> Any:
        s = self.stores
        return {"k8s": s.k8s_policies, "calico": s.calico_policies, "global": s.global_policies,
                "staged": s.staged_policies, "staged_global": s.staged_global_policies,
                "staged_k8s": s.staged_k8s_policies, "cluster": s.cluster_policies}[kind]

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.stores.namespaces.upsert(("", name), parse_namespace(raw_namespace(name, labels)))

    def pod(self, namespace: str, name: str, labels: dict[str, str] | None = None,
            **kwargs: Any) -> None:
        self.stores.pods.upsert((namespace, name),
                                parse_pod(raw_pod(namespace, name, labels, **kwargs)))

    def service_account(self, namespace: str, name: str,
                        labels: dict[str, str] | None = None) -> None:
        self.stores.service_accounts.upsert(
            (namespace, name), parse_service_account(raw_service_account(namespace, name, labels)))

    def tier(self, name: str, order: float | None = None, action: str | None = None) -> None:
        self.stores.tiers.upsert(("", name), parse_tier(raw_tier(name, order, action)))

    def tiers_listed(self) -> None:
        """The tier watch's first LIST completes (with what the tier store holds)."""
        self.stores.tiers.replace(dict(self.stores.tiers.items()))

    def policy(self, kind: PolicyKind, raw: dict[str, Any]) -> None:
        meta = raw["metadata"]
        self.store(kind).upsert((meta.get("namespace", ""), meta["name"]), _PARSERS[kind](raw))

    def k8s(self, raw: dict[str, Any]) -> None:
        self.policy("k8s", raw)

    def calico(self, raw: dict[str, Any]) -> None:
        self.policy("calico", raw)

    def gnp(self, raw: dict[str, Any]) -> None:
        self.policy("global", raw)

    def network_set(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        raw = {"metadata": {"name": name, "namespace": namespace, "labels": labels},
               "spec": {"nets": ["198.18.0.0/24"]}}
        self.stores.network_sets.upsert((namespace, name), parse_network_set(raw))


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


def endpoint_labels(pod: Pod, namespace_labels: dict[str, str],
                    account_labels: dict[str, str] | None) -> dict[str, str]:
    """A pod's workload-endpoint labels as one dict, built the way Calico builds them;
    ``account_labels`` is None when the pod's ServiceAccount does not exist (no SA profile)."""
    labels = {f"pcns.{k}": v for k, v in namespace_labels.items()}
    labels["pcns.projectcalico.org/name"] = pod.namespace
    if account_labels is not None:
        labels.update({f"pcsa.{k}": v for k, v in account_labels.items()})
        labels["pcsa.projectcalico.org/name"] = pod.service_account
    labels.update(pod.labels)
    labels.update({
        "projectcalico.org/namespace": pod.namespace,
        "projectcalico.org/orchestrator": "k8s",
        "projectcalico.org/serviceaccount": pod.service_account,
    })
    return labels


AnyPolicy = CalicoPolicy | K8sNetworkPolicy | ClusterNetworkPolicy


def policies_of(cluster: Cluster) -> list[tuple[PolicyKey, AnyPolicy]]:
    """Every stored policy with its index key (kind, namespace, stored name)."""
    out: list[tuple[PolicyKey, AnyPolicy]] = []
    for kind in _PARSERS:
        out += [((kind, k[0], k[1]), p) for k, p in cluster.store(kind).items()]
    return out


def tier_drops(cluster: Cluster, name: str) -> bool:
    """Whether Felix drops at the end of tier ``name`` (Tier object, else built-in, else a
    tier that does not exist, which drops)."""
    tier = cluster.stores.tiers.get(("", name)) or BUILTIN_TIERS.get(name)
    return tier is None or tier.default_action != "Pass"


@dataclass
class Expected:
    """What the index should hold, computed by brute force."""

    selected: dict[PolicyKey, set[tuple[str, str]]]
    isolation: dict[str, tuple[int, int, int]]
    invalid: set[PolicyKey]


def oracle(cluster: Cluster) -> Expected:
    """Every policy's effective selector evaluated against every counted pod's label dict."""
    cache = SelectorCache()
    namespace_labels = {ns.name: dict(ns.labels) for ns in cluster.stores.namespaces.values()}
    accounts = {(sa.namespace, sa.name): dict(sa.labels)
                for sa in cluster.stores.service_accounts.values()}
    pods = [p for p in cluster.stores.pods.values() if counted(p)]
    labels = {(p.namespace, p.name): endpoint_labels(
        p, namespace_labels.get(p.namespace, {}), accounts.get((p.namespace, p.service_account)))
        for p in pods}
    selected: dict[PolicyKey, set[tuple[str, str]]] = {}
    invalid: set[PolicyKey] = set()
    isolates: dict[PolicyKey, tuple[bool, bool]] = {}
    for key, policy in policies_of(cluster):
        enforced = key[0] not in STAGED_KINDS and tier_drops(cluster, policy.tier)
        isolates[key] = (enforced and policy.ingress, enforced and policy.egress)
        try:
            selector = cache.parse(effective_selector(policy, cache))
        except (SelectorError, PolicySelectorError):
            invalid.add(key)
            selected[key] = set()
            continue
        if policy.staged_action == "Delete" or (
                isinstance(policy, CalicoPolicy) and (policy.do_not_track or policy.pre_dnat)):
            selected[key] = set()  # never reaches Felix / host endpoints only
            continue
        selected[key] = {pod_key for pod_key, pod_labels in labels.items()
                         if selector.matches(pod_labels)}
    isolation: dict[str, tuple[int, int, int]] = {}
    for pod in pods:
        key = (pod.namespace, pod.name)
        ingress = any(isolates[p][0] for p, keys in selected.items() if key in keys)
        egress = any(isolates[p][1] for p, keys in selected.items() if key in keys)
        total, iso_in, iso_eg = isolation.get(pod.namespace, (0, 0, 0))
        isolation[pod.namespace] = (total + 1, iso_in + ingress, iso_eg + egress)
    return Expected(selected, isolation, invalid)


def series_oracle(cluster: Cluster) -> dict[SeriesKey, int]:
    """selected_pods per series (kind, namespace, tier, name shown): for stored objects shown
    alike, the one stored under the name shown, else the smallest stored name."""
    expected = oracle(cluster)
    chosen: dict[SeriesKey, tuple[bool, str, int]] = {}
    for key, policy in policies_of(cluster):
        series = (key[0], key[1], policy.tier, policy.name)
        rank = (key[2] != policy.name, key[2], len(expected.selected[key]))
        if series not in chosen or rank[:2] < chosen[series][:2]:
            chosen[series] = rank
    return {series: rank[2] for series, rank in chosen.items()}


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
