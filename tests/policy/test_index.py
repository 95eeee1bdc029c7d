"""The incremental policy index over real stores: the write-up's numbers, scopes, and exactness."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.model.telemetry import Telemetry
from tests.policy.reference import (
    MYPOLICY,
    WRITEUP_PODS,
    Cluster,
    index_state,
    oracle,
    raw_calico_policy,
    raw_global_policy,
    raw_k8s_policy,
    writeup_cluster,
)

GUESTBOOK = {name for ns, name, _ in WRITEUP_PODS if ns == "guestbook"}


def test_writeup_numbers() -> None:
    """guestbook: mypolicy selects its 5 pods (ingress 5), both Calico policies too (egress 5)."""
    cluster = writeup_cluster()
    index = cluster.index
    selected = {(s.kind, s.namespace, s.name): s.pods for s in index.selected_pods()}
    assert selected == {
        ("k8s", "guestbook", "mypolicy"): 5,
        ("calico", "guestbook", "custom-deny-egress"): 5,
        ("calico", "guestbook", "default-allow-egress"): 5,
    }
    assert index.selected_by(("k8s", "guestbook", "mypolicy")) == {
        ("guestbook", name) for name in GUESTBOOK}
    isolation = {s.namespace: (s.pods, s.ingress_isolated, s.egress_isolated)
                 for s in index.isolation()}
    assert isolation == {
        "guestbook": (5, 5, 5),
        "testns": (1, 0, 0),
        "default": (1, 0, 0),
        "kube-system": (3, 0, 0),
        "ntnx-system": (2, 0, 0),
    }
    assert index.policy_counts() == {("k8s", "guestbook", "default"): 1,
                                     ("calico", "guestbook", "default"): 2}
    rules = {k: v for k, v in index.rule_counts().items() if v}
    assert rules == {("k8s", "ingress", "Allow"): 1, ("calico", "egress", "Deny"): 1,
                     ("calico", "egress", "Allow"): 1}
    assert index.directions_of("guestbook", "frontend-795b566649-j4r75") == (1, 2)
    assert index_state(index) == oracle(cluster)


def test_pods_without_workload_endpoint_are_not_counted() -> None:
    """hostNetwork, unscheduled and finished pods count nowhere; deleting pods still count."""
    cluster = writeup_cluster()
    cluster.pod("guestbook", "calico-node", {"app": "x"}, host_network=True)
    cluster.pod("guestbook", "pending", {"app": "x"}, node="")
    cluster.pod("guestbook", "job-done", {"app": "x"}, phase="Succeeded")
    cluster.pod("guestbook", "job-failed", {"app": "x"}, phase="Failed")
    cluster.pod("guestbook", "starting", {"app": "x"}, phase="Pending")
    assert cluster.index.selected_count(("k8s", "guestbook", "mypolicy")) == 6
    cluster.pod("guestbook", "starting", {"app": "x"}, phase="Succeeded")
    assert cluster.index.selected_count(("k8s", "guestbook", "mypolicy")) == 5
    assert cluster.index.directions_of("guestbook", "starting") is None
    assert index_state(cluster.index) == oracle(cluster)


def test_label_change_and_deletion_update_counts() -> None:
    """A pod relabelled out of a selector, and a deleted pod, leave the counts exact."""
    cluster = writeup_cluster()
    cluster.k8s(raw_k8s_policy("guestbook", "redis-only", {
        "podSelector": {"matchLabels": {"app": "redis"}}, "policyTypes": ["Egress"]}))
    key = ("k8s", "guestbook", "redis-only")
    assert cluster.index.selected_count(key) == 2
    cluster.pod("guestbook", "redis-leader-c767d6dbb-t5t8j", {"app": "cache"})
    assert cluster.index.selected_count(key) == 1
    cluster.pods.delete(("guestbook", "redis-follower-5ffdf87b7d-4lqlr"))
    assert cluster.index.selected_count(key) == 0
    assert cluster.index.selected_count(("k8s", "guestbook", "mypolicy")) == 4
    assert index_state(cluster.index) == oracle(cluster)


def test_policy_type_change_and_deletion() -> None:
    """Changing a policy's types moves its pods between directions; deleting it frees them."""
    cluster = writeup_cluster()
    cluster.k8s({**MYPOLICY, "spec": {**MYPOLICY["spec"], "policyTypes": ["Egress"]}})
    iso = {s.namespace: s for s in cluster.index.isolation()}["guestbook"]
    assert (iso.ingress_isolated, iso.egress_isolated) == (0, 5)
    cluster.k8s_policies.delete(("guestbook", "mypolicy"))
    cluster.calico_policies.delete(("guestbook", "custom-deny-egress"))
    assert cluster.index.directions_of("guestbook", "frontend-795b566649-j4r75") == (0, 1)
    cluster.calico_policies.delete(("guestbook", "default-allow-egress"))
    iso = {s.namespace: s for s in cluster.index.isolation()}["guestbook"]
    assert (iso.pods, iso.ingress_isolated, iso.egress_isolated) == (5, 0, 0)
    assert cluster.index.policy_keys() == []
    assert cluster.index.policy_counts() == {}
    assert not any(cluster.index.rule_counts().values())


def test_global_policy_namespace_and_service_account_selectors() -> None:
    """GNP namespaceSelector reads pcns.* (labels and name), serviceAccountSelector pcsa.* name."""
    cluster = writeup_cluster()
    cluster.namespace("guestbook", {"team": "web"})
    cluster.pod("kube-system", "coredns-6fb596b5df-p7mhq", {"k8s-app": "kube-dns"},
                service_account="coredns")
    cluster.gnp(raw_global_policy("web-team", {"namespaceSelector": "team == 'web'"}))
    cluster.gnp(raw_global_policy("by-name", {
        "selector": "has(run)",
        "namespaceSelector": "projectcalico.org/name in {'testns', 'default'}"}))
    cluster.gnp(raw_global_policy("dns", {
        "serviceAccountSelector": "projectcalico.org/name == 'coredns'",
        "types": ["Egress"]}))
    index = cluster.index
    assert index.selected_by(("global", "", "web-team")) == {
        ("guestbook", name) for name in GUESTBOOK}
    assert index.selected_by(("global", "", "by-name")) == {
        ("testns", "testpod"), ("default", "testpod")}
    assert index.selected_by(("global", "", "dns")) == {
        ("kube-system", "coredns-6fb596b5df-p7mhq")}
    assert index.policy_selector(("global", "", "web-team")) == 'pcns.team == "web"'
    cluster.namespace("guestbook", {"team": "shop"})
    cluster.namespace("testns", {"team": "web"})
    assert index.selected_by(("global", "", "web-team")) == {("testns", "testpod")}
    cluster.namespaces.delete(("", "testns"))
    assert index.selected_by(("global", "", "web-team")) == set()
    assert index_state(index) == oracle(cluster)


def test_untracked_and_pre_dnat_policies_select_no_pods() -> None:
    """doNotTrack and preDNAT GNPs apply to host endpoints only; clearing the flag selects."""
    cluster = writeup_cluster()
    for flag in ("doNotTrack", "preDNAT"):
        cluster.gnp(raw_global_policy(flag, {"selector": "has(run)", flag: True,
                                             "applyOnForward": True}))
        assert cluster.index.selected_count(("global", "", flag)) == 0
    cluster.gnp(raw_global_policy("preDNAT", {"selector": "has(run)", "applyOnForward": True}))
    assert cluster.index.selected_by(("global", "", "preDNAT")) == {
        ("default", "testpod"), ("testns", "testpod")}
    assert index_state(cluster.index) == oracle(cluster)


def test_invalid_selector_is_counted_and_never_stops_the_others() -> None:
    """A policy whose selector does not parse selects nothing, is counted once per version."""
    telemetry = Telemetry()
    cluster = Cluster(telemetry=telemetry)
    cluster.namespace("shop")
    cluster.pod("shop", "web-1", {"app": "web"})
    cluster.calico(raw_calico_policy("shop", "typo", {"selector": "app = 'web'"}))
    cluster.calico(raw_calico_policy("shop", "good", {"selector": "app == 'web'"}))
    cluster.gnp(raw_global_policy("bad-rule", {
        "selector": "app == 'web'",
        "ingress": [{"action": "Allow", "source": {"selector": "role in 'x'"}}]}))
    index = cluster.index
    assert index.selected_count(("calico", "shop", "typo")) == 0
    assert index.policy_selector(("calico", "shop", "typo")) == ""
    assert index.selected_count(("calico", "shop", "good")) == 1
    assert index.selected_count(("global", "", "bad-rule")) == 1
    assert telemetry.invalid_objects == {"networkpolicies.crd.projectcalico.org": 1,
                                         "globalnetworkpolicies.crd.projectcalico.org": 1}
    cluster.calico(raw_calico_policy("shop", "typo", {"selector": "app = 'web'", "order": 3}))
    assert telemetry.invalid_objects["networkpolicies.crd.projectcalico.org"] == 1
    cluster.calico(raw_calico_policy("shop", "typo", {"selector": "app == 'web"}))
    assert telemetry.invalid_objects["networkpolicies.crd.projectcalico.org"] == 2
    cluster.calico(raw_calico_policy("shop", "typo", {"selector": "app == 'web'"}))
    assert index.selected_count(("calico", "shop", "typo")) == 1
    assert {k: v for k, v in index.policy_counts().items()} == {
        ("calico", "shop", "default"): 2, ("global", "", "default"): 1}


def test_duplicate_display_names_and_tiers() -> None:
    """Pre-v3.32 stored names keep distinct keys; the display name drops the tier prefix."""
    cluster = writeup_cluster()
    cluster.gnp(raw_global_policy("security.block", {"tier": "security"}))
    cluster.gnp(raw_global_policy("default.allow", {}))
    names = {(s.kind, s.name, s.tier) for s in cluster.index.selected_pods() if s.kind == "global"}
    assert names == {("global", "block", "security"), ("global", "allow", "default")}
    assert cluster.index.policy_counts()[("global", "", "security")] == 1


def test_network_sets_are_counted() -> None:
    """NetworkSets per namespace and GlobalNetworkSets are counted, deletions included."""
    cluster = Cluster()
    cluster.network_set("a", "s1", {"x": "y"})
    cluster.network_set("a", "s2", {})
    cluster.network_set("b", "s1", {})
    cluster.network_sets.delete(("b", "s1"))
    assert cluster.index.network_set_counts() == {("calico", "a"): 2}


def test_rewiring_replays_stores() -> None:
    """A second index wired to filled stores reaches the same state as the live one."""
    cluster = writeup_cluster()
    fresh = cluster.wire(Telemetry())
    assert index_state(fresh) == index_state(cluster.index)


# --------------------------------------------------------------------------------------------
# Incremental == full recomputation after random event sequences

_NAMESPACES = ["ns0", "ns1", "ns2"]
_PODS = ["p0", "p1", "p2", "p3"]
_LABEL_MAPS = st.dictionaries(st.sampled_from(["app", "tier", "rev"]), st.sampled_from(["a", "b"]),
                              max_size=3)
"""``rev`` is read by no selector: a change of it alone must leave the selection as it is."""
_SELECTORS = st.sampled_from([
    "", "all()", "app == 'a'", "app != 'a'", "has(tier) && !has(app)", "tier in {'a', 'b'}",
    "pcns.team == 'x'", "projectcalico.org/serviceaccount == 'sa1'", "app == 'a' ||",
    "projectcalico.org/namespace == 'ns1'", "pcns.projectcalico.org/name == 'ns2'",
])
_SUB_SELECTORS = st.sampled_from(["", "all()", "team == 'x'", "team != 'x'",
                                  "projectcalico.org/name == 'ns0'", "team = 'x'"])
_SA_SELECTORS = st.sampled_from(["", "projectcalico.org/name == 'sa1'", "all()"])
_TYPES = st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]])


def _calico_spec(draw: st.DrawFn, *, global_: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": draw(_SELECTORS),
                            "serviceAccountSelector": draw(_SA_SELECTORS)}
    if global_:
        spec["namespaceSelector"] = draw(_SUB_SELECTORS)
        flag = draw(st.sampled_from([None, None, None, "doNotTrack", "preDNAT"]))
        if flag is not None:
            spec[flag] = True
            spec["applyOnForward"] = True
    types = draw(_TYPES)
    if types is not None:
        spec["types"] = types
    if draw(st.booleans()):
        spec["egress"] = [{"action": draw(st.sampled_from(["Allow", "Deny", "Log", "Pass"]))}]
    return spec


@st.composite
def _event(draw: st.DrawFn) -> tuple[str, Any]:
    kind = draw(st.sampled_from(["ns", "ns-", "pod", "pod", "pod", "pod-", "k8s", "k8s-",
                                 "calico", "calico-", "gnp", "gnp-"]))
    pod = draw(st.sampled_from(_PODS)) if kind.startswith("pod") else ""
    ns = draw(st.sampled_from(_NAMESPACES))
    return _event_of(draw, kind, ns, pod or draw(st.sampled_from(["a", "b"])))


def _event_of(draw: st.DrawFn, kind: str, ns: str, name: str) -> tuple[str, Any]:
    if kind == "ns":
        return kind, (ns, draw(st.dictionaries(st.just("team"), st.sampled_from(["x", "y"]))))
    if kind == "pod":
        return kind, (ns, name, draw(_LABEL_MAPS), {
            "service_account": draw(st.sampled_from([None, "sa1", "sa2"])),
            "phase": draw(st.sampled_from(["Running", "Running", "Pending", "Succeeded"])),
            "host_network": draw(st.booleans()) and draw(st.booleans()),
            "node": draw(st.sampled_from(["n1", "n1", "n1", ""])),
        })
    if kind == "pod-":
        return kind, (ns, name)
    if kind == "k8s":
        spec: dict[str, Any] = {"podSelector": {"matchLabels": draw(_LABEL_MAPS)}}
        types = draw(_TYPES)
        if types is not None:
            spec["policyTypes"] = types
        if draw(st.booleans()):
            spec["egress"] = [{}]
        return kind, raw_k8s_policy(ns, name, spec)
    if kind == "calico":
        return kind, raw_calico_policy(ns, name, _calico_spec(draw, global_=False))
    if kind == "gnp":
        return kind, raw_global_policy(name, _calico_spec(draw, global_=True))
    return kind, (ns, name)


def _apply(cluster: Cluster, kind: str, arg: Any) -> None:
    if kind == "ns":
        cluster.namespace(*arg)
    elif kind == "ns-":
        cluster.namespaces.delete(("", arg[0]))
    elif kind == "pod":
        ns, name, labels, kwargs = arg
        cluster.pod(ns, name, labels, **kwargs)
    elif kind == "pod-":
        cluster.pods.delete(arg)
    elif kind == "k8s":
        cluster.k8s(arg)
    elif kind == "k8s-":
        cluster.k8s_policies.delete(arg)
    elif kind == "calico":
        cluster.calico(arg)
    elif kind == "calico-":
        cluster.calico_policies.delete(arg)
    elif kind == "gnp":
        cluster.gnp(arg)
    else:
        cluster.global_policies.delete(("", arg[1]))


@st.composite
def _population(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Every namespace, pod and policy slot filled once, in a random order."""
    slots = [("ns", ns, "") for ns in _NAMESPACES]
    slots += [("pod", ns, pod) for ns in _NAMESPACES for pod in _PODS]
    slots += [(kind, ns, name) for kind in ("k8s", "calico") for ns in _NAMESPACES
              for name in ("a", "b")]
    slots += [("gnp", "", name) for name in ("a", "b")]
    return [_event_of(draw, *slot) for slot in draw(st.permutations(slots))]


@settings(max_examples=120, deadline=None)
@given(_population(), st.lists(_event(), min_size=1, max_size=40))
def test_incremental_equals_full_recomputation(population: list[tuple[str, Any]],
                                               events: list[tuple[str, Any]]) -> None:
    """After every event of a random sequence the index equals a brute-force oracle; at the end
    it also equals a fresh index wired to the same stores."""
    cluster = Cluster()
    for kind, arg in population:
        _apply(cluster, kind, arg)
    assert index_state(cluster.index) == oracle(cluster)
    for kind, arg in events:
        _apply(cluster, kind, arg)
        assert index_state(cluster.index) == oracle(cluster), (kind, arg)
    live = index_state(cluster.index)
    assert live == index_state(cluster.wire(Telemetry()))
    counts = {(s.kind, s.namespace, s.name): s.pods for s in cluster.index.selected_pods()}
    assert counts == {key: len(pods) for key, pods in live.selected.items()}
