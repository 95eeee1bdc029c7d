"""Contract tests of the emulator's review APIs through kubernetes-asyncio's typed clients
(``AuthenticationV1Api``, ``AuthorizationV1Api``), as the exporter's scraper authorization
and kube-rbac-proxy use them against a real API server.

Expected behaviour from Kubernetes v1.32: ``pkg/registry/authentication/tokenreview/storage.go``
(400 without a token; unknown tokens answer 201 with an empty user), the service-account token
authenticator's groups (``pkg/serviceaccount/util.go``: ``system:serviceaccounts``,
``system:serviceaccounts:<ns>``, then ``system:authenticated`` added by the authenticator),
``pkg/apis/authorization/validation`` (422 without attributes or subject), and RBAC's
``NonResourceURLMatches`` in ``pkg/apis/rbac/v1/evaluation_helpers.go`` (``*``; exact; a
trailing ``*`` is a prefix)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from exporter.sim.apiserver import ApiServer
from tests.sim.conftest import make_client

PROM = "system:serviceaccount:monitoring:prometheus"
REVIEW_RULES = [
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
     "verbs": ["create"]},
]


@pytest.fixture
async def srv() -> AsyncIterator[ApiServer]:
    s = ApiServer(rbac_rules=REVIEW_RULES)
    s.add_user("prom-token", PROM, rules=[{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}])
    s.add_user("ops-token", "alice", rules=[{"nonResourceURLs": ["/debug/*"], "verbs": ["*"]}])
    s.grant_group("auditors", [{"nonResourceURLs": ["*"], "verbs": ["get"]}])
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def apis(srv: ApiServer, tmp_path: Path
               ) -> AsyncIterator[tuple[client.AuthenticationV1Api, client.AuthorizationV1Api]]:
    async with await make_client(srv, tmp_path) as api:
        yield client.AuthenticationV1Api(api), client.AuthorizationV1Api(api)


async def test_token_review_known_unknown_and_empty(
        apis: tuple[client.AuthenticationV1Api, client.AuthorizationV1Api]) -> None:
    """A service account's token is authenticated with its username and the three groups; an
    unknown token is 201 with an empty user and an error; an empty token is 400."""
    authn, _ = apis
    review = await authn.create_token_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
         "spec": {"token": "prom-token"}})
    assert review.status.authenticated is True
    assert review.status.user.username == PROM
    assert review.status.user.groups == ["system:serviceaccounts",
                                         "system:serviceaccounts:monitoring",
                                         "system:authenticated"]
    assert review.status.user.uid
    unknown = await authn.create_token_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
         "spec": {"token": "nope"}})
    assert not unknown.status.authenticated
    assert unknown.status.user.username is None
    assert unknown.status.error
    with pytest.raises(ApiException) as info:
        await authn.create_token_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
             "spec": {"token": ""}})
    assert info.value.status == 400


def sar(path: str, verb: str = "get", *, user: str = "", groups: list[str] | None = None
        ) -> dict[str, object]:
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"nonResourceAttributes": {"path": path, "verb": verb}, "user": user,
                     "groups": groups or []}}


@pytest.mark.parametrize(("spec", "allowed"), [
    (sar("/metrics", user=PROM), True),
    (sar("/metrics", "post", user=PROM), False),
    (sar("/metrics/cadvisor", user=PROM), False),   # exact entry: no prefix match
    (sar("/debug/pprof", "post", user="alice"), True),  # "/debug/*" is a prefix, verb "*"
    (sar("/debug", user="alice"), False),
    (sar("/metrics", user="bob"), False),
    (sar("/anything", user="bob", groups=["auditors"]), True),  # "*" matches every URL
    (sar("/anything", "put", groups=["auditors"]), False),
])
async def test_subject_access_review_non_resource_urls(
        apis: tuple[client.AuthenticationV1Api, client.AuthorizationV1Api],
        spec: dict[str, object], allowed: bool) -> None:
    """nonResourceURLs are matched as RBAC matches them, for the user and each of its groups."""
    _, authz = apis
    review = await authz.create_subject_access_review(spec)
    assert review.status.allowed is allowed
    assert bool(review.status.reason) is allowed


async def test_subject_access_review_resource_attributes_and_validation(
        apis: tuple[client.AuthenticationV1Api, client.AuthorizationV1Api],
        srv: ApiServer) -> None:
    """resourceAttributes are evaluated with the same rules as requests; a review without
    attributes or without a subject is 422."""
    _, authz = apis
    srv.add_user("reader-token", "carol", rules=[
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])
    review = await authz.create_subject_access_review(
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
         "spec": {"resourceAttributes": {"verb": "list", "resource": "pods"}, "user": "carol"}})
    assert review.status.allowed is True
    review = await authz.create_subject_access_review(
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
         "spec": {"resourceAttributes": {"verb": "delete", "resource": "pods"},
                  "user": "carol"}})
    assert review.status.allowed is False
    for spec in ({"user": "carol"},
                 {"nonResourceAttributes": {"path": "/metrics", "verb": "get"}}):
        with pytest.raises(ApiException) as info:
            await authz.create_subject_access_review(
                {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                 "spec": spec})
        assert info.value.status == 422


async def test_reviews_need_create_permission(tmp_path: Path) -> None:
    """Without create on tokenreviews the caller gets 403 Forbidden, like any other request."""
    s = ApiServer(rbac_rules=REVIEW_RULES[1:])
    await s.start()
    try:
        async with await make_client(s, tmp_path) as api:
            with pytest.raises(ApiException) as info:
                await client.AuthenticationV1Api(api).create_token_review(
                    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                     "spec": {"token": "x"}})
            assert info.value.status == 403
            review = await client.AuthorizationV1Api(api).create_subject_access_review(
                sar("/metrics", user="x"))
            assert review.status.allowed is False
    finally:
        await s.stop()
