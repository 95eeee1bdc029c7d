"""The API emulator with a generated cluster and the churn driver, in a process of its own.

``python -m bench.emulator_proc --nodes 100 --routes 100 --pods 3000 --policies 300 --blocks 100``
seeds the emulator, then prints ONE JSON line on stdout (and writes it to ``--ready-file`` when
given): ``{"ready": true, "kubeconfig": ..., "url": ..., "control": ..., "seed_s": ...,
"counts": {...}}``. It runs until SIGTERM/SIGINT or ``POST /stop``.

The control endpoint (plain HTTP on 127.0.0.1, for the harness only; never in the request log):

- ``GET /info``: resourceVersion, object counts, RSS of this process;
- ``POST /burst?kind=pods&count=N``: N back-to-back MODIFIED events of one type (see
  :meth:`bench.churn.Churn.burst`); answers when they are written, with ``rv_before``;
- ``POST /churn?seconds=S``: start the steady churn; ``GET /churn`` waits for it to end and
  returns its statistics;
- ``POST /requests/clear`` and ``GET /requests``: the emulator's request log summarised by verb
  and resource (``watch``/``list``/``get``/``create``/``update``/``patch``/``delete``);
- ``POST /stop``.

The event log of each resource type is trimmed to about ``--log-mb`` MiB of serialized events (a
watcher that falls further behind gets 410 Expired, as with etcd compaction), so a long churn of
big CalicoNodeStatus objects does not eat the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from bench import generate as g
from bench.churn import Churn, ChurnRates, ChurnStats
from exporter.sim.apiserver import ApiServer, RequestRecord

TOKEN = "bench-token"  # the emulator's own token, printed in its kubeconfig
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def verb_of(record: RequestRecord) -> tuple[str, str]:
    """(verb, resource) of one API request, as the API server's audit log would name them."""
    parts = [p for p in record.path.split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return "other", record.path
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    resource = rest[0] if rest else ""
    named = len(rest) >= 2
    method = record.method.upper()
    if method == "GET":
        verb = "watch" if record.watch else ("get" if named else "list")
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = method.lower()
    return verb, resource


def summarize_requests(records: list[RequestRecord]) -> dict[str, Any]:
    by_verb: Counter[str] = Counter()
    by_verb_resource: Counter[str] = Counter()
    for record in records:
        verb, resource = verb_of(record)
        by_verb[verb] += 1
        by_verb_resource[f"{verb} {resource}"] += 1
    return {"total": len(records), "by_verb": dict(by_verb),
            "by_verb_resource": dict(sorted(by_verb_resource.items())),
            "writes": sum(by_verb[v] for v in WRITE_VERBS)}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def trim_logs(api: ApiServer, max_bytes: int) -> None:
    """Cut each resource type's event log to the newest ``max_bytes`` of serialized events."""
    for bucket in api.store.buckets.values():
        total = 0
        cut = 0
        for index in range(len(bucket.log) - 1, -1, -1):
            total += len(bucket.log[index].entry.raw)
            if total > max_bytes:
                cut = index + 1
                break
        if cut:
            bucket.floor = bucket.log_rvs[cut - 1]
            del bucket.log[:cut]
            del bucket.log_rvs[:cut]


class Emulator:
    """One emulator, its generated cluster, the churn driver and the control endpoint."""

    def __init__(self, spec: g.BenchSpec, *, bookmark_interval: float, log_mb: float) -> None:
        self.spec = spec
        self.api = ApiServer(token=TOKEN, bookmark_interval=bookmark_interval)
        self.log_bytes = int(log_mb * 1024 * 1024)
        self.churn: Churn | None = None
        self.churn_task: asyncio.Task[ChurnStats] | None = None
        self.stop = asyncio.Event()
        self.counts: dict[str, int] = {}
        self.seed_s = 0.0
        self.generate_s = 0.0

    async def start(self, host: str) -> None:
        started = time.perf_counter()
        gen = g.generate(self.spec)
        self.generate_s = time.perf_counter() - started
        self.counts = dict(gen.counts)
        started = time.perf_counter()
        self.api.seed(gen.objects)
        self.seed_s = time.perf_counter() - started
        gen.objects = []
        self.churn = Churn(self.api, gen)
        await self.api.start(host, 0)

    async def trimmer(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            trim_logs(self.api, self.log_bytes)

    # ------------------------------------------------------------------ control endpoint

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/info", self.h_info)
        app.router.add_post("/burst", self.h_burst)
        app.router.add_post("/churn", self.h_churn_start)
        app.router.add_get("/churn", self.h_churn_wait)
        app.router.add_post("/requests/clear", self.h_requests_clear)
        app.router.add_get("/requests", self.h_requests)
        app.router.add_post("/stop", self.h_stop)
        return app

    async def h_info(self, request: web.Request) -> web.Response:
        return web.json_response({"rv": self.api.resource_version, "counts": self.counts,
                                  "rss_mb": round(rss_mb(), 1)})

    async def h_burst(self, request: web.Request) -> web.Response:
        assert self.churn is not None
        kind = request.query.get("kind", "pods")
        count = int(request.query.get("count", "1000"))
        return web.json_response(await self.churn.burst(kind, count))

    async def h_churn_start(self, request: web.Request) -> web.Response:
        assert self.churn is not None
        if self.churn_task is not None and not self.churn_task.done():
            return web.json_response({"error": "churn already running"}, status=409)
        seconds = float(request.query.get("seconds", "30"))
        rates = ChurnRates.for_spec(self.spec)
        self.churn.stats = ChurnStats()
        self.churn_task = asyncio.create_task(self.churn.run(seconds, rates), name="churn")
        return web.json_response({"seconds": seconds, "pods_per_s": rates.pods_per_s,
                                  "policies_per_s": rates.policies_per_s,
                                  "status_period_s": self.spec.update_period})

    async def h_churn_wait(self, request: web.Request) -> web.Response:
        if self.churn_task is None:
            return web.json_response({"error": "no churn"}, status=404)
        stats = await asyncio.shield(self.churn_task)
        return web.json_response({"pod_creates": stats.pod_creates,
                                  "pod_deletes": stats.pod_deletes,
                                  "status_writes": stats.status_writes,
                                  "policy_edits": stats.policy_edits, "flaps": stats.flaps,
                                  "writes": stats.writes,
                                  "lag_max_s": round(stats.lag_max_s, 3),
                                  "errors": stats.errors[:5]})

    async def h_requests_clear(self, request: web.Request) -> web.Response:
        self.api.clear_requests()
        return web.json_response({"cleared": True, "time": time.time()})

    async def h_requests(self, request: web.Request) -> web.Response:
        return web.json_response(summarize_requests(list(self.api.requests)))

    async def h_stop(self, request: web.Request) -> web.Response:
        self.stop.set()
        return web.json_response({"stopping": True})


def spec_from_args(args: argparse.Namespace) -> g.BenchSpec:
    return g.BenchSpec(nodes=args.nodes, routes=args.routes, pods=args.pods,
                       policies=args.policies, blocks=args.blocks,
                       update_period=args.update_period)


async def serve(args: argparse.Namespace) -> None:
    emulator = Emulator(spec_from_args(args), bookmark_interval=args.bookmark_interval,
                        log_mb=args.log_mb)
    await emulator.start(args.host)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, emulator.stop.set)
    runner = web.AppRunner(emulator.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    control = f"http://127.0.0.1:{runner.addresses[0][1]}"
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="calico-exporter-bench-"))
    kubeconfig = emulator.api.write_kubeconfig(workdir / "kubeconfig")
    trimmer = asyncio.create_task(emulator.trimmer(), name="log-trimmer")
    ready = {"ready": True, "kubeconfig": str(kubeconfig), "url": emulator.api.url,
             "control": control, "generate_s": round(emulator.generate_s, 3),
             "seed_s": round(emulator.seed_s, 3), "counts": emulator.counts,
             "rss_mb": round(rss_mb(), 1), "pid": __import__("os").getpid()}
    line = json.dumps(ready)
    if args.ready_file:
        tmp = Path(args.ready_file + ".tmp")
        await asyncio.to_thread(tmp.write_text, line + "\n")
        await asyncio.to_thread(tmp.replace, args.ready_file)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    try:
        await emulator.stop.wait()
    finally:
        trimmer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trimmer
        if emulator.churn_task is not None:
            emulator.churn_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await emulator.churn_task
        await runner.cleanup()
        await emulator.api.stop()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.emulator_proc", description=__doc__.split(
        "\n")[0])
    q = g.QUICK
    p.add_argument("--nodes", type=int, default=q.nodes)
    p.add_argument("--routes", type=int, default=q.routes, help="routes per CalicoNodeStatus")
    p.add_argument("--pods", type=int, default=q.pods)
    p.add_argument("--policies", type=int, default=q.policies)
    p.add_argument("--blocks", type=int, default=q.blocks)
    p.add_argument("--update-period", type=int, default=q.update_period,
                   help="spec.updatePeriodSeconds of the CalicoNodeStatus objects")
    p.add_argument("--bookmark-interval", type=float, default=5.0)
    p.add_argument("--log-mb", type=float, default=100.0,
                   help="serialized events kept per resource type, MiB")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--workdir", default="", help="where to write the kubeconfig")
    p.add_argument("--ready-file", default="", help="also write the ready line here")
    return p


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parser().parse_args(argv)))


if __name__ == "__main__":
    main()
