"""What the probes found, kept as plain Python for ``exporter.metrics.probes`` to read.

Per probe: the last run (outcome, verdict, duration, timestamps), run counters by result, the
number of skipped runs and a latency histogram of successful runs (fixed buckets, like
prometheus-client keeps them). Plus :class:`ReloadStatus`, the state of the configuration file.

Only the scheduler writes (on the event-loop thread); readers take a snapshot with
:meth:`Results.states`. :meth:`Results.sync` follows the configuration: an unchanged probe keeps its
state, a changed or new one starts empty, a removed one is dropped at once, so its series vanish
from the next scrape. A run that finishes after its probe was removed or changed is discarded.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.probes.config import Probe
from exporter.probes.outcome import RESULTS, Attempt, Outcome, Result

DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Upper bounds in seconds of ``calico_probe_latency_seconds`` (+Inf is implicit)."""


@dataclass(slots=True)
class Histogram:
    """Counts of observations per bucket; ``counts[-1]`` is the +Inf overflow."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= bound) for every bucket, ending with (inf, count)."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass(frozen=True, slots=True)
class RunResult:
    """One run of a probe: its attempts combined by the success rule and judged."""

    outcome: Outcome
    result: Result
    attempts: tuple[Attempt, ...]
    duration: float
    """Seconds from the first attempt's start to the last attempt's end."""
    latency: float | None
    """Duration of the last successful attempt when the run is a success, else None."""
    started_at: float
    """Wall-clock time (Unix seconds) the run started."""
    finished_at: float
    """Wall-clock time (Unix seconds) the run finished."""

    @property
    def detail(self) -> str:
        """The explanation of the attempt that decided the outcome."""
        for attempt in reversed(self.attempts):
            if attempt.outcome is self.outcome:
                return attempt.detail
        return self.attempts[-1].detail if self.attempts else ""


@dataclass(slots=True)
class ProbeState:
    """Everything known about one configured probe."""

    probe: Probe
    latency: Histogram
    last: RunResult | None = None
    runs: dict[Result, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    skipped: int = 0
    """Scheduled runs not started because the previous one was still going on."""


@dataclass(slots=True)
class ReloadStatus:
    """State of the probe configuration file, for ``calico_probe_config_*``."""

    path: str = ""
    last_successful: bool = False
    last_success_timestamp: float = 0.0
    """Wall-clock time of the last successful (re)load; 0 before the first."""
    successes: int = 0
    failures: int = 0
    last_error: str = ""
    probes_in_file: int = 0
    probes_here: int = 0
    """Probes of the file whose source namespace is this agent's."""


class Results:
    """Per-probe state by probe name."""

    __slots__ = ("_buckets", "_states")

    def __init__(self, *, buckets: tuple[float, ...] = DEFAULT_LATENCY_BUCKETS) -> None:
        self._buckets = tuple(sorted(buckets))
        self._states: dict[str, ProbeState] = {}

    def sync(self, probes: Iterable[Probe]) -> None:
        """Follow a new configuration: keep unchanged probes, reset changed, drop removed."""
        wanted = {p.name: p for p in probes}
        for name in list(self._states):
            if wanted.get(name) != self._states[name].probe:
                del self._states[name]
        for name, probe in wanted.items():
            if name not in self._states:
                self._states[name] = ProbeState(probe, Histogram(self._buckets))

    def current(self, probe: Probe) -> ProbeState | None:
        """The state of exactly this probe object, or None if it was removed or replaced."""
        state = self._states.get(probe.name)
        return state if state is not None and state.probe is probe else None

    def record(self, probe: Probe, run: RunResult) -> bool:
        """Store a finished run; False (and nothing stored) if the probe is gone or changed."""
        state = self.current(probe)
        if state is None:
            return False
        state.last = run
        state.runs[run.result] += 1
        if run.latency is not None:
            state.latency.observe(run.latency)
        return True

    def skip(self, probe: Probe, count: int) -> None:
        """Count scheduled runs that were skipped."""
        state = self.current(probe)
        if state is not None:
            state.skipped += count

    def get(self, name: str) -> ProbeState | None:
        return self._states.get(name)

    def states(self) -> list[ProbeState]:
        """A snapshot of all probe states, by name."""
        return [state for _, state in sorted(list(self._states.items()), key=lambda kv: kv[0])]

    def __len__(self) -> int:
        return len(self._states)


__all__ = [
    "DEFAULT_LATENCY_BUCKETS",
    "Histogram",
    "ProbeState",
    "ReloadStatus",
    "Results",
    "RunResult",
]
