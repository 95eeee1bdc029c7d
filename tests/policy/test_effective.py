"""Effective endpoint selectors, text for text as Calico's update processors build them."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.model.policy import (
    parse_calico_network_policy,
    parse_cluster_network_policy,
    parse_global_network_policy,
    parse_k8s_network_policy,
    parse_staged_global_network_policy,
    parse_staged_k8s_network_policy,
    parse_staged_network_policy,
)
from exporter.policy.effective import (
    EndpointLabels,
    PolicySelectorError,
    effective_selector,
    entity_rule_selector,
)
from exporter.policy.selector import SelectorCache
from tests.policy.reference import (
    raw_calico_policy,
    raw_cluster_policy,
    raw_global_policy,
    raw_k8s_policy,
    raw_staged_global_policy,
    raw_staged_k8s_policy,
    raw_staged_policy,
    sample,
)

SELECTOR = "mylabel == 'selectme'"


# Expected strings from globalnetworkpolicyprocessor_test.go (projectcalico/calico).
@pytest.mark.parametrize(("spec", "expected"), [
    ({"selector": SELECTOR}, "mylabel == 'selectme'"),
    ({"selector": SELECTOR, "serviceAccountSelector": "role == 'development'"},
     "(mylabel == 'selectme') && pcsa.role == \"development\""),
    ({"selector": SELECTOR, "serviceAccountSelector": "all()"},
     "(mylabel == 'selectme') && has(projectcalico.org/serviceaccount)"),
    ({"selector": SELECTOR, "namespaceSelector": "name == 'testing'"},
     "(mylabel == 'selectme') && pcns.name == \"testing\""),
    ({"selector": SELECTOR, "namespaceSelector": "all()"},
     "(mylabel == 'selectme') && has(projectcalico.org/namespace)"),
    ({"selector": SELECTOR, "namespaceSelector": "name == 'testing'",
      "serviceAccountSelector": "role == 'development'"},
     "((mylabel == 'selectme') && pcns.name == \"testing\") && pcsa.role == \"development\""),
    ({"serviceAccountSelector": "role == 'development'"}, "pcsa.role == \"development\""),
    ({"namespaceSelector": "name == 'testing'"}, "pcns.name == \"testing\""),
    ({"namespaceSelector": "name == 'testing'", "serviceAccountSelector": "role == 'development'"},
     "(pcns.name == \"testing\") && pcsa.role == \"development\""),
])
def test_global_policy_selectors_match_calico(spec: dict[str, Any], expected: str) -> None:
    """GNP selector, pcns./pcsa.-prefixed sub-selectors, all() rewritten, as Calico's tests say."""
    gnp = parse_global_network_policy(raw_global_policy("p", spec))
    assert effective_selector(gnp, SelectorCache()) == expected


def test_global_all_rewrite_is_textual_like_calico() -> None:
    """Calico replaces the text all() everywhere in the combined selector, strings included."""
    gnp = parse_global_network_policy(raw_global_policy("p", {
        "selector": "all() && a == 'all()'", "namespaceSelector": "all()"}))
    assert effective_selector(gnp, SelectorCache()) == (
        "(has(projectcalico.org/namespace) && a == 'has(projectcalico.org/namespace)') && "
        "has(projectcalico.org/namespace)")


@pytest.mark.parametrize(("spec", "expected"), [
    ({"selector": SELECTOR}, "(mylabel == 'selectme') && projectcalico.org/namespace == 'default'"),
    ({}, "projectcalico.org/namespace == 'default'"),
    ({"selector": SELECTOR, "serviceAccountSelector": "role == 'development'"},
     "((mylabel == 'selectme') && projectcalico.org/namespace == 'default') && "
     "pcsa.role == \"development\""),
])
def test_namespaced_policy_selectors(spec: dict[str, Any], expected: str) -> None:
    """NetworkPolicy: the namespace term after the selector, then the pcsa. SA selector."""
    policy = parse_calico_network_policy(raw_calico_policy("default", "p", spec))
    assert effective_selector(policy, SelectorCache()) == expected


def test_k8s_policy_selector() -> None:
    """A Kubernetes policy: Calico's translation of podSelector, then the namespace term."""
    policy = parse_k8s_network_policy(raw_k8s_policy("guestbook", "p", {
        "podSelector": {"matchLabels": {"app": "redis"}}}))
    assert effective_selector(policy, SelectorCache()) == (
        "(projectcalico.org/orchestrator == 'k8s' && app == 'redis') && "
        "projectcalico.org/namespace == 'guestbook'")


@pytest.mark.parametrize(("spec", "field", "column"), [
    ({"selector": "a == "}, "spec.selector", 6),
    ({"namespaceSelector": "name 'testing'"}, "spec.namespaceSelector", 6),
    ({"serviceAccountSelector": "role 'development'"}, "spec.serviceAccountSelector", 6),
])
def test_bad_sub_selectors_name_field_and_column(spec: dict[str, Any], field: str,
                                                 column: int) -> None:
    """Where Calico would drop a bad sub-selector, the policy is refused with field and column."""
    gnp = parse_global_network_policy(raw_global_policy("p", spec))
    with pytest.raises(PolicySelectorError) as info:
        effective_selector(gnp, SelectorCache())
    assert (info.value.field, info.value.error.column) == (field, column)
    assert str(info.value).startswith(f"{field}: ")


def test_endpoint_labels_precedence() -> None:
    """Implicit labels win over the pod's, which win over namespace and SA profile labels; the SA
    profile (pcsa.<label>, pcsa.projectcalico.org/name) exists only with its ServiceAccount."""
    accounts = {"shop": {"front": {"role": "intern", "projectcalico.org/name": "x"}}}
    labels = EndpointLabels(
        {"app": "web", "projectcalico.org/namespace": "fake", "pcns.team": "pod-says",
         "pcsa.team": "pod-says"},
        namespace="shop", service_account="front",
        namespace_labels={"team": "ns-says", "env": "prod", "projectcalico.org/name": "x"},
        accounts=accounts)
    assert labels.get("app") == "web"
    assert labels.get("projectcalico.org/namespace") == "shop"
    assert labels.get("projectcalico.org/orchestrator") == "k8s"
    assert labels.get("projectcalico.org/serviceaccount") == "front"
    assert labels.get("pcns.team") == "pod-says"
    assert labels.get("pcns.env") == "prod"
    assert labels.get("pcns.projectcalico.org/name") == "shop"
    assert labels.get("pcsa.projectcalico.org/name") == "front"
    assert labels.get("pcsa.role") == "intern"
    assert labels.get("pcsa.team") == "pod-says"
    assert labels.get("pcsa.other") is None
    assert labels.get("projectcalico.org/other") is None
    assert labels.get("env") is None
    orphan = EndpointLabels({}, namespace="shop", service_account="gone", accounts=accounts)
    assert orphan.get("pcsa.projectcalico.org/name") is None
    assert orphan.get("projectcalico.org/serviceaccount") == "gone"


# ClusterNetworkPolicy: K8sClusterNetworkPolicyToCalico (libcalico-go/lib/backend/k8s/conversion/
# clusternetworkpolicy.go, v3.32.1) makes a global policy with selector k8sSelectorToCalico(pods,
# SelectorPod) and namespaceSelector k8sSelectorToCalico(namespaces, SelectorNamespace), which
# ConvertGlobalNetworkPolicyV3ToV1Value (globalnetworkpolicyprocessor.go) combines.
@pytest.mark.parametrize(("subject", "expected"), [
    ({"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}},
     "(projectcalico.org/orchestrator == 'k8s') && "
     "pcns.kubernetes.io/metadata.name == \"kube-system\""),
    ({"namespaces": {}},
     "(projectcalico.org/orchestrator == 'k8s') && has(projectcalico.org/namespace)"),
    ({"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "db"}}}},
     "(projectcalico.org/orchestrator == 'k8s' && app == 'db') && "
     "has(projectcalico.org/namespace)"),
    ({"pods": {"namespaceSelector": {"matchExpressions": [
        {"key": "team", "operator": "In", "values": ["a", "b"]}]},
               "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}},
     "(projectcalico.org/orchestrator == 'k8s' && has(app)) && pcns.team in {\"a\", \"b\"}"),
])
def test_cluster_network_policy_selectors(subject: dict[str, Any], expected: str) -> None:
    """A ClusterNetworkPolicy subject becomes Calico's global selector, text for text."""
    cnp = parse_cluster_network_policy(raw_cluster_policy(
        "c", {"tier": "Admin", "priority": 1, "subject": subject}))
    assert effective_selector(cnp, SelectorCache()) == expected


def test_staged_policies_select_like_their_enforced_form() -> None:
    """Staged policies are converted to their enforced form first (ConvertStagedPolicyToEnforced
    and friends in api/pkg/apis/projectcalico/v3), so their selectors read the same."""
    cache = SelectorCache()
    spec = {"selector": SELECTOR, "serviceAccountSelector": "role == 'development'"}
    staged = parse_staged_network_policy(raw_staged_policy("default", "p", spec))
    enforced = parse_calico_network_policy(raw_calico_policy("default", "p", spec))
    assert effective_selector(staged, cache) == effective_selector(enforced, cache)
    gspec = {"selector": SELECTOR, "namespaceSelector": "name == 'testing'"}
    assert effective_selector(parse_staged_global_network_policy(
        raw_staged_global_policy("p", gspec)), cache) == effective_selector(
        parse_global_network_policy(raw_global_policy("p", gspec)), cache)
    kspec = {"podSelector": {"matchLabels": {"app": "redis"}}}
    assert effective_selector(parse_staged_k8s_network_policy(
        raw_staged_k8s_policy("guestbook", "p", kspec)), cache) == effective_selector(
        parse_k8s_network_policy(raw_k8s_policy("guestbook", "p", kspec)), cache)


# Expected strings from libcalico-go/lib/backend/syncersv1/updateprocessors/rules_test.go
# (v3.32.1): "should parse a serviceaccount match", "... with global namespace and no namespace
# selector", "should parse a rule with both a selector and namespace selector", "should parse a
# complex namespace selector", and the first case's source and destination (whose selector,
# "mylabel = value1", Calico passes through unparsed: written valid here, as we parse it).
@pytest.mark.parametrize(("namespace", "entity", "expected"), [
    ("namespace", {"serviceAccounts": {"names": ["sa1", "sa2"], "selector": "key == 'value1'"}},
     "(projectcalico.org/namespace == 'namespace') && "
     "((pcsa.key == \"value1\") && (projectcalico.org/serviceaccount in {\"sa1\", \"sa2\"}))"),
    ("namespace", {"namespaceSelector": "nskey == 'nsvalue'",
                   "serviceAccounts": {"names": ["sa3"], "selector": "key == 'value2'"}},
     "(pcns.nskey == \"nsvalue\") && "
     "((pcsa.key == \"value2\") && (projectcalico.org/serviceaccount in {\"sa3\"}))"),
    ("", {"serviceAccounts": {"names": ["sa1", "sa2"], "selector": "key == 'value1'"}},
     "(pcsa.key == \"value1\") && (projectcalico.org/serviceaccount in {\"sa1\", \"sa2\"})"),
    ("namespace", {"selector": "projectcalico.org/orchestrator == 'k8s'",
                   "namespaceSelector": "key == 'value'"},
     "(pcns.key == \"value\") && (projectcalico.org/orchestrator == 'k8s')"),
    ("namespace", {"namespaceSelector": "!has(key) || (has(key) && !key in {'value'})"},
     "(!has(pcns.key) || (has(pcns.key) && !pcns.key in {\"value\"}))"),
    ("namespace2", {"selector": "mylabel == 'value1'", "notSelector": "has(label1)"},
     "(projectcalico.org/namespace == 'namespace2') && (mylabel == 'value1')"),
    ("namespace2", {"notSelector": "has(label2)"},
     "projectcalico.org/namespace == 'namespace2'"),
    ("", {"selector": "has(foo)"}, "has(foo)"),
])
def test_entity_rule_selectors_match_calico(namespace: str, entity: dict[str, Any],
                                            expected: str) -> None:
    """A rule side's selector as GetEntityRuleSelector builds it, service accounts included."""
    spec = {"ingress": [{"action": "Allow", "source": entity}]}
    policy = (parse_calico_network_policy(raw_calico_policy(namespace, "p", spec)) if namespace
              else parse_global_network_policy(raw_global_policy("p", spec)))
    (rule,) = policy.entity_rules
    assert entity_rule_selector(rule, policy.namespace, SelectorCache()) == expected


def test_service_account_docs_example_selects_the_intern_pods() -> None:
    """Calico's docs example "restrict-intern-access" (tigera/docs calico/network-policy/
    policy-rules/service-accounts.mdx): serviceAccountSelector role == "intern" applies to the pods
    running as a service account labelled role: intern, and its rules' serviceAccounts.selector
    matches the same pods (pcsa.role), not the others."""
    policy = parse_calico_network_policy(sample("service-accounts-docs-example.yaml"))
    cache = SelectorCache()
    accounts = {"prod-engineering": {"intern": {"role": "intern"}, "senior": {"role": "dev"}}}

    def pod(account: str, namespace: str = "prod-engineering") -> EndpointLabels:
        return EndpointLabels({"app": "x"}, namespace=namespace, service_account=account,
                              accounts=accounts)

    text = effective_selector(policy, cache)
    assert text == "(projectcalico.org/namespace == 'prod-engineering') && pcsa.role == \"intern\""
    applies = cache.parse(text)
    assert [applies.predicate(pod(a).get) for a in ("intern", "senior", "default")] == [
        True, False, False]
    assert not applies.predicate(pod("intern", "other").get)
    for rule in policy.entity_rules:
        peer = cache.parse(entity_rule_selector(rule, policy.namespace, cache))
        assert [peer.predicate(pod(a).get) for a in ("intern", "senior", "default")] == [
            True, False, False]
