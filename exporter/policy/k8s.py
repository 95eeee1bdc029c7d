"""Kubernetes label selectors (``matchLabels``, ``matchExpressions``): evaluation and translation.

:func:`compile_label_selector` evaluates a :class:`~exporter.model.policy.LabelSelector` with the
apimachinery semantics: every ``matchLabels`` pair and every requirement must hold; ``In`` needs
the label with one of the values, ``NotIn`` holds when the label is absent or has none of the
values, ``Exists`` / ``DoesNotExist`` test presence; the empty selector selects everything.

:func:`to_calico_selector` is Calico's ``k8sSelectorToCalico`` (``conversion.go``), text for
text: pod selectors start with ``projectcalico.org/orchestrator == 'k8s'``, ``matchLabels`` come
sorted by key, expressions in order; an empty namespace selector is ``all()``. The policy index
evaluates Kubernetes policies through this translation, as Felix does.
"""

from __future__ import annotations

from exporter.model.policy import LabelRequirement, LabelSelector
from exporter.policy.selector import Getter, Predicate

ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"


def _requirement(req: LabelRequirement) -> Predicate:
    key = req.key
    values = frozenset(req.values)
    if req.operator == "In":

        def in_(get: Getter) -> bool:
            return get(key) in values

        return in_
    if req.operator == "NotIn":

        def not_in(get: Getter) -> bool:
            return get(key) not in values

        return not_in
    if req.operator == "Exists":

        def exists(get: Getter) -> bool:
            return get(key) is not None

        return exists

    def does_not_exist(get: Getter) -> bool:
        return get(key) is None

    return does_not_exist


def compile_label_selector(selector: LabelSelector) -> Predicate:
    """A predicate over a label getter with Kubernetes label-selector semantics."""
    pairs = selector.match_labels
    requirements = tuple(_requirement(r) for r in selector.match_expressions)

    def matches(get: Getter) -> bool:
        for key, value in pairs:
            if get(key) != value:
                return False
        for requirement in requirements:  # noqa: SIM110 (faster than all() over a generator)
            if not requirement(get):
                return False
        return True

    return matches


def to_calico_selector(selector: LabelSelector, *, pod: bool = True) -> str:
    """Calico's translation of a Kubernetes pod (or namespace) selector into its own language."""
    terms: list[str] = []
    if pod:
        terms.append(f"{ORCHESTRATOR_LABEL} == 'k8s'")
    elif selector.empty:
        return "all()"
    for key, value in selector.match_labels:
        terms.append(f"{key} == '{value}'")
    for req in selector.match_expressions:
        values = "', '".join(req.values)
        if req.operator == "In":
            terms.append(f"{req.key} in {{ '{values}' }}")
        elif req.operator == "NotIn":
            terms.append(f"{req.key} not in {{ '{values}' }}")
        elif req.operator == "Exists":
            terms.append(f"has({req.key})")
        else:
            terms.append(f"! has({req.key})")
    return " && ".join(terms)
