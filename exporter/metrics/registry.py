"""Our own CollectorRegistry per process (never the global REGISTRY), built from collectors.

It is an :class:`exporter.metrics.exposition.Registry`, which remembers its collectors so that
``/metrics`` can render them with the fast renderer.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.registry import Collector

from exporter.metrics.exposition import Registry

__all__ = ["Collector", "Registry", "build_registry"]


def build_registry(collectors: Iterable[Collector]) -> Registry:
    registry = Registry()
    for collector in collectors:
        registry.register(collector)
    return registry
