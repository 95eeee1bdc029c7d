"""Scraper authorization as Kubernetes users expect it: a bearer token checked with a
TokenReview, then a SubjectAccessReview on the non-resource URL, both cached for a short time.

This is what kube-rbac-proxy and controller-runtime's metrics filter do
(``sigs.k8s.io/controller-runtime/pkg/metrics/filters/filters.go``,
``WithAuthenticationAndAuthorization``, built on ``k8s.io/apiserver``'s delegating
authenticator and authorizer):

* no ``Authorization: Bearer`` header, or a token the TokenReview does not authenticate: 401;
* a TokenReview ``authentication.k8s.io/v1`` ``{"spec": {"token": ...}}``; its
  ``status.user`` (username, uid, groups, extra) is the scraper;
* a SubjectAccessReview ``authorization.k8s.io/v1`` with ``spec.nonResourceAttributes``
  ``{"path": <request path>, "verb": <lower-case HTTP method>}`` and the user's username, uid,
  groups and extra: ``status.allowed`` lets the request through, anything else is 403;
* a review that fails (API error, timeout, malformed answer) is a 500 and is not cached.

The verb is the lower-cased HTTP method, as controller-runtime and the API server's own
request-info resolver give non-resource requests (kube-rbac-proxy maps GET to ``get`` too).

Caches (the same defaults as controller-runtime's filter): a TokenReview outcome, authenticated
or not, for ``token_ttl`` (1 min; ``k8s.io/apiserver``'s delegating authenticator caches both
outcomes for its CacheTTL, never errors) keyed by a SHA-256 of the token (the token itself is
not kept); an allowed SubjectAccessReview for ``allow_ttl`` (5 min), a denied one for
``deny_ttl`` (30 s), keyed by user and attributes (kube-rbac-proxy's ``buildAuthz`` uses the
same 5 min / 30 s). Concurrent requests with the same key share one review.
Each cache holds at most ``MAX_ENTRIES`` entries; expired ones go first, then the oldest.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog

from exporter.model.http import HttpStats

log = structlog.get_logger(__name__)

Post = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""``post(plural, body)``: create a ``tokenreviews`` or ``subjectaccessreviews`` object and
return the API server's answer; raises on any failure."""

MAX_ENTRIES = 4096
UNPROTECTED = frozenset({"/healthz", "/readyz"})
"""Paths served without a token: the kubelet's probes carry none."""

T = TypeVar("T")


class ReviewError(Exception):
    """A review could not be made or its answer not be read."""


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated user, as the TokenReview named it."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a request is refused: the HTTP status and the body to send."""

    status: int
    message: str
    reason: str
    """unauthenticated, forbidden or review_error (HttpStats.denied)."""


class TtlCache(Generic[T]):
    """Values with their own expiry, at most ``MAX_ENTRIES`` of them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, T]] = {}

    def get(self, key: Hashable) -> T | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] <= self._clock():
            del self._entries[key]
            return None
        return hit[1]

    def put(self, key: Hashable, value: T, ttl: float) -> None:
        if ttl <= 0:
            return
        now = self._clock()
        if len(self._entries) >= MAX_ENTRIES:
            for k in [k for k, (expires, _) in self._entries.items() if expires <= now]:
                del self._entries[k]
            while len(self._entries) >= MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]
        self._entries.pop(key, None)
        self._entries[key] = (now + ttl, value)

    def __len__(self) -> int:
        return len(self._entries)


class ScraperAuthorizer:
    """Decides whether a request may be served; see the module docstring."""

    def __init__(self, post: Post, *, stats: HttpStats, token_ttl: float = 60.0,
                 allow_ttl: float = 300.0, deny_ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._post = post
        self._stats = stats
        self._token_ttl, self._allow_ttl, self._deny_ttl = token_ttl, allow_ttl, deny_ttl
        self._users: TtlCache[tuple[User | None]] = TtlCache(clock)
        self._decisions: TtlCache[bool] = TtlCache(clock)
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}
        for reason in ("unauthenticated", "forbidden", "review_error"):
            stats.denied[reason] += 0
        for kind in ("tokenreviews", "subjectaccessreviews"):
            stats.reviews[kind] += 0

    async def check(self, authorization: str | None, *, method: str, path: str
                    ) -> Denial | None:
        """None when the request may be served, else why not."""
        denial = await self._check(authorization, method=method, path=path)
        if denial is not None:
            self._stats.denied[denial.reason] += 1
        return denial

    async def _check(self, authorization: str | None, *, method: str, path: str
                     ) -> Denial | None:
        token = bearer_token(authorization)
        if token is None:
            return Denial(401, "Unauthorized\n", "unauthenticated")
        try:
            user = await self._authenticate(token)
        except ReviewError as exc:
            log.warning("token_review_failed", reason=str(exc))
            return Denial(500, "Authentication failed\n", "review_error")
        if user is None:
            return Denial(401, "Unauthorized\n", "unauthenticated")
        verb = method.lower()
        try:
            allowed = await self._authorize(user, verb=verb, path=path)
        except ReviewError as exc:
            log.warning("access_review_failed", user=user.name, path=path, reason=str(exc))
            return Denial(500, f"Authorization for user {user.name} failed\n", "review_error")
        if not allowed:
            log.info("scrape_forbidden", user=user.name, verb=verb, path=path)
            return Denial(403, f"Authorization denied for user {user.name}\n", "forbidden")
        return None

    async def _authenticate(self, token: str) -> User | None:
        key = ("token", hashlib.sha256(token.encode()).digest())
        hit = self._users.get(key)
        if hit is not None:
            return hit[0]
        user: User | None = await self._once(key, lambda: self._token_review(token))
        self._users.put(key, (user,), self._token_ttl)
        return user

    async def _authorize(self, user: User, *, verb: str, path: str) -> bool:
        key = ("access", user, verb, path)
        hit = self._decisions.get(key)
        if hit is not None:
            return hit
        allowed: bool = await self._once(key, lambda: self._access_review(user, verb, path))
        self._decisions.put(key, allowed, self._allow_ttl if allowed else self._deny_ttl)
        return allowed

    async def _once(self, key: Hashable, review: Callable[[], Awaitable[T]]) -> T:
        """Run ``review`` once for concurrent callers with the same key."""
        running = self._inflight.get(key)
        if running is not None:
            result: T = await asyncio.shield(running)
            return result
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await review()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._inflight[key]

    async def _token_review(self, token: str) -> User | None:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token}}
        status = await self._review("tokenreviews", body)
        if status.get("authenticated") is not True:
            if status.get("error"):
                log.info("token_not_authenticated", reason=str(status["error"])[:200])
            return None
        return parse_user(status.get("user"))

    async def _access_review(self, user: User, verb: str, path: str) -> bool:
        spec: dict[str, Any] = {"nonResourceAttributes": {"path": path, "verb": verb},
                                "user": user.name, "groups": list(user.groups)}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra}
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": spec}
        status = await self._review("subjectaccessreviews", body)
        return status.get("allowed") is True and status.get("denied") is not True

    async def _review(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        self._stats.reviews[kind] += 1
        try:
            answer = await self._post(kind, body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure of the call is a review error
            raise ReviewError(f"{kind}: {type(exc).__name__}: {exc}") from exc
        status = answer.get("status") if isinstance(answer, dict) else None
        if not isinstance(status, dict):
            raise ReviewError(f"{kind}: the answer has no status")
        return status


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def parse_user(raw: object) -> User | None:
    """``status.user`` of a TokenReview; None without a username."""
    if not isinstance(raw, dict) or not isinstance(raw.get("username"), str) or not raw[
            "username"]:
        return None
    groups = raw.get("groups") or []
    extra = raw.get("extra") or {}
    return User(
        name=raw["username"],
        uid=str(raw.get("uid") or ""),
        groups=tuple(str(g) for g in groups) if isinstance(groups, list) else (),
        extra=tuple(sorted((str(k), tuple(str(x) for x in v)) for k, v in extra.items()
                           if isinstance(v, list))) if isinstance(extra, dict) else (),
    )


__all__ = ["Denial", "Post", "ReviewError", "ScraperAuthorizer", "User", "bearer_token",
           "parse_user"]
