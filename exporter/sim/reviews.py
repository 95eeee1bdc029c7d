"""The review APIs of the emulator: ``authentication.k8s.io/v1`` TokenReview and
``authorization.k8s.io/v1`` SubjectAccessReview, evaluated against the emulator's own users
(bearer tokens) and RBAC rules.

As on a real v1.32 API server (``pkg/registry/authentication/tokenreview``,
``pkg/registry/authorization/subjectaccessreview``, RBAC's ``rule.go``):

* both are create-only (``POST .../tokenreviews``, ``POST .../subjectaccessreviews``), answer
  201 with the submitted object plus ``status``, and store nothing;
* a TokenReview without ``spec.token`` is 400; an unknown token gets ``status.user: {}`` and
  an ``error``, a known one ``authenticated: true`` and the user: its username, uid and groups (a
  service account's are ``system:serviceaccounts``, ``system:serviceaccounts:<namespace>`` and
  ``system:authenticated``);
* a SubjectAccessReview needs exactly one of ``resourceAttributes`` / ``nonResourceAttributes``
  and a user or a group (422 otherwise); it is evaluated against the rules granted to
  ``spec.user`` and to each of ``spec.groups`` (as the request gives them, not looked up), with
  RBAC's matching: ``nonResourceURLs`` entries match the path exactly, or as a prefix when they
  end in ``*`` (``*`` alone matches all), verbs exactly or ``*``. Allowed: ``allowed: true``
  and a reason naming the subject; otherwise ``allowed: false`` with no reason, as RBAC leaves it.

Deliberate simplification: these two resources are served but not listed in discovery, and the
emulator's other endpoints still accept only its main token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from exporter.sim import rbac
from exporter.sim.errors import ApiError

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105  (a URL path)
SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
PATHS = {
    TOKEN_REVIEWS: ("authentication.k8s.io", "tokenreviews"),
    SUBJECT_ACCESS_REVIEWS: ("authorization.k8s.io", "subjectaccessreviews"),
}
"""URL path -> (API group, resource) of the review APIs."""


@dataclass(slots=True)
class Identity:
    """A user the emulator knows by its bearer token."""

    username: str
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    groups: tuple[str, ...] = ("system:authenticated",)


def service_account(namespace: str, name: str) -> Identity:
    """A service account's identity, with the groups the real token authenticator gives."""
    return Identity(f"system:serviceaccount:{namespace}:{name}",
                    groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                            "system:authenticated"))


def identity_for(username: str) -> Identity:
    """A user's identity: a service account's groups for ``system:serviceaccount:NS:NAME``."""
    parts = username.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        return service_account(parts[2], parts[3])
    return Identity(username)


def token_review(body: Any, users: dict[str, Identity]) -> dict[str, Any]:
    """The answer to a TokenReview ``body``; ApiError 400 when it is not one."""
    spec = _spec(body, "TokenReview", "authentication.k8s.io/v1")
    token = spec.get("token")
    if not isinstance(token, str) or not token:
        raise ApiError(400, "token is required for TokenReview in authentication")
    found = users.get(token)
    if found is None:
        status: dict[str, Any] = {"user": {},
                                  "error": "[invalid bearer token, token lookup failed]"}
    else:
        status = {"authenticated": True,
                  "user": {"username": found.username, "uid": found.uid,
                           "groups": list(found.groups)},
                  "audiences": ["https://kubernetes.default.svc.cluster.local"]}
    return _answer(body, status)


def subject_access_review(body: Any, grants: dict[str, list[dict[str, Any]]]
                          ) -> dict[str, Any]:
    """The answer to a SubjectAccessReview ``body``: ``grants`` maps a username, or
    ``group:<name>``, to the RBAC rules bound to it. ApiError 400/422 when it is not valid."""
    spec = _spec(body, "SubjectAccessReview", "authorization.k8s.io/v1")
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    causes = []
    if (resource is None) == (non_resource is None):
        causes.append({"reason": "FieldValueRequired", "field": "spec.resourceAttributes",
                       "message": "exactly one of nonResourceAttributes or resourceAttributes "
                                  "must be specified"})
    user = spec.get("user") or ""
    groups = spec.get("groups") or []
    if not isinstance(user, str) or not isinstance(groups, list):
        raise ApiError(400, "SubjectAccessReview spec.user must be a string and spec.groups "
                            "a list")
    if not user and not groups:
        causes.append({"reason": "FieldValueRequired", "field": "spec.user",
                       "message": "at least one of user or group must be specified"})
    if causes:
        raise ApiError(422, "SubjectAccessReview.authorization.k8s.io \"\" is invalid: "
                            + "; ".join(c["message"] for c in causes),
                       reason="Invalid", details={"group": "authorization.k8s.io",
                                                  "kind": "SubjectAccessReview",
                                                  "causes": causes})
    subjects = ([("User", user)] if user else []) + [("Group", str(g)) for g in groups]
    for kind, name in subjects:
        rules = grants.get(name if kind == "User" else f"group:{name}", [])
        if _allows(rules, resource, non_resource):
            return _answer(body, {"allowed": True,
                                  "reason": f'RBAC: allowed by ClusterRoleBinding "{name}" '
                                            f'to {kind} "{name}"'})
    return _answer(body, {"allowed": False})


def non_resource_matches(rule: dict[str, Any], *, verb: str, path: str) -> bool:
    """Does ``rule`` allow ``verb`` on the non-resource URL ``path``?"""
    verbs = rule.get("verbs") or []
    if "*" not in verbs and verb not in verbs:
        return False
    for url in rule.get("nonResourceURLs") or []:
        if url == "*" or url == path or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def _allows(rules: list[dict[str, Any]], resource: Any, non_resource: Any) -> bool:
    if isinstance(non_resource, dict):
        verb, path = str(non_resource.get("verb") or ""), str(non_resource.get("path") or "")
        return any(non_resource_matches(r, verb=verb, path=path) for r in rules)
    if isinstance(resource, dict):
        plural = str(resource.get("resource") or "")
        sub = str(resource.get("subresource") or "")
        return rbac.allowed_by(
            [r for r in rules if r.get("resources")], verb=str(resource.get("verb") or ""),
            group=str(resource.get("group") or ""),
            resource=f"{plural}/{sub}" if sub else plural,
            name=str(resource.get("name") or "")) is not None
    return False


def _spec(body: Any, kind: str, api_version: str) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("kind") != kind or body.get(
            "apiVersion") != api_version:
        raise ApiError(400, f"the body is not a {api_version} {kind}")
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise ApiError(400, f"{kind} has no spec")
    return spec


def _answer(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {"kind": body["kind"], "apiVersion": body["apiVersion"],
            "metadata": {"creationTimestamp": None}, "spec": body["spec"], "status": status}
