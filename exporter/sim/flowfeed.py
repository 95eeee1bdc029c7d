"""Felix's side of the demo: flows between the simulated cluster's pods, with policy traces.

For a fixed list of conversations (source pod or network, destination pod or network, protocol,
port), each window yields the flows Felix would report to Goldmane: the source's node reports
the egress verdict (``reporter=Src``), and, when the source allowed it and the destination is a
pod, the destination's node reports the ingress verdict (``reporter=Dst``).

The cluster is read as Felix reads it, from the emulator, at every window: pods, namespaces,
tiers, Kubernetes NetworkPolicies, ClusterNetworkPolicies and Calico's (Global)NetworkPolicies
and staged policies in the group that holds Calico's data (``ApiServer.calico_group``:
``crd.projectcalico.org/v1``, or native ``projectcalico.org/v3``), so the feed follows every
``--calico-api`` flavour and the policies someone applies with kubectl. A policy is named by
the name it is stored under, the name Felix's ``model.PolicyKey`` holds and reports (v3.32.1
``felix/calc/policy_lookup_cache.go``); a resource the API does not serve has no policies.

Traces follow Felix's policy evaluation (``app-policy/checker/check.go`` ``checkTiers``, which
also computes the pending trace, v3.32.1): tiers by order, then name; in each tier that has
policies for the endpoint and direction, the policies by order, then name; the first rule that
matches decides (Allow, Deny), Pass moves on to the next tier; a tier where none matched ends
with its default action (Deny ends, Pass moves on), an end-of-tier hit whose trigger is the
tier's first policy; after the tiers, the namespace's profile allows. The pending trace is the
same evaluation with the staged policies in their tiers as if enforced, except ``Delete`` ones,
which Calico never sends to Felix (``updateprocessors/stagednetworkpolicyprocessor.go``).

Deliberately small, not an evaluator: Calico selectors ``all()``, ``has(k)``, ``!has(k)``,
``k == 'v'``, ``k != 'v'`` and their ``&&``; Kubernetes label selectors; rule peers by
``selector``/``namespaceSelector``/``nets`` (Calico), ``podSelector``/``namespaceSelector``/
``ipBlock`` (Kubernetes), ``namespaces``/``pods``/``networks`` (ClusterNetworkPolicy); protocol
and destination ports. A policy with anything else is left out (:attr:`FlowFeed.skipped` says
why) rather than evaluated wrongly.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporter.goldmane import api_pb2 as pb
from exporter.sim.apiserver import ApiServer

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conversation:
    source: str
    """``namespace/pod`` or ``net:<ip>``."""
    destination: str
    port: int
    connections: int = 1
    """New connections per window."""
    protocol: str = "tcp"


DEMO_CONVERSATIONS = (
    Conversation("testns/testpod", "guestbook/frontend-795b566649-4zkqc", 80, 3),
    Conversation("default/testpod", "guestbook/frontend-795b566649-4zkqc", 80, 2),
    Conversation("guestbook/frontend-795b566649-8tf76", "guestbook/redis-leader-c767d6dbb-t5t8j",
                 6379, 4),
    Conversation("guestbook/redis-follower-5ffdf87b7d-4lqlr", "net:8.8.8.8", 53, 1, "udp"),
    Conversation("guestbook/frontend-795b566649-j4r75", "net:1.1.1.1", 443, 2),
    Conversation("ntnx-system/prometheus-k8s-0", "kube-system/coredns-6fb596b5df-p7mhq", 53, 5,
                 "udp"),
    Conversation("kube-system/calico-kube-controllers-5cd67d7657-52km8",
                 "kube-system/coredns-6fb596b5df-4kkrc", 53, 2, "udp"),
)
"""nke-lab's traffic: the write-up's curl tests (testns allowed into guestbook by mypolicy,
default denied at the end of the default tier), guestbook's own traffic (denied the same way),
egress to 8.0.0.0/8 (custom-deny-egress) and to the internet (default-allow-egress), DNS that
the security tier's allow-dns admits on egress and, inside kube-system, the kube-admin tier's
ClusterNetworkPolicy accepts on ingress (from elsewhere the tier passes, the profile allows)."""

BUILTIN_TIERS: dict[str, tuple[float, str]] = {
    "kube-admin": (1_000.0, "Pass"),
    "default": (1_000_000.0, "Deny"),
    "kube-baseline": (10_000_000.0, "Pass"),
}
"""The tiers Calico 3.32 creates (``EnsureInitialized``, libcalico-go/lib/clientv3/client.go):
(order, default action), used where the API serves no Tier object for them."""
DEFAULT_ORDER = 1_000_000.0
"""A Tier without ``spec.order`` (libcalico-go ``DefaultTierFields``)."""

_CALICO_KINDS: dict[str, tuple[pb.PolicyKind.ValueType, bool]] = {
    "networkpolicies": (pb.CalicoNetworkPolicy, True),
    "globalnetworkpolicies": (pb.GlobalNetworkPolicy, False),
    "stagednetworkpolicies": (pb.StagedNetworkPolicy, True),
    "stagedglobalnetworkpolicies": (pb.StagedGlobalNetworkPolicy, False),
}
"""Calico's policy resources: plural -> (Goldmane kind, namespaced)."""
_STAGED = frozenset({pb.StagedNetworkPolicy, pb.StagedGlobalNetworkPolicy,
                     pb.StagedKubernetesNetworkPolicy})
_ACTIONS: dict[str, pb.Action.ValueType] = {"Allow": pb.Allow, "Deny": pb.Deny, "Pass": pb.Pass}
_CLUSTER_ACTIONS: dict[str, pb.Action.ValueType] = {"Accept": pb.Allow, "Deny": pb.Deny,
                                                     "Pass": pb.Pass}
_CLUSTER_TIERS = {"Admin": "kube-admin", "Baseline": "kube-baseline"}
_PROTOCOLS = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "6": "tcp", "17": "udp", "132": "sctp"}


class Beyond(ValueError):
    """A policy uses something the feed does not evaluate."""


# ---------------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoint:
    """One end of a conversation: a pod (with its labels and namespace's labels) or a net."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    namespace_labels: Mapping[str, str]
    ip: str
    pod: bool

    @property
    def calico_labels(self) -> Mapping[str, str]:
        """The labels Calico selectors see on the workload endpoint."""
        return {**self.labels, "projectcalico.org/namespace": self.namespace,
                "projectcalico.org/orchestrator": "k8s"}


Match = Callable[[Endpoint], bool]


def _all(_: Endpoint) -> bool:
    return True


# ---------------------------------------------------------------------------------- selectors

_TERM = re.compile(r"^\s*(?:(all\(\))|(!?)has\(([\w./-]+)\)|([\w./-]+)\s*(==|!=)\s*'([^']*)')\s*$")


def calico_selector(expr: str | None) -> Callable[[Mapping[str, str]], bool]:
    """A Calico selector of the feed's small subset as a predicate over labels."""
    terms = []
    for term in (expr or "all()").split("&&"):
        m = _TERM.match(term)
        if m is None:
            raise Beyond(f"selector {expr!r}")
        terms.append(m.groups())

    def match(labels: Mapping[str, str]) -> bool:
        for every, negated, has, key, op, value in terms:
            if every:
                continue
            if has is not None:
                if (has in labels) == bool(negated):
                    return False
            elif (labels.get(key) == value) != (op == "=="):
                return False
        return True
    return match


def label_selector(sel: Mapping[str, Any] | None) -> Callable[[Mapping[str, str]], bool]:
    """A Kubernetes label selector (``matchLabels``, ``matchExpressions``) as a predicate; an
    absent one matches everything."""
    if sel is None:
        return lambda labels: True
    if set(sel) - {"matchLabels", "matchExpressions"}:
        raise Beyond(f"label selector {dict(sel)!r}")
    wanted = dict(sel.get("matchLabels") or {})
    exprs = []
    for e in sel.get("matchExpressions") or []:
        op = e.get("operator")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise Beyond(f"label selector operator {op!r}")
        exprs.append((e["key"], op, set(e.get("values") or ())))

    def match(labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in wanted.items()):
            return False
        for key, op, values in exprs:
            present = key in labels
            if ((op == "In" and not (present and labels[key] in values))
                    or (op == "NotIn" and present and labels[key] in values)
                    or (op == "Exists" and not present)
                    or (op == "DoesNotExist" and present)):
                return False
        return True
    return match


def _in_nets(nets: Iterable[str]) -> Match:
    networks = [ipaddress.ip_network(n, strict=False) for n in nets]

    def match(peer: Endpoint) -> bool:
        return bool(peer.ip) and any(ipaddress.ip_address(peer.ip) in n for n in networks)
    return match


# ---------------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Rule:
    action: pb.Action.ValueType | None
    """None for Log (matches, decides nothing)."""
    peer: Match
    """The other end: the source of an ingress rule, the destination of an egress rule."""
    protocol: str | None = None
    ports: tuple[tuple[int, int], ...] | None = None
    """Destination port ranges; None: any."""

    def matches(self, peer: Endpoint, protocol: str, port: int) -> bool:
        if self.protocol is not None and self.protocol != protocol:
            return False
        if self.ports is not None and not any(lo <= port <= hi for lo, hi in self.ports):
            return False
        return self.peer(peer)


@dataclass(frozen=True)
class Policy:
    """A policy as Felix evaluates it."""

    kind: pb.PolicyKind.ValueType
    name: str
    """The name it is stored under (what Felix reports)."""
    namespace: str
    """"" for the cluster-scoped kinds."""
    tier: str
    order: float
    selects: Match
    ingress: tuple[Rule, ...] | None
    """None: the policy does not apply to ingress."""
    egress: tuple[Rule, ...] | None

    def rules(self, direction: str) -> tuple[Rule, ...] | None:
        return self.ingress if direction == "Ingress" else self.egress


def _ports(ports: Iterable[Any]) -> tuple[tuple[int, int], ...]:
    out = []
    for p in ports:
        if isinstance(p, int) and not isinstance(p, bool):
            out.append((p, p))
        elif isinstance(p, str) and re.fullmatch(r"\d+:\d+", p):
            lo, hi = p.split(":")
            out.append((int(lo), int(hi)))
        else:
            raise Beyond(f"port {p!r}")
    return tuple(out)


def _protocol(value: Any) -> str | None:
    if value is None:
        return None
    protocol = _PROTOCOLS.get(str(value).lower())
    if protocol is None:
        raise Beyond(f"protocol {value!r}")
    return protocol


def _calico_peer(end: Mapping[str, Any] | None, namespace: str,
                 namespaces: Mapping[str, Mapping[str, str]]) -> Match:
    end = dict(end or {})
    end.pop("ports", None)
    if set(end) - {"nets", "selector", "namespaceSelector"}:
        raise Beyond(f"rule entity {sorted(end)}")
    nets = _in_nets(end["nets"]) if "nets" in end else None
    pods = "selector" in end or "namespaceSelector" in end
    selector = calico_selector(end.get("selector"))
    ns_selector = (calico_selector(end["namespaceSelector"]) if "namespaceSelector" in end
                   else None)

    def match(peer: Endpoint) -> bool:
        if nets is not None and not nets(peer):
            return False
        if not pods:
            return True
        if not peer.pod:
            return False
        if ns_selector is not None:
            if not ns_selector(namespaces.get(peer.namespace, {})):
                return False
        elif namespace and peer.namespace != namespace:
            return False
        return selector(peer.calico_labels)
    return match


def _calico_rules(spec: Mapping[str, Any], direction: str, namespace: str,
                  namespaces: Mapping[str, Mapping[str, str]]) -> tuple[Rule, ...]:
    peer_side, local_side = ("source", "destination") if direction == "ingress" else (
        "destination", "source")
    out = []
    for rule in spec.get(direction) or []:
        if set(rule) - {"action", "protocol", "source", "destination", "metadata", "ipVersion"}:
            raise Beyond(f"rule fields {sorted(rule)}")
        if rule.get("ipVersion") not in (None, 4):
            raise Beyond("ipVersion 6")
        local = dict(rule.get(local_side) or {})
        if set(local) - {"ports"} or (local and direction == "egress"):
            raise Beyond(f"{local_side} of an {direction} rule")
        peer = dict(rule.get(peer_side) or {})
        ports = peer.get("ports") if direction == "egress" else local.get("ports")
        action = rule.get("action")
        if action != "Log" and action not in _ACTIONS:
            raise Beyond(f"action {action!r}")
        out.append(Rule(None if action == "Log" else _ACTIONS[action],
                        _calico_peer(peer, namespace, namespaces), _protocol(rule.get("protocol")),
                        None if ports is None else _ports(ports)))
    return tuple(out)


def _types(spec: Mapping[str, Any], field: str) -> set[str]:
    """Calico's defaulting of ``types`` (clientv3 on write): egress rules only -> Egress, both ->
    both, otherwise Ingress; Kubernetes' of ``policyTypes``: Ingress, plus Egress with rules."""
    given = spec.get(field)
    if given:
        return {str(t) for t in given}
    if field == "policyTypes":
        return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}
    if spec.get("egress") and not spec.get("ingress"):
        return {"Egress"}
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def calico_policy(obj: Mapping[str, Any], kind: pb.PolicyKind.ValueType, namespaced: bool,
                  namespaces: Mapping[str, Mapping[str, str]]) -> Policy | None:
    """A Calico (Staged)(Global)NetworkPolicy; None when Felix does not evaluate it for pods."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    if kind in _STAGED and spec.get("stagedAction") == "Delete":
        return None
    if spec.get("doNotTrack") or spec.get("preDNAT"):
        return None  # host endpoints only
    for unsupported in ("serviceAccountSelector", "performanceHints"):
        if spec.get(unsupported):
            raise Beyond(unsupported)
    namespace = str(meta.get("namespace") or "") if namespaced else ""
    selector = calico_selector(spec.get("selector"))
    ns_selector = (calico_selector(spec["namespaceSelector"])
                   if not namespaced and spec.get("namespaceSelector") else None)

    def selects(end: Endpoint) -> bool:
        if not end.pod or (namespace and end.namespace != namespace):
            return False
        if ns_selector is not None and not ns_selector(end.namespace_labels):
            return False
        return selector(end.calico_labels)

    types = _types(spec, "types")
    return Policy(kind, meta["name"], namespace, spec.get("tier") or "default",
                  float(spec["order"]) if spec.get("order") is not None else float("inf"),
                  selects,
                  _calico_rules(spec, "ingress", namespace, namespaces)
                  if "Ingress" in types else None,
                  _calico_rules(spec, "egress", namespace, namespaces)
                  if "Egress" in types else None)


def _k8s_rules(spec: Mapping[str, Any], direction: str, namespace: str,
               namespaces: Mapping[str, Mapping[str, str]]) -> tuple[Rule, ...]:
    peers_key = "from" if direction == "ingress" else "to"
    out = []
    for rule in spec.get(direction) or []:
        peers = [_k8s_peer(p, namespace, namespaces) for p in rule.get(peers_key) or []]
        ports: list[tuple[str | None, int | None, int | None]] = []
        for p in rule.get("ports") or []:
            port, end = p.get("port"), p.get("endPort")
            if port is not None and not isinstance(port, int):
                raise Beyond(f"named port {port!r}")
            ports.append((_protocol(p.get("protocol", "TCP")), port, end or port))
        for protocol, lo, hi in ports or [(None, None, None)]:
            out.append(Rule(pb.Allow, _any_of(peers), protocol,
                            None if lo is None or hi is None else ((lo, hi),)))
    return tuple(out)


def _any_of(matches: list[Match]) -> Match:
    if not matches:
        return _all
    return lambda peer: any(m(peer) for m in matches)


def _k8s_peer(peer: Mapping[str, Any], namespace: str,
              namespaces: Mapping[str, Mapping[str, str]]) -> Match:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        if block.get("except"):
            raise Beyond("ipBlock.except")
        nets = _in_nets([block["cidr"]])
        return lambda end: not end.pod and nets(end)
    pods = label_selector(peer.get("podSelector"))
    ns_sel = (label_selector(peer["namespaceSelector"]) if "namespaceSelector" in peer
              else None)

    def match(end: Endpoint) -> bool:
        if not end.pod:
            return False
        if ns_sel is None:
            return end.namespace == namespace and pods(end.labels)
        return ns_sel(namespaces.get(end.namespace, {})) and pods(end.labels)
    return match


def k8s_policy(obj: Mapping[str, Any], kind: pb.PolicyKind.ValueType,
               namespaces: Mapping[str, Mapping[str, str]]) -> Policy | None:
    """A (Staged)KubernetesNetworkPolicy: tier default, order 1000 (Calico's conversion,
    libcalico-go/lib/backend/k8s/conversion/conversion.go)."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    if kind in _STAGED and spec.get("stagedAction") == "Delete":
        return None
    namespace = meta["namespace"]
    pods = label_selector(spec.get("podSelector"))
    types = _types(spec, "policyTypes")
    return Policy(kind, meta["name"], namespace, "default", 1000.0,
                  lambda end: end.pod and end.namespace == namespace and pods(end.labels),
                  _k8s_rules(spec, "ingress", namespace, namespaces)
                  if "Ingress" in types else None,
                  _k8s_rules(spec, "egress", namespace, namespaces)
                  if "Egress" in types else None)


def _cluster_peer(peer: Mapping[str, Any], namespaces: Mapping[str, Mapping[str, str]]) -> Match:
    if set(peer) - {"namespaces", "pods", "networks"} or len(peer) != 1:
        raise Beyond(f"ClusterNetworkPolicy peer {sorted(peer)}")
    if "networks" in peer:
        nets = _in_nets(peer["networks"])
        return lambda end: not end.pod and nets(end)
    if "namespaces" in peer:
        ns_sel, pods = label_selector(peer["namespaces"]), label_selector(None)
    else:
        ns_sel = label_selector(peer["pods"].get("namespaceSelector"))
        pods = label_selector(peer["pods"].get("podSelector"))
    return lambda end: (end.pod and ns_sel(namespaces.get(end.namespace, {}))
                        and pods(end.labels))


def cluster_policy(obj: Mapping[str, Any],
                   namespaces: Mapping[str, Mapping[str, str]]) -> Policy | None:
    """A ClusterNetworkPolicy as Calico 3.32 converts it: a global policy in tier kube-admin
    (Admin) or kube-baseline (Baseline), ordered by priority; Accept allows."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    tier = _CLUSTER_TIERS.get(str(spec.get("tier")))
    if tier is None:
        return None  # Calico logs and skips it
    subject = spec.get("subject") or {}
    if "namespaces" in subject:
        subject_ns, subject_pods = label_selector(subject["namespaces"]), label_selector(None)
    elif "pods" in subject:
        subject_ns = label_selector(subject["pods"].get("namespaceSelector"))
        subject_pods = label_selector(subject["pods"].get("podSelector"))
    else:
        return None

    def rules(direction: str) -> tuple[Rule, ...] | None:
        out = []
        for rule in spec.get(direction) or []:
            action = _CLUSTER_ACTIONS.get(rule.get("action"))
            if action is None:
                raise Beyond(f"action {rule.get('action')!r}")
            peers = [_cluster_peer(p, namespaces)
                     for p in rule.get("from" if direction == "ingress" else "to") or []]
            ranges = []
            for p in rule.get("ports") or []:
                if set(p) != {"portNumber"}:
                    raise Beyond(f"ports {sorted(p)}")
                number = p["portNumber"]
                ranges.append((_protocol(number.get("protocol", "TCP")), number["port"]))
            for protocol, port in ranges or [(None, None)]:
                out.append(Rule(action, _any_of(peers), protocol,
                                None if port is None else ((port, port),)))
        return tuple(out)

    both = not spec.get("ingress") and not spec.get("egress")
    return Policy(pb.ClusterNetworkPolicy, meta["name"], "", tier,
                  float(spec.get("priority") or 0),
                  lambda end: (end.pod and subject_ns(namespaces.get(end.namespace, {}))
                               and subject_pods(end.labels)),
                  rules("ingress") if spec.get("ingress") or both else None,
                  rules("egress") if spec.get("egress") or both else None)


def _calico_source(kind: pb.PolicyKind.ValueType, namespaced: bool,
                   namespaces: Mapping[str, Mapping[str, str]]
                   ) -> Callable[[dict[str, Any]], Policy | None]:
    return lambda obj: calico_policy(obj, kind, namespaced, namespaces)


# ---------------------------------------------------------------------------------- the feed


@dataclass
class Cluster:
    """What Felix knows at one moment: endpoints, tiers, enforced and staged policies."""

    pods: dict[str, Endpoint]
    namespaces: dict[str, dict[str, str]]
    tiers: dict[str, tuple[float, str]]
    enforced: list[Policy]
    staged: list[Policy]
    skipped: dict[str, str] = field(default_factory=dict)
    """``Kind [namespace/]name`` -> why the feed left a policy out."""


class FlowFeed:
    """The flows of one window for the conversations, from the cluster's current policies."""

    def __init__(self, api: ApiServer, conversations: Iterable[Conversation] = ()) -> None:
        self.api = api
        self.conversations = tuple(conversations)
        self.skipped: dict[str, str] = {}
        """Policies left out at the last window, with why (logged once each)."""

    def _list(self, resource: str) -> list[dict[str, Any]]:
        try:
            return self.api.list(resource)
        except ValueError:
            return []  # not served (a Calico without staged policies, no CNP CRD)

    def cluster(self) -> Cluster:
        """Read the cluster from the API, as Felix sees it now."""
        namespaces = {
            ns["metadata"]["name"]: {"kubernetes.io/metadata.name": ns["metadata"]["name"],
                                     **(ns["metadata"].get("labels") or {})}
            for ns in self._list("namespaces")}
        pods = {}
        for pod in self._list("pods"):
            meta, status = pod["metadata"], pod.get("status") or {}
            if (pod.get("spec") or {}).get("hostNetwork"):
                continue
            pods[f"{meta['namespace']}/{meta['name']}"] = Endpoint(
                meta["namespace"], meta["name"], dict(meta.get("labels") or {}),
                namespaces.get(meta["namespace"], {}), str(status.get("podIP") or ""), True)
        group = self.api.calico_group
        tiers = dict(BUILTIN_TIERS)
        for tier in self._list(f"tiers.{group}"):
            spec = tier.get("spec") or {}
            order = spec.get("order")
            tiers[tier["metadata"]["name"]] = (
                DEFAULT_ORDER if order is None else float(order),
                "Pass" if spec.get("defaultAction") == "Pass" else "Deny")
        out = Cluster(pods, namespaces, tiers, [], [])
        sources: list[tuple[str, Callable[[dict[str, Any]], Policy | None]]] = [
            ("networkpolicies.networking.k8s.io",
             lambda o: k8s_policy(o, pb.NetworkPolicy, namespaces)),
            (f"stagedkubernetesnetworkpolicies.{group}",
             lambda o: k8s_policy(o, pb.StagedKubernetesNetworkPolicy, namespaces)),
            ("clusternetworkpolicies.policy.networking.k8s.io",
             lambda o: cluster_policy(o, namespaces)),
        ]
        for plural, (kind, namespaced) in _CALICO_KINDS.items():
            sources.append((f"{plural}.{group}", _calico_source(kind, namespaced, namespaces)))
        for resource, convert in sources:
            for obj in self._list(resource):
                meta = obj["metadata"]
                ns = meta.get("namespace")
                where = f"{obj.get('kind')} {ns + '/' if ns else ''}{meta['name']}"
                try:
                    policy = convert(obj)
                except (Beyond, AttributeError, KeyError, TypeError, ValueError) as exc:
                    out.skipped[where] = str(exc) or type(exc).__name__
                    continue
                if policy is not None:
                    (out.staged if policy.kind in _STAGED else out.enforced).append(policy)
        for where in out.skipped.keys() - self.skipped.keys():
            _log.warning("demo flow feed leaves out %s: %s", where, out.skipped[where])
        self.skipped = out.skipped
        return out

    def endpoint(self, cluster: Cluster, ref: str) -> Endpoint | None:
        if ref.startswith("net:"):
            return Endpoint("", "", {}, {}, ref[4:], False)
        return cluster.pods.get(ref)

    def window(self) -> list[pb.Flow]:
        """The flows of one window (start times left for the stand-in to stamp)."""
        cluster = self.cluster()
        out = []
        for c in self.conversations:
            src, dst = self.endpoint(cluster, c.source), self.endpoint(cluster, c.destination)
            if src is None or dst is None:
                continue  # a pod that is gone
            allowed = True
            if src.pod:
                verdict, hits = trace(cluster, src, dst, "Egress", c, staged=False)
                _, pending = trace(cluster, src, dst, "Egress", c, staged=True)
                out.append(_flow(c, src, dst, pb.Src, verdict, hits, pending))
                allowed = verdict == pb.Allow
            if allowed and dst.pod:
                verdict, hits = trace(cluster, dst, src, "Ingress", c, staged=False)
                _, pending = trace(cluster, dst, src, "Ingress", c, staged=True)
                out.append(_flow(c, src, dst, pb.Dst, verdict, hits, pending))
        return out


def trace(cluster: Cluster, end: Endpoint, peer: Endpoint, direction: str, c: Conversation, *,
          staged: bool) -> tuple[pb.Action.ValueType, list[pb.PolicyHit]]:
    """(verdict, hits) at ``end`` for traffic with ``peer`` in ``direction`` (``checkTiers``)."""
    policies = cluster.enforced + (cluster.staged if staged else [])
    by_tier: dict[str, list[Policy]] = {}
    for p in policies:
        if p.rules(direction) is not None and p.selects(end):
            by_tier.setdefault(p.tier, []).append(p)
    default = (float("inf"), "Deny")
    hits: list[pb.PolicyHit] = []
    for tier in sorted(by_tier, key=lambda t: (cluster.tiers.get(t, default)[0], t)):
        applying = sorted(by_tier[tier], key=lambda p: (p.order, p.name))
        decided = None
        for p in applying:
            for index, rule in enumerate(p.rules(direction) or ()):
                if rule.action is not None and rule.matches(peer, c.protocol, c.port):
                    decided = (p, rule.action, index)
                    break
            if decided is not None:
                break
        if decided is not None:
            p, action, index = decided
            hits.append(pb.PolicyHit(kind=p.kind, name=p.name, namespace=p.namespace,
                                     tier=tier, action=action, policy_index=len(hits),
                                     rule_index=index))
            if action != pb.Pass:
                return action, hits
            continue
        first = applying[0]
        action_name = cluster.tiers.get(tier, default)[1]
        tier_action = pb.Pass if action_name == "Pass" else pb.Deny
        trigger = pb.PolicyHit(kind=first.kind, name=first.name, namespace=first.namespace,
                               tier=tier)
        hits.append(pb.PolicyHit(kind=pb.EndOfTier, tier=tier, action=tier_action,
                                 policy_index=len(hits), rule_index=-1, trigger=trigger))
        if tier_action == pb.Deny:
            return pb.Deny, hits
    hits.append(pb.PolicyHit(kind=pb.Profile, name=f"kns.{end.namespace}", action=pb.Allow,
                             policy_index=len(hits)))
    return pb.Allow, hits


def _flow(c: Conversation, src: Endpoint, dst: Endpoint, reporter: pb.Reporter.ValueType,
          action: pb.Action.ValueType, hits: list[pb.PolicyHit],
          pending: list[pb.PolicyHit]) -> pb.Flow:
    def endpoint(e: Endpoint) -> tuple[str, pb.EndpointType.ValueType]:
        if not e.pod:
            private = ipaddress.ip_address(e.ip).is_private
            return ("pvt" if private else "pub"), pb.Network
        name = e.name.rsplit("-", 2)[0] if e.name.count("-") >= 2 else e.name
        return f"{name}-*", pb.WorkloadEndpoint

    f = pb.Flow(num_connections_started=c.connections, num_connections_live=c.connections,
                packets_in=8 * c.connections, packets_out=6 * c.connections,
                bytes_in=4200 * c.connections, bytes_out=900 * c.connections)
    k = f.Key
    k.source_name, k.source_type = endpoint(src)
    k.dest_name, k.dest_type = endpoint(dst)
    k.source_namespace, k.dest_namespace = src.namespace, dst.namespace
    k.dest_port, k.proto, k.reporter, k.action = c.port, c.protocol, reporter, action
    k.policies.enforced_policies.extend(hits)
    k.policies.pending_policies.extend(pending)
    return f
