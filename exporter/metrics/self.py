"""The exporter's own health: build info, source up/down, watch and parse counters; and the
process and Python runtime families of prometheus-client (``process_*``, ``python_gc_*``)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.metrics.spec import MetricSpec
from exporter.model.telemetry import Telemetry

BUILD_INFO = MetricSpec(
    "calico_exporter_build_info", "gauge", "Version of the running calico-exporter; always 1.",
    ("version",),
)
SOURCE_UP = MetricSpec(
    "calico_exporter_source_up", "gauge",
    "1 when a data source (kubernetes, bird, bird6, bird_routes and bird6_routes: BIRD's show "
    "route, probe_config, ...) answered on its last attempt, else 0.",
    ("source",),
)
WATCH_EVENTS = MetricSpec(
    "calico_exporter_watch_events_total", "counter",
    "Watch events received, by resource and event type (ADDED, MODIFIED, DELETED, BOOKMARK, "
    "ERROR).",
    ("resource", "event"),
)
WATCH_RESTARTS = MetricSpec(
    "calico_exporter_watch_restarts_total", "counter",
    "Watch streams restarted, by resource and reason: end (server closed it normally), expired "
    "(410, relisted), inactivity, connection, throttled (429), server_error (5xx), "
    "client_error, malformed, group_changed (Calico's API group changed, relisted from the "
    "new one).",
    ("resource", "reason"),
)
INVALID_OBJECTS = MetricSpec(
    "calico_exporter_invalid_objects_total", "counter",
    "Objects, selectors or config entries that failed to parse and were skipped, by resource.",
    ("resource",),
)

CALICO_API_INFO = MetricSpec(
    "calico_exporter_calico_api_info", "gauge",
    "The API group and version the exporter reads Calico's resources from, discovered at start "
    "and again when that group disappears (crd.projectcalico.org v1, or native "
    "projectcalico.org v3 CRDs); always 1.",
    ("group", "version"),
)

SPECS = (BUILD_INFO, SOURCE_UP, WATCH_EVENTS, WATCH_RESTARTS, INVALID_OBJECTS, CALICO_API_INFO)


class SelfCollector:
    """Reads a Telemetry; never raises (it only iterates plain dicts)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._t = telemetry

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        build = BUILD_INFO.gauge()
        build.add_metric([__version__], 1.0)
        yield build
        up = SOURCE_UP.gauge()
        for source, ok in sorted(self._t.source_up.items()):
            up.add_metric([source], 1.0 if ok else 0.0)
        yield up
        events = WATCH_EVENTS.counter()
        for (resource, event), n in sorted(self._t.watch_events.items()):
            events.add_metric([resource, event], n)
        yield events
        restarts = WATCH_RESTARTS.counter()
        for (resource, reason), n in sorted(self._t.watch_restarts.items()):
            restarts.add_metric([resource, reason], n)
        yield restarts
        invalid = INVALID_OBJECTS.counter()
        for resource, n in sorted(self._t.invalid_objects.items()):
            invalid.add_metric([resource], n)
        yield invalid
        if self._t.calico_api is not None:
            api = CALICO_API_INFO.gauge()
            api.add_metric(list(self._t.calico_api), 1.0)
            yield api


def runtime_collectors() -> list[Collector]:
    """prometheus-client's collectors of the process (``process_*``: resident and virtual
    memory, CPU seconds, open and max file descriptors, start time) and of Python's garbage
    collector (``python_gc_*``), unregistered. The process collector reads /proc/self at scrape
    time: kernel memory, never a disk or the network, and it swallows its own errors."""
    # GCCollector insists on registering itself somewhere: a registry nothing ever reads.
    return [ProcessCollector(registry=None), GCCollector(registry=CollectorRegistry())]


RUNTIME_PREFIXES = ("process_", "python_gc_")
"""Name prefixes of the runtime families; none of our own names (calico_*) starts so."""
