"""Scraper authorization through real HTTP: the exporter's endpoint with ``authorize_scrapers``
on, its TokenReviews and SubjectAccessReviews sent by its own API client to the emulator, which
evaluates them against its users and RBAC rules. The exporter's RBAC is the one ``deploy/``
adds with the scraper-auth component; Prometheus's is ``deploy``'s metrics-reader ClusterRole.
The emulator's request log shows which reviews were sent (cache hits send none)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from exporter.access.review import ScraperAuthorizer
from exporter.app.access import SUBJECT_ACCESS_REVIEWS, TOKEN_REVIEWS, scraper_authorizer
from exporter.config import AccessSettings, KubeSettings, Settings
from exporter.kube.client import connect
from exporter.model.http import HttpStats
from exporter.sim import rbac
from exporter.sim.apiserver import ApiServer
from tests.access.helpers import endpoint

COMPONENT = Path(__file__).resolve().parents[2] / "deploy" / "components" / "scraper-auth"
EXPORTER_RULES = rbac.load_rules(COMPONENT / "clusterrole.yaml")
READER_RULES = rbac.load_rules(COMPONENT / "clusterrole-metrics-reader.yaml")
PROMETHEUS = "system:serviceaccount:monitoring:prometheus"
NOBODY = "system:serviceaccount:default:nobody"
EXPORTER_TOKEN = "exporter-token"  # the emulator's test tokens
PROMETHEUS_TOKEN = "prometheus-token"
NOBODY_TOKEN = "nobody-token"


@pytest.fixture
async def apiserver() -> AsyncIterator[ApiServer]:
    """The emulator with the exporter's RBAC from deploy/, Prometheus allowed to get /metrics
    and a service account with no rights at all."""
    srv = ApiServer(token=EXPORTER_TOKEN, rbac_rules=EXPORTER_RULES)
    srv.add_user(PROMETHEUS_TOKEN, PROMETHEUS, rules=READER_RULES)
    srv.add_user(NOBODY_TOKEN, NOBODY)
    await srv.start()
    yield srv
    await srv.stop()


def reviews_sent(srv: ApiServer) -> list[str]:
    """The review kinds the emulator received, in order."""
    return [r.path.rsplit("/", 1)[1] for r in srv.requests if r.path.endswith("reviews")]


async def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as session, session.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return resp.status, await resp.text()


async def test_no_token_401_forbidden_403_allowed_200_and_cache_hits(
        apiserver: ApiServer, tmp_path: Path) -> None:
    """No token: 401, no review. A token whose user may not get /metrics: 403. Prometheus's
    token: 200. Repeating either sends no review (cached); an unknown token is 401 and cached
    too; /healthz and /readyz need no token."""
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    settings = Settings(kube=KubeSettings(kubeconfig=str(kubeconfig)),
                        access=AccessSettings(authorize_scrapers=True))
    stats = HttpStats()
    async with scraper_authorizer(settings, stats) as authorizer, endpoint(
            settings.access, authorizer=authorizer, stats=stats) as ep:
        metrics = f"{ep.url}/metrics"
        assert await get(metrics) == (401, "Unauthorized\n")
        assert reviews_sent(apiserver) == []

        assert await get(metrics, NOBODY_TOKEN) == (403, f"Authorization denied for user "
                                                         f"{NOBODY}\n")
        assert reviews_sent(apiserver) == ["tokenreviews", "subjectaccessreviews"]
        status, body = await get(metrics, PROMETHEUS_TOKEN)
        assert status == 200
        assert "test_up 1.0" in body
        assert reviews_sent(apiserver) == ["tokenreviews", "subjectaccessreviews"] * 2

        for _ in range(3):
            assert (await get(metrics, PROMETHEUS_TOKEN))[0] == 200
            assert (await get(metrics, NOBODY_TOKEN))[0] == 403
        assert reviews_sent(apiserver) == ["tokenreviews", "subjectaccessreviews"] * 2

        for _ in range(2):
            assert (await get(metrics, "not-a-token"))[0] == 401
        assert reviews_sent(apiserver)[4:] == ["tokenreviews"]

        assert (await get(f"{ep.url}/healthz"))[0] == 200
        assert (await get(f"{ep.url}/readyz"))[0] == 200
        assert (await get(f"{ep.url}/", NOBODY_TOKEN))[0] == 403
        body = (await get(metrics, PROMETHEUS_TOKEN))[1]
        assert 'calico_exporter_http_requests_denied_total{reason="forbidden"} 5.0' in body
        assert 'calico_exporter_http_requests_denied_total{reason="unauthenticated"} 3.0' in body

    # What the emulator was asked, exactly: the bodies kube-rbac-proxy sends.
    tr, sar = [r for r in apiserver.requests if r.path.endswith("reviews")][:2]
    assert orjson.loads(tr.body) == {"apiVersion": "authentication.k8s.io/v1",
                                     "kind": "TokenReview", "spec": {"token": NOBODY_TOKEN}}
    spec = orjson.loads(sar.body)["spec"]
    assert spec["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}
    assert spec["user"] == NOBODY
    assert spec["groups"] == ["system:serviceaccounts", "system:serviceaccounts:default",
                              "system:authenticated"]


@pytest.mark.parametrize("missing", ["tokenreviews", "subjectaccessreviews"])
async def test_each_review_rule_is_needed_and_failures_are_not_cached(
        tmp_path: Path, missing: str) -> None:
    """Without either rule of the component's ClusterRole, every scrape is a 500 and asks
    again (failures are never cached): both rules are needed."""
    rules = [r for r in EXPORTER_RULES if missing not in r["resources"]]
    assert len(rules) == len(EXPORTER_RULES) - 1
    srv = ApiServer(token=EXPORTER_TOKEN, rbac_rules=rules)
    srv.add_user(PROMETHEUS_TOKEN, PROMETHEUS, rules=READER_RULES)
    await srv.start()
    try:
        settings = Settings(kube=KubeSettings(
            kubeconfig=str(srv.write_kubeconfig(tmp_path / "kubeconfig"))),
            access=AccessSettings(authorize_scrapers=True))
        stats = HttpStats()
        async with scraper_authorizer(settings, stats) as authorizer, endpoint(
                settings.access, authorizer=authorizer, stats=stats) as ep:
            message = ("Authentication failed\n" if missing == "tokenreviews"
                       else f"Authorization for user {PROMETHEUS} failed\n")
            for _ in range(2):
                assert await get(f"{ep.url}/metrics", PROMETHEUS_TOKEN) == (500, message)
            assert [(r.path.rsplit("/", 1)[1], r.status) for r in srv.requests
                    if r.path.endswith(missing)] == [(missing, 403)] * 2
            assert stats.denied["review_error"] == 2
    finally:
        await srv.stop()


async def test_cache_lifetimes(apiserver: ApiServer, tmp_path: Path) -> None:
    """Token results live token_ttl; an allowed decision allow_ttl, a denied one deny_ttl (the
    controller-runtime defaults 60 s, 300 s, 30 s), on the authorizer's clock."""
    now = [1000.0]
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    async with connect(KubeSettings(kubeconfig=str(kubeconfig))) as api:

        async def post(plural: str, body: dict[str, Any]) -> dict[str, Any]:
            resource = TOKEN_REVIEWS if plural == "tokenreviews" else SUBJECT_ACCESS_REVIEWS
            return await api.create(resource, body)

        defaults = AccessSettings()
        authorizer = ScraperAuthorizer(post, stats=HttpStats(),
                                       token_ttl=defaults.token_review_cache_ttl,
                                       allow_ttl=defaults.access_review_allow_ttl,
                                       deny_ttl=defaults.access_review_deny_ttl,
                                       clock=lambda: now[0])

        async def check(token: str) -> int:
            denial = await authorizer.check(f"Bearer {token}", method="GET", path="/metrics")
            return 200 if denial is None else denial.status

        async def both() -> list[str]:
            before = len(reviews_sent(apiserver))
            assert (await check(PROMETHEUS_TOKEN), await check(NOBODY_TOKEN)) == (200, 403)
            return reviews_sent(apiserver)[before:]

        tr, sar = "tokenreviews", "subjectaccessreviews"
        assert await both() == [tr, sar, tr, sar]
        now[0] += 29
        assert await both() == []  # everything cached
        now[0] += 2  # 31 s: the denial (30 s) is asked again; tokens (60 s) still cached
        assert await both() == [sar]
        now[0] += 30  # 61 s: both tokens reviewed again, and the denial cached at 31 s expired
        assert await both() == [tr, tr, sar]
        now[0] += 240  # 301 s: the allowed decision (300 s) expires as well
        assert await both() == [tr, sar, tr, sar]
