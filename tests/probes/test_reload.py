"""Hot reload: unchanged probes keep their results, removed ones vanish, bad files are refused."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from exporter.metrics.probes import ProbeCollector
from exporter.model.telemetry import Telemetry
from exporter.probes.config import ProbeConfigError
from exporter.probes.reload import ConfigReloader
from exporter.probes.results import ReloadStatus, Results
from exporter.probes.scheduler import Scheduler
from tests.probes.scrape import exposition, parse, probes_in, value
from tests.probes.servers import HttpServer


async def wait_until(condition: Callable[[], bool], *, limit: float = 20.0) -> None:
    """Poll until condition() holds; fail after limit (a hang guard, not a timing check)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


def probe(name: str, port: int, *, namespace: str = "testns", **keys: object) -> dict[str, object]:
    """A TCP probe entry for the config file."""
    return {"name": name, "protocol": "tcp", "target": f"127.0.0.1:{port}", "expect": "allow",
            "source": {"namespace": namespace}, "interval": "100ms", "timeout": "80ms", **keys}


def write(path: Path, *probes: dict[str, object]) -> None:
    """Write a config file with these probes."""
    path.write_text(yaml.safe_dump({"probes": list(probes)}))


@dataclass
class Agent:
    path: Path
    results: Results
    status: ReloadStatus
    scheduler: Scheduler
    reloader: ConfigReloader
    telemetry: Telemetry

    def runs(self, name: str) -> int:
        state = self.results.get(name)
        return sum(state.runs.values()) if state is not None else 0


@pytest.fixture
async def agent(tmp_path: Path, http: HttpServer) -> AsyncIterator[Agent]:
    """A scheduler and a reloader (polling every 20 ms) over a config with probes a, b and d
    in testns and e elsewhere, running."""
    path = tmp_path / "probes.yaml"
    write(path, probe("a", http.port), probe("b", http.port), probe("d", http.port),
          probe("e", http.port, namespace="other"))
    results, status, telemetry = Results(), ReloadStatus(), Telemetry()
    scheduler = Scheduler(results, concurrency=8)
    reloader = ConfigReloader(str(path), namespace="testns", scheduler=scheduler, status=status,
                              telemetry=telemetry, poll_interval=0.02)
    reloader.load_initial()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(scheduler.run(stop)), asyncio.create_task(reloader.run(stop))]
    try:
        yield Agent(path, results, status, scheduler, reloader, telemetry)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_reload_keeps_unchanged_probes(agent: Agent, http: HttpServer) -> None:
    """An unchanged probe keeps its state, counters and schedule; a changed one restarts; a
    removed one is gone from results and from the next scrape; an added one appears."""
    await wait_until(lambda: all(agent.runs(n) >= 2 for n in "abd"))
    assert agent.results.get("e") is None
    state_a, grid_a = agent.results.get("a"), agent.scheduler.grid("a")
    old_b = agent.results.get("b")
    before = agent.runs("a")
    write(agent.path, probe("a", http.port), probe("b", http.port, timeout="90ms"),
          probe("c", http.port))
    assert agent.reloader.reload(reason="test")
    assert agent.results.get("a") is state_a
    assert agent.scheduler.grid("a") is grid_a
    assert agent.runs("a") >= before
    assert agent.results.get("b") is not old_b
    assert agent.results.get("d") is None
    series = parse(exposition(ProbeCollector(agent.results, agent.status)))
    assert probes_in(series, "calico_probe_info") == {"a", "b", "c"}
    await wait_until(lambda: agent.runs("c") >= 1 and agent.runs("b") >= 1)
    assert agent.results.get("a") is state_a


async def test_bad_reload_keeps_old_config(agent: Agent) -> None:
    """An invalid file is refused with one log line; the running probes and their results stay;
    the failure is counted and exported."""
    await wait_until(lambda: agent.runs("a") >= 1)
    state_a = agent.results.get("a")
    agent.path.write_text("probes:\n  - name: a\n    protocol: udp\n")
    with capture_logs() as logs:
        assert not agent.reloader.reload(reason="test")
    failures = [e for e in logs if e["event"] == "probe_config_reload_failed"]
    assert len(failures) == 1
    assert failures[0]["error"] == ('probes[0] "a": protocol: "udp" is not one of dns, http, '
                                    "icmp, tcp")
    assert failures[0]["errors"] == 4
    assert failures[0]["kept_probes"] == 3
    assert agent.results.get("a") is state_a
    assert [p.name for p in agent.scheduler.probes] == ["a", "b", "d"]
    assert agent.telemetry.invalid_objects["probe_config"] == 1
    assert agent.telemetry.source_up["probe_config"] is False
    series = parse(exposition(ProbeCollector(agent.results, agent.status)))
    assert value(series, "calico_probe_config_last_reload_successful") == 0.0
    assert value(series, "calico_probe_config_reload_failures_total") == 1.0
    await wait_until(lambda: agent.runs("a") >= 3)


@pytest.mark.parametrize(("interval", "timeout"), [(".nan", "80ms"), (".inf", ".inf"),
                                                     ("100ms", ".nan")])
async def test_non_finite_durations_are_refused_on_reload(agent: Agent, http: HttpServer,
                                                          interval: str, timeout: str) -> None:
    """Issue 12, defect 10: a hot reload to a .nan or .inf interval or timeout is refused with
    the field named (it used to pass validation and crash the agent); the probes keep
    running on the old configuration."""
    await wait_until(lambda: agent.runs("a") >= 1)
    agent.path.write_text(
        f"probes:\n- name: a\n  protocol: tcp\n  target: 127.0.0.1:{http.port}\n"
        f"  expect: allow\n  source: {{namespace: testns}}\n  interval: {interval}\n"
        f"  timeout: {timeout}\n")
    await wait_until(lambda: agent.status.failures == 1)
    assert agent.status.last_error.startswith('probes[0] "a": ')
    assert "is not a finite duration" in agent.status.last_error
    assert [p.name for p in agent.scheduler.probes] == ["a", "b", "d"]
    before = agent.runs("b")
    await wait_until(lambda: agent.runs("b") >= before + 2)


async def test_file_change_is_picked_up(agent: Agent, http: HttpServer) -> None:
    """Writing the file is enough: the poll sees it and applies the new probes."""
    write(agent.path, probe("a", http.port), probe("z", http.port))
    await wait_until(lambda: agent.status.successes == 2)
    assert [p.name for p in agent.scheduler.probes] == ["a", "z"]
    assert agent.status.last_successful


async def test_revert_after_a_bad_edit_is_picked_up(agent: Agent) -> None:
    """Issue 12: a bad edit is refused; writing the file back as it was (the running
    configuration) is a successful reload at the next poll, not only after SIGHUP, so
    calico_probe_config_last_reload_successful returns to 1."""
    good = agent.path.read_bytes()
    stat = agent.path.stat()
    agent.path.write_text("probes: {}\n")
    await wait_until(lambda: agent.status.failures == 1)
    agent.path.write_bytes(good)
    os.utime(agent.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    await wait_until(lambda: agent.status.successes == 2)
    assert agent.status.last_successful
    assert agent.telemetry.source_up["probe_config"] is True
    assert [p.name for p in agent.scheduler.probes] == ["a", "b", "d"]


async def test_edit_keeping_size_and_mtime_is_picked_up(agent: Agent, http: HttpServer) -> None:
    """An edit in place that keeps the file's inode, size and mtime (one timestamp tick,
    cp -p, touch -r) is still seen: the content decides."""
    stat = agent.path.stat()
    write(agent.path, probe("a", http.port), probe("c", http.port), probe("d", http.port),
          probe("e", http.port, namespace="other"))
    assert agent.path.stat().st_size == stat.st_size
    os.utime(agent.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    await wait_until(lambda: agent.status.successes == 2)
    assert [p.name for p in agent.scheduler.probes] == ["a", "c", "d"]


async def test_missing_file_then_back(agent: Agent, http: HttpServer) -> None:
    """A file that disappears is one failure (the config stays); when it is back it loads."""
    agent.path.unlink()
    await wait_until(lambda: agent.status.failures == 1)
    await asyncio.sleep(0.1)  # several polls of the still-missing file
    assert agent.status.failures == 1
    assert [p.name for p in agent.scheduler.probes] == ["a", "b", "d"]
    write(agent.path, probe("a", http.port))
    await wait_until(lambda: agent.status.successes == 2)
    assert [p.name for p in agent.scheduler.probes] == ["a"]


async def test_sighup_reloads(agent: Agent, http: HttpServer) -> None:
    """SIGHUP reloads even when the file looks unchanged."""
    await wait_until(lambda: signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, None))
    with capture_logs() as logs:
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_until(lambda: agent.status.successes == 2)
    loaded = [e for e in logs if e["event"] == "probe_config_loaded"]
    assert [e["reason"] for e in loaded] == ["sighup"]
    assert (loaded[0]["added"], loaded[0]["removed"], loaded[0]["changed"]) == (0, 0, 0)


async def test_configmap_symlink_swap(tmp_path: Path, http: HttpServer) -> None:
    """A ConfigMap update (the ..data symlink swapped to a new directory) is seen even when the
    new file has the same size and mtime."""
    first, second = tmp_path / "..2026_01", tmp_path / "..2026_02"
    first.mkdir()
    second.mkdir()
    write(first / "probes.yaml", probe("a", http.port))
    write(second / "probes.yaml", probe("b", http.port))
    stat = (first / "probes.yaml").stat()
    os.utime(second / "probes.yaml", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "probes.yaml").symlink_to("..data/probes.yaml")
    results, status = Results(), ReloadStatus()
    scheduler = Scheduler(results, concurrency=2)
    reloader = ConfigReloader(str(tmp_path / "probes.yaml"), namespace="testns",
                              scheduler=scheduler, status=status, poll_interval=0.02)
    reloader.load_initial()
    stop = asyncio.Event()
    task = asyncio.create_task(reloader.run(stop, handle_sighup=False))
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    await wait_until(lambda: status.successes == 2)
    stop.set()
    await task
    assert [p.name for p in scheduler.probes] == ["b"]


def test_initial_bad_config_raises(tmp_path: Path) -> None:
    """The first load has nothing to fall back on: it raises with the exact problems."""
    path = tmp_path / "probes.yaml"
    path.write_text("probes: {}\n")
    reloader = ConfigReloader(str(path), namespace="testns",
                              scheduler=Scheduler(Results(), concurrency=1),
                              status=ReloadStatus())
    with pytest.raises(ProbeConfigError) as info:
        reloader.load_initial()
    assert info.value.errors == ("probes: must be a list of probes",)
