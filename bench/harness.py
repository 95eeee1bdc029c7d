"""Benchmark harness: the exporter as its own process against the emulator in another.

``python -m bench.harness --quick`` (``make bench-quick``, under two minutes) or ``--full``
(``make bench``: 1,000 nodes, and the 100-node point again to show how cost grows), optionally
``--write-doc docs/performance.md``. One run reports, per point:

- ``sync_s``: from starting ``calico-exporter cluster`` to ``/readyz`` answering 200;
- ``/metrics`` latency p50/p99 and size over many sequential scrapes;
- watch-event throughput: bursts of MODIFIED events per resource type are written into the
  emulator; the exporter's own ``calico_exporter_watch_events_total`` says how many it consumed
  (so the harness does not care which resources the exporter watches) and its CPU time
  (``/proc/PID/stat``, minus the scrapes the harness made to read the counter) gives
  ``events_per_s`` (events per CPU-second). The same events are then replayed from the
  emulator's log: recorded raw and parsed with ``orjson.loads`` line by line in-process (the
  practical limit: ``ratio_vs_parse``), and consumed by a straightforward kubernetes-asyncio
  client (``Watch().stream(CoreV1Api.list_pod_for_all_namespaces)``, typed models) whose CPU time
  gives ``speedup_vs_typed_client`` (ours / typed, on pods, else nodes);
- steady churn (pods, status refreshes at ``updatePeriodSeconds``, policy edits, a peer flap):
  exporter CPU seconds per minute, API requests per minute by verb from the emulator's request
  log (``steady_writes_per_min`` must be 0), steady and peak RSS (``VmRSS``/``VmHWM``).

The last line printed is one JSON object (the largest point, with the others under ``points``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import generate as g

ROOT = Path(__file__).resolve().parent.parent
EXPORTER = Path(sys.executable).parent / "calico-exporter"
CLK_TCK = os.sysconf("SC_CLK_TCK")
EVENTS_RE = re.compile(
    r'^calico_exporter_watch_events_total\{([^}]*)\}\s+([0-9.eE+-]+)', re.MULTILINE)
LABEL_RE = re.compile(r'(\w+)="([^"]*)"')
PATHS = {
    "pods": ["/api/v1/pods"],
    "nodes": ["/api/v1/nodes"],
    "caliconodestatuses": ["/apis/crd.projectcalico.org/v1/caliconodestatuses"],
    "networkpolicies": ["/apis/crd.projectcalico.org/v1/networkpolicies",
                        "/apis/crd.projectcalico.org/v1/globalnetworkpolicies"],
    "ipamblocks": ["/apis/crd.projectcalico.org/v1/ipamblocks"],
}
"""Where the events of each burst kind appear (watch paths, all namespaces)."""
BUDGETS = {
    "rss_peak_mb": ("<=", 250.0, "peak RSS (MB)"),
    "metrics_p99_ms": ("<=", 250.0, "/metrics p99 (ms)"),
    "ratio_vs_parse": (">=", 0.5, "events/s ÷ orjson parse events/s"),
    "speedup_vs_typed_client": (">=", 10.0, "events/s ÷ typed kubernetes-asyncio events/s"),
    "steady_writes_per_min": ("<=", 0.0, "API writes/min in steady state"),
}


@dataclass(frozen=True)
class Point:
    """One benchmark point: cluster size and how long each phase runs."""

    spec: g.BenchSpec
    bursts: dict[str, int]
    churn_s: float
    scrapes: int


QUICK_POINT = Point(g.QUICK, {"pods": 6000, "nodes": 2000, "caliconodestatuses": 1000,
                              "networkpolicies": 2000, "ipamblocks": 2000},
                    churn_s=30, scrapes=40)
FULL_POINT = Point(g.FULL, {"pods": 20000, "nodes": 5000, "caliconodestatuses": 600,
                            "networkpolicies": 5000, "ipamblocks": 3000},
                   churn_s=120, scrapes=40)
SMALL_FULL_POINT = Point(g.BenchSpec(nodes=100, routes=1000, pods=3000, policies=300,
                                     blocks=100), FULL_POINT.bursts | {"pods": 10000},
                         churn_s=60, scrapes=40)
"""The 100-node point of ``--full``: same per-node load (routes, pods, policies per node)."""


@dataclass
class Result:
    nodes: int
    pods: int
    policies: int
    routes: int
    blocks: int
    sync_s: float = 0.0
    events_per_s: float = 0.0
    ratio_vs_parse: float = 0.0
    speedup_vs_typed_client: float = 0.0
    rss_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_after_sync_mb: float = 0.0
    metrics_p50_ms: float = 0.0
    metrics_p99_ms: float = 0.0
    metrics_bytes: int = 0
    metrics_cpu_ms_per_scrape: float = 0.0
    cpu_s_per_min: float = 0.0
    steady_events_per_s: float = 0.0
    steady_writes_per_min: float = 0.0
    steady_requests_per_min: dict[str, float] = field(default_factory=dict)
    startup_writes: int = 0
    watched: list[str] = field(default_factory=list)
    bursts: dict[str, dict[str, Any]] = field(default_factory=dict)
    churn: dict[str, Any] = field(default_factory=dict)
    emulator: dict[str, Any] = field(default_factory=dict)
    watch_restarts: dict[str, float] = field(default_factory=dict)
    loadavg: str = ""
    """1-minute load average at the start and end of the point (the machine may be shared)."""
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- process measurements

def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu_precise_s(pid: int) -> float:
    """CPU seconds of all threads of a process, in nanoseconds resolution (schedstat)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total += int((task / "schedstat").read_text().split()[0])
    except OSError:
        return proc_cpu_s(pid)
    return total / 1e9 if total else proc_cpu_s(pid)


def proc_mem_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB."""
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


def terminate(proc: subprocess.Popen[Any] | None) -> None:
    """SIGTERM a child that still runs, SIGKILL it after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def watch_counts(text: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for labels, value in EVENTS_RE.findall(text):
        lbl = dict(LABEL_RE.findall(labels))
        out[(lbl.get("resource", ""), lbl.get("event", ""))] = float(value)
    return out


def data_events(counts: dict[tuple[str, str], float]) -> dict[str, float]:
    """Non-bookmark watch events by resource."""
    out: dict[str, float] = {}
    for (resource, event), n in counts.items():
        if event in ("ADDED", "MODIFIED", "DELETED"):
            out[resource] = out.get(resource, 0.0) + n
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# ---------------------------------------------------------------------- the two processes

class EmulatorProcess:
    def __init__(self, spec: g.BenchSpec, workdir: Path, *, log_mb: float) -> None:
        self.spec = spec
        self.workdir = workdir
        self.log_mb = log_mb
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    async def start(self, timeout: float) -> dict[str, Any]:
        s = self.spec
        ready_file = self.workdir / "emulator.ready"
        ready_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "bench.emulator_proc", "--nodes", str(s.nodes),
               "--routes", str(s.routes), "--pods", str(s.pods), "--policies", str(s.policies),
               "--blocks", str(s.blocks), "--update-period", str(s.update_period),
               "--workdir", str(self.workdir), "--ready-file", str(ready_file),
               "--log-mb", str(self.log_mb)]
        self.proc = self._spawn(cmd)
        deadline = time.monotonic() + timeout
        while not ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"emulator exited ({self.proc.returncode}); see "
                                   f"{self.workdir / 'emulator.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError("emulator not ready in time")
            await asyncio.sleep(0.1)
        self.info = json.loads(ready_file.read_text())
        return self.info

    def _spawn(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / "emulator.log").open("wb")
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)

    def stop(self) -> None:
        terminate(self.proc)


class ExporterProcess:
    def __init__(self, kubeconfig: str, workdir: Path, *, update_period: int,
                 extra: list[str]) -> None:
        self.port = free_port()
        self.cmd = [str(EXPORTER), "cluster", "--kubeconfig", kubeconfig,
                    "--listen", f"127.0.0.1:{self.port}",
                    "--node-status-update-period", str(update_period),
                    "--log-level", "warning", "--log-format", "json", *extra]
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        log = (self.workdir / "exporter.log").open("wb")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        terminate(self.proc)


# ---------------------------------------------------------------------- the run of one point

class Bench:
    def __init__(self, point: Point, workdir: Path, *, log_mb: float, say: Any,
                 exporter_args: list[str]) -> None:
        self.point = point
        self.exporter_args = exporter_args
        self.workdir = workdir
        self.say = say
        s = point.spec
        self.result = Result(nodes=s.nodes, pods=s.pods, policies=s.policies, routes=s.routes,
                             blocks=s.blocks)
        self.emulator = EmulatorProcess(s, workdir, log_mb=log_mb)
        self.exporter: ExporterProcess | None = None
        self.session: aiohttp.ClientSession | None = None
        self.scrapes_done = 0

    async def control(self, method: str, path: str, **params: Any) -> Any:
        assert self.session is not None
        url = self.emulator.info["control"] + path
        async with self.session.request(method, url, params={k: str(v) for k, v in
                                                             params.items()}) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def scrape(self) -> str:
        assert self.session is not None
        assert self.exporter is not None
        async with self.session.get(self.exporter.base + "/metrics") as resp:
            resp.raise_for_status()
            self.scrapes_done += 1
            return await resp.text()

    async def run(self) -> Result:
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as self.session:
            try:
                await self._run()
            finally:
                if self.exporter is not None:
                    self.exporter.stop()
                self.emulator.stop()
        return self.result

    async def _run(self) -> None:
        r, s = self.result, self.point.spec
        self.say(f"== {s.nodes} nodes, {s.routes} routes/status, {s.pods} pods, "
                 f"{s.policies} policies, {s.blocks} blocks")
        r.loadavg = loadavg()
        info = await self.emulator.start(timeout=900)
        r.emulator = {k: info[k] for k in ("generate_s", "seed_s", "counts", "rss_mb")}
        self.say(f"emulator seeded in {info['seed_s']:.1f}s ({sum(info['counts'].values())} "
                 f"objects), RSS {info['rss_mb']:.0f} MB")
        await self.control("POST", "/requests/clear")
        self.exporter = ExporterProcess(info["kubeconfig"], self.workdir,
                                        update_period=s.update_period,
                                        extra=self.exporter_args)
        await self.sync()
        await asyncio.sleep(1.0)  # let the refresher do what it must at startup
        startup = await self.control("GET", "/requests")
        r.startup_writes = int(startup["writes"])
        await self.metrics_latency()
        await self.bursts()
        await self.steady()
        rss, hwm = proc_mem_mb(self.exporter.pid)
        r.rss_mb, r.rss_peak_mb = round(rss, 1), round(hwm, 1)
        text = await self.scrape()
        for labels, value in re.findall(
                r'^calico_exporter_watch_restarts_total\{([^}]*)\}\s+(\S+)', text, re.MULTILINE):
            lbl = dict(LABEL_RE.findall(labels))
            if lbl.get("reason") != "end" and float(value) > 0:
                r.watch_restarts[f"{lbl.get('resource')}/{lbl.get('reason')}"] = float(value)
        if r.watch_restarts:
            r.notes.append(f"watch restarts other than normal ends: {r.watch_restarts}")
        r.emulator["rss_mb_end"] = (await self.control("GET", "/info"))["rss_mb"]
        r.loadavg += f" -> {loadavg()}"

    async def sync(self) -> None:
        assert self.exporter is not None
        assert self.session is not None
        r = self.result
        started = time.perf_counter()
        self.exporter.start()
        while True:
            if not self.exporter.alive():
                raise RuntimeError(f"exporter exited; see {self.workdir / 'exporter.log'}")
            with contextlib.suppress(aiohttp.ClientError):
                async with self.session.get(self.exporter.base + "/readyz") as resp:
                    if resp.status == 200:
                        break
            if time.perf_counter() - started > 900:
                raise RuntimeError("exporter not ready after 900 s")
            await asyncio.sleep(0.05)
        r.sync_s = round(time.perf_counter() - started, 3)
        r.rss_after_sync_mb = round(proc_mem_mb(self.exporter.pid)[1], 1)
        self.say(f"sync to /readyz: {r.sync_s:.2f}s, peak RSS so far {r.rss_after_sync_mb:.0f} MB")

    async def metrics_latency(self) -> None:
        assert self.exporter is not None
        r = self.result
        await self.scrape()  # warm-up
        cpu0 = proc_cpu_precise_s(self.exporter.pid)
        latencies: list[float] = []
        size = 0
        for _ in range(self.point.scrapes):
            t0 = time.perf_counter()
            body = await self.scrape()
            latencies.append((time.perf_counter() - t0) * 1000)
            size = len(body.encode())
        cpu = proc_cpu_precise_s(self.exporter.pid) - cpu0
        r.metrics_p50_ms = round(percentile(latencies, 0.5), 2)
        r.metrics_p99_ms = round(percentile(latencies, 0.99), 2)
        r.metrics_bytes = size
        r.metrics_cpu_ms_per_scrape = round(cpu * 1000 / len(latencies), 2)
        self.say(f"/metrics: p50 {r.metrics_p50_ms} ms, p99 {r.metrics_p99_ms} ms, "
                 f"{size} bytes, {r.metrics_cpu_ms_per_scrape} ms CPU per scrape")

    # ------------------------------------------------------------------ throughput

    async def consumed(self) -> dict[str, float]:
        return data_events(watch_counts(await self.scrape()))

    async def bursts(self) -> None:
        assert self.exporter is not None
        r = self.result
        ours_events = ours_cpu = parse_s = 0.0
        typed: dict[str, dict[str, float]] = {}
        for kind, count in self.point.bursts.items():
            before = await self.consumed()
            cpu0 = proc_cpu_precise_s(self.exporter.pid)
            t0 = time.perf_counter()
            burst = await self.control("POST", "/burst", kind=kind, count=count)
            # Done when the exporter's CPU goes idle and its counter stops moving (or has
            # everything). CPU is read before each scrape so scrapes are not counted.
            cpu_end, total, delta = await self.wait_consumed(before, count, cpu0)
            wall = time.perf_counter() - t0
            cpu = cpu_end - cpu0
            entry: dict[str, Any] = {"events": int(total), "exporter_cpu_s": round(cpu, 3),
                                     "wall_s": round(wall, 2), "emulator_write_s":
                                     burst["write_s"], "resources": sorted(delta)}
            r.bursts[kind] = entry
            if total <= 0:
                entry["note"] = "not watched by the exporter"
                self.say(f"burst {kind}: not watched by the exporter")
                continue
            for resource in delta:
                if resource not in r.watched:
                    r.watched.append(resource)
            lines = await self.record(kind, burst["rv_before"], set(delta))
            entry["recorded_events"] = len(lines)
            entry["recorded_mb"] = round(sum(map(len, lines)) / 1e6, 2)
            p = parse_time(lines)
            cpu = max(cpu, 1e-6)
            entry["events_per_cpu_s"] = round(total / cpu)
            entry["parse_events_per_s"] = round(len(lines) / p) if p else 0
            entry["ratio_vs_parse"] = round((total / cpu) / (len(lines) / p), 3) if p else 0
            ours_events += total
            ours_cpu += cpu
            parse_s += p * total / max(len(lines), 1)
            if kind in ("pods", "nodes"):
                n, typed_cpu, typed_wall = await self.typed_client(kind, burst["rv_before"],
                                                                   len(lines))
                typed[kind] = {"events": n, "cpu_s": typed_cpu}
                entry["typed_events_per_cpu_s"] = round(n / typed_cpu) if typed_cpu else 0
                entry["typed_wall_s"] = round(typed_wall, 3)
                entry["speedup_vs_typed_client"] = round(
                    (total / cpu) / (n / typed_cpu), 2) if n and typed_cpu else 0
            self.say(f"burst {kind}: {int(total)} events, exporter {entry['events_per_cpu_s']}"
                     f" ev/CPU-s, orjson parse {entry['parse_events_per_s']} ev/s (ratio "
                     f"{entry['ratio_vs_parse']})"
                     + (f", typed client {entry['typed_events_per_cpu_s']} ev/CPU-s (speedup "
                        f"{entry['speedup_vs_typed_client']})"
                        if "typed_events_per_cpu_s" in entry else ""))
        if ours_cpu:
            r.events_per_s = round(ours_events / ours_cpu)
            r.ratio_vs_parse = round((ours_events / ours_cpu) / (ours_events / parse_s), 3)
        for kind in ("pods", "nodes"):
            if kind in typed and r.bursts[kind].get("speedup_vs_typed_client"):
                r.speedup_vs_typed_client = r.bursts[kind]["speedup_vs_typed_client"]
                if kind != "pods":
                    r.notes.append("speedup_vs_typed_client measured on nodes: the exporter "
                                   "does not watch pods")
                break

    async def wait_consumed(self, before: dict[str, float], count: int, cpu0: float
                            ) -> tuple[float, float, dict[str, float]]:
        """(exporter CPU seconds when it went idle, events consumed, events by resource)."""
        assert self.exporter is not None
        pid = self.exporter.pid
        samples = [(time.perf_counter(), proc_cpu_precise_s(pid))]
        last_total = -1.0
        stalls = 0
        while True:
            await asyncio.sleep(0.2)
            samples.append((time.perf_counter(), proc_cpu_precise_s(pid)))
            window = [c for t, c in samples if t >= samples[-1][0] - 1.0]
            if samples[-1][0] - samples[0][0] < 1.0 or window[-1] - window[0] > 0.02:
                continue
            cpu_end = window[0]
            now_counts = await self.consumed()
            delta = {k: v - before.get(k, 0.0) for k, v in now_counts.items()
                     if v - before.get(k, 0.0) > 0}
            total = sum(delta.values())
            if total >= count:
                return cpu_end, total, delta
            stalls = stalls + 1 if total == last_total else 0
            last_total = total
            if stalls >= 3:
                return cpu_end, total, delta
            samples = [(time.perf_counter(), proc_cpu_precise_s(pid))]

    async def record(self, kind: str, rv_before: int, resources: set[str]) -> list[bytes]:
        """The raw watch lines of the burst, replayed from the emulator's event log."""
        assert self.session is not None
        token = "bench-token"
        lines: list[bytes] = []
        for path in PATHS[kind]:
            if not resources & labels_of(path):
                continue
            url = self.emulator.info["url"] + path
            params = {"watch": "true", "resourceVersion": str(rv_before), "timeoutSeconds": "1"}
            async with self.session.get(url, params=params, headers={
                    "Authorization": f"Bearer {token}"}) as resp:
                resp.raise_for_status()
                body = await resp.read()
            for line in body.split(b"\n"):
                if line.strip() and not line.startswith(b'{"type":"BOOKMARK"'):
                    lines.append(line)
        return lines

    async def typed_client(self, kind: str, rv_before: int, expected: int
                           ) -> tuple[int, float, float]:
        """A straightforward kubernetes-asyncio watch with typed models, replaying the burst:
        (events, CPU seconds of this process, wall seconds)."""
        from kubernetes_asyncio import client, config, watch

        cfg = client.Configuration()
        await config.load_kube_config(config_file=self.emulator.info["kubeconfig"],
                                      client_configuration=cfg)
        n = 0
        async with client.ApiClient(cfg) as api_client:
            v1 = client.CoreV1Api(api_client)
            func = v1.list_pod_for_all_namespaces if kind == "pods" else v1.list_node
            w = watch.Watch()
            cpu0, t0 = time.process_time(), time.perf_counter()
            async for event in w.stream(func, resource_version=str(rv_before),
                                        timeout_seconds=5):
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    assert event["object"].metadata.name
                    n += 1
                    if n >= expected:
                        w.stop()
                        break
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            await w.close()
        return n, cpu, wall

    # ------------------------------------------------------------------ steady state

    async def steady(self) -> None:
        assert self.exporter is not None
        r = self.result
        seconds = self.point.churn_s
        before = await self.consumed()
        await self.control("POST", "/requests/clear")
        cpu0 = proc_cpu_s(self.exporter.pid)
        t0 = time.perf_counter()
        await self.control("POST", "/churn", seconds=seconds)
        r.churn = await self.control("GET", "/churn")
        cpu = proc_cpu_s(self.exporter.pid) - cpu0
        wall = time.perf_counter() - t0
        requests = await self.control("GET", "/requests")
        after = await self.consumed()
        events = sum(after.values()) - sum(before.values())
        r.cpu_s_per_min = round(cpu / wall * 60, 2)
        r.steady_events_per_s = round(events / wall, 1)
        r.steady_requests_per_min = {v: round(n / wall * 60, 2)
                                     for v, n in sorted(requests["by_verb"].items())}
        r.steady_writes_per_min = round(requests["writes"] / wall * 60, 2)
        r.churn["requests"] = requests["by_verb_resource"]
        if r.churn.get("errors"):
            r.notes.append(f"churn errors: {r.churn['errors']}")
        self.say(f"steady churn {wall:.0f}s: {r.churn['writes']} writes by the cluster, "
                 f"exporter {r.cpu_s_per_min} CPU-s/min, {r.steady_events_per_s} events/s, "
                 f"API requests/min {r.steady_requests_per_min}")


def labels_of(path: str) -> set[str]:
    """The self-metric resource labels a watch path may appear under (kubectl-style names)."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        return {parts[-1]}
    return {parts[-1], f"{parts[-1]}.{parts[1]}"}


def parse_time(lines: list[bytes], repeat: int = 5) -> float:
    """Best-of-``repeat`` CPU seconds for orjson.loads over every line."""
    best = float("inf")
    loads = orjson.loads
    for _ in range(repeat):
        t0 = time.process_time()
        for line in lines:
            loads(line)
        best = min(best, time.process_time() - t0)
    return best


# ---------------------------------------------------------------------- reporting

def budget_rows(result: Result) -> list[tuple[str, str, str, bool]]:
    rows = []
    for key, (op, limit, label) in BUDGETS.items():
        value = float(getattr(result, key))
        met = value <= limit if op == "<=" else value >= limit
        rows.append((label, f"{op} {limit:g}", f"{value:g}", met))
    return rows


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    return f"{model or 'unknown CPU'}, {os.cpu_count()} CPUs (nproc), {mem_gb:.1f} GiB RAM"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def summary(results: list[Result]) -> dict[str, Any]:
    main = max(results, key=lambda x: x.nodes)
    out: dict[str, Any] = {
        "nodes": main.nodes, "pods": main.pods, "policies": main.policies,
        "routes": main.routes, "blocks": main.blocks, "sync_s": main.sync_s,
        "events_per_s": main.events_per_s, "ratio_vs_parse": main.ratio_vs_parse,
        "speedup_vs_typed_client": main.speedup_vs_typed_client, "rss_mb": main.rss_peak_mb,
        "rss_steady_mb": main.rss_mb, "metrics_p50_ms": main.metrics_p50_ms,
        "metrics_p99_ms": main.metrics_p99_ms, "metrics_bytes": main.metrics_bytes,
        "cpu_s_per_min": main.cpu_s_per_min, "steady_writes_per_min": main.steady_writes_per_min,
        "steady_requests_per_min": main.steady_requests_per_min, "watched": main.watched,
        "budgets_met": all(met for *_, met in budget_rows(main)),
    }
    if len(results) > 1:
        small = min(results, key=lambda x: x.nodes)
        factor = main.nodes / small.nodes
        out["scaling"] = {
            "nodes_factor": factor,
            **{key: round(getattr(main, key) / getattr(small, key), 2)
               if getattr(small, key) else None
               for key in ("sync_s", "rss_peak_mb", "metrics_p99_ms", "metrics_bytes",
                           "cpu_s_per_min")},
        }
        out["points"] = [{k: v for k, v in asdict(x).items()
                          if k not in ("bursts", "churn", "emulator")} for x in results]
    return out


def write_doc(path: Path, results: list[Result], mode: str, notes: list[str]) -> None:
    main = max(results, key=lambda x: x.nodes)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Performance",
        "",
        "Measured by `bench/harness.py` (`make bench` for the full run, `make bench-quick` for a "
        "two-minute smoke run).",
        "The exporter runs as its own process (`calico-exporter cluster`) against the Kubernetes "
        "API emulator (`exporter/sim/apiserver.py`) in another process, seeded by "
        "`bench/generate.py` and churned by `bench/churn.py`.",
        "",
        f"- Machine: {machine()}",
        f"- Date: {now}",
        f"- Commit: `{commit()}`",
        f"- Run: `python -m bench.harness --{mode}`",
        "",
        "## Results",
        "",
        "| measure | " + " | ".join(f"{x.nodes} nodes" for x in results) + " |",
        "| --- | " + " | ".join("---" for _ in results) + " |",
    ]
    rows = [
        ("routes per CalicoNodeStatus", "routes"), ("pods", "pods"),
        ("policies", "policies"), ("IPAM blocks", "blocks"),
        ("initial sync to /readyz (s)", "sync_s"),
        ("watch events per CPU-second", "events_per_s"),
        ("ratio to orjson parsing the same stream", "ratio_vs_parse"),
        ("speedup over a typed kubernetes-asyncio client", "speedup_vs_typed_client"),
        ("CPU seconds per minute of steady churn", "cpu_s_per_min"),
        ("watch events per second in steady churn", "steady_events_per_s"),
        ("peak RSS (MB, VmHWM)", "rss_peak_mb"), ("steady RSS (MB, VmRSS)", "rss_mb"),
        ("/metrics p50 (ms)", "metrics_p50_ms"), ("/metrics p99 (ms)", "metrics_p99_ms"),
        ("/metrics size (bytes)", "metrics_bytes"),
        ("/metrics CPU per scrape (ms)", "metrics_cpu_ms_per_scrape"),
        ("API writes per minute, steady state", "steady_writes_per_min"),
        ("API writes at startup", "startup_writes"),
        ("machine load average (1 min, start -> end)", "loadavg"),
    ]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(str(getattr(x, key)) for x in results) + " |")
    lines.append("| API requests per minute by verb, steady | " + " | ".join(
        ", ".join(f"{v} {n}" for v, n in x.steady_requests_per_min.items()) or "none"
        for x in results) + " |")
    lines.append("| resources the exporter watched | " + " | ".join(
        ", ".join(sorted(x.watched)) for x in results) + " |")
    lines += ["", "Throughput per burst (events per CPU-second of the exporter; orjson = parsing "
              "the recorded lines; typed = kubernetes-asyncio models):", ""]
    lines.append("| point | resource | events | exporter | orjson | ratio | typed | speedup |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for x in results:
        for kind, b in x.bursts.items():
            lines.append(
                f"| {x.nodes} nodes | {kind} | {b.get('events', 0)} | "
                f"{b.get('events_per_cpu_s', '-')} | {b.get('parse_events_per_s', '-')} | "
                f"{b.get('ratio_vs_parse', '-')} | {b.get('typed_events_per_cpu_s', '-')} | "
                f"{b.get('speedup_vs_typed_client', '-')} |")
    lines += ["", f"## Budgets ({main.nodes} nodes, {main.routes} routes per status, "
              f"{main.pods} pods, {main.policies} policies, {main.blocks} blocks)", "",
              "| budget | limit | measured | met |", "| --- | --- | --- | --- |"]
    for label, limit, value, met in budget_rows(main):
        lines.append(f"| {label} | {limit} | {value} | {'met' if met else 'NOT met'} |")
    if len(results) > 1:
        small = min(results, key=lambda x: x.nodes)
        lines += ["", "## Growth from 100 to 1,000 nodes", "",
                  f"Cluster size grows {main.nodes / small.nodes:g}x in nodes (and in pods, "
                  "policies and blocks; routes per status are the same).", "",
                  "| measure | growth |", "| --- | --- |"]
        for key in ("sync_s", "rss_peak_mb", "metrics_p99_ms", "metrics_bytes",
                    "cpu_s_per_min"):
            a, b = getattr(small, key), getattr(main, key)
            lines.append(f"| {key} | {b / a:.2f}x |" if a else f"| {key} | - |")
    analysis = Path(__file__).with_name("analysis.md")
    if analysis.exists():
        lines += ["", analysis.read_text().strip()]
    if notes or any(x.notes for x in results):
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in notes]
        lines += [f"- {x.nodes} nodes: {n}" for x in results for n in x.notes]
    lines += [
        "", "## How to reproduce", "",
        "```",
        "make bench-quick        # python -m bench.harness --quick  (100 nodes, < 2 minutes)",
        "make bench              # python -m bench.harness --full --write-doc docs/performance.md",
        "```", "",
        "How each figure is measured:", "",
        "- sync: from starting `calico-exporter cluster` to `/readyz` answering 200 (process "
        "start, imports and the paged LIST of every watched resource included).",
        "- watch throughput: bursts of MODIFIED events per resource type; the exporter's own "
        "`calico_exporter_watch_events_total` counts what it consumed and its CPU time "
        "(`/proc/PID/stat`, minus the scrapes made to read the counter) gives events per "
        "CPU-second. The same events are replayed from the emulator's log and parsed with "
        "`orjson.loads` line by line (ratio) and by a kubernetes-asyncio "
        "`Watch().stream(CoreV1Api.list_pod_for_all_namespaces)` building typed models (speedup).",
        "- steady state: the churn driver creates and deletes pods (with their IPAM writes), "
        "refreshes every CalicoNodeStatus at its `updatePeriodSeconds`, edits policies and flaps "
        "one BGP session; CPU from `/proc/PID/stat`, RSS from `/proc/PID/status`, API requests "
        "from the emulator's request log.",
        "",
    ]
    path.write_text("\n".join(lines))


# ---------------------------------------------------------------------- CLI

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.harness",
        description="Run the exporter against the API emulator and report sync time, watch "
                    "throughput, CPU, RSS, /metrics latency and API requests.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="100 nodes, 3,000 pods, 300 policies, 100 blocks (under two minutes)")
    mode.add_argument("--full", action="store_true",
                      help="1,000 nodes, 1,000 routes/status, 30,000 pods, 3,000 policies, "
                           "1,000 blocks, and the 100-node point")
    p.add_argument("--write-doc", metavar="PATH", help="write the results table (markdown)")
    p.add_argument("--churn-seconds", type=float, help="override the steady churn window")
    p.add_argument("--workdir", help="keep logs and kubeconfigs here (default: a temp dir)")
    p.add_argument("--only", type=int, metavar="NODES",
                   help="run only the point with this many nodes (e.g. --full --only 1000)")
    p.add_argument("--exporter-arg", action="append", default=[], metavar="ARG",
                   help="extra flag for calico-exporter (repeatable), e.g. --exporter-arg=--x=1")
    p.add_argument("--log-mb", type=float, default=0.0,
                   help="emulator event log kept per resource type, MiB (default by mode)")
    return p


async def run(args: argparse.Namespace) -> list[Result]:
    points = [SMALL_FULL_POINT, FULL_POINT] if args.full else [QUICK_POINT]
    if args.only:
        points = [p for p in points if p.spec.nodes == args.only]
    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(
        prefix="calico-exporter-bench-"))
    results: list[Result] = []

    def say(msg: str) -> None:
        sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
        sys.stdout.flush()

    for point in points:
        if args.churn_seconds:
            point = Point(point.spec, point.bursts, args.churn_seconds, point.scrapes)
        workdir = base / f"n{point.spec.nodes}-r{point.spec.routes}"
        workdir.mkdir(parents=True, exist_ok=True)
        log_mb = args.log_mb or (200.0 if point.spec.routes >= 1000 else 100.0)
        bench = Bench(point, workdir, log_mb=log_mb, say=say,
                      exporter_args=list(args.exporter_arg))
        results.append(await bench.run())
        if args.write_doc:  # whatever completed, in case a later point fails or is cut
            write_doc(ROOT / args.write_doc, results, "full" if args.full else "quick", [])
    say(f"logs in {base}")
    return results


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not args.full:
        args.quick = True
    results = asyncio.run(run(args))
    line = summary(results)
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
