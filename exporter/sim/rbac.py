"""RBAC: does a list of ClusterRole ``rules`` allow a resource request?

A rule allows a request when its ``verbs``, ``apiGroups`` and ``resources`` all match (``*``
matches anything; ``resources`` entries name a subresource as ``plural/sub``, and ``*/sub``
matches that subresource of any resource) and, when it lists ``resourceNames``, the request names
one of them. As on a real server, ``resourceNames`` never allow ``create`` or
``deletecollection``, and they allow ``list``/``watch`` only with a ``metadata.name`` field
selector (the caller passes that name).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_rules(path: str | Path) -> list[dict[str, Any]]:
    """The concatenated ``rules`` of every ClusterRole (or Role) in a (multi-document) YAML file."""
    rules: list[dict[str, Any]] = []
    with Path(path).open() as fh:
        for doc in yaml.safe_load_all(fh):
            if isinstance(doc, dict) and doc.get("kind") in ("ClusterRole", "Role"):
                rules.extend(doc.get("rules") or [])
    if not rules:
        raise ValueError(f"{path}: no ClusterRole with rules found")
    return rules


def _resource_matches(patterns: list[str], resource: str) -> bool:
    sub = resource.partition("/")[2]
    for pattern in patterns:
        if pattern in ("*", resource):
            return True
        if sub and pattern == f"*/{sub}":
            return True
    return False


def rule_allows(rule: dict[str, Any], *, verb: str, group: str, resource: str,
                name: str) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and verb not in verbs:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and group not in groups:
        return False
    if not _resource_matches(list(rule.get("resources") or []), resource):
        return False
    names = rule.get("resourceNames") or []
    if names:
        if verb in ("create", "deletecollection") or not name:
            return False
        return name in names
    return True


def allowed_by(rules: list[dict[str, Any]], *, verb: str, group: str, resource: str,
               name: str) -> int | None:
    """The index of the first rule that allows the request, or None."""
    for index, rule in enumerate(rules):
        if rule_allows(rule, verb=verb, group=group, resource=resource, name=name):
            return index
    return None
