"""Runs every probe on its own interval, on a fixed grid, under one global concurrency limit.

Schedule: a probe added at monotonic time ``t`` gets a random offset ``j`` in ``[0, interval)``
(jitter, so probes loaded together do not fire together) and runs at ``t + j + k * interval`` for
k = 0, 1, 2, ... The due time is always computed from that start, never as "sleep(interval)
after the previous run", so run durations and loop delays never accumulate into drift. When a run
ends after its successor's slot has passed by a whole interval (only possible when the
concurrency limit held it back), the missed slots are skipped and counted, and the probe resumes
on the same grid.

A run is up to ``attempts`` attempts, stopped as soon as the success rule is decided. Each attempt
holds one slot of the global semaphore and is bounded by the probe's ``timeout``
(:func:`~exporter.probes.probers.run_attempt`). The run's outcome and verdict go to
:class:`~exporter.probes.results.Results`; a change of outcome or verdict is logged once (the
steady state is silent), with the detail of the attempt that decided it.

A reload calls :meth:`Scheduler.apply`: unchanged probes keep running on their grid, changed
ones restart (with a new jitter), removed ones are cancelled and their results dropped.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from exporter.probes.config import Probe, ProtocolName, redact_url
from exporter.probes.outcome import Attempt, Outcome, verdict
from exporter.probes.probers import PROBERS, Prober, run_attempt
from exporter.probes.results import Results, RunResult

log = structlog.get_logger(__name__)

OnStart = Callable[[Probe, float, float], None]
"""Called as ``(probe, due, started)`` in loop-clock seconds when a run's first attempt starts
(after the concurrency limit let it through); the benchmark measures lateness with it."""


@dataclass(frozen=True, slots=True)
class Grid:
    """The fixed schedule of one probe: slot k is due at ``start + k * interval``."""

    start: float
    interval: float

    def due(self, slot: int) -> float:
        return self.start + slot * self.interval

    def next_slot(self, slot: int, now: float) -> int:
        """The slot to run after ``slot`` when it finished at ``now``: the next one, or, if that
        is over an interval late, the latest slot already due (the ones between are skipped)."""
        current = math.floor((now - self.start) / self.interval)
        return max(slot + 1, current)


def jittered_grid(now: float, interval: float, rng: random.Random) -> Grid:
    """A grid starting at a random offset in [0, interval) after ``now``."""
    return Grid(now + rng.uniform(0.0, interval), interval)


async def run_probe(
    probe: Probe,
    *,
    semaphore: asyncio.Semaphore,
    probers: Mapping[ProtocolName, Prober] = PROBERS,
    due: float | None = None,
    on_start: OnStart | None = None,
) -> RunResult:
    """One run of ``probe``: its attempts under the semaphore, combined and judged."""
    loop = asyncio.get_running_loop()
    attempts: list[Attempt] = []
    outcomes: list[Outcome] = []
    first = 0.0
    started_at = time.time()
    latency: float | None = None
    for index in range(probe.attempts):
        async with semaphore:
            begin = loop.time()
            if index == 0:
                first, started_at = begin, time.time()
                if on_start is not None:
                    on_start(probe, begin if due is None else due, begin)
            attempt = await run_attempt(probe, probers=probers)
            end = loop.time()
        attempts.append(attempt)
        outcomes.append(attempt.outcome)
        if attempt.outcome is Outcome.SUCCESS:
            latency = end - begin
        if probe.success.decided(outcomes):
            break
    outcome = probe.success.combine(outcomes)
    return RunResult(
        outcome=outcome,
        result=verdict(outcome, expect=probe.expect, deny_outcomes=probe.deny_outcomes),
        attempts=tuple(attempts),
        duration=loop.time() - first,
        latency=latency if outcome is Outcome.SUCCESS else None,
        started_at=started_at,
        finished_at=time.time(),
    )


class Scheduler:
    """One task per probe, started by :meth:`run` and kept in line with :meth:`apply`."""

    def __init__(
        self,
        results: Results,
        *,
        concurrency: int,
        probers: Mapping[ProtocolName, Prober] = PROBERS,
        rng: random.Random | None = None,
        on_start: OnStart | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._results = results
        self._probers = probers
        self._rng = rng or random.Random()
        self._on_start = on_start
        self._semaphore = asyncio.Semaphore(concurrency)
        self._wanted: dict[str, Probe] = {}
        self._tasks: dict[str, tuple[Probe, asyncio.Task[None]]] = {}
        self._grids: dict[str, Grid] = {}
        self._running = False
        self._failure: BaseException | None = None
        self._wake = asyncio.Event()

    @property
    def probes(self) -> tuple[Probe, ...]:
        """The probes currently configured, by name."""
        return tuple(self._wanted[name] for name in sorted(self._wanted))

    def grid(self, name: str) -> Grid | None:
        """The schedule of a running probe (for inspection and tests)."""
        return self._grids.get(name)

    def apply(self, probes: Sequence[Probe]) -> None:
        """Make ``probes`` the configured set; results follow at once."""
        self._results.sync(probes)
        wanted: dict[str, Probe] = {}
        for probe in probes:
            state = self._results.get(probe.name)
            # an unchanged probe keeps the object its task and results already use
            wanted[probe.name] = state.probe if state is not None else probe
        self._wanted = wanted
        if self._running:
            self._reconcile()

    def _reconcile(self) -> None:
        for name in list(self._tasks):
            probe, task = self._tasks[name]
            if self._wanted.get(name) != probe:
                task.cancel()
                del self._tasks[name]
                self._grids.pop(name, None)
        loop = asyncio.get_running_loop()
        for name, probe in self._wanted.items():
            if name in self._tasks:
                continue
            grid = jittered_grid(loop.time(), probe.interval, self._rng)
            self._grids[name] = grid
            task = loop.create_task(self._loop(probe, grid), name=f"probe:{name}")
            task.add_done_callback(self._task_done)
            self._tasks[name] = (probe, task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._failure is None:
            self._failure = exc
            self._wake.set()

    async def _loop(self, probe: Probe, grid: Grid) -> None:
        loop = asyncio.get_running_loop()
        slot = 0
        previous: RunResult | None = None
        while True:
            due = grid.due(slot)
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            run = await run_probe(probe, semaphore=self._semaphore, probers=self._probers,
                                  due=due, on_start=self._on_start)
            if not self._results.record(probe, run):
                return
            _log_change(probe, previous, run)
            previous = run
            following = grid.next_slot(slot, loop.time())
            if following > slot + 1:
                self._results.skip(probe, following - slot - 1)
                log.debug("probe_runs_skipped", probe=probe.name, skipped=following - slot - 1,
                            reason="previous run ended after the next slot")
            slot = following

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run the configured probes until ``stop`` is set (or the task is cancelled); raise if
        a probe task crashed."""
        self._running = True
        self._reconcile()
        stopper = asyncio.ensure_future((stop or asyncio.Event()).wait())
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stopper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            waker.cancel()
            self._running = False
            tasks = [task for _, task in self._tasks.values()]
            self._tasks.clear()
            self._grids.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, stopper, waker, return_exceptions=True)
        if self._failure is not None:
            raise self._failure


def _log_change(probe: Probe, previous: RunResult | None, run: RunResult) -> None:
    if previous is not None and (previous.outcome, previous.result) == (run.outcome, run.result):
        return
    fields = {
        "probe": probe.name,
        "protocol": probe.protocol,
        "target": probe.public_target,
        "expect": probe.expect,
        "outcome": run.outcome.value,
        "result": run.result,
        "previous": previous.outcome.value if previous is not None else None,
        "detail": redact_url(run.detail),
    }
    if run.result == "match":
        log.info("probe_verdict", **fields)
    else:
        log.warning("probe_verdict", **fields)


__all__ = ["Grid", "OnStart", "Scheduler", "jittered_grid", "run_probe"]
