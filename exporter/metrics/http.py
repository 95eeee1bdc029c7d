"""The HTTP endpoint's own series: open connections, connections it closed, refused scrapers."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from exporter.metrics.spec import MetricSpec
from exporter.model.http import HttpStats

HTTP_CONNECTIONS = MetricSpec(
    "calico_exporter_http_connections", "gauge",
    "Connections open now on a listener (metrics: --listen, health: --health-listen).",
    ("listener",),
)
HTTP_CONNECTIONS_CLOSED = MetricSpec(
    "calico_exporter_http_connections_closed_total", "counter",
    "Connections the exporter closed itself, by listener and reason: header_timeout (request "
    "headers or TLS handshake not in within --header-read-timeout), over_limit "
    "(--max-connections reached), tls_handshake (failed, e.g. no client certificate).",
    ("listener", "reason"),
)
HTTP_REQUESTS_DENIED = MetricSpec(
    "calico_exporter_http_requests_denied_total", "counter",
    "Requests refused by scraper authorization: unauthenticated (401), forbidden (403), "
    "review_error (500: a TokenReview or SubjectAccessReview failed).",
    ("reason",),
)
HTTP_AUTH_REVIEWS = MetricSpec(
    "calico_exporter_http_auth_reviews_total", "counter",
    "TokenReviews and SubjectAccessReviews sent to the API server (cache misses), by kind.",
    ("kind",),
)

SPECS = (HTTP_CONNECTIONS, HTTP_CONNECTIONS_CLOSED, HTTP_REQUESTS_DENIED, HTTP_AUTH_REVIEWS)


class HttpCollector:
    """Reads an HttpStats; never raises (it only iterates plain dicts)."""

    def __init__(self, stats: HttpStats) -> None:
        self._stats = stats

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        open_ = HTTP_CONNECTIONS.gauge()
        for listener, count in sorted(stats.open.items()):
            open_.add_metric([listener], count)
        yield open_
        closed = HTTP_CONNECTIONS_CLOSED.counter()
        for (listener, reason), count in sorted(stats.closed.items()):
            closed.add_metric([listener, reason], count)
        yield closed
        if stats.denied:
            denied = HTTP_REQUESTS_DENIED.counter()
            for reason, count in sorted(stats.denied.items()):
                denied.add_metric([reason], count)
            yield denied
        if stats.reviews:
            reviews = HTTP_AUTH_REVIEWS.counter()
            for kind, count in sorted(stats.reviews.items()):
                reviews.add_metric([kind], count)
            yield reviews
