"""The endpoint selector Felix derives from each policy, and the labels it is evaluated against.

Text for text as Calico's update processors build it (calico-model §3.1):

- Calico NetworkPolicy: ``(<selector>) && projectcalico.org/namespace == '<ns>'`` (just the
  namespace term when the selector is empty), then ``(<that>) && <SA selector with every label
  prefixed pcsa.>`` when ``serviceAccountSelector`` is set.
- Kubernetes NetworkPolicy: the pod selector translated by
  :func:`~exporter.policy.k8s.to_calico_selector`, then the namespace term as above.
- GlobalNetworkPolicy: ``<selector>``; with a ``namespaceSelector``, ``(<selector>) && <ns
  selector prefixed pcns.>`` and every ``all()`` in the whole string replaced by
  ``has(projectcalico.org/namespace)``; then the same with ``serviceAccountSelector``, ``pcsa.``
  and ``has(projectcalico.org/serviceaccount)``. (Calico replaces the text ``all()`` everywhere,
  string literals included; so do we.)

Where Calico would silently drop a sub-selector that does not parse, we refuse the policy: each
field is parsed on its own first so that the error names the field and the column in it.

:class:`EndpointLabels` is a pod's workload-endpoint label set without building a dict: the
implicit ``projectcalico.org/namespace``, ``/orchestrator`` (``k8s``) and ``/serviceaccount``
labels first, then the pod's own labels, then what the namespace profile (``pcns.<label>``,
``pcns.projectcalico.org/name``) and service-account profile (``pcsa.projectcalico.org/name``)
give it; Felix looks up endpoint labels before inherited profile labels in the same way.
ServiceAccount objects are not watched, so ``pcsa.<label>`` of a service account's own labels is
always absent; matching service accounts by name works.
"""

from __future__ import annotations

from collections.abc import Mapping

from exporter.model.policy import CalicoPolicy, K8sNetworkPolicy
from exporter.policy.k8s import ORCHESTRATOR_LABEL, to_calico_selector
from exporter.policy.selector import SelectorCache, SelectorError, canonical, with_prefix

NAMESPACE_LABEL = "projectcalico.org/namespace"
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"
NAME_LABEL = "projectcalico.org/name"
NAMESPACE_PREFIX = "pcns."
SERVICE_ACCOUNT_PREFIX = "pcsa."
_NAMESPACE_NAME = NAMESPACE_PREFIX + NAME_LABEL
_SERVICE_ACCOUNT_NAME = SERVICE_ACCOUNT_PREFIX + NAME_LABEL
_IMPLICIT_PREFIX = "projectcalico.org/"
_EMPTY: Mapping[str, str] = {}


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


def effective_selector(policy: CalicoPolicy | K8sNetworkPolicy, cache: SelectorCache) -> str:
    """The selector Felix matches endpoints with; raises PolicySelectorError naming the field."""
    if isinstance(policy, K8sNetworkPolicy):
        return _namespaced(to_calico_selector(policy.pod_selector), policy.namespace)
    _checked(cache, policy.selector, "spec.selector")
    if policy.kind == "calico":
        selector = _namespaced(policy.selector, policy.namespace)
        return _prefix_and_append(
            cache,
            selector,
            policy.service_account_selector,
            SERVICE_ACCOUNT_PREFIX,
            "spec.serviceAccountSelector",
        )
    selector = policy.selector
    if policy.namespace_selector:
        selector = _prefix_and_append(
            cache, selector, policy.namespace_selector, NAMESPACE_PREFIX, "spec.namespaceSelector"
        )
        selector = selector.replace("all()", f"has({NAMESPACE_LABEL})")
    if policy.service_account_selector:
        selector = _prefix_and_append(
            cache,
            selector,
            policy.service_account_selector,
            SERVICE_ACCOUNT_PREFIX,
            "spec.serviceAccountSelector",
        )
        selector = selector.replace("all()", f"has({SERVICE_ACCOUNT_LABEL})")
    return selector


def rule_selector_errors(policy: CalicoPolicy, cache: SelectorCache) -> list[PolicySelectorError]:
    """The rule selectors of a Calico policy that do not parse."""
    errors: list[PolicySelectorError] = []
    for field, text in policy.rule_selectors:
        try:
            cache.parse(text)
        except SelectorError as err:
            errors.append(PolicySelectorError(field, err))
    return errors


class EndpointLabels:
    """The labels of a pod's workload endpoint, as Felix sees them, looked up lazily."""

    __slots__ = ("_labels", "_namespace", "_namespace_labels", "_service_account")

    def __init__(
        self,
        labels: Mapping[str, str],
        *,
        namespace: str,
        service_account: str,
        namespace_labels: Mapping[str, str] = _EMPTY,
    ) -> None:
        self._labels = labels
        self._namespace = namespace
        self._service_account = service_account
        self._namespace_labels = namespace_labels

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
        if key == _SERVICE_ACCOUNT_NAME:
            return self._service_account
        return None
