"""Profile the exporter's hot paths in-process with cProfile (py-spy is not needed).

Starts ``bench.emulator_proc`` (same sizes and flags as the harness), builds the real cluster role
in this process against it (``build_cluster_role``: the same informers, stores and indexes as
``calico-exporter cluster``), lists every resource, then:

- ``--what watch``: writes a burst of ``--kind`` events into the emulator and replays it through
  the informer of that resource (``Informer.watch_once`` from the resourceVersion before the
  burst), under cProfile;
- ``--what scrape``: checks that the fast renderer of ``/metrics`` gives prometheus-client's bytes
  (text and OpenMetrics), then renders ``/metrics`` with it under cProfile;
- ``--what memory``: lists every resource under tracemalloc and reports, per resource, the peak
  traced memory of its LIST and what its store keeps afterwards, and this process's RSS.

``python -m bench.profile --what watch --kind pods --count 20000 --nodes 100 --pods 3000``
prints the top functions by cumulative and internal time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import generate as g
from bench.harness import PATHS as BURST_PATHS
from bench.harness import EmulatorProcess, labels_of


async def build(kubeconfig: str, update_period: int) -> tuple[Any, list[Any], Any, Any]:
    """(role, informers, registry, api context manager) of the cluster role in-process."""
    from exporter import config
    from exporter.app.cluster import build_cluster_role
    from exporter.kube.client import connect
    from exporter.metrics.registry import build_registry
    from exporter.metrics.self import SelfCollector
    from exporter.model.telemetry import Telemetry

    settings = config.load(flags={"kubeconfig": kubeconfig, "listen": "127.0.0.1:0",
                                  "node_status_update_period": update_period,
                                  "watch_timeout": "1s"}, environ={})
    telemetry = Telemetry()
    ctx = connect(settings.kube)
    api = await ctx.__aenter__()
    role = build_cluster_role(api, settings, telemetry)
    # an OptionalWatch (resources a cluster may not serve) wraps its informer
    owners = [getattr(job, "__self__", None) for job in role.jobs.values()]
    owners = [getattr(o, "informer", o) for o in owners]
    informers = [o for o in owners if type(o).__name__ == "Informer"]
    registry = build_registry([*role.collectors, SelfCollector(telemetry)])
    return role, informers, registry, ctx


def rss_mb() -> tuple[float, float]:
    rss = hwm = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


async def memory(informers: list[Any]) -> None:
    """Peak and retained traced memory of each resource's LIST, and the process RSS."""
    import gc
    import tracemalloc

    tracemalloc.start()
    for informer in informers:
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        await informer.list_once()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        rss, hwm = rss_mb()
        sys.stdout.write(
            f"{informer.resource.name:48s} {len(informer.store):6d} objects  "
            f"LIST peak +{(peak - base) / 2**20:7.1f} MiB  kept +{(current - base) / 2**20:6.1f}"
            f" MiB  RSS {rss:6.0f} MiB  HWM {hwm:6.0f} MiB\n")
    tracemalloc.stop()


def report(profiler: cProfile.Profile, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


async def main_async(args: argparse.Namespace) -> None:
    spec = g.BenchSpec(nodes=args.nodes, routes=args.routes, pods=args.pods,
                       policies=args.policies, blocks=args.blocks,
                       update_period=args.update_period)
    workdir = Path(tempfile.mkdtemp(prefix="calico-exporter-profile-"))
    emulator = EmulatorProcess(spec, workdir, log_mb=200.0)
    info = await emulator.start(timeout=900)
    try:
        _role, informers, registry, ctx = await build(info["kubeconfig"], spec.update_period)
        if args.what == "memory":
            await memory(informers)
            await ctx.__aexit__(None, None, None)
            return
        t0 = time.perf_counter()
        for informer in informers:
            await informer.list_once()
        sys.stdout.write(f"listed {len(informers)} resources in {time.perf_counter() - t0:.2f}s\n")
        profiler = cProfile.Profile()
        if args.what == "scrape":
            from prometheus_client import generate_latest
            from prometheus_client.openmetrics.exposition import generate_latest as om_latest

            from exporter.metrics.exposition import render

            # the fast renderer of /metrics must give prometheus-client's bytes in both formats
            for om, reference in ((False, generate_latest), (True, om_latest)):
                t0 = time.perf_counter()
                expected = reference(registry)
                slow = time.perf_counter() - t0
                t0 = time.perf_counter()
                body = render(registry, om)
                first = time.perf_counter() - t0
                if body != expected:
                    raise SystemExit(f"fast renderer differs from prometheus-client (om={om})")
                sys.stdout.write(f"{'openmetrics' if om else 'text'}: prometheus-client "
                                 f"{slow * 1000:.1f} ms, fast renderer {first * 1000:.1f} ms "
                                 "(first, cold cache), identical bytes\n")
            t0 = time.perf_counter()
            profiler.enable()
            for _ in range(args.count):
                body = render(registry, False)
            profiler.disable()
            sys.stdout.write(f"{args.count} scrapes of {len(body)} bytes: "
                             f"{(time.perf_counter() - t0) / args.count * 1000:.1f} ms each "
                             "(fast renderer, under cProfile)\n")
        else:
            async with aiohttp.ClientSession() as session, session.post(
                    info["control"] + "/burst",
                    params={"kind": args.kind, "count": str(args.count)}) as resp:
                burst = await resp.json()
            wanted = set().union(*(labels_of(p) for p in BURST_PATHS[args.kind]))
            chosen = [i for i in informers if i.resource.name in wanted]
            events = 0
            t0 = time.perf_counter()
            profiler.enable()
            for informer in chosen:
                before = sum(informer.telemetry.watch_events.values())
                await informer.watch_once(str(burst["rv_before"]))
                events += sum(informer.telemetry.watch_events.values()) - before
            profiler.disable()
            wall = time.perf_counter() - t0
            sys.stdout.write(f"replayed {events} events of {args.kind} in {wall:.2f}s "
                             f"({events / wall:.0f} events/s under cProfile)\n")
        sys.stdout.write(report(profiler, args.top))
        await ctx.__aexit__(None, None, None)
    finally:
        emulator.stop()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.profile",
                                description="cProfile the watch path or /metrics in-process.")
    q = g.QUICK
    p.add_argument("--what", choices=("watch", "scrape", "memory"), default="watch")
    p.add_argument("--kind", choices=sorted(BURST_PATHS), default="pods")
    p.add_argument("--count", type=int, default=10000, help="events (watch) or scrapes")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--nodes", type=int, default=q.nodes)
    p.add_argument("--routes", type=int, default=q.routes)
    p.add_argument("--pods", type=int, default=q.pods)
    p.add_argument("--policies", type=int, default=q.policies)
    p.add_argument("--blocks", type=int, default=q.blocks)
    p.add_argument("--update-period", type=int, default=q.update_period)
    return p


def main(argv: list[str] | None = None) -> None:
    asyncio.run(main_async(parser().parse_args(argv)))


if __name__ == "__main__":
    main()
