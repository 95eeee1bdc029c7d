"""Flow labels agree with the policy families: the same kind words, and, through the cluster
role's policy index, the tier and name ``calico_network_policy_selected_pods`` shows, so a join
on ``{kind,namespace,tier,policy}`` finds the policy whatever Calico version's Goldmane named it.

How Goldmane names a policy, from projectcalico/calico:

- v3.32.1: Felix writes ``<index>|<tier>|<kind>:[<ns>/]<name>|<action>|<rule>`` with the name
  its ``model.PolicyKey`` holds, the name the object is stored under
  (felix/calc/policy_lookup_cache.go ``setFlowLogPolicyName``; the syncer keys a KVPair by the
  stored ``metadata.name``, libcalico-go k8s/resources/customresource.go
  ``convertResourceToKVPair``), and Goldmane's ``HitFromString`` keeps it as it is
  (goldmane/proto/methods_test.go: ``0|tier|np:namespace/tier.name|allow|1`` and
  ``0|tier|np:namespace/name|allow|1``).
- v3.31.0: ``HitFromString`` reads ``<tier>.<name>`` and keeps only ``<name>``
  (methods_test.go: ``0|tier|namespace/tier.name|allow|1``,
  ``0|default|namespace/knp.default.name|allow|2``).
"""

from __future__ import annotations

from exporter.flows.counters import Delta, FlowCounters
from exporter.flows.ingest import KINDS, attribute
from exporter.goldmane import api_pb2 as pb
from exporter.model.policy import POLICY_KINDS
from tests.flows.world import flow, hit
from tests.policy.reference import (
    Cluster,
    raw_cluster_policy,
    raw_global_policy,
    raw_staged_policy,
    v1_stored,
    writeup_cluster,
)


def count(cluster: Cluster | None, *hits: pb.PolicyHit) -> FlowCounters:
    """One allowed egress flow per enforced hit, committed with the cluster's policy lookup."""
    counters = FlowCounters(names=None if cluster is None else cluster.index.shown)
    delta = Delta()
    for h in hits:
        assert attribute(flow(src=h.namespace, enforced=[h]), delta, counters) is None
    counters.commit(delta)
    return counters


def lab() -> Cluster:
    """The write-up's cluster with a security tier: a GlobalNetworkPolicy stored as Calico 3.31
    stored it (security.block, that v3 name in the annotation), one stored by 3.32 without a
    prefix (allow-dns), a default-tier policy not yet migrated (default.redis, v3 name redis),
    a staged policy and a ClusterNetworkPolicy."""
    cluster = writeup_cluster()
    cluster.tier("security", 100, "Pass")
    cluster.gnp(v1_stored(raw_global_policy("security.block", {"tier": "security"}),
                          "security.block"))
    cluster.gnp(raw_global_policy("allow-dns", {"tier": "security"}))
    cluster.calico(v1_stored({**raw_global_policy("default.redis", {}), "kind": "NetworkPolicy",
                              "metadata": {"name": "default.redis", "namespace": "guestbook"}},
                             "redis"))
    cluster.policy("staged", raw_staged_policy("guestbook", "lockdown", {"tier": "default"}))
    cluster.policy("cluster", raw_cluster_policy("kube-system-internal", {
        "tier": "Admin", "priority": 10,
        "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}},
        "ingress": [{"name": "all", "action": "Accept", "from": [{"namespaces": {}}]}]}))
    return cluster


def policy_series(cluster: Cluster) -> set[tuple[str, str, str, str]]:
    """{(tier, kind, namespace, policy)} of calico_network_policy_selected_pods."""
    return {(s.tier, s.kind, s.namespace, s.name) for s in cluster.index.selected_pods()}


def test_kind_words_are_the_policy_families() -> None:
    """Every kind the policy watches know has exactly the word calico_network_policy_* uses;
    what only Goldmane has is profile and, from Calico 3.30-3.31, the AdminNetworkPolicy kinds."""
    words = set(KINDS.values())
    assert set(POLICY_KINDS) <= words
    assert words - set(POLICY_KINDS) == {"profile", "admin", "baseline_admin"}
    assert len(words) == len(KINDS)


def test_goldmane_names_of_either_version_join_the_policy_series() -> None:
    """The same policies named as a v3.32.1 Goldmane names them (the stored name) and as a
    v3.31.0 one does (the tier prefix dropped): every label set is a selected_pods series, with
    the tier and name Calico shows (security.block stays security.block, default.redis is
    redis)."""
    cluster = lab()
    v3_32 = [hit("security.block", kind=pb.GlobalNetworkPolicy, namespace="", tier="security"),
             hit("allow-dns", kind=pb.GlobalNetworkPolicy, namespace="", tier="security"),
             hit("default.redis", namespace="guestbook"),
             hit("mypolicy", kind=pb.NetworkPolicy, namespace="guestbook"),
             hit("custom-deny-egress", namespace="guestbook"),
             hit("lockdown", kind=pb.StagedNetworkPolicy, namespace="guestbook"),
             hit("kube-system-internal", kind=pb.ClusterNetworkPolicy, namespace="",
                 tier="kube-admin")]
    v3_31 = [hit("block", kind=pb.GlobalNetworkPolicy, namespace="", tier="security"),
             hit("redis", namespace="guestbook"),
             hit("mypolicy", kind=pb.NetworkPolicy, namespace="guestbook"),
             hit("custom-deny-egress", namespace="guestbook")]
    series = policy_series(cluster)
    for hits in (v3_32, v3_31):
        labels = {key[:4] for key in count(cluster, *hits).policy}
        assert labels <= series, labels - series
    assert {key[:4] for key in count(cluster, *v3_32).policy} == {
        ("security", "global", "", "security.block"), ("security", "global", "", "allow-dns"),
        ("default", "calico", "guestbook", "redis"), ("default", "k8s", "guestbook", "mypolicy"),
        ("default", "calico", "guestbook", "custom-deny-egress"),
        ("default", "staged", "guestbook", "lockdown"),
        ("kube-admin", "cluster", "", "kube-system-internal")}


def test_unknown_policies_and_markers_keep_goldmane_labels() -> None:
    """A policy the watches do not know (deleted since, or not listed yet) keeps Goldmane's name
    as Calico converts it; end-of-tier and profile series are never looked up."""
    cluster = lab()
    gone = hit("default.gone", namespace="guestbook")
    eot = pb.PolicyHit(kind=pb.EndOfTier, tier="default", action=pb.Allow, rule_index=-1,
                       trigger=hit("mypolicy", kind=pb.NetworkPolicy, namespace="guestbook"))
    profile = hit("kns.testns", kind=pb.Profile, namespace="", tier="")
    assert set(count(cluster, gone, eot, profile).policy) == {
        ("default", "calico", "guestbook", "gone", "allow", "egress"),
        ("default", "k8s", "guestbook", "__end_of_tier__", "allow", "egress"),
        ("", "profile", "", "__profile__", "allow", "egress")}


def test_staged_families_take_the_shown_names_too() -> None:
    """The staged families go through the same lookup: a 3.31-style staged name in tier
    security (dropped prefix) is counted under the name Calico shows."""
    cluster = lab()
    cluster.policy("staged", v1_stored(raw_staged_policy("guestbook", "security.quarantine",
                                                         {"tier": "security"}),
                                       "security.quarantine"))
    staged = hit("quarantine", kind=pb.StagedNetworkPolicy, namespace="guestbook",
                 tier="security", action=pb.Deny)
    counters = FlowCounters(names=cluster.index.shown)
    delta = Delta()
    attribute(flow(src="guestbook", action=pb.Allow,
                   enforced=[hit("mypolicy", kind=pb.NetworkPolicy, namespace="guestbook")],
                   pending=[staged]), delta, counters)
    counters.commit(delta)
    key = ("security", "staged", "guestbook", "security.quarantine", "deny", "egress")
    assert counters.staged == {key: 1}
    assert counters.staged_changed == {key: 1}
    assert key[:4] in policy_series(cluster)
