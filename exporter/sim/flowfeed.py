"""Felix's side of the demo: flows between the simulated cluster's pods, with policy traces.

For a fixed list of conversations (source pod or network, destination pod or network, port),
each window yields the flows Felix would report to Goldmane: the source's node reports the
egress verdict (``reporter=Src``), and, when the source allowed it and the destination is a pod,
the destination's node reports the ingress verdict (``reporter=Dst``). The traces are computed
here from the scenario's policies in a deliberately small way: every policy is in the default
tier; Kubernetes NetworkPolicies (order 1000) match ``podSelector``/``namespaceSelector``
``matchLabels`` and ``ipBlock``; Calico NetworkPolicies (by ``order``, then name) match
``selector``/``namespaceSelector`` expressions of the forms ``all()``, ``k == 'v'`` and their
``&&``, and ``nets``; ports are not matched. The first matching rule decides; a tier in which
some policy applies but no rule matched ends with an end-of-tier deny; no applicable policy
means the namespace profile allows. The pending trace evaluates the same with the staged
policies as if enforced. Anything else raises ``ValueError``: this is not an evaluator, and the
policy evaluator of issue 14 replaces it.

``DEMO_STAGED`` is a StagedNetworkPolicy the demo's Felix takes into account although the
simulated API server does not serve staged policies: it shows what the staged-policy families
and the CalicoStagedPolicyWouldDeny alert report.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.goldmane import api_pb2 as pb
from exporter.sim.scenario import Scenario, SimPod


@dataclass(frozen=True)
class Conversation:
    source: str
    """``namespace/pod`` or ``net:<ip>``."""
    destination: str
    port: int
    connections: int = 1
    """New connections per window."""


DEMO_CONVERSATIONS = (
    Conversation("testns/testpod", "guestbook/frontend-795b566649-4zkqc", 80, 3),
    Conversation("default/testpod", "guestbook/frontend-795b566649-4zkqc", 80, 2),
    Conversation("guestbook/frontend-795b566649-8tf76", "guestbook/redis-leader-c767d6dbb-t5t8j",
                 6379, 4),
    Conversation("guestbook/redis-follower-5ffdf87b7d-4lqlr", "net:8.8.8.8", 53, 1),
    Conversation("guestbook/frontend-795b566649-j4r75", "net:1.1.1.1", 443, 2),
    Conversation("ntnx-system/prometheus-k8s-0", "kube-system/coredns-6fb596b5df-p7mhq", 53, 5),
)
"""nke-lab's traffic: the write-up's curl tests (testns allowed into guestbook, default denied),
guestbook's own traffic (denied by mypolicy), egress to 8.0.0.0/8 (custom-deny-egress) and to
the internet (default-allow-egress), and unpoliced DNS (the profile)."""

DEMO_STAGED: tuple[dict[str, Any], ...] = (
    {"apiVersion": "crd.projectcalico.org/v1", "kind": "StagedNetworkPolicy",
     "metadata": {"name": "lockdown-guestbook", "namespace": "guestbook"},
     "spec": {"order": 100, "selector": "all()", "types": ["Ingress"],
              "ingress": [{"action": "Deny",
                           "source": {"namespaceSelector": "kubernetes.io/metadata.name == "
                                                           "'testns'"}}]}},
)

_TERM = re.compile(r"^\s*([\w./-]+)\s*==\s*'([^']*)'\s*$")


def _selector(expr: str | None, labels: Mapping[str, str]) -> bool:
    if expr is None or not expr.strip() or expr.strip() == "all()":
        return True
    for term in expr.split("&&"):
        m = _TERM.match(term)
        if m is None:
            raise ValueError(f"selector {expr!r} is beyond the demo's flow feed")
        if labels.get(m.group(1)) != m.group(2):
            return False
    return True


def _match_labels(sel: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if sel is None:
        return True
    if set(sel) - {"matchLabels"}:
        raise ValueError(f"label selector {dict(sel)!r} is beyond the demo's flow feed")
    return all(labels.get(k) == v for k, v in (sel.get("matchLabels") or {}).items())


@dataclass(frozen=True)
class _End:
    namespace: str
    labels: Mapping[str, str]
    ns_labels: Mapping[str, str]
    ip: str
    pod: SimPod | None


@dataclass(frozen=True)
class _Policy:
    kind: pb.PolicyKind.ValueType
    name: str
    namespace: str
    order: float
    obj: Mapping[str, Any]


class FlowFeed:
    """The flows of one window for the conversations, from the scenario's policies."""

    def __init__(self, scenario: Scenario, conversations: Iterable[Conversation] = (),
                 staged: Iterable[Mapping[str, Any]] = ()) -> None:
        self.scenario = scenario
        self.conversations = tuple(conversations)
        self._ns_labels = {name: {"kubernetes.io/metadata.name": name, **labels}
                           for name, labels in scenario.namespaces}
        self._pods = {f"{p.namespace}/{p.name}": p for p in scenario.pods}
        self.enforced = [p for o in scenario.objects if (p := self._policy(o)) is not None]
        self.staged = [p for o in staged if (p := self._policy(o)) is not None]

    def _policy(self, obj: Mapping[str, Any]) -> _Policy | None:
        kind = obj.get("kind")
        meta = obj.get("metadata", {})
        api = obj.get("apiVersion", "")
        spec = obj.get("spec", {})
        if api.startswith("networking.k8s.io") and kind == "NetworkPolicy":
            return _Policy(pb.NetworkPolicy, meta["name"], meta["namespace"], 1000.0, obj)
        kinds: dict[str, pb.PolicyKind.ValueType] = {"NetworkPolicy": pb.CalicoNetworkPolicy,
                 "StagedNetworkPolicy": pb.StagedNetworkPolicy}
        if api.startswith("crd.projectcalico.org") and kind in kinds:
            order = float(spec["order"]) if spec.get("order") is not None else float("inf")
            return _Policy(kinds[kind], meta["name"], meta["namespace"], order, obj)
        return None

    def _end(self, ref: str) -> _End:
        if ref.startswith("net:"):
            return _End("", {}, {}, ref[4:], None)
        pod = self._pods[ref]
        return _End(pod.namespace, pod.labels, self._ns_labels.get(pod.namespace, {}),
                    pod.ips[0] if pod.ips else "", pod)

    # ------------------------------------------------------------------ evaluation

    def _applies(self, p: _Policy, end: _End, direction: str) -> bool:
        if end.pod is None or p.namespace != end.namespace:
            return False
        spec = p.obj.get("spec", {})
        if p.kind == pb.NetworkPolicy:
            types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec
                                                 else ["Ingress"])
            return direction in types and _match_labels(spec.get("podSelector"), end.labels)
        types = spec.get("types") or (["Ingress", "Egress"] if "egress" in spec
                                      else ["Ingress"])
        return direction in types and _selector(spec.get("selector"), end.labels)

    def _peer_k8s(self, peers: list[Mapping[str, Any]] | None, p: _Policy, peer: _End) -> bool:
        if peers is None:
            return True
        for entry in peers:
            if "ipBlock" in entry:
                if peer.pod is None and ipaddress.ip_address(peer.ip) in ipaddress.ip_network(
                        entry["ipBlock"]["cidr"]):
                    return True
                continue
            if peer.pod is None:
                continue
            ns_ok = (_match_labels(entry["namespaceSelector"], peer.ns_labels)
                     if "namespaceSelector" in entry else peer.namespace == p.namespace)
            if ns_ok and _match_labels(entry.get("podSelector"), peer.labels):
                return True
        return False

    def _peer_calico(self, rule_end: Mapping[str, Any] | None, p: _Policy, peer: _End) -> bool:
        rule_end = rule_end or {}
        if set(rule_end) - {"nets", "selector", "namespaceSelector"}:
            raise ValueError(f"rule {dict(rule_end)!r} is beyond the demo's flow feed")
        if "nets" in rule_end:
            if peer.pod is not None and not peer.ip:
                return False
            addr = ipaddress.ip_address(peer.ip) if peer.ip else None
            if addr is None or not any(addr in ipaddress.ip_network(n)
                                       for n in rule_end["nets"]):
                return False
        if "selector" in rule_end or "namespaceSelector" in rule_end:
            if peer.pod is None:
                return False
            if not _selector(rule_end.get("namespaceSelector"), peer.ns_labels):
                return False
            if "namespaceSelector" not in rule_end and peer.namespace != p.namespace:
                return False
            if not _selector(rule_end.get("selector"), peer.labels):
                return False
        return True

    def _decide(self, p: _Policy, end: _End, peer: _End, direction: str
                ) -> tuple[pb.Action.ValueType, int] | None:
        """(action, rule index) of the first matching rule, or None."""
        spec = p.obj.get("spec", {})
        if p.kind == pb.NetworkPolicy:
            key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
            for i, rule in enumerate(spec.get(key) or []):
                if self._peer_k8s(rule.get(peers_key), p, peer):
                    return pb.Allow, i
            return None
        key, side = ("ingress", "source") if direction == "Ingress" else ("egress",
                                                                          "destination")
        actions: dict[str, pb.Action.ValueType] = {"Allow": pb.Allow, "Deny": pb.Deny,
                                                   "Pass": pb.Pass}
        for i, rule in enumerate(spec.get(key) or []):
            if rule.get("action") == "Log":
                continue
            if self._peer_calico(rule.get(side), p, peer):
                return actions[rule["action"]], i
        return None

    def trace(self, end: _End, peer: _End, direction: str, *, staged: bool
              ) -> tuple[pb.Action.ValueType, list[pb.PolicyHit]]:
        """(verdict, hits) at ``end`` for traffic with ``peer`` in ``direction``."""
        policies = self.enforced + (self.staged if staged else [])
        applying = sorted((p for p in policies if self._applies(p, end, direction)),
                          key=lambda p: (p.order, p.name))
        hits: list[pb.PolicyHit] = []
        if not applying:
            hits.append(pb.PolicyHit(kind=pb.Profile, name=f"kns.{end.namespace}",
                                     action=pb.Allow, policy_index=0))
            return pb.Allow, hits
        for p in applying:
            decided = self._decide(p, end, peer, direction)
            if decided is None:
                continue
            action, rule = decided
            hits.append(pb.PolicyHit(kind=p.kind, name=p.name, namespace=p.namespace,
                                     tier="default", action=action, policy_index=0,
                                     rule_index=rule))
            if action != pb.Pass:
                return action, hits
            break
        first = applying[0]
        trigger = pb.PolicyHit(kind=first.kind, name=first.name, namespace=first.namespace,
                               tier="default")
        hits.append(pb.PolicyHit(kind=pb.EndOfTier, tier="default", action=pb.Deny,
                                 policy_index=len(hits), rule_index=-1, trigger=trigger))
        return pb.Deny, hits

    def window(self) -> list[pb.Flow]:
        """The flows of one window (start times left for the stand-in to stamp)."""
        out = []
        for c in self.conversations:
            src, dst = self._end(c.source), self._end(c.destination)
            allowed = True
            if src.pod is not None:
                verdict, hits = self.trace(src, dst, "Egress", staged=False)
                _, pending = self.trace(src, dst, "Egress", staged=True)
                out.append(self._flow(c, src, dst, pb.Src, verdict, hits, pending))
                allowed = verdict == pb.Allow
            if allowed and dst.pod is not None:
                verdict, hits = self.trace(dst, src, "Ingress", staged=False)
                _, pending = self.trace(dst, src, "Ingress", staged=True)
                out.append(self._flow(c, src, dst, pb.Dst, verdict, hits, pending))
        return out

    def _flow(self, c: Conversation, src: _End, dst: _End, reporter: pb.Reporter.ValueType,
              action: pb.Action.ValueType,
              hits: list[pb.PolicyHit], pending: list[pb.PolicyHit]) -> pb.Flow:
        def endpoint(e: _End) -> tuple[str, pb.EndpointType.ValueType]:
            if e.pod is None:
                private = ipaddress.ip_address(e.ip).is_private
                return ("pvt" if private else "pub"), pb.Network
            name = e.pod.name.rsplit("-", 2)[0] if e.pod.name.count("-") >= 2 else e.pod.name
            return f"{name}-*", pb.WorkloadEndpoint

        f = pb.Flow(num_connections_started=c.connections, num_connections_live=c.connections,
                    packets_in=8 * c.connections, packets_out=6 * c.connections,
                    bytes_in=4200 * c.connections, bytes_out=900 * c.connections)
        k = f.Key
        k.source_name, k.source_type = endpoint(src)
        k.dest_name, k.dest_type = endpoint(dst)
        k.source_namespace, k.dest_namespace = src.namespace, dst.namespace
        k.dest_port, k.proto, k.reporter, k.action = c.port, "tcp", reporter, action
        k.policies.enforced_policies.extend(hits)
        k.policies.pending_policies.extend(pending)
        return f
