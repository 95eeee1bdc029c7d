"""Scraper authorization wired to the Kubernetes API: the TokenReview and SubjectAccessReview
calls the authorizer (``exporter.access.review``) makes, through this process's own API client
(in-cluster service account or kubeconfig)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from exporter.access.review import ScraperAuthorizer
from exporter.config import Settings
from exporter.kube.client import connect
from exporter.kube.resources import Resource
from exporter.model.http import HttpStats

TOKEN_REVIEWS = Resource("authentication.k8s.io", "v1", "tokenreviews", "TokenReview",
                         namespaced=False)
SUBJECT_ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews",
                                  "SubjectAccessReview", namespaced=False)
_REVIEWS = {r.plural: r for r in (TOKEN_REVIEWS, SUBJECT_ACCESS_REVIEWS)}


@asynccontextmanager
async def scraper_authorizer(settings: Settings, stats: HttpStats
                             ) -> AsyncIterator[ScraperAuthorizer | None]:
    """The authorizer when ``--authorize-scrapers`` is on (with its own API client), else None."""
    access = settings.access
    if not access.authorize_scrapers:
        yield None
        return
    async with connect(settings.kube) as api:

        async def post(plural: str, body: dict[str, Any]) -> dict[str, Any]:
            return await api.create(_REVIEWS[plural], body)

        yield ScraperAuthorizer(post, stats=stats, token_ttl=access.token_review_cache_ttl,
                                allow_ttl=access.access_review_allow_ttl,
                                deny_ttl=access.access_review_deny_ttl)
