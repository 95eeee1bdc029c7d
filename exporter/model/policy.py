"""Network policy objects: Kubernetes NetworkPolicy, Calico NetworkPolicy and GlobalNetworkPolicy,
their staged variants, Kubernetes ClusterNetworkPolicy, tiers, NetworkSet and GlobalNetworkSet
(calico-model §3.1), kept to what the policy index needs.

- Policies keep their selectors as *strings* (Calico) or as a structured :class:`LabelSelector`
  (Kubernetes); parsing and compiling selectors is ``exporter.policy``'s job, so that a selector
  that does not parse is counted there and never makes the whole object unreadable.
- Calico ``types`` are defaulted as clientv3 does on write when missing or empty: no egress rules
  means ``[Ingress]`` (even with no rules at all), egress rules only means ``[Egress]``, both
  means ``[Ingress, Egress]``.
- Kubernetes ``policyTypes`` are defaulted as the API server does: ``Ingress`` always, plus
  ``Egress`` when the policy has egress rules.
- The tier is ``spec.tier``, ``default`` when empty; Kubernetes policies are in ``default`` and
  ClusterNetworkPolicies in ``kube-admin`` or ``kube-baseline``. The policy's *name* is the name
  Calico shows (its v3 name), derived from the stored name exactly as libcalico-go converts a
  ``crd.projectcalico.org/v1`` object: see :func:`policy_name`. The stored name is kept in
  ``stored_name`` (the store key).
- Staged policies keep their ``stagedAction`` (``Set`` when absent, the CRD default).
- Rules are pre-aggregated into counts by (direction, action); Kubernetes rules are all
  ``Allow`` and are counted one per entry of ``spec.ingress`` / ``spec.egress`` as written, and
  ClusterNetworkPolicy rules with their action (``Accept`` counts as ``Allow``, as Calico
  converts it). Calico rule selectors (``selector``, ``notSelector``, ``namespaceSelector``,
  ``serviceAccounts.selector`` of ``source`` and ``destination``) are kept with their field path
  so that the index can validate them.
- GlobalNetworkPolicy ``doNotTrack`` and ``preDNAT`` are kept: Felix applies such policies to
  host endpoints only, never to pods.
- Network sets keep their labels and the number of nets.

A malformed object (wrong types, an unknown action, policy type or staged action, a Kubernetes
selector with an unknown operator or values that contradict it, a ClusterNetworkPolicy with an
unknown tier or without a subject, a net that is not an address or CIDR) raises
:class:`~exporter.model.ParseError`.
"""

from __future__ import annotations

import ipaddress
import math
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from exporter.model import ParseError, RawObject
from exporter.model.core import CALICO_METADATA, calico_stored_meta, parse_calico_labels

PolicyKind = Literal[
    "k8s", "calico", "global", "staged", "staged_global", "staged_k8s", "cluster"
]
"""Label value of the ``kind`` label: Kubernetes NetworkPolicy, Calico NetworkPolicy, GNP, their
staged variants (StagedNetworkPolicy, StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy)
and Kubernetes ClusterNetworkPolicy."""

POLICY_KINDS: tuple[PolicyKind, ...] = (
    "k8s", "calico", "global", "staged", "staged_global", "staged_k8s", "cluster"
)
STAGED_KINDS: dict[PolicyKind, PolicyKind] = {
    "staged": "calico", "staged_global": "global", "staged_k8s": "k8s"
}
"""Staged kind -> the enforced kind a staged policy of that kind sets or deletes on enforce."""
GLOBAL_KINDS: frozenset[PolicyKind] = frozenset({"global", "staged_global", "cluster"})
"""Cluster-scoped kinds (namespace ""); their selectors see every namespace."""

StagedAction = Literal["Set", "Delete", "Learn", "Ignore"]
STAGED_ACTIONS: tuple[StagedAction, ...] = ("Set", "Delete", "Learn", "Ignore")
"""``stagedAction`` values (the CRD enum, ``api/pkg/apis/projectcalico/v3/policy_common.go``)."""

Direction = Literal["ingress", "egress"]
DIRECTIONS: tuple[Direction, ...] = ("ingress", "egress")

ACTIONS = ("Allow", "Deny", "Log", "Pass")
"""Calico rule actions (the CRD enum)."""

DEFAULT_TIER = "default"
KUBE_ADMIN_TIER = "kube-admin"
KUBE_BASELINE_TIER = "kube-baseline"

TierAction = Literal["Deny", "Pass"]

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


def policy_name(raw: RawObject, tier: str) -> str:
    """The name Calico shows for a (Staged)(Global)NetworkPolicy: its v3 name.

    Exactly libcalico-go's ``ConvertK8sResourceToCalicoResource``
    (``libcalico-go/lib/backend/k8s/resources/resources.go``, the same at v3.31.0 and v3.32.1),
    which Calico applies to what it reads from ``crd.projectcalico.org/v1`` only
    (:func:`~exporter.model.core.calico_stored_meta`), and which the Calico API server has
    already applied to its ``projectcalico.org/v3`` view (the emulator's
    ``exporter.sim.calicoapi.to_v3`` follows the same source):

    - a ``projectcalico.org/v3`` object (native, or the Calico API server's view), or a v1
      object without the ``projectcalico.org/metadata`` annotation (written straight to the
      CRD): the stored name as it is;
    - the annotation names the v3 name (every policy libcalico-go wrote since it stores it): that;
    - the annotation without a name: ``determinePolicyName``, the stored name without a leading
      ``default.`` when the tier is ``default`` (or empty), else the stored name unchanged.

    Up to v3.31, ``names.TieredPolicyName`` stored a default-tier policy ``x`` as ``default.x``
    and required non-default-tier v3 names to be ``<tier>.<name>`` (so ``security.allow-dns`` is
    shown as ``security.allow-dns``); from v3.32 (commit 790c866c9d, "Remove tier prefix naming
    requirement for policies") the stored name is the v3 name, and kube-controllers' policy name
    migrator renames the default-tier ones (``kube-controllers/pkg/controllers/networkpolicy/
    policy_name_migrator.go``). A malformed annotation raises ParseError (libcalico-go fails the
    conversion of that object).
    """
    stored: str = raw["metadata"]["name"]
    meta = calico_stored_meta(raw)
    if meta is None:
        return stored
    name = meta.get("name")
    if name is not None and not isinstance(name, str):
        raise ParseError(f"metadata.annotations[{CALICO_METADATA}] name is not a string")
    if name:
        return name
    return determine_policy_name(stored, tier)


def determine_policy_name(stored: str, tier: str) -> str:
    """libcalico-go's ``determinePolicyName`` (``k8s/resources/resources.go``, v3.31.0 and
    v3.32.1): a stored (Staged)(Global)NetworkPolicy name without a leading ``default.`` when
    the tier is ``default`` (or empty), else unchanged. Also what the flow counters apply to the
    name Goldmane reports, which is the stored name (``exporter.flows.ingest``)."""
    if tier in (DEFAULT_TIER, "") and stored.startswith(DEFAULT_TIER + "."):
        return stored[len(DEFAULT_TIER) + 1 :]
    return stored


def _staged_action(spec: Mapping[str, Any]) -> StagedAction:
    value = spec.get("stagedAction")
    if value is None or value == "":
        return "Set"  # the CRD default
    for action in STAGED_ACTIONS:
        if value == action:
            return action
    raise ParseError(f"spec.stagedAction {value!r} is not one of {', '.join(STAGED_ACTIONS)}")


def _order(spec: Mapping[str, Any], field: str) -> float | None:
    order = spec.get(field)
    if order is None:
        return None
    if isinstance(order, bool) or not isinstance(order, int | float) or math.isnan(order):
        raise ParseError(f"spec.{field} {order!r} is not a number")
    return float(order)



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
    """A ``networking.k8s.io/v1`` NetworkPolicy (kind ``k8s``) or a StagedKubernetesNetworkPolicy
    (kind ``staged_k8s``): pod selector, types after defaulting, rules."""

    namespace: str
    name: str
    pod_selector: LabelSelector
    ingress: bool
    """policyTypes includes Ingress."""
    egress: bool
    """policyTypes includes Egress."""
    rules: tuple[RuleCount, ...]
    kind: Literal["k8s", "staged_k8s"] = "k8s"
    staged_action: StagedAction | None = None
    """The stagedAction of a staged policy; None for an enforced one."""

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
    return _parse_k8s(raw, staged=False)


def parse_staged_k8s_network_policy(raw: RawObject) -> K8sNetworkPolicy:
    """A StagedKubernetesNetworkPolicy: a NetworkPolicySpec plus ``stagedAction``."""
    return _parse_k8s(raw, staged=True)


def _parse_k8s(raw: RawObject, *, staged: bool) -> K8sNetworkPolicy:
    meta = _meta(raw)
    if not meta.get("namespace"):
        raise ParseError("metadata.namespace missing")
    spec = _spec(raw)
    staged_action = _staged_action(spec) if staged else None
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
        kind="staged_k8s" if staged else "k8s",
        staged_action=staged_action,
    )


# --------------------------------------------------------------------------------------------
# Calico NetworkPolicy and GlobalNetworkPolicy


CalicoKind = Literal["calico", "global", "staged", "staged_global"]
Side = Literal["source", "destination"]


@dataclass(frozen=True, slots=True)
class EntityRule:
    """The endpoint-selecting fields of one side of one Calico rule (an ``EntityRule``)."""

    direction: Direction
    index: int
    """Position of the rule in ``spec.<direction>``."""
    side: Side
    selector: str
    not_selector: str
    namespace_selector: str
    service_account_names: tuple[str, ...]
    service_account_selector: str


@dataclass(frozen=True, slots=True)
class CalicoPolicy:
    """A Calico NetworkPolicy (kind ``calico``), GlobalNetworkPolicy (``global``),
    StagedNetworkPolicy (``staged``) or StagedGlobalNetworkPolicy (``staged_global``)."""

    kind: CalicoKind
    namespace: str
    """"" for a (staged) GlobalNetworkPolicy."""
    name: str
    """The name Calico shows (:func:`policy_name`)."""
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
    entity_rules: tuple[EntityRule, ...] = ()
    """The selector fields of every rule side that has one, in rule order."""
    do_not_track: bool = False
    """GNP only: an untracked policy, which Felix applies to host endpoints only."""
    pre_dnat: bool = False
    """GNP only: a pre-DNAT policy, which Felix applies to host endpoints only."""
    staged_action: StagedAction | None = None
    """The stagedAction of a staged policy; None for an enforced one."""

    @property
    def host_endpoints_only(self) -> bool:
        """Felix never puts untracked or pre-DNAT policies on a workload endpoint (a pod)."""
        return self.do_not_track or self.pre_dnat


_SIDES: tuple[Side, ...] = ("source", "destination")
_ENTITY_SELECTORS = ("selector", "notSelector", "namespaceSelector")


def _entity_rule(entity: Mapping[str, Any], *, direction: Direction, index: int,
                 side: Side) -> EntityRule | None:
    """The selector fields of one side of a rule (already type-checked), or None without any."""
    accounts = entity.get("serviceAccounts") or {}
    names = accounts.get("names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ParseError(f"spec.{direction}[{index}].{side}.serviceAccounts.names is not a "
                         "list of strings")
    rule = EntityRule(
        direction=direction, index=index, side=side,
        selector=entity.get("selector") or "",
        not_selector=entity.get("notSelector") or "",
        namespace_selector=entity.get("namespaceSelector") or "",
        service_account_names=tuple(names),
        service_account_selector=accounts.get("selector") or "",
    )
    if (rule.selector or rule.not_selector or rule.namespace_selector
            or rule.service_account_names or rule.service_account_selector):
        return rule
    return None


def _calico_rules(
    spec: Mapping[str, Any],
) -> tuple[tuple[RuleCount, ...], tuple[tuple[str, str], ...], tuple[EntityRule, ...], bool,
           bool]:
    counts: Counter[tuple[Direction, str]] = Counter()
    selectors: list[tuple[str, str]] = []
    entities: list[EntityRule] = []
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
            for side in _SIDES:
                entity = rule.get(side)
                if entity:
                    found = _entity_rule(entity, direction=direction, index=i, side=side)
                    if found is not None:
                        entities.append(found)
    return (_rule_counts(counts), tuple(selectors), tuple(entities), present["ingress"],
            present["egress"])


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


def _parse_calico(raw: RawObject, kind: CalicoKind) -> CalicoPolicy:
    meta = _meta(raw)
    is_global = kind in GLOBAL_KINDS
    namespace = "" if is_global else str(meta.get("namespace") or "")
    if not is_global and not namespace:
        raise ParseError("metadata.namespace missing")
    spec = _spec(raw)
    staged_action = _staged_action(spec) if kind in STAGED_KINDS else None
    tier = _string(spec, "tier", path="spec.") or DEFAULT_TIER
    order = _order(spec, "order")
    rules, rule_selectors, entity_rules, has_ingress, has_egress = _calico_rules(spec)
    ingress, egress = _calico_types(spec, has_ingress=has_ingress, has_egress=has_egress)
    return CalicoPolicy(
        kind=kind,
        namespace=sys.intern(namespace),
        name=policy_name(raw, tier),
        stored_name=meta["name"],
        tier=sys.intern(tier),
        order=order,
        selector=_string(spec, "selector", path="spec."),
        namespace_selector=(
            _string(spec, "namespaceSelector", path="spec.") if is_global else ""
        ),
        service_account_selector=_string(spec, "serviceAccountSelector", path="spec."),
        ingress=ingress,
        egress=egress,
        rules=rules,
        rule_selectors=rule_selectors,
        entity_rules=entity_rules,
        do_not_track=_flag(spec, "doNotTrack") if is_global else False,
        pre_dnat=_flag(spec, "preDNAT") if is_global else False,
        staged_action=staged_action,
    )


def parse_calico_network_policy(raw: RawObject) -> CalicoPolicy:
    """A namespaced ``crd.projectcalico.org/v1`` (or ``projectcalico.org/v3``) NetworkPolicy."""
    return _parse_calico(raw, "calico")


def parse_global_network_policy(raw: RawObject) -> CalicoPolicy:
    """A cluster-scoped GlobalNetworkPolicy."""
    return _parse_calico(raw, "global")


def parse_staged_network_policy(raw: RawObject) -> CalicoPolicy:
    """A namespaced StagedNetworkPolicy: a NetworkPolicySpec plus ``stagedAction``."""
    return _parse_calico(raw, "staged")


def parse_staged_global_network_policy(raw: RawObject) -> CalicoPolicy:
    """A cluster-scoped StagedGlobalNetworkPolicy: a GlobalNetworkPolicySpec plus
    ``stagedAction``."""
    return _parse_calico(raw, "staged_global")


# --------------------------------------------------------------------------------------------
# Kubernetes ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2)

CLUSTER_TIERS: dict[str, str] = {"Admin": KUBE_ADMIN_TIER, "Baseline": KUBE_BASELINE_TIER}
"""ClusterNetworkPolicy ``spec.tier`` -> the Calico tier it is placed in
(``clusterNetworkPolicyTier``, ``libcalico-go/lib/backend/k8s/conversion/
clusternetworkpolicy.go`` at v3.32.1)."""
CLUSTER_ACTIONS: dict[str, str] = {"Accept": "Allow", "Deny": "Deny", "Pass": "Pass"}
"""ClusterNetworkPolicy rule action -> Calico action (``K8sClusterNetworkPolicyActionToCalico``)."""


@dataclass(frozen=True, slots=True)
class ClusterNetworkPolicy:
    """A ClusterNetworkPolicy as Calico 3.32 converts it: a global policy in tier ``kube-admin``
    (``spec.tier: Admin``) or ``kube-baseline`` (``Baseline``), ordered by ``spec.priority``.

    The subject is either ``namespaces`` (every pod of the selected namespaces) or ``pods``
    (``namespaceSelector`` and ``podSelector``); Calico reads ``namespaces`` first."""

    name: str
    tier: str
    order: float
    namespaces: LabelSelector | None
    """subject.namespaces; None when the subject is ``pods``."""
    pod_namespaces: LabelSelector
    """subject.pods.namespaceSelector (empty when the subject is ``namespaces``)."""
    pods: LabelSelector
    """subject.pods.podSelector (empty when the subject is ``namespaces``)."""
    ingress: bool
    egress: bool
    rules: tuple[RuleCount, ...]
    kind: Literal["cluster"] = "cluster"
    namespace: str = ""
    staged_action: StagedAction | None = None


_CLUSTER_PEERS: tuple[tuple[Direction, str], ...] = (("ingress", "from"), ("egress", "to"))


def _cluster_peers(rule: Mapping[str, Any], field: str, *, path: str) -> None:
    for j, peer in enumerate(_list(rule, field, path=path)):
        where = f"{path}{field}[{j}]"
        peer_obj = _object(peer, path=where)
        if peer_obj.get("namespaces") is not None:
            parse_label_selector(peer_obj["namespaces"], path=f"{where}.namespaces")
        pods = peer_obj.get("pods")
        if pods is not None:
            pods_obj = _object(pods, path=f"{where}.pods")
            for selector_field in ("namespaceSelector", "podSelector"):
                parse_label_selector(pods_obj.get(selector_field),
                                     path=f"{where}.pods.{selector_field}")


def parse_cluster_network_policy(raw: RawObject) -> ClusterNetworkPolicy:
    """``K8sClusterNetworkPolicyToCalico`` (v3.32.1) kept to what selection needs.

    Where Calico logs and skips a policy (a tier other than Admin or Baseline, a subject with
    neither ``namespaces`` nor ``pods``) this raises ParseError, so that it is logged, counted and
    skipped here too. A label selector with an unknown operator, which Calico's translation would
    silently drop (selecting more), is refused as for Kubernetes NetworkPolicies.
    """
    meta = _meta(raw)
    spec = _spec(raw)
    tier_name = spec.get("tier")
    tier = CLUSTER_TIERS.get(tier_name) if isinstance(tier_name, str) else None
    if tier is None:
        raise ParseError(f"spec.tier {tier_name!r} is not Admin or Baseline")
    priority = spec.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ParseError(f"spec.priority {priority!r} is not an integer")
    subject = _object(spec.get("subject"), path="spec.subject")
    namespaces: LabelSelector | None = None
    pod_namespaces = pods = LabelSelector()
    if subject.get("namespaces") is not None:
        namespaces = parse_label_selector(subject["namespaces"], path="spec.subject.namespaces")
    elif subject.get("pods") is not None:
        pod_subject = _object(subject["pods"], path="spec.subject.pods")
        pod_namespaces = parse_label_selector(pod_subject.get("namespaceSelector"),
                                              path="spec.subject.pods.namespaceSelector")
        pods = parse_label_selector(pod_subject.get("podSelector"),
                                    path="spec.subject.pods.podSelector")
    else:
        raise ParseError("spec.subject has neither namespaces nor pods")
    counts: Counter[tuple[Direction, str]] = Counter()
    for direction, peers in _CLUSTER_PEERS:
        for i, rule in enumerate(_list(spec, direction, path="spec.")):
            where = f"spec.{direction}[{i}]"
            rule_obj = _object(rule, path=where)
            action = CLUSTER_ACTIONS.get(str(rule_obj.get("action")))
            if action is None:
                raise ParseError(f"{where}.action {rule_obj.get('action')!r} is not one of "
                                 f"{', '.join(CLUSTER_ACTIONS)}")
            _cluster_peers(rule_obj, peers, path=f"{where}.")
            counts[(direction, action)] += 1
    has_ingress = any(d == "ingress" for d, _ in counts)
    has_egress = any(d == "egress" for d, _ in counts)
    # clusterNetPolicyTypes: a type per direction with rules; Felix reads no types at all as
    # both (ExtractPolicyMetadata, felix/calc/policy_sorter.go).
    if not has_ingress and not has_egress:
        has_ingress = has_egress = True
    return ClusterNetworkPolicy(
        name=meta["name"],
        tier=tier,
        order=float(priority),
        namespaces=namespaces,
        pod_namespaces=pod_namespaces,
        pods=pods,
        ingress=has_ingress,
        egress=has_egress,
        rules=_rule_counts(counts),
    )


# --------------------------------------------------------------------------------------------
# Tiers


@dataclass(frozen=True, slots=True)
class Tier:
    """A Tier after libcalico-go's read defaulting (``DefaultTierFields``,
    ``libcalico-go/lib/resources/tier.go``): a missing ``order`` is 1,000,000 and a missing
    ``defaultAction`` is Deny; Felix reads any action but Pass as Deny
    (``ConvertTierV3ToV1Value``, ``updateprocessors/tierprocessor.go``)."""

    name: str
    order: float
    default_action: TierAction


DEFAULT_TIER_ORDER = 1_000_000.0
BUILTIN_TIERS: dict[str, Tier] = {
    KUBE_ADMIN_TIER: Tier(KUBE_ADMIN_TIER, 1_000.0, "Pass"),
    DEFAULT_TIER: Tier(DEFAULT_TIER, DEFAULT_TIER_ORDER, "Deny"),
    KUBE_BASELINE_TIER: Tier(KUBE_BASELINE_TIER, 10_000_000.0, "Pass"),
}
"""The tiers Calico 3.32 creates and protects (``EnsureInitialized`` in
``libcalico-go/lib/clientv3/client.go``; orders ``KubeAdminTierOrder``, ``DefaultTierOrder``,
``KubeBaselineTierOrder`` of ``api/pkg/apis/projectcalico/v3/tier.go``)."""


def parse_tier(raw: RawObject) -> Tier:
    meta = _meta(raw)
    spec = _spec(raw)
    order = _order(spec, "order")
    action = spec.get("defaultAction")
    if action is not None and not isinstance(action, str):
        raise ParseError(f"spec.defaultAction {action!r} is not a string")
    return Tier(
        name=sys.intern(meta["name"]),
        order=DEFAULT_TIER_ORDER if order is None else order,
        default_action="Pass" if action == "Pass" else "Deny",
    )


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
        namespace=sys.intern(namespace), name=meta["name"], labels=parse_calico_labels(raw),
        nets=len(nets),
    )


def parse_network_set(raw: RawObject) -> NetworkSet:
    return _parse_network_set(raw, namespaced=True)


def parse_global_network_set(raw: RawObject) -> NetworkSet:
    return _parse_network_set(raw, namespaced=False)
