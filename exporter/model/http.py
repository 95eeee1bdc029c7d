"""What happened to the HTTP endpoint's connections and scrapers, as plain Python state.

The connection guard and the scraper authorization (``exporter.access``) record here;
``exporter.metrics.http`` exports it. One instance per process, like ``Telemetry``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

CLOSE_REASONS = ("header_timeout", "over_limit", "tls_handshake")
"""Why the server closed a connection itself: the request headers (or the TLS handshake) did
not arrive within --header-read-timeout; --max-connections were already open; the TLS
handshake failed (no or a wrong client certificate, not TLS at all)."""

DENY_REASONS = ("unauthenticated", "forbidden", "review_error")
"""Why a request was refused by scraper authorization: no or an unknown bearer token (401); a
token whose user may not get that path (403); the TokenReview or SubjectAccessReview failed
(500, never cached)."""


@dataclass(slots=True)
class HttpStats:
    """Open connections per listener, connections closed by the server, requests refused."""

    open: dict[str, int] = field(default_factory=dict)
    """listener (metrics, health) -> connections open now."""
    closed: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(listener, reason) -> connections the server closed, reason one of CLOSE_REASONS."""
    denied: Counter[str] = field(default_factory=Counter)
    """reason -> requests refused by scraper authorization, one of DENY_REASONS."""
    reviews: Counter[str] = field(default_factory=Counter)
    """kind (tokenreviews, subjectaccessreviews) -> reviews sent to the API server (cache
    misses)."""

    def declare(self, listener: str) -> None:
        """Expose zeros for a listener before its first connection."""
        self.open.setdefault(listener, 0)
        for reason in CLOSE_REASONS:
            self.closed[(listener, reason)] += 0
