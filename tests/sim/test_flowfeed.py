"""The demo's flow feed: Felix's policy traces for the simulated cluster's conversations, read
from the emulator in every Calico flavour.

Evaluation cases follow projectcalico/calico v3.32.1 app-policy/checker/check_test.go (the
evaluation Felix uses for the pending trace, ``checkTiers``); names and kinds follow what Felix
reports (felix/calc/policy_lookup_cache.go ``setFlowLogPolicyName``: the stored name)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from exporter.goldmane import api_pb2 as pb
from exporter.sim.apiserver import ApiServer
from exporter.sim.cluster import SimCluster
from exporter.sim.demo import seed_extras
from exporter.sim.flowfeed import (
    BUILTIN_TIERS,
    DEMO_CONVERSATIONS,
    Cluster,
    Conversation,
    Endpoint,
    FlowFeed,
    calico_policy,
    trace,
)
from exporter.sim.scenario import load

FRONTEND = "guestbook/frontend-795b566649-4zkqc"


def short(h: pb.PolicyHit) -> str:
    """A hit as ``kind:tier/namespace/name:action`` (end of tier: ``eot:tier:action<-trigger``)."""
    action = pb.Action.Name(h.action).lower()
    if h.kind == pb.EndOfTier:
        return f"eot:{h.tier}:{action}<-{h.trigger.name}"
    return f"{pb.PolicyKind.Name(h.kind)}:{h.tier}/{h.namespace}/{h.name}:{action}"


def gnp(name: str, tier: str, ingress: list[dict[str, Any]], order: float | None = None
        ) -> dict[str, Any]:
    spec = {"tier": tier, "selector": "all()", "types": ["Ingress"], "ingress": ingress}
    return {"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": name}, "spec": spec if order is None else {**spec, "order": order}}


POD = Endpoint("ns", "pod", {"app": "a"}, {}, "198.18.0.2", True)
PEER = Endpoint("ns", "peer", {"app": "b"}, {}, "198.18.0.3", True)
HTTPS = Conversation("ns/peer", "ns/pod", 443)


def evaluate(tiers: dict[str, tuple[float, str]], *policies: dict[str, Any]
             ) -> tuple[str, list[str]]:
    cluster = Cluster({}, {}, {**BUILTIN_TIERS, **tiers},
                      [p for o in policies if (p := calico_policy(o, pb.GlobalNetworkPolicy,
                                                                  False, {})) is not None], [])
    verdict, hits = trace(cluster, POD, PEER, "Ingress", HTTPS, staged=False)
    assert [h.policy_index for h in hits] == list(range(len(hits)))
    return pb.Action.Name(verdict).lower(), [short(h) for h in hits]


@pytest.mark.parametrize(("actions", "expected"), [
    (("Deny", "Pass"), ("deny", ["eot:tier1:deny<-policy1"])),
    (("Pass", "Deny"), ("deny", ["eot:tier1:pass<-policy1", "eot:tier2:deny<-policy2"])),
])
def test_tier_default_actions(actions: tuple[str, str],
                              expected: tuple[str, list[str]]) -> None:
    """check_test.go TestEvaluateEndpointWithNonMatchingPolicyTierDefaultAction: a policy per
    tier, neither matches: a Deny tier ends the trace at its end-of-tier hit; a Pass tier adds
    one and evaluation goes on to the next tier."""
    no_match = [{"action": "Allow", "protocol": "UDP"}]
    got = evaluate({"tier1": (10.0, actions[0]), "tier2": (20.0, actions[1])},
                   gnp("policy1", "tier1", no_match), gnp("policy2", "tier2", no_match))
    assert got == expected


def test_pass_skips_the_rest_of_the_tier() -> None:
    """check_test.go TestCheckStorePass: policy1 passes, so policy2 (which would deny) is not
    evaluated, and the profile allows."""
    got = evaluate({"tier1": (10.0, "Deny")}, gnp("policy1", "tier1", [{"action": "Pass"}], 1),
                   gnp("policy2", "tier1", [{"action": "Deny"}], 2))
    assert got == ("allow", ["GlobalNetworkPolicy:tier1//policy1:pass",
                             "Profile://kns.ns:allow"])


def test_rules_match_protocol_and_ports() -> None:
    """A rule decides only for its protocol and destination ports; the first that matches
    decides, Log rules decide nothing."""
    got = evaluate({"tier1": (10.0, "Deny")}, gnp("web", "tier1", [
        {"action": "Log"},
        {"action": "Deny", "protocol": "UDP", "destination": {"ports": [443]}},
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["400:500"]}}]))
    assert got == ("allow", ["GlobalNetworkPolicy:tier1//web:allow"])


@pytest.fixture(params=["v1", "v3", "both"])
async def lab(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ApiServer, FlowFeed]]:
    """nke-lab with the demo's extras, in one Calico flavour, and a feed over it."""
    api = ApiServer(token=None, calico_api=request.param)
    await api.start()
    cluster = SimCluster(api, load("nke-lab"))
    await cluster.start()
    seed_extras(api)
    try:
        yield api, FlowFeed(api, DEMO_CONVERSATIONS)
    finally:
        await cluster.stop()
        await api.stop()


def traces(feed: FlowFeed
           ) -> dict[tuple[str, str, str, str], tuple[str, list[str], list[str]]]:
    """(source namespace, source name, destination name, reporter) -> (action, enforced hits,
    pending hits), for one window."""
    out = {}
    for f in feed.window():
        k = f.Key
        out[(k.source_namespace, k.source_name, k.dest_name, pb.Reporter.Name(k.reporter))] = (
            pb.Action.Name(k.action).lower(), [short(h) for h in k.policies.enforced_policies],
            [short(h) for h in k.policies.pending_policies])
    return out


async def test_nke_lab_in_every_flavour(lab: tuple[ApiServer, FlowFeed]) -> None:
    """Read from whichever group holds Calico's data, the lab's traces are the same: the
    security tier's allow-dns passes what is not DNS, testns is allowed into guestbook by
    mypolicy (the staged lockdown would deny it), the rest is denied at the end of the default
    tier (the staged frontend-ingress would allow port 80), kube-system's DNS is accepted by the
    kube-admin tier's ClusterNetworkPolicy, from elsewhere that tier passes and the profile
    allows. Policies are named as stored (security.allow-dns)."""
    _, feed = lab
    got = traces(feed)
    dns_pass = "GlobalNetworkPolicy:security//security.allow-dns:pass"
    for ns in ("testns", "default"):
        assert got[(ns, "testpod-*", "frontend-*", "Src")] == (
            "allow", [dns_pass, f"Profile://kns.{ns}:allow"],
            [dns_pass, f"Profile://kns.{ns}:allow"])
    assert got[("testns", "testpod-*", "frontend-*", "Dst")] == (
        "allow", ["NetworkPolicy:default/guestbook/mypolicy:allow"],
        ["StagedNetworkPolicy:default/guestbook/lockdown-guestbook:deny"])
    assert got[("default", "testpod-*", "frontend-*", "Dst")] == (
        "deny", ["eot:default:deny<-mypolicy"],
        ["StagedNetworkPolicy:default/guestbook/frontend-ingress:allow"])
    assert got[("guestbook", "frontend-*", "redis-leader-*", "Dst")] == (
        "deny", ["eot:default:deny<-mypolicy"], ["eot:default:deny<-lockdown-guestbook"])
    assert got[("guestbook", "redis-follower-*", "pub", "Src")][:2] == (
        "deny", [dns_pass, "CalicoNetworkPolicy:default/guestbook/custom-deny-egress:deny"])
    assert got[("ntnx-system", "prometheus-*", "coredns-*", "Src")][:2] == (
        "allow", ["GlobalNetworkPolicy:security//security.allow-dns:allow"])
    assert got[("ntnx-system", "prometheus-*", "coredns-*", "Dst")][:2] == (
        "allow", ["eot:kube-admin:pass<-kube-system-internal", "Profile://kns.kube-system:allow"])
    assert got[("kube-system", "calico-kube-controllers-*", "coredns-*", "Dst")][:2] == (
        "allow", ["ClusterNetworkPolicy:kube-admin//kube-system-internal:allow"])
    assert feed.skipped == {}


async def test_staged_delete_never_reaches_the_pending_trace(
        lab: tuple[ApiServer, FlowFeed]) -> None:
    """The lab's staged Delete of default-allow-egress is not sent to Felix
    (updateprocessors/stagednetworkpolicyprocessor.go returns nil for it): the pending trace of
    the frontends' internet traffic still ends at default-allow-egress."""
    _, feed = lab
    got = traces(feed)[("guestbook", "frontend-*", "pub", "Src")]
    assert got[2][-1] == "CalicoNetworkPolicy:default/guestbook/default-allow-egress:allow"


async def test_policies_applied_later_and_beyond_the_feed(
        lab: tuple[ApiServer, FlowFeed]) -> None:
    """A policy created through the API decides from the next window on; one the feed cannot
    evaluate (a selector beyond its subset) is left out and named, never guessed."""
    api, feed = lab
    calico = api.calico_api_version
    api.create({"apiVersion": calico, "kind": "GlobalNetworkPolicy",
                "metadata": {"name": "security.block-internet"},
                "spec": {"tier": "security", "order": 1, "selector": "app == 'guestbook'",
                         "types": ["Egress"], "egress": [
                             {"action": "Deny", "destination": {"nets": ["1.0.0.0/8"]}}]}})
    api.create({"apiVersion": calico, "kind": "GlobalNetworkPolicy",
                "metadata": {"name": "security.odd"},
                "spec": {"tier": "security", "selector": "app in {'a'}", "types": ["Egress"]}})
    got = traces(feed)[("guestbook", "frontend-*", "pub", "Src")]
    assert got[:2] == ("deny", ["GlobalNetworkPolicy:security//security.block-internet:deny"])
    assert list(feed.skipped) == ["GlobalNetworkPolicy security.odd"]


async def test_without_staged_policies() -> None:
    """A Calico without staged policies (no CRDs: before 3.30): no pending staged hits, no
    error."""
    staged = ["stagednetworkpolicies", "stagedglobalnetworkpolicies",
              "stagedkubernetesnetworkpolicies"]
    api = ApiServer(token=None, without_crds=staged)
    await api.start()
    lab = load("nke-lab")
    cluster = SimCluster(api, dataclasses.replace(lab, objects=tuple(
        o for o in lab.objects if not str(o["kind"]).startswith("Staged"))))
    await cluster.start()
    try:
        feed = FlowFeed(api, DEMO_CONVERSATIONS)
        flows = feed.window()
        assert flows
        assert not any(h.kind == pb.StagedNetworkPolicy for f in flows
                       for h in f.Key.policies.pending_policies)
    finally:
        await cluster.stop()
        await api.stop()
