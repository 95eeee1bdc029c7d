"""The exporter's own counters and health flags, as plain Python state.

Every layer records what happened to it here (watch events, restarts, invalid objects, whether a
data source answers); ``exporter.metrics.self`` turns it into ``calico_exporter_*`` series at
scrape time. It lives at the bottom layer so that no feature needs prometheus-client.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Telemetry:
    """Process-lifetime counters; one instance per process, passed to whoever records."""

    watch_events: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(resource, event) -> count; event is ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."""
    watch_restarts: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(resource, reason) -> count; reason is a short bounded word (expired, timeout, ...)."""
    invalid_objects: Counter[str] = field(default_factory=Counter)
    """resource -> number of objects (or selectors, or config lines) that failed to parse."""
    source_up: dict[str, bool] = field(default_factory=dict)
    """source name (kubernetes, bird, bird6, bird_routes, bird6_routes, probe_config, ...) ->
    answers right now."""

    calico_api: tuple[str, str] | None = None
    """(group, version) serving Calico's resources now; None where no Calico API is read."""

    parts: dict[str, dict[str, bool]] = field(default_factory=dict)
    """source -> part -> last attempt succeeded; a source with parts is up when all of them are
    (the kubernetes source is up when every watch's last request succeeded)."""

    def declare(self, resource: str, *, events: tuple[str, ...] = (),
                reasons: tuple[str, ...] = ()) -> None:
        """Expose zeros for a resource before its first event, restart or invalid object, so
        that ``increase()`` and ``rate()`` count the first one too."""
        self.invalid_objects[resource] += 0
        for event in events:
            self.watch_events[(resource, event)] += 0
        for reason in reasons:
            self.watch_restarts[(resource, reason)] += 0

    def mark(self, source: str, part: str, ok: bool) -> None:
        """Record one part's last attempt and recompute the source's up flag."""
        parts = self.parts.setdefault(source, {})
        parts[part] = ok
        self.source_up[source] = all(parts.values())

    def invalid(self, resource: str, *, reason: str, name: str = "") -> None:
        """Count one malformed input and log it once with its reason."""
        self.invalid_objects[resource] += 1
        log.warning("invalid_object", resource=resource, name=name, reason=reason)
