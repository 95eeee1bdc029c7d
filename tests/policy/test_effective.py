"""Effective endpoint selectors, text for text as Calico's update processors build them."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.model.policy import (
    parse_calico_network_policy,
    parse_global_network_policy,
    parse_k8s_network_policy,
)
from exporter.policy.effective import EndpointLabels, PolicySelectorError, effective_selector
from exporter.policy.selector import SelectorCache
from tests.policy.reference import raw_calico_policy, raw_global_policy, raw_k8s_policy

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
    """Implicit labels win over the pod's, which win over namespace and SA profile labels."""
    labels = EndpointLabels(
        {"app": "web", "projectcalico.org/namespace": "fake", "pcns.team": "pod-says"},
        namespace="shop", service_account="front",
        namespace_labels={"team": "ns-says", "env": "prod", "projectcalico.org/name": "x"})
    assert labels.get("app") == "web"
    assert labels.get("projectcalico.org/namespace") == "shop"
    assert labels.get("projectcalico.org/orchestrator") == "k8s"
    assert labels.get("projectcalico.org/serviceaccount") == "front"
    assert labels.get("pcns.team") == "pod-says"
    assert labels.get("pcns.env") == "prod"
    assert labels.get("pcns.projectcalico.org/name") == "shop"
    assert labels.get("pcsa.projectcalico.org/name") == "front"
    assert labels.get("pcsa.role") is None
    assert labels.get("projectcalico.org/other") is None
    assert labels.get("env") is None
