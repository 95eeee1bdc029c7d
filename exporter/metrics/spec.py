"""Metric declarations: a name, a type, a help text and label names, in one frozen value.

Collectors build their families from these specs, so the exposition, ``docs/metrics.md`` and the
tests that compare the two all read the same declaration.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

MetricType = Literal["gauge", "counter", "histogram"]
"""State sets and info metrics are gauges, as kube-state-metrics exports them: a state set has one
series per state (value 1 for the current one, 0 for the others) with a ``state``-like label, and
an ``_info`` gauge is always 1 with the properties as labels."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family as exported: ``name`` is the exposition name (counters end in _total)."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    optional_labels: tuple[str, ...] = ()
    """Labels only some series of the family have (documented with the label)."""

    def gauge(self) -> GaugeMetricFamily:
        assert self.type == "gauge", self.name
        return GaugeMetricFamily(self.name, self.help, labels=self.labels)

    def counter(self) -> CounterMetricFamily:
        assert self.type == "counter", self.name
        assert self.name.endswith("_total"), self.name
        return CounterMetricFamily(self.name.removesuffix("_total"), self.help, labels=self.labels)

    def histogram(self) -> HistogramMetricFamily:
        assert self.type == "histogram", self.name
        return HistogramMetricFamily(self.name, self.help, labels=self.labels)


def all_specs(modules: Iterable[object]) -> list[MetricSpec]:
    """Every ``SPECS`` entry of the given metric modules, for docs checks."""
    out: list[MetricSpec] = []
    for module in modules:
        specs: Sequence[MetricSpec] = getattr(module, "SPECS", ())
        out.extend(specs)
    return out


__all__ = ["Collector", "MetricSpec", "MetricType", "all_specs"]
