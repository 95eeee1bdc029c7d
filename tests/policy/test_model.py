"""Parsing of Kubernetes and Calico policies and network sets: defaults, names, rule counts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from exporter.model import ParseError
from exporter.model.core import parse_service_account
from exporter.model.policy import (
    BUILTIN_TIERS,
    LabelSelector,
    RuleCount,
    Tier,
    parse_calico_network_policy,
    parse_cluster_network_policy,
    parse_global_network_policy,
    parse_global_network_set,
    parse_k8s_network_policy,
    parse_network_set,
    parse_staged_global_network_policy,
    parse_staged_k8s_network_policy,
    parse_staged_network_policy,
    parse_tier,
)
from exporter.sim import calicoapi
from tests.policy.reference import (
    CUSTOM_DENY_EGRESS,
    DEFAULT_ALLOW_EGRESS,
    MYPOLICY,
    raw_calico_policy,
    raw_cluster_policy,
    raw_global_policy,
    raw_k8s_policy,
    raw_staged_global_policy,
    raw_staged_k8s_policy,
    raw_staged_policy,
    sample,
)


def test_docs_sample_policy() -> None:
    """The Calico docs sample: tier default, both types, one Allow rule each way, its selectors."""
    policy = parse_calico_network_policy(sample("networkpolicy-docs-sample.yaml"))
    assert (policy.kind, policy.namespace, policy.name, policy.tier) == (
        "calico", "production", "allow-tcp-6379", "default")
    assert (policy.selector, policy.order, policy.ingress, policy.egress) == (
        "role == 'database'", None, True, True)
    assert policy.rules == (RuleCount("egress", "Allow", 1), RuleCount("ingress", "Allow", 1))
    assert policy.rule_selectors == (("spec.ingress[0].source.selector", "role == 'frontend'"),)


def test_writeup_policies() -> None:
    """The write-up's policies: mypolicy ingress-only over all pods; the two Calico egress ones."""
    mypolicy = parse_k8s_network_policy(MYPOLICY)
    assert (mypolicy.kind, mypolicy.namespace, mypolicy.name, mypolicy.tier) == (
        "k8s", "guestbook", "mypolicy", "default")
    assert mypolicy.pod_selector == LabelSelector()
    assert (mypolicy.ingress, mypolicy.egress) == (True, False)
    assert mypolicy.rules == (RuleCount("ingress", "Allow", 1),)
    deny = parse_calico_network_policy(CUSTOM_DENY_EGRESS)
    allow = parse_calico_network_policy(DEFAULT_ALLOW_EGRESS)
    assert (deny.order, deny.selector, deny.ingress, deny.egress) == (10.0, "", False, True)
    assert deny.rules == (RuleCount("egress", "Deny", 1),)
    assert (allow.order, allow.rules) == (20.0, (RuleCount("egress", "Allow", 1),))


@pytest.mark.parametrize(("spec", "types"), [
    ({}, (True, False)),
    ({"ingress": [{"action": "Allow"}]}, (True, False)),
    ({"egress": [{"action": "Deny"}]}, (False, True)),
    ({"ingress": [{"action": "Allow"}], "egress": [{"action": "Deny"}]}, (True, True)),
    ({"types": [], "egress": [{"action": "Deny"}]}, (False, True)),
    ({"types": ["Ingress"], "egress": [{"action": "Deny"}]}, (True, False)),
    ({"types": ["Egress", "Ingress"]}, (True, True)),
])
def test_calico_types_default_like_clientv3(spec: dict[str, Any],
                                            types: tuple[bool, bool]) -> None:
    """Missing types: no egress rules -> Ingress; egress only -> Egress; both -> both."""
    policy = parse_calico_network_policy(raw_calico_policy("ns", "p", spec))
    assert (policy.ingress, policy.egress) == types
    gnp = parse_global_network_policy(raw_global_policy("p", spec))
    assert (gnp.ingress, gnp.egress) == types


@pytest.mark.parametrize(("spec", "types"), [
    ({}, (True, False)),
    ({"egress": [{}]}, (True, True)),
    ({"ingress": [{}]}, (True, False)),
    ({"policyTypes": ["Egress"]}, (False, True)),
    ({"policyTypes": ["Ingress", "Egress"], "egress": []}, (True, True)),
])
def test_k8s_policy_types_default_like_the_api_server(spec: dict[str, Any],
                                                      types: tuple[bool, bool]) -> None:
    """Missing policyTypes: Ingress always, Egress when there are egress rules."""
    policy = parse_k8s_network_policy(raw_k8s_policy("ns", "p", {"podSelector": {}, **spec}))
    assert (policy.ingress, policy.egress) == types


# libcalico-go ConvertK8sResourceToCalicoResource (lib/backend/k8s/resources/resources.go, the same
# at v3.31.0 and v3.32.1): no projectcalico.org/metadata annotation -> the stored name; an
# annotation with a name -> that name; an annotation without one -> determinePolicyName (strip
# "default." in the default tier only). Names as Calico <= 3.31 stored them: names.TieredPolicyName
# (lib/names/policy.go at v3.31.0) turned a default-tier "x" into "default.x" and required
# "<tier>.<name>" outside the default tier, which is also the v3 name there.
METADATA = "projectcalico.org/metadata"


NAME_CASES = [
    ("default.allow-dns", None, '{"name":"allow-dns"}', "allow-dns"),
    ("default.allow-dns", "", '{"name":"allow-dns","creationTimestamp":null}', "allow-dns"),
    ("default.allow-dns", None, "{}", "allow-dns"),
    ("default.allow-dns", None, None, "default.allow-dns"),
    ("security.allow-dns", "security", '{"name":"security.allow-dns"}', "security.allow-dns"),
    ("security.allow-dns", "security", "{}", "security.allow-dns"),
    ("security.allow-dns", "security", None, "security.allow-dns"),
    ("allow-dns", "security", '{"name":"allow-dns"}', "allow-dns"),
    ("allow-dns", "security", None, "allow-dns"),
    ("default.x", "security", "{}", "default.x"),
]


@pytest.mark.parametrize(("name", "tier", "annotation", "shown"), NAME_CASES)
def test_policy_names_as_libcalico_go_converts_them(name: str, tier: str | None,
                                                    annotation: str | None, shown: str) -> None:
    """The name shown is the v3 name libcalico-go gives the stored object; empty tier is
    default; the stored name stays the key."""
    spec: dict[str, Any] = {} if tier is None else {"tier": tier}
    raw = raw_global_policy(name, spec)
    if annotation is not None:
        raw["metadata"]["annotations"] = {METADATA: annotation}
    for parse in (parse_global_network_policy, parse_staged_global_network_policy):
        policy = parse(raw)
        assert policy.tier == (tier or "default")
        assert (policy.name, policy.stored_name) == (shown, name)


@pytest.mark.parametrize(("name", "tier", "annotation", "shown"), NAME_CASES)
def test_policy_names_agree_with_the_calico_api_server(name: str, tier: str | None,
                                                       annotation: str | None, shown: str) -> None:
    """The emulator's Calico API server (sim/calicoapi.py ``to_v3``, after the same
    ``ConvertK8sResourceToCalicoResource``) shows each stored policy under the name the model
    gives it, and the model reads that projectcalico.org/v3 view as it is (Calico converts only
    what it reads from crd.projectcalico.org/v1: customresource.go convertResourceToKVPair,
    master 87c1590), so every flavour shows one name."""
    spec: dict[str, Any] = {} if tier is None else {"tier": tier}
    raw = raw_global_policy(name, spec)
    raw["apiVersion"] = calicoapi.V1_API
    if annotation is not None:
        raw["metadata"]["annotations"] = {METADATA: annotation}
    v3 = calicoapi.to_v3(raw)
    assert v3["metadata"]["name"] == shown
    assert parse_global_network_policy(v3).name == shown
    assert parse_global_network_policy(raw).name == shown


def test_v3_objects_are_read_as_they_are() -> None:
    """A projectcalico.org/v3 object is never converted: an annotation that happens to be named
    projectcalico.org/metadata changes neither its name nor its labels."""
    raw = raw_global_policy("default.p", {})
    raw["apiVersion"] = "projectcalico.org/v3"
    raw["metadata"]["annotations"] = {METADATA: '{"name":"q","labels":{"a":"b"}}'}
    assert parse_global_network_policy(raw).name == "default.p"
    gset = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
            "metadata": {"name": "s", "labels": {"x": "y"}, "annotations": {METADATA: "{"}},
            "spec": {"nets": []}}
    assert dict(parse_global_network_set(gset).labels) == {"x": "y"}


@pytest.mark.parametrize(("annotations", "message"), [
    ({METADATA: "{"}, "is not JSON object metadata"),
    ({METADATA: "[]"}, "is not JSON object metadata"),
    ({METADATA: '{"name": 3}'}, "name is not a string"),
    ({METADATA: 7}, "is not a string"),
    (["x"], "metadata.annotations is not a map"),
])
def test_bad_metadata_annotation_raises(annotations: object, message: str) -> None:
    """libcalico-go fails to convert an object whose metadata annotation does not decode."""
    raw = raw_calico_policy("ns", "default.p", {})
    raw["metadata"]["annotations"] = annotations
    with pytest.raises(ParseError, match=message):
        parse_calico_network_policy(raw)


def test_gnp_selectors_and_rule_selectors() -> None:
    """A GNP keeps namespaceSelector, serviceAccountSelector and every rule selector with path."""
    gnp = parse_global_network_policy(raw_global_policy("g", {
        "order": 5.5, "selector": "app == 'x'", "namespaceSelector": "team == 'a'",
        "serviceAccountSelector": "role == 'r'",
        "ingress": [{"action": "Pass", "source": {
            "notSelector": "x == 'y'", "namespaceSelector": "global()",
            "serviceAccounts": {"names": ["a"], "selector": "s == 't'"}}}],
        "egress": [{"action": "Log"}, {"action": "Log", "destination": {"selector": "d == 'e'"}}],
    }))
    assert (gnp.namespace, gnp.order, gnp.namespace_selector, gnp.service_account_selector) == (
        "", 5.5, "team == 'a'", "role == 'r'")
    assert gnp.rules == (RuleCount("egress", "Log", 2), RuleCount("ingress", "Pass", 1))
    assert gnp.rule_selectors == (
        ("spec.ingress[0].source.notSelector", "x == 'y'"),
        ("spec.ingress[0].source.namespaceSelector", "global()"),
        ("spec.ingress[0].source.serviceAccounts.selector", "s == 't'"),
        ("spec.egress[1].destination.selector", "d == 'e'"),
    )


def test_gnp_host_endpoint_flags() -> None:
    """doNotTrack and preDNAT are read from GNPs (bools only) and mark host-endpoint policies."""
    gnp = parse_global_network_policy(raw_global_policy("g", {"preDNAT": True}))
    assert (gnp.pre_dnat, gnp.do_not_track, gnp.host_endpoints_only) == (True, False, True)
    assert not parse_global_network_policy(raw_global_policy("g", {})).host_endpoints_only
    with pytest.raises(ParseError, match="is not a boolean"):
        parse_global_network_policy(raw_global_policy("g", {"doNotTrack": "yes"}))
    policy = parse_calico_network_policy(raw_calico_policy("ns", "p", {"doNotTrack": True}))
    assert not policy.host_endpoints_only


def test_namespaced_policy_ignores_namespace_selector() -> None:
    """namespaceSelector belongs to GNPs only; a NetworkPolicy's scope is its namespace."""
    policy = parse_calico_network_policy(
        raw_calico_policy("ns", "p", {"namespaceSelector": "a == 'b'"}))
    assert policy.namespace_selector == ""


def _with(raw: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


@pytest.mark.parametrize(("path", "value", "message"), [
    (("spec", "egress", 0, "action"), "Reject", "is not one of"),
    (("spec", "egress", 0, "action"), None, "is not one of"),
    (("spec", "types"), ["Forward"], "is not Ingress or Egress"),
    (("spec", "order"), "10", "is not a number"),
    (("spec", "order"), True, "is not a number"),
    (("spec", "selector"), 3, "is not a string"),
    (("spec", "egress"), {"action": "Allow"}, "is not a list"),
    (("spec", "egress", 0, "destination"), ["x"], "is not an object"),
    (("metadata", "namespace"), None, "metadata.namespace missing"),
    (("metadata", "name"), None, "metadata.name missing"),
    (("spec",), [], "spec is not an object"),
])
def test_malformed_calico_policies_raise(path: tuple[Any, ...], value: object,
                                         message: str) -> None:
    """Wrong shapes raise ParseError with the field and the reason."""
    with pytest.raises(ParseError, match=message):
        parse_calico_network_policy(_with(CUSTOM_DENY_EGRESS, path, value))


@pytest.mark.parametrize(("path", "value", "message"), [
    (("spec", "policyTypes"), ["Both"], "is not Ingress or Egress"),
    (("spec", "ingress", 0, "from", 0, "namespaceSelector", "matchExpressions"),
     [{"key": "a", "operator": "Is"}], "operator 'Is'"),
    (("spec", "podSelector"), "app=x", "is not an object"),
    (("metadata", "namespace"), "", "metadata.namespace missing"),
])
def test_malformed_k8s_policies_raise(path: tuple[Any, ...], value: object,
                                      message: str) -> None:
    """Wrong shapes, unknown policy types and bad peer selectors raise ParseError."""
    with pytest.raises(ParseError, match=message):
        parse_k8s_network_policy(_with(MYPOLICY, path, value))


def test_network_sets() -> None:
    """Network sets keep labels and the number of nets; bad nets raise ParseError."""
    raw = {"metadata": {"name": "blocked", "namespace": "guestbook", "labels": {"role": "x"}},
           "spec": {"nets": ["8.0.0.0/8", "2001:db8::/32", "198.18.0.1"]}}
    nset = parse_network_set(raw)
    assert (nset.namespace, nset.name, dict(nset.labels), nset.nets) == (
        "guestbook", "blocked", {"role": "x"}, 3)
    gset = parse_global_network_set(raw)
    assert (gset.namespace, gset.nets) == ("", 3)
    with pytest.raises(ParseError, match="not an address or CIDR"):
        parse_network_set(_with(raw, ("spec", "nets"), ["8.0.0.0/33"]))
    with pytest.raises(ParseError, match=r"metadata\.namespace missing"):
        parse_network_set(_with(raw, ("metadata", "namespace"), None))


def test_network_set_labels_in_either_group() -> None:
    """The GlobalNetworkSet example of Calico's operator chart (projectcalico/calico v3.32.1,
    charts/tigera-operator/templates/tigera-operator/02-configmap-calico-resources.yaml) has the
    same labels read natively from projectcalico.org/v3 and from the crd.projectcalico.org/v1
    object Calico's API stores for it, whose labels live in the projectcalico.org/metadata
    annotation (resources.go ConvertCalicoResourceToK8sResource); a malformed annotation is an
    invalid object."""
    v3 = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
          "metadata": {"name": "a-name-for-the-set", "labels": {"role": "external-database"}},
          "spec": {"nets": ["198.51.100.0/28", "203.0.113.0/24"]}}
    stored = calicoapi.to_v1(v3)
    assert "labels" not in stored["metadata"]
    for raw in (v3, stored):
        gset = parse_global_network_set(raw)
        assert dict(gset.labels) == {"role": "external-database"}
        assert gset.nets == 2
    stored["metadata"]["labels"] = {"projectcalico.org/namespace": "x"}
    assert dict(parse_global_network_set(stored).labels) == {
        "role": "external-database", "projectcalico.org/namespace": "x"}
    stored["metadata"]["annotations"]["projectcalico.org/metadata"] = "{not json"
    with pytest.raises(ParseError, match=r"projectcalico\.org/metadata"):
        parse_global_network_set(stored)


# --------------------------------------------------------------------------------------------
# Staged policies, ClusterNetworkPolicy, tiers, service accounts


@pytest.mark.parametrize(("spec", "action"), [
    ({}, "Set"), ({"stagedAction": "Set"}, "Set"), ({"stagedAction": "Delete"}, "Delete"),
    ({"stagedAction": "Learn"}, "Learn"), ({"stagedAction": "Ignore"}, "Ignore"),
])
def test_staged_actions(spec: dict[str, Any], action: str) -> None:
    """stagedAction is kept (Set when absent: the CRD default) on all three staged kinds."""
    staged = parse_staged_network_policy(raw_staged_policy("ns", "p", spec))
    assert (staged.kind, staged.staged_action, staged.tier) == ("staged", action, "default")
    gstaged = parse_staged_global_network_policy(raw_staged_global_policy("p", spec))
    assert (gstaged.kind, gstaged.staged_action, gstaged.namespace) == ("staged_global", action, "")
    kstaged = parse_staged_k8s_network_policy(raw_staged_k8s_policy("ns", "p", spec))
    assert (kstaged.kind, kstaged.staged_action, kstaged.tier) == ("staged_k8s", action, "default")
    assert parse_calico_network_policy(raw_calico_policy("ns", "p", {})).staged_action is None


@pytest.mark.parametrize("action", ["Enforce", "delete", 3])
def test_unknown_staged_action_raises(action: object) -> None:
    """An unknown stagedAction is a malformed object (the CRD enum: Set, Delete, Learn, Ignore)."""
    for parse, raw in ((parse_staged_network_policy, raw_staged_policy("ns", "p", {})),
                       (parse_staged_global_network_policy, raw_staged_global_policy("p", {})),
                       (parse_staged_k8s_network_policy, raw_staged_k8s_policy("ns", "p", {}))):
        raw["spec"]["stagedAction"] = action
        with pytest.raises(ParseError, match=r"spec\.stagedAction"):
            parse(raw)


def test_cluster_network_policy() -> None:
    """Admin/Baseline map to kube-admin/kube-baseline, priority is the order, Accept counts as
    Allow, types follow the rules (K8sClusterNetworkPolicyToCalico, clusterNetPolicyTypes at
    v3.32.1; no rules at all is both for Felix)."""
    cnp = parse_cluster_network_policy(raw_cluster_policy("c", {
        "tier": "Baseline", "priority": 7,
        "subject": {"pods": {"podSelector": {"matchLabels": {"app": "db"}}}},
        "egress": [{"action": "Accept", "to": [{"networks": ["198.18.0.0/16"]}]},
                   {"action": "Pass", "to": [{"pods": {"namespaceSelector": {},
                                                        "podSelector": {}}}]}]}))
    assert (cnp.kind, cnp.namespace, cnp.name, cnp.tier, cnp.order) == (
        "cluster", "", "c", "kube-baseline", 7.0)
    assert (cnp.namespaces, cnp.pods) == (None, LabelSelector((("app", "db"),)))
    assert (cnp.ingress, cnp.egress) == (False, True)
    assert cnp.rules == (RuleCount("egress", "Allow", 1), RuleCount("egress", "Pass", 1))
    admin = parse_cluster_network_policy(raw_cluster_policy("a", {
        "tier": "Admin", "priority": 0, "subject": {"namespaces": {}}}))
    assert (admin.tier, admin.namespaces, admin.ingress, admin.egress) == (
        "kube-admin", LabelSelector(), True, True)


@pytest.mark.parametrize(("spec", "message"), [
    ({"tier": "Developer", "priority": 1, "subject": {"namespaces": {}}},
     "spec.tier 'Developer' is not Admin or Baseline"),
    ({"priority": 1, "subject": {"namespaces": {}}}, "spec.tier None is not Admin or Baseline"),
    ({"tier": "Admin", "priority": 1, "subject": {}},
     "spec.subject has neither namespaces nor pods"),
    ({"tier": "Admin", "priority": 1},
     "spec.subject has neither namespaces nor pods"),
    ({"tier": "Admin", "priority": 1, "subject": {"namespaces": {"matchExpressions": [
        {"key": "team", "operator": "Equals", "values": ["a"]}]}}},
     "spec.subject.namespaces.matchExpressions\\[0\\].operator 'Equals'"),
    ({"tier": "Admin", "priority": 1, "subject": {"pods": {"podSelector": {"matchExpressions": [
        {"key": "app", "operator": "In"}]}}}}, "operator In needs values"),
    ({"tier": "Admin", "priority": "1", "subject": {"namespaces": {}}}, "is not an integer"),
    ({"tier": "Admin", "priority": 1, "subject": {"namespaces": {}},
      "ingress": [{"action": "Allow", "from": []}]}, "is not one of Accept, Deny, Pass"),
])
def test_malformed_cluster_network_policies_raise(spec: dict[str, Any], message: str) -> None:
    """Where Calico skips a ClusterNetworkPolicy (unknown tier, no subject) or would widen it (an
    unknown selector operator), ParseError says why."""
    with pytest.raises(ParseError, match=message):
        parse_cluster_network_policy(raw_cluster_policy("c", spec))


@pytest.mark.parametrize(("spec", "tier"), [
    ({}, Tier("t", 1_000_000.0, "Deny")),
    ({"order": 100, "defaultAction": "Pass"}, Tier("t", 100.0, "Pass")),
    ({"order": 2.5, "defaultAction": "Deny"}, Tier("t", 2.5, "Deny")),
    ({"defaultAction": "Log"}, Tier("t", 1_000_000.0, "Deny")),
])
def test_tiers_defaulted_like_libcalico_go(spec: dict[str, Any], tier: Tier) -> None:
    """DefaultTierFields (lib/resources/tier.go): no order is 1,000,000, no action Deny; Felix
    reads any action but Pass as Deny (ConvertTierV3ToV1Value, tierprocessor.go)."""
    assert parse_tier({"metadata": {"name": "t"}, "spec": spec}) == tier


def test_builtin_tiers_are_calicos() -> None:
    """kube-admin 1000 Pass, default 1,000,000 Deny, kube-baseline 10,000,000 Pass
    (api/pkg/apis/projectcalico/v3/tier.go and clientv3 EnsureInitialized, v3.32.1)."""
    assert {
        "kube-admin": Tier("kube-admin", 1000.0, "Pass"),
        "default": Tier("default", 1_000_000.0, "Deny"),
        "kube-baseline": Tier("kube-baseline", 10_000_000.0, "Pass"),
    } == BUILTIN_TIERS
    with pytest.raises(ParseError, match=r"spec\.order"):
        parse_tier({"metadata": {"name": "t"}, "spec": {"order": "first"}})


def test_service_account_is_lean() -> None:
    """A ServiceAccount keeps its namespace, name and labels only."""
    sa = parse_service_account({"metadata": {"name": "intern", "namespace": "prod",
                                             "labels": {"role": "intern"}},
                                "secrets": [{"name": "token"}],
                                "automountServiceAccountToken": True})
    assert (sa.namespace, sa.name, dict(sa.labels)) == ("prod", "intern", {"role": "intern"})
    assert set(type(sa).__slots__) == {"namespace", "name", "labels"}
    with pytest.raises(ParseError, match=r"metadata\.namespace missing"):
        parse_service_account({"metadata": {"name": "x"}})


def test_docs_staged_policy_sample_in_the_v3_shape() -> None:
    """The Calico docs' StagedNetworkPolicy sample (projectcalico.org/v3, no stored-name
    annotation): its v3 name as written, tier internal-access, stagedAction defaulted to Set."""
    staged = parse_staged_network_policy(sample("stagednetworkpolicy-docs-sample.yaml"))
    assert (staged.kind, staged.namespace, staged.name, staged.tier, staged.staged_action) == (
        "staged", "production", "internal-access.allow-tcp-6379", "internal-access", "Set")
    assert (staged.ingress, staged.egress, staged.selector) == (True, True, "role == 'database'")
    assert staged.rules == (RuleCount("egress", "Allow", 1), RuleCount("ingress", "Allow", 1))
