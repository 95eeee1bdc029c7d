"""Kubernetes label selectors: apimachinery semantics and Calico's translation of them."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.model import ParseError
from exporter.model.policy import LabelRequirement, LabelSelector, parse_label_selector
from exporter.policy.k8s import compile_label_selector, to_calico_selector
from exporter.policy.selector import parse


def _selector(raw: dict[str, Any]) -> LabelSelector:
    return parse_label_selector(raw, path="spec.podSelector")


@pytest.mark.parametrize(("raw", "labels", "expected"), [
    ({}, {}, True),
    ({}, {"app": "x"}, True),
    ({"matchLabels": {"app": "web"}}, {"app": "web", "tier": "a"}, True),
    ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
    ({"matchLabels": {"app": "web"}}, {}, False),
    ({"matchLabels": {"app": "web", "tier": "a"}}, {"app": "web"}, False),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]},
     {"app": "b"}, True),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]},
     {}, False),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]},
     {}, True),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]},
     {"app": "a"}, False),
    ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {"app": ""}, True),
    ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {}, True),
    ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {"app": "x"}, False),
    ({"matchLabels": {"app": "web"},
      "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]},
     {"app": "web", "tier": "db"}, False),
])
def test_label_selector_semantics(raw: dict[str, Any], labels: dict[str, str],
                                  expected: bool) -> None:
    """matchLabels and every requirement must hold; NotIn holds for an absent label."""
    assert compile_label_selector(_selector(raw))(labels.get) is expected


def test_translation_is_calicos_text() -> None:
    """k8sSelectorToCalico: orchestrator term, matchLabels sorted, expressions in order."""
    selector = _selector({
        "matchLabels": {"tier": "web", "app": "guestbook"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "zone", "operator": "NotIn", "values": ["z1"]},
            {"key": "team", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    })
    assert to_calico_selector(selector) == (
        "projectcalico.org/orchestrator == 'k8s' && app == 'guestbook' && tier == 'web'"
        " && env in { 'prod', 'dev' } && zone not in { 'z1' } && has(team) && ! has(legacy)")
    assert to_calico_selector(LabelSelector()) == "projectcalico.org/orchestrator == 'k8s'"
    assert to_calico_selector(LabelSelector(), pod=False) == "all()"
    assert to_calico_selector(selector, pod=False).startswith("app == 'guestbook' && ")


@pytest.mark.parametrize(("raw", "message"), [
    ({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
     "is not one of In, NotIn, Exists, DoesNotExist"),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, "needs values"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
     "takes no values"),
    ({"matchExpressions": [{"operator": "Exists"}]}, "key missing"),
    ({"matchLabels": {"a": 1}}, "not a map of strings"),
    ({"matchLabels": ["a"]}, "is not an object"),
])
def test_invalid_label_selectors_raise(raw: dict[str, Any], message: str) -> None:
    """Selectors the API server would reject raise ParseError naming the field."""
    with pytest.raises(ParseError, match=message):
        _selector(raw)


_KEYS = st.sampled_from(["app", "tier", "x.io/name"])
_VALS = st.sampled_from(["a", "b", "c"])
_REQUIREMENTS = st.one_of(
    st.builds(LabelRequirement, _KEYS, st.sampled_from(["In", "NotIn"]),
              st.lists(_VALS, min_size=1, max_size=3).map(tuple)),
    st.builds(LabelRequirement, _KEYS, st.sampled_from(["Exists", "DoesNotExist"]),
              st.just(())),
)
_SELECTORS = st.builds(
    LabelSelector,
    st.dictionaries(_KEYS, _VALS, max_size=2).map(lambda d: tuple(sorted(d.items()))),
    st.lists(_REQUIREMENTS, max_size=3).map(tuple),
)


@given(_SELECTORS, st.dictionaries(_KEYS, _VALS, max_size=3))
def test_translation_agrees_with_kubernetes_semantics(selector: LabelSelector,
                                                      labels: dict[str, str]) -> None:
    """The Calico translation selects exactly the pods the Kubernetes selector selects."""
    pod_labels = {**labels, "projectcalico.org/orchestrator": "k8s"}
    expected = compile_label_selector(selector)(labels.get)
    assert parse(to_calico_selector(selector)).matches(pod_labels) is expected
    assert parse(to_calico_selector(selector, pod=False)).matches(labels) is expected
