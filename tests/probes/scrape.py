"""Scrape collectors through a real prometheus-client registry and parse the exposition."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def exposition(*collectors: Collector) -> str:
    """The text exposition of the collectors, as /metrics would serve it."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry).decode()


def parse(text: str) -> Series:
    """Every sample as (sample name, labels) -> value."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(series: Series, name: str, **labels: str) -> float | None:
    """The sample with exactly these labels, or None."""
    return series.get((name, frozenset(labels.items())))


def probes_in(series: Series, name: str) -> set[str]:
    """The probe label values present in one sample name."""
    return {dict(labels).get("probe", "") for (n, labels) in series if n == name}
