"""Network policy objects: Kubernetes NetworkPolicy, Calico NetworkPolicy and GlobalNetworkPolicy,
NetworkSet and GlobalNetworkSet (calico-model §3.1), kept to what the policy index needs.

- Policies keep their selectors as *strings* (Calico) or as a structured :class:`LabelSelector`
  (Kubernetes); parsing and compiling selectors is ``exporter.policy``'s job, so that a selector
  that does not parse is counted there and never makes the whole object unreadable.
- Calico ``types`` are defaulted as clientv3 does on write when missing or empty: no egress rules
  means ``[Ingress]`` (even with no rules at all), egress rules only means ``[Egress]``, both
  means ``[Ingress, Egress]``.
- Kubernetes ``policyTypes`` are defaulted as the API server does: ``Ingress`` always, plus
  ``Egress`` when the policy has egress rules.
- The tier is ``spec.tier``, ``default`` when empty. Up to Calico v3.31 the stored name carried
  the tier (``default.allow-dns``); a leading ``<tier>.`` is stripped for display (``name``) and
  the stored name is kept in ``stored_name`` (the store key).
- Rules are pre-aggregated into counts by (direction, action); Kubernetes rules are all
  ``Allow`` and are counted one per entry of ``spec.ingress`` / ``spec.egress`` as written.
  Calico rule selectors (``selector``, ``notSelector``, ``namespaceSelector``,
  ``serviceAccounts.selector`` of ``source`` and ``destination``) are kept with their field path
  so that the index can validate them.
- GlobalNetworkPolicy ``doNotTrack`` and ``preDNAT`` are kept: Felix applies such policies to
  host endpoints only, never to pods.
- Network sets keep their labels and the number of nets.

A malformed object (wrong types, an unknown action or policy type, a Kubernetes selector with an
unknown operator or values that contradict it, a net that is not an address or CIDR) raises
:class:`~exporter.model.ParseError`.
"""

from __future__ import annotations

import ipaddress
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from exporter.model import ParseError, RawObject
from exporter.model.core import parse_calico_labels

PolicyKind = Literal["k8s", "calico", "global"]
"""Label value of the ``kind`` label: Kubernetes NetworkPolicy, Calico NetworkPolicy, GNP."""

Direction = Literal["ingress", "egress"]
DIRECTIONS: tuple[Direction, ...] = ("ingress", "egress")

ACTIONS = ("Allow", "Deny", "Log", "Pass")
"""Calico rule actions (the CRD enum)."""

DEFAULT_TIER = "default"

K8sOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
K8S_OPERATORS: dict[str, K8sOperator] = {
    "In": "In",
    "NotIn": "NotIn",
    "Exists": "Exists",
    "DoesNotExist": "DoesNotExist",
}



# --------------------------------------------------------------------------------------------
# Shared helpers


def _meta(raw: RawObject) -> Mapping[str, Any]:
    meta = raw.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ParseError("metadata.name missing")
    ns = meta.get("namespace")
    if ns is not None and not isinstance(ns, str):
        raise ParseError("metadata.namespace is not a string")
    return meta


def _spec(raw: RawObject) -> Mapping[str, Any]:
    spec = raw.get("spec")
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ParseError("spec is not an object")
    return spec


def _string(obj: Mapping[str, Any], field: str, *, path: str) -> str:
    value = obj.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ParseError(f"{path}{field} {value!r} is not a string")
    return value


def _list(obj: Mapping[str, Any], field: str, *, path: str) -> list[Any]:
    value = obj.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ParseError(f"{path}{field} is not a list")
    return value


def _object(value: object, *, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParseError(f"{path} is not an object")
    return value



@dataclass(frozen=True, slots=True)
class RuleCount:
    """How many rules of one action a policy has in one direction."""

    direction: Direction
    action: str
    count: int


def _rule_counts(counter: Counter[tuple[Direction, str]]) -> tuple[RuleCount, ...]:
    return tuple(RuleCount(d, a, n) for (d, a), n in sorted(counter.items()))


# --------------------------------------------------------------------------------------------
# Kubernetes NetworkPolicy


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    """One ``matchExpressions`` entry."""

    key: str
    operator: K8sOperator
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A Kubernetes ``metav1.LabelSelector``; empty selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    """Sorted by key."""
    match_expressions: tuple[LabelRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


def parse_label_selector(value: object, *, path: str) -> LabelSelector:
    """A Kubernetes label selector, validated as the API server validates it."""
    obj = _object(value, path=path)
    raw_labels = _object(obj.get("matchLabels"), path=f"{path}.matchLabels")
    labels: list[tuple[str, str]] = []
    for key, val in raw_labels.items():
        if not isinstance(key, str) or not isinstance(val, str):
            raise ParseError(f"{path}.matchLabels is not a map of strings")
        labels.append((sys.intern(key), sys.intern(val)))
    expressions: list[LabelRequirement] = []
    for i, item in enumerate(_list(obj, "matchExpressions", path=f"{path}.")):
        where = f"{path}.matchExpressions[{i}]"
        expr = _object(item, path=where)
        key = _string(expr, "key", path=f"{where}.")
        operator_name = _string(expr, "operator", path=f"{where}.")
        operator = K8S_OPERATORS.get(operator_name)
        values = _list(expr, "values", path=f"{where}.")
        if not key:
            raise ParseError(f"{where}.key missing")
        if not all(isinstance(v, str) for v in values):
            raise ParseError(f"{where}.values is not a list of strings")
        if operator is None:
            known = ", ".join(K8S_OPERATORS)
            raise ParseError(f"{where}.operator {operator_name!r} is not one of {known}")
        if operator in ("In", "NotIn") and not values:
            raise ParseError(f"{where}: operator {operator} needs values")
        if operator in ("Exists", "DoesNotExist") and values:
            raise ParseError(f"{where}: operator {operator} takes no values")
        expressions.append(LabelRequirement(key, operator, tuple(values)))
    return LabelSelector(tuple(sorted(labels)), tuple(expressions))


@dataclass(frozen=True, slots=True)
class K8sNetworkPolicy:
    """A ``networking.k8s.io/v1`` NetworkPolicy: pod selector, types after defaulting, rules."""

    namespace: str
    name: str
    pod_selector: LabelSelector
    ingress: bool
    """policyTypes includes Ingress."""
    egress: bool
    """policyTypes includes Egress."""
    rules: tuple[RuleCount, ...]

    @property
    def kind(self) -> PolicyKind:
        return "k8s"

    @property
    def tier(self) -> str:
        """Calico converts Kubernetes policies into the default tier (order 1000)."""
        return DEFAULT_TIER


def _k8s_peers(rule: Mapping[str, Any], field: str, *, path: str) -> None:
    for j, peer in enumerate(_list(rule, field, path=path)):
        where = f"{path}{field}[{j}]"
        peer_obj = _object(peer, path=where)
        for selector_field in ("podSelector", "namespaceSelector"):
            if peer_obj.get(selector_field) is not None:
                parse_label_selector(peer_obj[selector_field], path=f"{where}.{selector_field}")


_K8S_PEERS: tuple[tuple[Direction, str], ...] = (("ingress", "from"), ("egress", "to"))


def parse_k8s_network_policy(raw: RawObject) -> K8sNetworkPolicy:
    meta = _meta(raw)
    if not meta.get("namespace"):
        raise ParseError("metadata.namespace missing")
    spec = _spec(raw)
    pod_selector = parse_label_selector(spec.get("podSelector"), path="spec.podSelector")
    counts: Counter[tuple[Direction, str]] = Counter()
    for direction, peers in _K8S_PEERS:
        for i, rule in enumerate(_list(spec, direction, path="spec.")):
            where = f"spec.{direction}[{i}]."
            _k8s_peers(_object(rule, path=where[:-1]), peers, path=where)
            counts[(direction, "Allow")] += 1
    types = _list(spec, "policyTypes", path="spec.")
    for t in types:
        if t not in ("Ingress", "Egress"):
            raise ParseError(f"spec.policyTypes entry {t!r} is not Ingress or Egress")
    if types:
        ingress, egress = "Ingress" in types, "Egress" in types
    else:
        ingress, egress = True, bool(_list(spec, "egress", path="spec."))
    return K8sNetworkPolicy(
        namespace=sys.intern(meta["namespace"]),
        name=meta["name"],
        pod_selector=pod_selector,
        ingress=ingress,
        egress=egress,
        rules=_rule_counts(counts),
    )


# --------------------------------------------------------------------------------------------
# Calico NetworkPolicy and GlobalNetworkPolicy


@dataclass(frozen=True, slots=True)
class CalicoPolicy:
    """A Calico NetworkPolicy (kind ``calico``) or GlobalNetworkPolicy (kind ``global``)."""

    kind: Literal["calico", "global"]
    namespace: str
    """"" for a GlobalNetworkPolicy."""
    name: str
    """Display name: the stored name without a leading ``<tier>.`` (pre-v3.32 naming)."""
    stored_name: str
    tier: str
    order: float | None
    """None means "infinite": applied last in its tier."""
    selector: str
    """spec.selector as written; "" means all()."""
    namespace_selector: str
    """GNP only; "" when absent."""
    service_account_selector: str
    ingress: bool
    """types includes Ingress (after defaulting)."""
    egress: bool
    """types includes Egress (after defaulting)."""
    rules: tuple[RuleCount, ...]
    rule_selectors: tuple[tuple[str, str], ...] = ()
    """(field path, selector) of every non-empty selector inside the rules."""
    do_not_track: bool = False
    """GNP only: an untracked policy, which Felix applies to host endpoints only."""
    pre_dnat: bool = False
    """GNP only: a pre-DNAT policy, which Felix applies to host endpoints only."""

    @property
    def host_endpoints_only(self) -> bool:
        """Felix never puts untracked or pre-DNAT policies on a workload endpoint (a pod)."""
        return self.do_not_track or self.pre_dnat


_SIDES = ("source", "destination")
_ENTITY_SELECTORS = ("selector", "notSelector", "namespaceSelector")


def _calico_rules(
    spec: Mapping[str, Any],
) -> tuple[tuple[RuleCount, ...], tuple[tuple[str, str], ...], bool, bool]:
    counts: Counter[tuple[Direction, str]] = Counter()
    selectors: list[tuple[str, str]] = []
    present = {"ingress": False, "egress": False}
    for direction in DIRECTIONS:
        rules = _list(spec, direction, path="spec.")
        present[direction] = bool(rules)
        for i, rule in enumerate(rules):
            # Paths are built only for an error or a selector found: most rules have neither.
            if rule is None:
                rule = {}
            elif not isinstance(rule, dict):
                raise ParseError(f"spec.{direction}[{i}] is not an object")
            action = rule.get("action")
            if action not in ACTIONS:
                raise ParseError(
                    f"spec.{direction}[{i}].action {action!r} is not one of {ACTIONS}"
                )
            counts[(direction, action)] += 1
            for side in _SIDES:
                entity = rule.get(side)
                if entity is None:
                    continue
                if not isinstance(entity, dict):
                    raise ParseError(f"spec.{direction}[{i}].{side} is not an object")
                for field in _ENTITY_SELECTORS:
                    text = entity.get(field)
                    if text is None:
                        continue
                    if not isinstance(text, str):
                        raise ParseError(
                            f"spec.{direction}[{i}].{side}.{field} {text!r} is not a string"
                        )
                    if text:
                        selectors.append((f"spec.{direction}[{i}].{side}.{field}", text))
                accounts = entity.get("serviceAccounts")
                if accounts is None:
                    continue
                if not isinstance(accounts, dict):
                    raise ParseError(f"spec.{direction}[{i}].{side} is not an object")
                text = accounts.get("selector")
                if text is None:
                    continue
                if not isinstance(text, str):
                    raise ParseError(f"spec.{direction}[{i}].{side}.serviceAccounts.selector "
                                     f"{text!r} is not a string")
                if text:
                    selectors.append((f"spec.{direction}[{i}].{side}.serviceAccounts.selector",
                                      text))
    return _rule_counts(counts), tuple(selectors), present["ingress"], present["egress"]


def _calico_types(
    spec: Mapping[str, Any], *, has_ingress: bool, has_egress: bool
) -> tuple[bool, bool]:
    types = _list(spec, "types", path="spec.")
    for t in types:
        if t not in ("Ingress", "Egress"):
            raise ParseError(f"spec.types entry {t!r} is not Ingress or Egress")
    if types:
        return "Ingress" in types, "Egress" in types
    # clientv3 defaultPolicyTypesField.
    if not has_egress:
        return True, False
    if not has_ingress:
        return False, True
    return True, True


def _flag(spec: Mapping[str, Any], field: str) -> bool:
    value = spec.get(field)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ParseError(f"spec.{field} {value!r} is not a boolean")
    return value


def display_name(stored_name: str, tier: str) -> str:
    """The policy name without the ``<tier>.`` prefix Calico stored up to v3.31."""
    prefix = tier + "."
    if stored_name.startswith(prefix) and len(stored_name) > len(prefix):
        return stored_name[len(prefix) :]
    return stored_name


def _parse_calico(raw: RawObject, kind: Literal["calico", "global"]) -> CalicoPolicy:
    meta = _meta(raw)
    namespace = str(meta.get("namespace") or "")
    if kind == "calico" and not namespace:
        raise ParseError("metadata.namespace missing")
    if kind == "global":
        namespace = ""
    spec = _spec(raw)
    tier = _string(spec, "tier", path="spec.") or DEFAULT_TIER
    order = spec.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int | float)):
        raise ParseError(f"spec.order {order!r} is not a number")
    rules, rule_selectors, has_ingress, has_egress = _calico_rules(spec)
    ingress, egress = _calico_types(spec, has_ingress=has_ingress, has_egress=has_egress)
    stored = meta["name"]
    return CalicoPolicy(
        kind=kind,
        namespace=sys.intern(namespace),
        name=display_name(stored, tier),
        stored_name=stored,
        tier=sys.intern(tier),
        order=None if order is None else float(order),
        selector=_string(spec, "selector", path="spec."),
        namespace_selector=(
            _string(spec, "namespaceSelector", path="spec.") if kind == "global" else ""
        ),
        service_account_selector=_string(spec, "serviceAccountSelector", path="spec."),
        ingress=ingress,
        egress=egress,
        rules=rules,
        rule_selectors=rule_selectors,
        do_not_track=_flag(spec, "doNotTrack") if kind == "global" else False,
        pre_dnat=_flag(spec, "preDNAT") if kind == "global" else False,
    )


def parse_calico_network_policy(raw: RawObject) -> CalicoPolicy:
    """A namespaced ``crd.projectcalico.org/v1`` (or ``projectcalico.org/v3``) NetworkPolicy."""
    return _parse_calico(raw, "calico")


def parse_global_network_policy(raw: RawObject) -> CalicoPolicy:
    """A cluster-scoped GlobalNetworkPolicy."""
    return _parse_calico(raw, "global")


# --------------------------------------------------------------------------------------------
# NetworkSet and GlobalNetworkSet


@dataclass(frozen=True, slots=True)
class NetworkSet:
    """A NetworkSet (namespaced) or GlobalNetworkSet (namespace ""): labels and net count."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    nets: int


def _parse_network_set(raw: RawObject, *, namespaced: bool) -> NetworkSet:
    meta = _meta(raw)
    namespace = str(meta.get("namespace") or "") if namespaced else ""
    if namespaced and not namespace:
        raise ParseError("metadata.namespace missing")
    spec = _spec(raw)
    nets = _list(spec, "nets", path="spec.")
    for net in nets:
        if not isinstance(net, str):
            raise ParseError(f"spec.nets entry {net!r} is not a string")
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ParseError(f"spec.nets entry {net!r} is not an address or CIDR") from None
    return NetworkSet(
        namespace=sys.intern(namespace), name=meta["name"], labels=parse_calico_labels(meta),
        nets=len(nets),
    )


def parse_network_set(raw: RawObject) -> NetworkSet:
    return _parse_network_set(raw, namespaced=True)


def parse_global_network_set(raw: RawObject) -> NetworkSet:
    return _parse_network_set(raw, namespaced=False)
