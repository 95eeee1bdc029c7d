"""The hot path at its own boundary: Goldmane messages in, per-policy counts out, no network.

Policy traces are shaped as Felix reports them (felix/collector/flowlog/types.go
``newPolicySet``: one hit per tier in evaluation order, ``policy_index`` its position) and as
Goldmane parses them (goldmane/proto/methods.go ``HitFromString``: an end-of-tier hit has
``rule_index`` -1 and the policy in ``trigger``; profiles have an empty tier), projectcalico/calico
v3.32.1.
"""

from __future__ import annotations

from exporter.flows.counters import Delta, FlowCounters
from exporter.flows.ingest import WindowTracker, attribute
from exporter.goldmane import api_pb2 as pb
from tests.flows.world import end_of_tier, expected_policy, flow, hit


def count(*flows: pb.Flow, pairs: bool = False, max_series: int = 10_000) -> FlowCounters:
    counters = FlowCounters(max_series=max_series, namespace_pairs=pairs)
    delta = Delta()
    for f in flows:
        reason = attribute(f, delta, counters)
        if reason:
            counters.dropped[reason] += 1
    counters.commit(delta)
    return counters


def test_deciding_hit_is_the_last_one_with_the_flow_action() -> None:
    """A pass in tier1 then an allow in default: the allow decided, the pass is not counted."""
    f = flow(action=pb.Allow, enforced=[
        hit("sec-pass", tier="security", action=pb.Pass, index=0),
        hit("allow-web", tier="default", action=pb.Allow, index=1, rule=2)])
    c = count(f)
    assert c.policy == {("default", "calico", "ns", "allow-web", "allow", "egress"): [1, 10, 1000]}


def test_end_of_tier_and_profile_are_named_with_their_tier() -> None:
    """End of tier: policy __end_of_tier__, kind and namespace of the policy that selected the
    endpoint; profile: __profile__ with Goldmane's empty profile tier."""
    k8s = hit("mypolicy", kind=pb.NetworkPolicy, namespace="guestbook")
    eot = flow(reporter=pb.Dst, action=pb.Deny, enforced=[end_of_tier(k8s, index=0)])
    profile = flow(enforced=[hit("kns.default", kind=pb.Profile, namespace="", tier="",
                                 action=pb.Allow)])
    c = count(eot, profile)
    assert c.policy == {
        ("default", "k8s", "guestbook", "__end_of_tier__", "deny", "ingress"): [1, 10, 1000],
        ("", "profile", "", "__profile__", "allow", "egress"): [1, 10, 1000],
    }


def test_names_are_converted_as_calico_converts_a_stored_name() -> None:
    """Goldmane names a policy as Calico stores it; without a policy lookup the label is that
    name as libcalico-go's determinePolicyName converts it (k8s/resources/resources.go, v3.32.1):
    a default-tier "default." goes, any other tier's prefix stays (Calico shows security.block
    as security.block), and only Calico's own kinds are converted."""
    c = count(flow(enforced=[hit("security.block", tier="security")]),
              flow(enforced=[hit("default.redis", tier="default")]),
              flow(enforced=[hit("default.web", kind=pb.NetworkPolicy)]))
    assert sorted(c.policy) == [
        ("default", "calico", "ns", "redis", "allow", "egress"),
        ("default", "k8s", "ns", "default.web", "allow", "egress"),
        ("security", "calico", "ns", "security.block", "allow", "egress")]


def test_zero_counter_flows_are_dropped_and_counted() -> None:
    """Stale flows Felix re-emitted with every counter 0 (calico#13185) add nothing."""
    stale = flow(enforced=[hit("deny-all", action=pb.Deny)], action=pb.Deny, started=0,
                 packets=0, nbytes=0)
    c = count(stale, flow(enforced=[hit("allow")]))
    assert c.dropped["zero_counters"] == 1
    assert c.policy == {("default", "calico", "ns", "allow", "allow", "egress"): [1, 10, 1000]}


def test_both_reporters_count_once_per_direction() -> None:
    """One connection a -> b is reported by the source (egress policy) and the destination
    (ingress policy): each direction counts it once, never twice."""
    egress = hit("a-egress", namespace="a")
    ingress = hit("b-ingress", namespace="b")
    c = count(flow(reporter=pb.Src, enforced=[egress]), flow(reporter=pb.Dst, enforced=[ingress]),
              pairs=True)
    assert c.policy == {
        ("default", "calico", "a", "a-egress", "allow", "egress"): [1, 10, 1000],
        ("default", "calico", "b", "b-ingress", "allow", "ingress"): [1, 10, 1000],
    }
    assert sum(v[0] for k, v in c.policy.items() if k[5] == "egress") == 1
    assert c.pairs == {("a", "b", "allow"): 1}


def test_namespace_pairs_keep_the_final_verdict() -> None:
    """Allowed at the source, denied at the destination: the pair counts one denied
    connection; denied at the source (the destination never sees it) and to a non-Calico
    destination, the source's report counts."""
    allow_src = flow(reporter=pb.Src, action=pb.Allow, enforced=[hit("e")])
    deny_dst = flow(reporter=pb.Dst, action=pb.Deny, enforced=[hit("i", action=pb.Deny)])
    deny_src = flow(src="a", dst="c", reporter=pb.Src, action=pb.Deny,
                    enforced=[hit("e2", action=pb.Deny)])
    internet = flow(src="a", dst="", reporter=pb.Src, dest_type=pb.Network, enforced=[hit("e3")])
    c = count(allow_src, deny_dst, deny_src, internet, pairs=True)
    assert c.pairs == {("a", "b", "deny"): 1, ("a", "c", "deny"): 1, ("a", "", "allow"): 1}


def test_unknown_enum_values_are_counted_not_fatal() -> None:
    """A newer Calico's kind 12, action 4 and reporter 3 (open proto3 enums arrive as plain
    numbers): the flow is counted, with label value unknown, and each value is counted."""
    f = flow(reporter=3, action=4, enforced=[hit("future", kind=12, action=4)],
             dest_type=7)
    c = count(f, pairs=True)
    assert c.policy == {("default", "unknown", "ns", "future", "unknown", "unknown"):
                        [1, 10, 1000]}
    assert c.unknown_values["kind"] == 1
    assert c.unknown_values["reporter"] == 1
    assert c.unknown_values["action"] >= 1
    assert c.unknown_values["dest_type"] == 1
    wire = pb.Flow.FromString(f.SerializeToString())
    assert count(wire).policy == c.policy


def test_staged_hits_and_would_be_changes() -> None:
    """The pending trace (staged policies evaluated as if enforced, so it ends at the staged
    deny): every staged hit counts under its action, and a staged deny of traffic the enforced
    policies allow counts as a change to deny, attributed to the staged policy."""
    staged = hit("lockdown", kind=pb.StagedNetworkPolicy, namespace="guestbook", action=pb.Deny,
                 index=0)
    enforced = hit("mypolicy", kind=pb.NetworkPolicy, namespace="guestbook", action=pb.Allow,
                   index=0)
    f = flow(reporter=pb.Dst, action=pb.Allow, enforced=[enforced],
             pending=[staged], started=3)
    c = count(f)
    key = ("default", "staged", "guestbook", "lockdown", "deny", "ingress")
    assert c.staged == {key: 3}
    assert c.staged_changed == {key: 3}
    assert c.policy == {("default", "k8s", "guestbook", "mypolicy", "allow", "ingress"):
                        [3, 10, 1000]}


def test_staged_end_of_tier_counts_under_the_staged_kind() -> None:
    """A staged policy selecting the endpoint with no matching rule: a staged end of tier."""
    trig = hit("new-isolation", kind=pb.StagedKubernetesNetworkPolicy, namespace="web")
    f = flow(reporter=pb.Dst, action=pb.Allow, enforced=[hit("kns.web", kind=pb.Profile,
                                                               namespace="", tier="")],
             pending=[end_of_tier(trig, index=0)])
    c = count(f)
    key = ("default", "staged_k8s", "web", "__end_of_tier__", "deny", "ingress")
    assert c.staged == {key: 1}
    assert c.staged_changed == {key: 1}


def test_enforced_only_flows_leave_staged_families_empty() -> None:
    """Pending traces that hold only enforced hits (no staged policy) count nothing staged."""
    e = hit("p")
    c = count(flow(enforced=[e], pending=[e]))
    assert c.staged == {}
    assert c.staged_changed == {}


def test_series_cap_folds_into_other() -> None:
    """Past --goldmane-max-series label sets, new policies count under __other__; nothing is
    lost and existing series keep counting."""
    flows = [flow(enforced=[hit(f"p{i}")]) for i in range(5)]
    c = count(*flows, max_series=3)
    assert len(c.policy) == 4
    assert c.policy[("", "", "", "__other__", "allow", "egress")] == [2, 20, 2000]
    assert sum(v[0] for v in c.policy.values()) == 5


def test_negative_counters_are_invalid() -> None:
    """A negative counter cannot come from Felix; it is dropped as invalid, not subtracted."""
    c = count(flow(enforced=[hit("p")], started=-1))
    assert c.dropped["invalid"] == 1
    assert c.policy == {}


def test_flows_without_policy_hits_count_as_no_policy_hit() -> None:
    """Without an enforced trace there is no policy to name: dropped for the policy families,
    still counted in the namespace pairs."""
    c = count(flow(reporter=pb.Dst), pairs=True)
    assert c.dropped["no_policy_hit"] == 1
    assert c.pairs == {("a", "b", "allow"): 1}


def window(start: int, *flows: pb.Flow, first_id: int = 1) -> list[pb.FlowResult]:
    out = []
    for i, f in enumerate(flows):
        g = pb.Flow()
        g.CopyFrom(f)
        g.start_time, g.end_time = start, start + 15
        out.append(pb.FlowResult(id=first_id + i, flow=g))
    return out


def test_window_committed_when_the_next_window_starts() -> None:
    """A window's flows wait in a delta; the first flow of the next window commits it."""
    c = FlowCounters()
    t = WindowTracker(c, resume_from=None)
    t.receive_all(window(1000, flow(enforced=[hit("p")])))
    assert c.policy == {}
    assert t.pending
    t.receive_all(window(1015, flow(enforced=[hit("p")])))
    assert c.policy[("default", "calico", "ns", "p", "allow", "egress")] == [1, 10, 1000]
    assert t.resume_from == 1015
    t.quiet()
    assert c.policy[("default", "calico", "ns", "p", "allow", "egress")] == [2, 20, 2000]
    assert t.resume_from == 1030
    assert c.windows == 2


def test_broken_stream_resumes_without_loss_or_double_count() -> None:
    """The stream breaks half-way through a window: the partial window is discarded, the next
    connection asks from its start, gets it whole again and counts it exactly once."""
    flows = [flow(enforced=[hit(f"p{i % 3}")], name=f"w{i}") for i in range(9)]
    c = FlowCounters()
    first = WindowTracker(c, resume_from=None)
    first.receive_all(window(1000, *flows[:3]))
    first.receive_all(window(1015, *flows[3:5]))  # broken after 2 of 6 flows
    first.abandon()
    assert first.resume_from == 1015
    second = WindowTracker(c, resume_from=first.resume_from)
    second.receive_all(window(1000, *flows[:3]))  # a bucket containing the resume point
    second.receive_all(window(1015, *flows[3:9]))
    second.quiet()
    assert {k: v for k, v in c.policy.items()} == expected_policy(flows)
    assert c.dropped["already_counted"] == 3


def test_duplicate_window_on_one_connection_is_dropped() -> None:
    """Goldmane can send a window twice when a rollover races a new stream's backfill; the
    second copy is dropped."""
    c = FlowCounters()
    t = WindowTracker(c, resume_from=1000)
    t.receive_all(window(1030, flow(enforced=[hit("p")])))
    t.receive_all(window(1000, flow(enforced=[hit("p")])))
    t.receive_all(window(1015, flow(enforced=[hit("p")])))
    t.receive_all(window(1030, flow(enforced=[hit("p")])))
    t.quiet()
    assert c.policy[("default", "calico", "ns", "p", "allow", "egress")][0] == 3
    assert c.dropped["duplicate_window"] == 1


def test_late_flows_of_a_quiet_committed_window_still_count() -> None:
    """After a quiet commit, more flows of the same window (a slow burst) count directly."""
    c = FlowCounters()
    t = WindowTracker(c, resume_from=None)
    t.receive_all(window(1000, flow(enforced=[hit("p")])))
    t.quiet()
    t.receive_all(window(1000, flow(enforced=[hit("q")]), first_id=2))
    assert c.policy[("default", "calico", "ns", "q", "allow", "egress")] == [1, 10, 1000]
    assert c.windows == 1
