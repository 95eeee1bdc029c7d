"""Synthetic-probe families, read from :class:`exporter.probes.results.Results` at scrape time.

Probes run on their own schedules; a scrape only reads the last results (it never triggers a
probe), so every family reflects the last completed run. Per-probe series carry ``probe``,
``source_namespace``, ``protocol`` and ``expect``. A probe that has not completed a run yet has
only ``calico_probe_info``, ``calico_probe_runs_total`` (all 0) and an empty latency histogram:
no ``calico_probe_success`` rather than a misleading 0. A probe removed from the configuration
disappears from the next scrape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import structlog
from prometheus_client.core import Metric

from exporter.metrics.spec import MetricSpec
from exporter.probes.outcome import OUTCOMES, RESULTS, Outcome
from exporter.probes.results import ProbeState, ReloadStatus, Results, RunResult

log = structlog.get_logger(__name__)

PROBE = ("probe", "source_namespace", "protocol", "expect")

PROBE_SUCCESS = MetricSpec(
    "calico_probe_success", "gauge",
    "1 when the last run's verdict matched the probe's expect (allow: reached; deny: one of its "
    "deny outcomes), else 0 (a mismatch, or error: see calico_probe_outcome).",
    PROBE,
)
PROBE_REACHABLE = MetricSpec(
    "calico_probe_reachable", "gauge",
    "1 when the last run reached the target (outcome success), else 0.",
    PROBE,
)
PROBE_OUTCOME = MetricSpec(
    "calico_probe_outcome", "gauge",
    "Outcome of the last run as a state set: 1 for the current outcome, 0 for the others "
    "(success, refused, timeout, unreachable, dns_nxdomain, dns_servfail, dns_timeout, "
    "http_status_mismatch, tls_error, error).",
    (*PROBE, "outcome"),
)
PROBE_DURATION = MetricSpec(
    "calico_probe_duration_seconds", "gauge",
    "Duration of the last run, all its attempts included, in seconds.",
    PROBE,
)
PROBE_LATENCY = MetricSpec(
    "calico_probe_latency_seconds", "histogram",
    "Latency of successful runs (their last successful attempt), in seconds.",
    PROBE,
)
PROBE_RUNS = MetricSpec(
    "calico_probe_runs_total", "counter",
    "Completed runs by result: match (verdict as expected), mismatch (unexpected allow or "
    "deny), error (the probe could not run).",
    (*PROBE, "result"),
)
PROBE_LAST_RUN = MetricSpec(
    "calico_probe_last_run_timestamp_seconds", "gauge",
    "Unix time the last run finished; alert when older than a few intervals.",
    PROBE,
)
PROBE_SKIPPED = MetricSpec(
    "calico_probe_skipped_runs_total", "counter",
    "Scheduled runs not started because the previous run was held back by the concurrency "
    "limit past the next slot.",
    PROBE,
)
PROBE_INFO = MetricSpec(
    "calico_probe_info", "gauge",
    "A configured probe of this agent, with its target and schedule; always 1.",
    (*PROBE, "target", "interval_seconds", "timeout_seconds", "attempts"),
)
CONFIG_LAST_RELOAD_SUCCESSFUL = MetricSpec(
    "calico_probe_config_last_reload_successful", "gauge",
    "1 when the last (re)load of the probe config file succeeded; 0 when the file is invalid "
    "and the previous configuration is still in force.",
)
CONFIG_LAST_RELOAD_SUCCESS_TIME = MetricSpec(
    "calico_probe_config_last_reload_success_timestamp_seconds", "gauge",
    "Unix time of the last successful (re)load of the probe config file.",
)
CONFIG_RELOAD_FAILURES = MetricSpec(
    "calico_probe_config_reload_failures_total", "counter",
    "(Re)loads of the probe config file that failed validation and were not applied.",
)
CONFIG_PROBES = MetricSpec(
    "calico_probe_config_probes", "gauge",
    "Probes in the config file: scope=agent counts those this agent runs (its source "
    "namespace), scope=file all of them.",
    ("scope",),
)

SPECS = (
    PROBE_SUCCESS, PROBE_REACHABLE, PROBE_OUTCOME, PROBE_DURATION, PROBE_LATENCY, PROBE_RUNS,
    PROBE_LAST_RUN, PROBE_SKIPPED, PROBE_INFO, CONFIG_LAST_RELOAD_SUCCESSFUL,
    CONFIG_LAST_RELOAD_SUCCESS_TIME, CONFIG_RELOAD_FAILURES, CONFIG_PROBES,
)


def _labels(state: ProbeState) -> list[str]:
    p = state.probe
    return [p.name, p.source.namespace, p.protocol, p.expect]


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _last_gauge(spec: MetricSpec, states: list[ProbeState],
                value: Callable[[RunResult], float]) -> Metric:
    """A per-probe gauge of the last run; probes without a run yet have no series."""
    family = spec.gauge()
    for state in states:
        if state.last is not None:
            family.add_metric(_labels(state), value(state.last))
    return family


def _info(states: list[ProbeState]) -> Metric:
    family = PROBE_INFO.gauge()
    for state in states:
        p = state.probe
        family.add_metric([*_labels(state), p.public_target, f"{p.interval:g}", f"{p.timeout:g}",
                           str(p.attempts)], 1.0)
    return family


def _success(states: list[ProbeState]) -> Metric:
    return _last_gauge(PROBE_SUCCESS, states, lambda run: 1.0 if run.result == "match" else 0.0)


def _reachable(states: list[ProbeState]) -> Metric:
    return _last_gauge(PROBE_REACHABLE, states,
                       lambda run: 1.0 if run.outcome is Outcome.SUCCESS else 0.0)


def _duration(states: list[ProbeState]) -> Metric:
    return _last_gauge(PROBE_DURATION, states, lambda run: run.duration)


def _last_run(states: list[ProbeState]) -> Metric:
    return _last_gauge(PROBE_LAST_RUN, states, lambda run: run.finished_at)


def _outcome(states: list[ProbeState]) -> Metric:
    family = PROBE_OUTCOME.gauge()
    for state in states:
        if state.last is not None:
            labels = _labels(state)
            for outcome in OUTCOMES:
                family.add_metric([*labels, outcome.value],
                                  1.0 if state.last.outcome is outcome else 0.0)
    return family


def _latency(states: list[ProbeState]) -> Metric:
    family = PROBE_LATENCY.histogram()
    for state in states:
        hist = state.latency
        buckets = [(_le(bound), float(n)) for bound, n in hist.cumulative()]
        family.add_metric(_labels(state), buckets, hist.sum)
    return family


def _runs(states: list[ProbeState]) -> Metric:
    family = PROBE_RUNS.counter()
    for state in states:
        labels = _labels(state)
        for result in RESULTS:
            family.add_metric([*labels, result], float(state.runs[result]))
    return family


def _skipped(states: list[ProbeState]) -> Metric:
    family = PROBE_SKIPPED.counter()
    for state in states:
        family.add_metric(_labels(state), float(state.skipped))
    return family


_BUILDERS: tuple[Callable[[list[ProbeState]], Metric], ...] = (
    _info, _success, _reachable, _outcome, _duration, _latency, _runs, _last_run, _skipped,
)


def _probe_families(states: list[ProbeState]) -> Iterator[Metric]:
    for build in _BUILDERS:
        try:
            family = build(states)
        except Exception:  # one broken family must not break the scrape
            log.exception("collect_failed", collector="probes", family=build.__name__)
            continue
        yield family


def _config_families(status: ReloadStatus) -> list[Metric]:
    ok = CONFIG_LAST_RELOAD_SUCCESSFUL.gauge()
    ok.add_metric([], 1.0 if status.last_successful else 0.0)
    when = CONFIG_LAST_RELOAD_SUCCESS_TIME.gauge()
    if status.last_success_timestamp:
        when.add_metric([], status.last_success_timestamp)
    failures = CONFIG_RELOAD_FAILURES.counter()
    failures.add_metric([], float(status.failures))
    probes = CONFIG_PROBES.gauge()
    probes.add_metric(["agent"], float(status.probes_here))
    probes.add_metric(["file"], float(status.probes_in_file))
    return [ok, when, failures, probes]


class ProbeCollector:
    """Yields the probe families from the results and the config reload status."""

    def __init__(self, results: Results, status: ReloadStatus | None = None) -> None:
        self._results = results
        self._status = status

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            states = self._results.states()
        except Exception:  # a collector must never break the scrape
            log.exception("collect_failed", collector="probes")
            return
        yield from _probe_families(states)
        if self._status is not None:
            try:
                families = _config_families(self._status)
            except Exception:
                log.exception("collect_failed", collector="probes", family="config")
                return
            yield from families


__all__ = ["PROBE", "SPECS", "ProbeCollector"]
