"""The endpoint selector Felix derives from each policy, and the labels it is evaluated against.

Text for text as Calico's update processors build them (calico-model §3.1; libcalico-go
``lib/backend/syncersv1/updateprocessors`` at v3.32.1):

- Calico NetworkPolicy (and StagedNetworkPolicy, converted to its enforced form first):
  ``(<selector>) && projectcalico.org/namespace == '<ns>'`` (just the namespace term when the
  selector is empty), then ``(<that>) && <SA selector with every label prefixed pcsa.>`` when
  ``serviceAccountSelector`` is set.
- Kubernetes NetworkPolicy (and StagedKubernetesNetworkPolicy): the pod selector translated by
  :func:`~exporter.policy.k8s.to_calico_selector`, then the namespace term as above.
- GlobalNetworkPolicy (and StagedGlobalNetworkPolicy): ``<selector>``; with a
  ``namespaceSelector``, ``(<selector>) && <ns selector prefixed pcns.>`` and every ``all()`` in
  the whole string replaced by ``has(projectcalico.org/namespace)``; then the same with
  ``serviceAccountSelector``, ``pcsa.`` and ``has(projectcalico.org/serviceaccount)``. (Calico
  replaces the text ``all()`` everywhere, string literals included; so do we.)
- ClusterNetworkPolicy: converted into a global policy (``K8sClusterNetworkPolicyToCalico``):
  selector ``projectcalico.org/orchestrator == 'k8s'`` plus the translated ``podSelector`` of a
  ``pods`` subject, namespace selector the translated ``namespaces`` (or
  ``pods.namespaceSelector``; an empty one is ``all()``), then the GlobalNetworkPolicy rule.

Where Calico would silently drop a sub-selector that does not parse, we refuse the policy: each
field is parsed on its own first so that the error names the field and the column in it.

:func:`entity_rule_selector` is the selector of one side of a rule (``GetEntityRuleSelector`` of
``updateprocessors/rules.go``): the namespace part (``pcns.``-prefixed ``namespaceSelector`` with
``all()`` and ``global()`` rewritten, else the policy's namespace), ANDed with the
``serviceAccounts`` part (``pcsa.``-prefixed selector and ``projectcalico.org/serviceaccount in
{names}``) and the ``selector``.

:class:`EndpointLabels` is a pod's workload-endpoint label set without building a dict: the
implicit ``projectcalico.org/namespace``, ``/orchestrator`` (``k8s``) and ``/serviceaccount``
labels first, then the pod's own labels, then what the namespace profile (``pcns.<label>``,
``pcns.projectcalico.org/name``) and the service-account profile give it. The service-account
profile (``ksa.<ns>.<sa>``, ``ServiceAccountToProfile`` in ``k8s/conversion/conversion.go``)
carries ``pcsa.<label>`` for every label of the ServiceAccount object and
``pcsa.projectcalico.org/name``; Felix inherits it only while that profile exists, that is while
the ServiceAccount object exists. Felix looks up endpoint labels before inherited profile labels
in the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from exporter.model.policy import GLOBAL_KINDS, CalicoPolicy, ClusterNetworkPolicy, EntityRule
from exporter.model.policy import K8sNetworkPolicy as K8sPolicy
from exporter.policy.k8s import ORCHESTRATOR_LABEL, to_calico_selector
from exporter.policy.selector import (
    SelectorCache,
    SelectorError,
    SetMatch,
    canonical,
    with_prefix,
)

NAMESPACE_LABEL = "projectcalico.org/namespace"
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"
NAME_LABEL = "projectcalico.org/name"
NAMESPACE_PREFIX = "pcns."
SERVICE_ACCOUNT_PREFIX = "pcsa."
_NAMESPACE_NAME = NAMESPACE_PREFIX + NAME_LABEL
_SERVICE_ACCOUNT_NAME = SERVICE_ACCOUNT_PREFIX + NAME_LABEL
_IMPLICIT_PREFIX = "projectcalico.org/"
_EMPTY: Mapping[str, str] = {}
_NO_ACCOUNTS: Mapping[str, Mapping[str, Mapping[str, str]]] = {}
_NO_ACCOUNTS_HERE: Mapping[str, Mapping[str, str]] = {}

AnyPolicy = CalicoPolicy | K8sPolicy | ClusterNetworkPolicy


class PolicySelectorError(ValueError):
    """A selector field of a policy does not parse: which field, and the selector error."""

    def __init__(self, field: str, error: SelectorError) -> None:
        super().__init__(f"{field}: {error}")
        self.field = field
        self.error = error


def _checked(cache: SelectorCache, text: str, field: str) -> None:
    try:
        cache.parse(text)
    except SelectorError as err:
        raise PolicySelectorError(field, err) from None


def _prefixed(cache: SelectorCache, text: str, prefix: str, field: str) -> str:
    try:
        root = cache.parse(text).root
    except SelectorError as err:
        raise PolicySelectorError(field, err) from None
    return canonical(with_prefix(root, prefix))


def _prefix_and_append(
    cache: SelectorCache, current: str, new: str, prefix: str, field: str
) -> str:
    if not new:
        return current
    prefixed = _prefixed(cache, new, prefix, field)
    return f"({current}) && {prefixed}" if current else prefixed


def _namespaced(selector: str, namespace: str) -> str:
    term = f"{NAMESPACE_LABEL} == '{namespace}'"
    return f"({selector}) && {term}" if selector else term


def _global(cache: SelectorCache, selector: str, namespace_selector: str,
            service_account_selector: str, *, fields: tuple[str, str]) -> str:
    """``ConvertGlobalNetworkPolicyV3ToV1Value``: the GNP selector with its sub-selectors."""
    if namespace_selector:
        selector = _prefix_and_append(cache, selector, namespace_selector, NAMESPACE_PREFIX,
                                      fields[0])
        selector = selector.replace("all()", f"has({NAMESPACE_LABEL})")
    if service_account_selector:
        selector = _prefix_and_append(cache, selector, service_account_selector,
                                      SERVICE_ACCOUNT_PREFIX, fields[1])
        selector = selector.replace("all()", f"has({SERVICE_ACCOUNT_LABEL})")
    return selector


def effective_selector(policy: AnyPolicy, cache: SelectorCache) -> str:
    """The selector Felix matches endpoints with; raises PolicySelectorError naming the field."""
    if isinstance(policy, K8sPolicy):
        return _namespaced(to_calico_selector(policy.pod_selector), policy.namespace)
    if isinstance(policy, ClusterNetworkPolicy):
        if policy.namespaces is not None:
            pods = f"{ORCHESTRATOR_LABEL} == 'k8s'"
            namespaces = to_calico_selector(policy.namespaces, pod=False)
            field = "spec.subject.namespaces"
        else:
            pods = to_calico_selector(policy.pods)
            namespaces = to_calico_selector(policy.pod_namespaces, pod=False)
            field = "spec.subject.pods.namespaceSelector"
        _checked(cache, pods, "spec.subject.pods.podSelector")
        return _global(cache, pods, namespaces, "", fields=(field, ""))
    _checked(cache, policy.selector, "spec.selector")
    if policy.kind not in GLOBAL_KINDS:
        selector = _namespaced(policy.selector, policy.namespace)
        return _prefix_and_append(
            cache,
            selector,
            policy.service_account_selector,
            SERVICE_ACCOUNT_PREFIX,
            "spec.serviceAccountSelector",
        )
    return _global(cache, policy.selector, policy.namespace_selector,
                   policy.service_account_selector,
                   fields=("spec.namespaceSelector", "spec.serviceAccountSelector"))


def rule_selector_errors(policy: CalicoPolicy, cache: SelectorCache) -> list[PolicySelectorError]:
    """The rule selectors of a Calico policy that do not parse."""
    errors: list[PolicySelectorError] = []
    for field, text in policy.rule_selectors:
        try:
            cache.parse(text)
        except SelectorError as err:
            errors.append(PolicySelectorError(field, err))
    return errors


def _service_accounts(rule: EntityRule, cache: SelectorCache, field: str) -> str:
    """``parseServiceAccounts``: the pcsa.-prefixed selector ANDed with the names as a set."""
    selector = ""
    if rule.service_account_selector:
        selector = _prefixed(cache, rule.service_account_selector, SERVICE_ACCOUNT_PREFIX,
                             f"{field}.serviceAccounts.selector")
    if not rule.service_account_names:
        return selector
    names = canonical(SetMatch(SERVICE_ACCOUNT_LABEL, False,
                               tuple(sorted(set(rule.service_account_names)))))
    return f"({selector}) && ({names})" if selector else names


def entity_rule_selector(rule: EntityRule, namespace: str, cache: SelectorCache) -> str:
    """The selector of one rule side as Felix gets it (``GetEntityRuleSelector``); ``namespace``
    is the policy's ("" for a global policy). Raises PolicySelectorError naming the field."""
    field = f"spec.{rule.direction}[{rule.index}].{rule.side}"
    namespace_term = ""
    if rule.namespace_selector:
        namespace_term = _prefixed(cache, rule.namespace_selector, NAMESPACE_PREFIX,
                                   f"{field}.namespaceSelector")
        namespace_term = namespace_term.replace("all()", f"has({NAMESPACE_LABEL})")
        namespace_term = namespace_term.replace("global()", f"!has({NAMESPACE_LABEL})")
    elif namespace:
        namespace_term = f"{NAMESPACE_LABEL} == '{namespace}'"
    if rule.selector:
        _checked(cache, rule.selector, f"{field}.selector")
    parts = [p for p in (_service_accounts(rule, cache, field), rule.selector) if p]
    selector = "(" + ") && (".join(parts) + ")" if len(parts) > 1 else "".join(parts)
    if namespace_term and (selector or rule.not_selector or rule.namespace_selector):
        return f"({namespace_term}) && ({selector})" if selector else namespace_term
    return selector


class EndpointLabels:
    """The labels of a pod's workload endpoint, as Felix sees them, looked up lazily."""

    __slots__ = ("_accounts", "_labels", "_namespace", "_namespace_labels", "_service_account")

    def __init__(
        self,
        labels: Mapping[str, str],
        *,
        namespace: str,
        service_account: str,
        namespace_labels: Mapping[str, str] = _EMPTY,
        accounts: Mapping[str, Mapping[str, Mapping[str, str]]] = _NO_ACCOUNTS,
    ) -> None:
        """``accounts`` maps namespace -> service account name -> that account's labels, for
        the service accounts that exist; it is read only for ``pcsa.*`` labels."""
        self._labels = labels
        self._namespace = namespace
        self._service_account = service_account
        self._namespace_labels = namespace_labels
        self._accounts = accounts

    def get(self, key: str) -> str | None:
        if key.startswith(_IMPLICIT_PREFIX):
            if key == NAMESPACE_LABEL:
                return self._namespace
            if key == SERVICE_ACCOUNT_LABEL:
                return self._service_account
            if key == ORCHESTRATOR_LABEL:
                return "k8s"
        value = self._labels.get(key)
        if value is not None:
            return value
        if key.startswith(NAMESPACE_PREFIX):
            if key == _NAMESPACE_NAME:
                return self._namespace
            return self._namespace_labels.get(key[len(NAMESPACE_PREFIX) :])
        if key.startswith(SERVICE_ACCOUNT_PREFIX):
            account = self._accounts.get(self._namespace, _NO_ACCOUNTS_HERE).get(
                self._service_account)
            if account is None:
                return None  # no ServiceAccount object: no ksa.<ns>.<sa> profile to inherit
            if key == _SERVICE_ACCOUNT_NAME:
                return self._service_account
            return account.get(key[len(SERVICE_ACCOUNT_PREFIX) :])
        return None
