"""The scheduler: fixed-grid schedule (logic), jitter, concurrency limit, timeouts, attempts."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable

import pytest

from exporter.probes.config import Probe
from exporter.probes.outcome import Attempt, Outcome
from exporter.probes.probers import PROBERS
from exporter.probes.results import Histogram, Results
from exporter.probes.scheduler import Grid, Scheduler, jittered_grid, run_probe
from tests.probes.conftest import MakeProbe
from tests.probes.servers import HttpServer


async def wait_until(condition: Callable[[], bool], *, limit: float = 20.0) -> None:
    """Poll until condition() holds; fail (not a timing assertion: a hang guard) after limit."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------------------------------
# Schedule logic, without clocks


def test_next_slot_on_time_and_late() -> None:
    """After slot k comes k+1, even late within an interval; further behind, missed slots are
    skipped and the probe resumes on the grid."""
    grid = Grid(start=100.0, interval=10.0)
    assert grid.next_slot(0, now=100.5) == 1
    assert grid.next_slot(0, now=110.0) == 1
    assert grid.next_slot(0, now=119.9) == 1
    assert grid.next_slot(0, now=120.0) == 2
    assert grid.next_slot(3, now=175.0) == 7
    assert grid.due(7) == 170.0


def test_grid_does_not_drift() -> None:
    """Simulated runs of random duration and random wake-up delay: every run starts on its slot
    of the original grid, none is skipped, and after 100,000 runs the schedule has not moved,
    whereas "sleep(interval) after each run" drifts by the sum of all durations."""
    rng = random.Random(7)
    grid = Grid(start=5.0, interval=10.0)
    slot, now, naive = 0, 5.0, 5.0
    for _ in range(100_000):
        due = grid.due(slot)
        now = max(now, due) + rng.uniform(0.0, 0.05)  # woken a little late
        now += rng.uniform(0.0, 9.0)  # the run
        naive += 10.0 + rng.uniform(0.0, 9.0)
        following = grid.next_slot(slot, now)
        assert following == slot + 1
        slot = following
    assert grid.due(slot) == 5.0 + 100_000 * 10.0
    assert naive - grid.due(slot) > 100_000  # the naive loop is days behind


def test_jitter_spreads_starts_over_the_interval() -> None:
    """A thousand probes loaded at once start at offsets spread over [0, interval)."""
    rng = random.Random(3)
    offsets = [jittered_grid(50.0, 10.0, rng).start - 50.0 for _ in range(1000)]
    assert all(0.0 <= o < 10.0 for o in offsets)
    deciles = {math.floor(o) for o in offsets}
    assert deciles == set(range(10))


def test_histogram_buckets_are_cumulative() -> None:
    """Observations land in the first bucket whose bound is >= the value; +Inf counts all."""
    hist = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        hist.observe(value)
    assert hist.cumulative() == [(0.1, 2), (1.0, 3), (math.inf, 4)]
    assert (hist.count, hist.sum) == (4, 3.65)


def test_results_follow_config_and_drop_stale_runs(make_probe: MakeProbe) -> None:
    """sync keeps equal probes, resets changed ones, drops removed ones; a run of a replaced
    probe object is not recorded."""
    results = Results()
    a, b = make_probe("tcp", "127.0.0.1:1", name="a"), make_probe("tcp", "127.0.0.1:2", name="b")
    results.sync([a, b])
    state_a = results.get("a")
    results.sync([make_probe("tcp", "127.0.0.1:1", name="a"),
                  make_probe("tcp", "127.0.0.1:3", name="b")])
    assert results.get("a") is state_a
    assert results.current(b) is None
    results.sync([a])
    assert [s.probe.name for s in results.states()] == ["a"]


# ------------------------------------------------------------------------------------------
# The real scheduler on loopback


async def test_runs_start_on_the_jittered_grid(make_probe: MakeProbe, http: HttpServer) -> None:
    """Each run's due time is start + k * interval of a grid whose start is within one interval
    of the moment the probe was added."""
    results = Results()
    dues: list[float] = []
    scheduler = Scheduler(results, concurrency=4, rng=random.Random(1),
                          on_start=lambda probe, due, started: dues.append(due))
    probe = make_probe("tcp", f"127.0.0.1:{http.port}", interval="100ms", timeout="50ms")
    scheduler.apply([probe])
    stop = asyncio.Event()
    added = asyncio.get_running_loop().time()
    runner = asyncio.create_task(scheduler.run(stop))
    await wait_until(lambda: len(dues) >= 5)
    grid = scheduler.grid(probe.name)
    stop.set()
    await runner
    assert grid is not None
    assert 0.0 <= grid.start - added < 0.1
    slots = [(due - grid.start) / 0.1 for due in dues]
    assert all(math.isclose(s, round(s), abs_tol=1e-6) for s in slots)
    assert [round(s) for s in slots] == sorted({round(s) for s in slots})
    state = results.get(probe.name)
    assert state is not None
    assert state.runs["match"] >= len(dues) - 1  # the last start may still be running


async def test_concurrency_limit(make_probe: MakeProbe, http: HttpServer) -> None:
    """No more attempts are in flight than the global limit, whatever the probes' schedules."""
    results = Results()
    scheduler = Scheduler(results, concurrency=2)
    probes = [make_probe("http", f"http://127.0.0.1:{http.port}/busy", name=f"p{i}",
                         interval="200ms", timeout="150ms") for i in range(10)]
    scheduler.apply(probes)
    stop = asyncio.Event()
    runner = asyncio.create_task(scheduler.run(stop))
    await wait_until(lambda: all(s.last is not None for s in results.states()))
    stop.set()
    await runner
    assert 1 <= http.max_in_flight <= 2


async def test_timeout_is_enforced_in_runs(make_probe: MakeProbe, http: HttpServer) -> None:
    """A target that never answers produces a timeout run, recorded as a deny match."""
    results = Results()
    scheduler = Scheduler(results, concurrency=2)
    probe = make_probe("http", f"http://127.0.0.1:{http.port}/hang", expect="deny",
                       interval="500ms", timeout="100ms")
    scheduler.apply([probe])
    stop = asyncio.Event()
    runner = asyncio.create_task(scheduler.run(stop))
    await wait_until(lambda: (s := results.get(probe.name)) is not None and s.last is not None)
    stop.set()
    await runner
    state = results.get(probe.name)
    assert state is not None
    assert state.last is not None
    assert (state.last.outcome, state.last.result) == (Outcome.TIMEOUT, "match")


@pytest.mark.parametrize(("rule", "outcome", "attempts"), [
    ("any", Outcome.SUCCESS, 1),
    ("all", Outcome.HTTP_STATUS_MISMATCH, 2),
    ("majority", Outcome.SUCCESS, 3),
    (3, Outcome.HTTP_STATUS_MISMATCH, 2),
])
async def test_attempts_and_success_rule(make_probe: MakeProbe, http: HttpServer,
                                         rule: str | int, outcome: Outcome,
                                         attempts: int) -> None:
    """Against a target alternating 200 and 500, the rule decides the run and stops early."""
    probe = make_probe("http", f"http://127.0.0.1:{http.port}/flaky", attempts=3, success=rule,
                       interval="10s", timeout="1s")
    run = await run_probe(probe, semaphore=asyncio.Semaphore(1))
    assert run.outcome is outcome
    assert len(run.attempts) == attempts
    assert http.flaky == attempts
    assert (run.latency is not None) == (outcome is Outcome.SUCCESS)


async def test_crashing_prober_is_an_error_run(make_probe: MakeProbe) -> None:
    """A prober that raises yields an error run; the scheduler itself keeps going."""

    async def broken(probe: Probe) -> Attempt:
        raise RuntimeError("boom")

    results = Results()
    scheduler = Scheduler(results, concurrency=1, probers={**PROBERS, "tcp": broken})
    probe = make_probe("tcp", "127.0.0.1:9", interval="100ms", timeout="50ms")
    scheduler.apply([probe])
    stop = asyncio.Event()
    runner = asyncio.create_task(scheduler.run(stop))
    await wait_until(lambda: (s := results.get(probe.name)) is not None and s.runs["error"] >= 2)
    stop.set()
    await runner
    state = results.get(probe.name)
    assert state is not None
    assert state.last is not None
    assert state.last.outcome is Outcome.ERROR
    assert state.last.detail == "prober failed: RuntimeError('boom')"


async def test_scheduler_failure_surfaces(make_probe: MakeProbe, http: HttpServer) -> None:
    """A bug in the scheduling itself (here the start hook) ends run() with that exception."""

    def hook(probe: Probe, due: float, started: float) -> None:
        raise ValueError("hook failed")

    scheduler = Scheduler(Results(), concurrency=1, on_start=hook)
    scheduler.apply([make_probe("tcp", f"127.0.0.1:{http.port}", interval="100ms",
                                timeout="50ms")])
    with pytest.raises(ValueError, match="hook failed"):
        await scheduler.run(asyncio.Event())


async def test_held_back_runs_are_skipped(make_probe: MakeProbe, http: HttpServer) -> None:
    """With one slot shared with a slow probe, a fast probe misses slots: they are skipped and
    counted, and it stays on its grid."""
    results = Results()
    dues: list[float] = []
    scheduler = Scheduler(results, concurrency=1,
                          on_start=lambda p, due, started: dues.append(due) if p.name == "fast"
                          else None)
    slow = make_probe("http", f"http://127.0.0.1:{http.port}/hang", name="slow",
                      interval="400ms", timeout="400ms")
    fast = make_probe("tcp", f"127.0.0.1:{http.port}", name="fast", interval="100ms",
                      timeout="100ms")
    scheduler.apply([slow, fast])
    stop = asyncio.Event()
    runner = asyncio.create_task(scheduler.run(stop))
    await wait_until(lambda: (s := results.get("fast")) is not None and s.skipped > 0)
    grid = scheduler.grid("fast")
    stop.set()
    await runner
    assert grid is not None
    assert all(math.isclose((d - grid.start) / 0.1, round((d - grid.start) / 0.1), abs_tol=1e-6)
               for d in dues)
