"""The incremental policy index over real stores: the write-up's numbers, scopes, and exactness."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.model.policy import GLOBAL_KINDS, PolicyKind
from exporter.model.telemetry import Telemetry
from tests.policy.reference import (
    MYPOLICY,
    WRITEUP_PODS,
    Cluster,
    index_state,
    oracle,
    raw_calico_policy,
    raw_cluster_policy,
    raw_global_policy,
    raw_k8s_policy,
    raw_staged_global_policy,
    raw_staged_k8s_policy,
    raw_staged_policy,
    sample,
    series_oracle,
    v1_stored,
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
    cluster.stores.pods.delete(("guestbook", "redis-follower-5ffdf87b7d-4lqlr"))
    assert cluster.index.selected_count(key) == 0
    assert cluster.index.selected_count(("k8s", "guestbook", "mypolicy")) == 4
    assert index_state(cluster.index) == oracle(cluster)


def test_policy_type_change_and_deletion() -> None:
    """Changing a policy's types moves its pods between directions; deleting it frees them."""
    cluster = writeup_cluster()
    cluster.k8s({**MYPOLICY, "spec": {**MYPOLICY["spec"], "policyTypes": ["Egress"]}})
    iso = {s.namespace: s for s in cluster.index.isolation()}["guestbook"]
    assert (iso.ingress_isolated, iso.egress_isolated) == (0, 5)
    cluster.stores.k8s_policies.delete(("guestbook", "mypolicy"))
    cluster.stores.calico_policies.delete(("guestbook", "custom-deny-egress"))
    assert cluster.index.directions_of("guestbook", "frontend-795b566649-j4r75") == (0, 1)
    cluster.stores.calico_policies.delete(("guestbook", "default-allow-egress"))
    iso = {s.namespace: s for s in cluster.index.isolation()}["guestbook"]
    assert (iso.pods, iso.ingress_isolated, iso.egress_isolated) == (5, 0, 0)
    assert cluster.index.policy_keys() == []
    assert cluster.index.policy_counts() == {}
    assert not any(cluster.index.rule_counts().values())


def test_global_policy_namespace_and_service_account_selectors() -> None:
    """GNP namespaceSelector reads pcns.* (labels and name), serviceAccountSelector pcsa.* name
    (only while the ServiceAccount exists: Felix inherits its profile, ksa.<ns>.<sa>)."""
    cluster = writeup_cluster()
    cluster.namespace("guestbook", {"team": "web"})
    cluster.pod("kube-system", "coredns-6fb596b5df-p7mhq", {"k8s-app": "kube-dns"},
                service_account="coredns")
    cluster.service_account("kube-system", "coredns")
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
    cluster.stores.service_accounts.delete(("kube-system", "coredns"))
    assert index.selected_by(("global", "", "dns")) == set()
    cluster.namespace("guestbook", {"team": "shop"})
    cluster.namespace("testns", {"team": "web"})
    assert index.selected_by(("global", "", "web-team")) == {("testns", "testpod")}
    cluster.stores.namespaces.delete(("", "testns"))
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


def _nested(selector: str, depth: int = 2_000) -> str:
    return "(" * depth + selector + ")" * depth


def test_deeply_nested_selectors_in_every_field() -> None:
    """Issue 12, defect 1: selectors nested far past the ~330 parentheses that crashed the
    process with RecursionError, in spec.selector, serviceAccountSelector, a GNP's
    namespaceSelector and the rules' selector and namespaceSelector, are what Calico makes of
    them (it has no depth limit): the policies select what Felix would and count as valid.
    A deep one that does not parse is counted invalid, naming the field."""
    telemetry = Telemetry()
    cluster = Cluster(telemetry=telemetry)
    cluster.namespace("shop", {"team": "web"})
    cluster.pod("shop", "web-1", {"app": "web"}, service_account="web")
    cluster.pod("shop", "db-1", {"app": "db"})
    cluster.service_account("shop", "web", {"tier": "front"})
    cluster.calico(raw_calico_policy("shop", "deep", {
        "selector": _nested("!(" * 1_001 + "app == 'web'" + ")" * 1_001),
        "ingress": [{"action": "Allow",
                     "source": {"selector": _nested("app == 'db'"),
                                "namespaceSelector": _nested("team == 'web'")}}]}))
    cluster.calico(raw_calico_policy("shop", "deep-sa", {
        "serviceAccountSelector": _nested("tier == 'front'")}))
    cluster.gnp(raw_global_policy("deep-ns", {
        "namespaceSelector": _nested("team == 'web' && (app == 'db' || " * 300 + "all()"
                                     + ")" * 300)}))
    index = cluster.index
    assert index.selected_by(("calico", "shop", "deep")) == {("shop", "db-1")}
    assert index.selected_by(("calico", "shop", "deep-sa")) == {("shop", "web-1")}
    assert index.selected_by(("global", "", "deep-ns")) == {("shop", "web-1"), ("shop", "db-1")}
    assert sum(telemetry.invalid_objects.values()) == 0
    cluster.calico(raw_calico_policy("shop", "deep-sa", {
        "serviceAccountSelector": _nested("tier == 'front'")[:-1]}))
    cluster.calico(raw_calico_policy("shop", "deep", {
        "selector": "has(app)",
        "egress": [{"action": "Allow", "destination": {"selector": _nested("app == ")}}]}))
    assert index.selected_count(("calico", "shop", "deep-sa")) == 0
    assert index.selected_count(("calico", "shop", "deep")) == 2
    assert telemetry.invalid_objects["networkpolicies.crd.projectcalico.org"] == 2
    assert index_state(index) == oracle(cluster)


def test_names_and_tiers_as_calico_shows_them() -> None:
    """Stored names map to {tier, policy} as libcalico-go's ConvertK8sResourceToCalicoResource
    does (v3.31.0 and v3.32.1 resources.go): an object without the projectcalico.org/metadata
    annotation keeps its stored name (security.block stays security.block, as Calico <= 3.31
    required <tier>.<name> v3 names outside the default tier); with it, the v3 name it holds or,
    without one, the stored name less a default-tier "default." prefix."""
    cluster = writeup_cluster()
    cluster.gnp(raw_global_policy("security.block", {"tier": "security"}))
    cluster.gnp(v1_stored(raw_global_policy("default.allow", {}), "allow"))
    cluster.gnp({**raw_global_policy("default.legacy", {}), "metadata": {
        "name": "default.legacy", "annotations": {"projectcalico.org/metadata": "{}"}}})
    cluster.gnp(raw_global_policy("default.raw", {}))
    names = {(s.kind, s.name, s.tier) for s in cluster.index.selected_pods() if s.kind == "global"}
    assert names == {("global", "security.block", "security"), ("global", "allow", "default"),
                     ("global", "legacy", "default"), ("global", "default.raw", "default")}
    assert cluster.index.policy_counts()[("global", "", "security")] == 1


def test_same_name_in_two_tiers_is_two_series() -> None:
    """A pre-v3.32 default-tier policy and a v3.32 policy of the same name in tier security are
    two policies, each with its own selection, never a sum."""
    cluster = writeup_cluster()
    cluster.tier("security", 100, "Pass")
    cluster.gnp(v1_stored(raw_global_policy("default.allow-dns", {"selector": "has(run)"}),
                          "allow-dns"))
    cluster.gnp(raw_global_policy("allow-dns", {"tier": "security",
                                                "selector": "app == 'guestbook'"}))
    selected = {(s.kind, s.name, s.tier): s.pods for s in cluster.index.selected_pods()
                if s.kind == "global"}
    assert selected == {("global", "allow-dns", "default"): 2,
                        ("global", "allow-dns", "security"): 3}
    assert index_state(cluster.index) == oracle(cluster)


def test_migrating_names_show_once() -> None:
    """While kube-controllers' policy name migrator copies default.x to x (policy_name_migrator.go,
    v3.32.1), both stored objects are shown once, by the one stored under the v3 name."""
    cluster = writeup_cluster()
    cluster.calico(v1_stored(raw_calico_policy("guestbook", "default.redis", {
        "selector": "app == 'redis'"}), "redis"))
    cluster.calico(v1_stored(raw_calico_policy("guestbook", "redis", {
        "selector": "app == 'redis' && role == 'leader'"}), "redis"))
    shown = [s for s in cluster.index.selected_pods() if s.name == "redis"]
    assert [(s.kind, s.namespace, s.tier, s.pods) for s in shown] == [
        ("calico", "guestbook", "default", 1)]
    assert cluster.index.policy_counts()[("calico", "guestbook", "default")] == 3
    cluster.stores.calico_policies.delete(("guestbook", "redis"))
    shown = [s for s in cluster.index.selected_pods() if s.name == "redis"]
    assert [s.pods for s in shown] == [2]


def test_network_sets_are_counted() -> None:
    """NetworkSets per namespace and GlobalNetworkSets are counted, deletions included."""
    cluster = Cluster()
    cluster.network_set("a", "s1", {"x": "y"})
    cluster.network_set("a", "s2", {})
    cluster.network_set("b", "s1", {})
    cluster.stores.network_sets.delete(("b", "s1"))
    assert cluster.index.network_set_counts() == {("calico", "a"): 2}


def test_rewiring_replays_stores() -> None:
    """A second index wired to filled stores reaches the same state as the live one."""
    cluster = writeup_cluster()
    fresh = cluster.wire(Telemetry())
    assert index_state(fresh) == index_state(cluster.index)


# --------------------------------------------------------------------------------------------
# Tiers, staged policies, ClusterNetworkPolicy, service accounts


def test_tiers_in_felix_order() -> None:
    """Tiers sort as Felix's TierLess (felix/calc/policy_sorter.go, v3.32.1): existing tiers by
    order then name, tiers that do not exist last; the default tier is always there, the other
    built-in tiers when a policy is in them (with Calico's built-in order and action)."""
    cluster = Cluster()
    cluster.tier("security", 100, "Pass")
    cluster.tier("audit", 100)
    cluster.tier("late")
    cluster.policy("cluster", raw_cluster_policy("c", {
        "tier": "Baseline", "priority": 1, "subject": {"namespaces": {}}}))
    cluster.gnp(raw_global_policy("p", {"tier": "ghost"}))
    cluster.gnp(raw_global_policy("q", {"tier": "alpha-missing"}))
    tiers = [(t.name, t.order, t.default_action, t.exists) for t in cluster.index.tiers()]
    assert tiers == [
        ("audit", 100.0, "Deny", True),
        ("security", 100.0, "Pass", True),
        ("default", 1_000_000.0, "Deny", True),
        ("late", 1_000_000.0, "Deny", True),
        ("kube-baseline", 10_000_000.0, "Pass", True),
        ("alpha-missing", None, "Deny", False),
        ("ghost", None, "Deny", False),
    ]


def test_pass_tiers_and_staged_policies_never_isolate() -> None:
    """Felix renders the end-of-tier drop only for a tier with a non-staged policy whose default
    action is not Pass (felix/rules/endpoints.go, v3.32.1): a policy of a Pass tier and a staged
    policy select pods without isolating them; a tier switched to Deny isolates, incrementally."""
    cluster = writeup_cluster()
    cluster.tier("security", 100, "Pass")
    cluster.gnp(raw_global_policy("security.lockdown", {
        "tier": "security", "selector": "run == 'testpod'", "types": ["Ingress"]}))
    cluster.policy("staged", raw_staged_policy("testns", "lockdown", {"types": ["Egress"]}))
    index = cluster.index
    assert index.selected_by(("global", "", "security.lockdown")) == {
        ("default", "testpod"), ("testns", "testpod")}
    assert index.selected_count(("staged", "testns", "lockdown")) == 1
    assert index.directions_of("testns", "testpod") == (0, 0)
    cluster.tier("security", 100, "Deny")
    assert index.directions_of("testns", "testpod") == (1, 0)
    assert index_state(index) == oracle(cluster)
    cluster.stores.tiers.delete(("", "security"))  # a tier that does not exist drops too
    assert index.directions_of("testns", "testpod") == (1, 0)
    cluster.tier("security", 100, "Pass")
    assert index.directions_of("default", "testpod") == (0, 0)
    assert index_state(index) == oracle(cluster)


def test_policy_in_missing_tier_is_counted_and_kept() -> None:
    """A policy in a tier that does not exist is kept and isolates, as Felix keeps it (an
    invalid tier sorted last whose empty default action drops); once the tiers are listed it is
    logged and counted once, again after its tier is deleted, never while its tier exists."""
    telemetry = Telemetry()
    cluster = Cluster(telemetry=telemetry)
    cluster.namespace("shop")
    cluster.pod("shop", "web-1", {"app": "web"})
    cluster.calico(raw_calico_policy("shop", "p", {"tier": "ghost", "selector": "app == 'web'"}))
    resource = "networkpolicies.crd.projectcalico.org"
    assert telemetry.invalid_objects[resource] == 0  # tiers not listed yet
    cluster.tiers_listed()
    assert telemetry.invalid_objects[resource] == 1
    assert cluster.index.directions_of("shop", "web-1") == (1, 0)
    cluster.calico(raw_calico_policy("shop", "p", {"tier": "ghost", "selector": "has(app)"}))
    assert telemetry.invalid_objects[resource] == 1
    cluster.tier("ghost", 5, "Pass")
    assert cluster.index.directions_of("shop", "web-1") == (0, 0)
    cluster.stores.tiers.delete(("", "ghost"))
    assert telemetry.invalid_objects[resource] == 2
    assert cluster.index.selected_count(("calico", "shop", "p")) == 1
    assert index_state(cluster.index) == oracle(cluster)


def test_staged_actions_as_felix_gets_them() -> None:
    """Set, Learn and Ignore staged policies select as their enforced form; a Delete one never
    reaches Felix (updateprocessors/staged*processor.go, v3.32.1) and selects nothing; none
    isolates."""
    cluster = writeup_cluster()
    for action in ("Set", "Learn", "Ignore", "Delete"):
        cluster.policy("staged", raw_staged_policy("guestbook", action.lower(), {
            "stagedAction": action, **({} if action == "Delete" else {
                "selector": "app == 'redis'"})}))
        cluster.policy("staged_k8s", raw_staged_k8s_policy("guestbook", action.lower(), {
            "stagedAction": action, **({} if action == "Delete" else {
                "podSelector": {"matchLabels": {"app": "redis"}}})}))
        cluster.policy("staged_global", raw_staged_global_policy(action.lower(), {
            "stagedAction": action, **({} if action == "Delete" else {
                "selector": "has(run)"})}))
    index = cluster.index
    for kind, namespace, count in (("staged", "guestbook", 2), ("staged_k8s", "guestbook", 2),
                                   ("staged_global", "", 2)):
        for action in ("set", "learn", "ignore"):
            assert index.selected_count((kind, namespace, action)) == count  # type: ignore[arg-type]
        assert index.selected_count((kind, namespace, "delete")) == 0  # type: ignore[arg-type]
    assert index.directions_of("testns", "testpod") == (0, 0)
    staged = {(s.kind, s.name): (s.action, s.enforced_pods) for s in index.staged()}
    assert staged[("staged", "delete")] == ("Delete", 0)
    cluster.calico(raw_calico_policy("guestbook", "delete", {"selector": "app == 'guestbook'"}))
    staged = {(s.kind, s.name): (s.action, s.enforced_pods) for s in index.staged()}
    assert staged[("staged", "delete")] == ("Delete", 3)
    assert staged[("staged_k8s", "delete")] == ("Delete", 0)
    assert index_state(index) == oracle(cluster)


def test_cluster_network_policy_in_kube_admin() -> None:
    """A ClusterNetworkPolicy selects the pods of its subject in tier kube-admin (Pass: no
    isolation); its namespaces subject follows namespace relabelling."""
    cluster = writeup_cluster()
    cluster.policy("cluster", raw_cluster_policy("kube-system-internal", {
        "tier": "Admin", "priority": 10,
        "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}},
        "ingress": [{"action": "Accept", "from": [{"namespaces": {}}]}]}))
    cluster.policy("cluster", raw_cluster_policy("dns-pods", {
        "tier": "Baseline", "priority": 3,
        "subject": {"pods": {"namespaceSelector": {"matchLabels": {"team": "infra"}},
                             "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}},
        "egress": [{"action": "Deny", "to": [{"networks": ["198.18.0.0/15"]}]}]}))
    index = cluster.index
    assert index.selected_by(("cluster", "", "kube-system-internal")) == {
        ("kube-system", name) for ns, name, _ in WRITEUP_PODS if ns == "kube-system"}
    assert index.selected_count(("cluster", "", "dns-pods")) == 0
    cluster.namespace("kube-system", {"team": "infra"})
    assert index.selected_count(("cluster", "", "dns-pods")) == 2
    assert index.directions_of("kube-system", "coredns-6fb596b5df-p7mhq") == (0, 0)
    assert {(s.kind, s.tier) for s in index.selected_pods() if s.kind == "cluster"} == {
        ("cluster", "kube-admin"), ("cluster", "kube-baseline")}
    assert index_state(index) == oracle(cluster)


def test_service_account_labels_select_incrementally() -> None:
    """The docs' serviceAccountSelector role == "intern" selects the pods running as a service
    account labelled role: intern; relabelling, creating and deleting that ServiceAccount moves
    exactly its pods (tigera/docs calico/network-policy/policy-rules/service-accounts.mdx)."""
    cluster = Cluster()
    cluster.namespace("prod-engineering")
    cluster.namespace("other")
    for name, account in (("a", "intern"), ("b", "intern"), ("c", "senior"), ("d", "default")):
        cluster.pod("prod-engineering", name, {"app": "x"}, service_account=account)
    cluster.pod("other", "e", {"app": "x"}, service_account="intern")
    cluster.service_account("prod-engineering", "intern", {"role": "intern"})
    cluster.service_account("prod-engineering", "senior", {"role": "dev"})
    cluster.service_account("other", "intern", {"role": "intern"})
    cluster.calico(sample("service-accounts-docs-example.yaml"))
    cluster.gnp(raw_global_policy("interns", {"serviceAccountSelector": "role == 'intern'"}))
    index = cluster.index
    key = ("calico", "prod-engineering", "restrict-intern-access")
    assert index.selected_by(key) == {("prod-engineering", "a"), ("prod-engineering", "b")}
    assert index.selected_count(("global", "", "interns")) == 3
    cluster.service_account("prod-engineering", "senior", {"role": "intern"})
    assert index.selected_by(key) == {("prod-engineering", n) for n in "abc"}
    cluster.service_account("prod-engineering", "intern", {"role": "graduate"})
    assert index.selected_by(key) == {("prod-engineering", "c")}
    cluster.stores.service_accounts.delete(("prod-engineering", "senior"))
    assert index.selected_by(key) == set()
    assert index.selected_count(("global", "", "interns")) == 1
    assert index_state(index) == oracle(cluster)


# --------------------------------------------------------------------------------------------
# Incremental == full recomputation after random event sequences

_NAMESPACES = ["ns0", "ns1", "ns2"]
_PODS = ["p0", "p1", "p2", "p3"]
_ACCOUNTS = ["default", "sa1", "sa2"]
_TIERS = [None, "default", "security", "kube-admin", "ghost"]
"""``ghost`` never gets a Tier object; ``security`` and ``default`` come and go."""
_LABEL_MAPS = st.dictionaries(st.sampled_from(["app", "tier", "rev"]), st.sampled_from(["a", "b"]),
                              max_size=3)
"""``rev`` is read by no selector: a change of it alone must leave the selection as it is."""
_SELECTORS = st.sampled_from([
    "", "all()", "app == 'a'", "app != 'a'", "has(tier) && !has(app)", "tier in {'a', 'b'}",
    "pcns.team == 'x'", "projectcalico.org/serviceaccount == 'sa1'", "app == 'a' ||",
    "projectcalico.org/namespace == 'ns1'", "pcns.projectcalico.org/name == 'ns2'",
    "pcsa.role == 'intern'", "pcsa.projectcalico.org/name == 'sa2'",
])
_SUB_SELECTORS = st.sampled_from(["", "all()", "team == 'x'", "team != 'x'",
                                  "projectcalico.org/name == 'ns0'", "team = 'x'"])
_SA_SELECTORS = st.sampled_from(["", "projectcalico.org/name == 'sa1'", "all()",
                                 "role == 'intern'", "!has(role)", "role != 'intern'"])
_TYPES = st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]])
_STAGED_ACTIONS = st.sampled_from(["Set", "Set", "Delete", "Learn", "Ignore"])
_K8S_SELECTORS = st.one_of(
    st.builds(lambda labels: {"matchLabels": labels}, _LABEL_MAPS),
    st.builds(lambda op, values: {"matchExpressions": [
        {"key": "team", "operator": op, **({"values": values} if op in ("In", "NotIn") else {})}]},
        st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
        st.lists(st.sampled_from(["x", "y"]), min_size=1, max_size=2)),
)
_POLICY_KINDS = ["k8s", "calico", "gnp", "staged", "staged_global", "staged_k8s", "cluster"]


def _named(draw: st.DrawFn, raw: dict[str, Any], tier: str | None) -> dict[str, Any]:
    """Store the policy as some Calico release would: as is, or pre-v3.32 with its v3 name in
    the metadata annotation (stored name "default.<name>" in the default tier)."""
    name = raw["metadata"]["name"]
    style = draw(st.sampled_from(["v3.32", "v3.32", "v3.31", "bare-prefixed"]))
    if style == "v3.31" and tier in (None, "default"):
        return {**v1_stored(raw, name), "metadata": {
            **v1_stored(raw, name)["metadata"], "name": f"default.{name}"}}
    if style == "bare-prefixed" and tier in (None, "default"):
        return {**raw, "metadata": {**raw["metadata"], "name": f"default.{name}"}}
    return raw


def _calico_spec(draw: st.DrawFn, *, global_: bool, staged: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": draw(_SELECTORS),
                            "serviceAccountSelector": draw(_SA_SELECTORS)}
    tier = draw(st.sampled_from(_TIERS))
    if tier is not None:
        spec["tier"] = tier
    if global_:
        spec["namespaceSelector"] = draw(_SUB_SELECTORS)
        flag = draw(st.sampled_from([None, None, None, "doNotTrack", "preDNAT"]))
        if flag is not None:
            spec[flag] = True
            spec["applyOnForward"] = True
    if staged:
        spec["stagedAction"] = draw(_STAGED_ACTIONS)
    types = draw(_TYPES)
    if types is not None:
        spec["types"] = types
    if draw(st.booleans()):
        spec["egress"] = [{"action": draw(st.sampled_from(["Allow", "Deny", "Log", "Pass"]))}]
    return spec


def _k8s_spec(draw: st.DrawFn, *, staged: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {"matchLabels": draw(_LABEL_MAPS)}}
    types = draw(_TYPES)
    if types is not None:
        spec["policyTypes"] = types
    if draw(st.booleans()):
        spec["egress"] = [{}]
    if staged:
        spec["stagedAction"] = draw(_STAGED_ACTIONS)
    return spec


def _cluster_spec(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        subject: dict[str, Any] = {"namespaces": draw(_K8S_SELECTORS)}
    else:
        subject = {"pods": {"namespaceSelector": draw(_K8S_SELECTORS),
                            "podSelector": {"matchLabels": draw(_LABEL_MAPS)}}}
    spec: dict[str, Any] = {"tier": draw(st.sampled_from(["Admin", "Baseline"])),
                            "priority": draw(st.integers(0, 3)), "subject": subject}
    if draw(st.booleans()):
        spec["ingress"] = [{"action": "Deny", "from": [{"namespaces": {}}]}]
    return spec


@st.composite
def _event(draw: st.DrawFn) -> tuple[str, Any]:
    kind = draw(st.sampled_from(["ns", "ns-", "pod", "pod", "pod", "pod-", "sa", "sa", "sa-",
                                 "tier", "tier-", *_POLICY_KINDS,
                                 *(f"{k}-" for k in _POLICY_KINDS)]))
    pod = draw(st.sampled_from(_PODS)) if kind.startswith("pod") else ""
    ns = draw(st.sampled_from(_NAMESPACES))
    if kind.startswith("sa"):
        name = draw(st.sampled_from(_ACCOUNTS))
    elif kind.startswith("tier"):
        name = draw(st.sampled_from(["default", "security", "kube-admin"]))
    else:
        name = pod or draw(st.sampled_from(["a", "b"]))
    return _event_of(draw, kind, ns, name)


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
    if kind == "sa":
        return kind, (ns, name, draw(st.dictionaries(st.just("role"),
                                                     st.sampled_from(["intern", "dev"]))))
    if kind == "tier":
        return kind, (name, draw(st.sampled_from([None, 50, 100, 1_000_000])),
                      draw(st.sampled_from([None, "Deny", "Pass"])))
    if kind == "k8s":
        return kind, raw_k8s_policy(ns, name, _k8s_spec(draw, staged=False))
    if kind == "staged_k8s":
        return kind, raw_staged_k8s_policy(ns, name, _k8s_spec(draw, staged=True))
    if kind in ("calico", "staged"):
        spec = _calico_spec(draw, global_=False, staged=kind == "staged")
        make = raw_calico_policy if kind == "calico" else raw_staged_policy
        return kind, _named(draw, make(ns, name, spec), spec.get("tier"))
    if kind in ("gnp", "staged_global"):
        spec = _calico_spec(draw, global_=True, staged=kind == "staged_global")
        gmake = raw_global_policy if kind == "gnp" else raw_staged_global_policy
        return kind, _named(draw, gmake(name, spec), spec.get("tier"))
    if kind == "cluster":
        return kind, raw_cluster_policy(name, _cluster_spec(draw))
    return kind, (ns, name)


_KINDS: dict[str, PolicyKind] = {"gnp": "global"}


def _apply(cluster: Cluster, kind: str, arg: Any) -> None:
    if kind == "ns":
        cluster.namespace(*arg)
    elif kind == "ns-":
        cluster.stores.namespaces.delete(("", arg[0]))
    elif kind == "pod":
        ns, name, labels, kwargs = arg
        cluster.pod(ns, name, labels, **kwargs)
    elif kind == "pod-":
        cluster.stores.pods.delete(arg)
    elif kind == "sa":
        cluster.service_account(*arg)
    elif kind == "sa-":
        cluster.stores.service_accounts.delete(arg)
    elif kind == "tier":
        cluster.tier(*arg)
    elif kind == "tier-":
        cluster.stores.tiers.delete(("", arg[1]))
    elif kind.endswith("-"):
        policy_kind = _KINDS.get(kind[:-1], kind[:-1])
        store = cluster.store(policy_kind)  # type: ignore[arg-type]
        for name in (arg[1], f"default.{arg[1]}"):
            store.delete(("" if policy_kind in GLOBAL_KINDS else arg[0], name))
    else:
        cluster.policy(_KINDS.get(kind, kind), arg)  # type: ignore[arg-type]


@st.composite
def _population(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Every namespace, service account, pod and policy slot filled once, in a random order."""
    slots = [("ns", ns, "") for ns in _NAMESPACES]
    slots += [("sa", ns, sa) for ns in _NAMESPACES for sa in _ACCOUNTS]
    slots += [("tier", "", tier) for tier in ("default", "security")]
    slots += [("pod", ns, pod) for ns in _NAMESPACES for pod in _PODS]
    slots += [(kind, ns, name) for kind in ("k8s", "calico", "staged", "staged_k8s")
              for ns in _NAMESPACES for name in ("a", "b")]
    slots += [(kind, "", name) for kind in ("gnp", "staged_global", "cluster")
              for name in ("a", "b")]
    return [_event_of(draw, *slot) for slot in draw(st.permutations(slots))]


@settings(max_examples=120, deadline=None)
@given(_population(), st.lists(_event(), min_size=1, max_size=40))
def test_incremental_equals_full_recomputation(population: list[tuple[str, Any]],
                                               events: list[tuple[str, Any]]) -> None:
    """After every event of a random sequence (namespaces, service accounts and their labels,
    tiers, pods, and policies of every kind with every staged action, stored under pre- and
    post-v3.32 names) the index equals a brute-force oracle; at the end it also equals a fresh
    index wired to the same stores, and every series shows the oracle's count."""
    cluster = Cluster()
    cluster.tiers_listed()
    for kind, arg in population:
        _apply(cluster, kind, arg)
    assert index_state(cluster.index) == oracle(cluster)
    for kind, arg in events:
        _apply(cluster, kind, arg)
        assert index_state(cluster.index) == oracle(cluster), (kind, arg)
    live = index_state(cluster.index)
    assert live == index_state(cluster.wire(Telemetry()))
    counts = {(s.kind, s.namespace, s.tier, s.name): s.pods
              for s in cluster.index.selected_pods()}
    assert counts == series_oracle(cluster)
