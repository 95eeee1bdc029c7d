"""Parsing of Kubernetes and Calico policies and network sets: defaults, names, rule counts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from exporter.model import ParseError
from exporter.model.policy import (
    LabelSelector,
    RuleCount,
    parse_calico_network_policy,
    parse_global_network_policy,
    parse_global_network_set,
    parse_k8s_network_policy,
    parse_network_set,
)
from exporter.sim import calicoapi
from tests.policy.reference import (
    CUSTOM_DENY_EGRESS,
    DEFAULT_ALLOW_EGRESS,
    MYPOLICY,
    raw_calico_policy,
    raw_global_policy,
    raw_k8s_policy,
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


@pytest.mark.parametrize(("name", "tier", "display"), [
    ("default.allow-dns", None, "allow-dns"),
    ("default.allow-dns", "", "allow-dns"),
    ("security.block", "security", "block"),
    ("allow-dns", "security", "allow-dns"),
    ("default.x", "security", "default.x"),
    ("security.", "security", "security."),
])
def test_tier_and_pre_v3_32_names(name: str, tier: str | None, display: str) -> None:
    """Empty tier is default; a leading '<tier>.' (pre-v3.32 stored name) is stripped."""
    spec: dict[str, Any] = {} if tier is None else {"tier": tier}
    policy = parse_global_network_policy(raw_global_policy(name, spec))
    assert policy.tier == (tier or "default")
    assert (policy.name, policy.stored_name) == (display, name)


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
