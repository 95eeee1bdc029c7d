"""What the connection guard (``exporter.access.limits``) costs a scrape, as a ratio in one run.

Serves the same app (a registry of ``--series`` gauge series) on two loopback listeners: one
through ``exporter.server.serve`` (the guard: limit, header timeout, plain HTTP), one through
aiohttp's own ``TCPSite`` (the baseline). A client on one kept-alive connection, then on a new
connection per request, GETs /metrics ``--requests`` times from each, alternating in rounds.
Prints one JSON line with the median per-request times and ``ratio`` (guarded / baseline)::

    .venv/bin/python -m bench.http_guard [--series 20000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from exporter.metrics.exposition import render
from exporter.server import make_app, serve


async def _times(url: str, n: int, *, keepalive: bool) -> list[float]:
    out = []
    connector = aiohttp.TCPConnector(force_close=not keepalive)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(n):
            start = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
            out.append(time.perf_counter() - start)
    return out


async def main(series: int, requests: int) -> dict[str, float]:
    registry = CollectorRegistry()
    gauge = Gauge("bench_series", "Bench series.", ["i"], registry=registry)
    for i in range(series):
        gauge.labels(str(i)).set(i)
    plain_runner = web.AppRunner(make_app(registry, ready=lambda: True, render=render),
                                 access_log=None)
    await plain_runner.setup()
    site = web.TCPSite(plain_runner, "127.0.0.1", 0)
    await site.start()
    plain = f"http://127.0.0.1:{plain_runner.addresses[0][1]}/metrics"
    result: dict[str, float] = {}
    try:
        async with serve(make_app(registry, ready=lambda: True, render=render),
                         listen="127.0.0.1:0") as port:
            guarded = f"http://127.0.0.1:{port}/metrics"
            for keepalive in (True, False):
                g: list[float] = []
                b: list[float] = []
                for _ in range(5):
                    g += await _times(guarded, requests // 5, keepalive=keepalive)
                    b += await _times(plain, requests // 5, keepalive=keepalive)
                mode = "keepalive" if keepalive else "new_connection"
                result[f"{mode}_guarded_ms"] = round(statistics.median(g) * 1000, 3)
                result[f"{mode}_baseline_ms"] = round(statistics.median(b) * 1000, 3)
                result[f"{mode}_ratio"] = round(statistics.median(g) / statistics.median(b), 3)
    finally:
        await plain_runner.cleanup()
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", type=int, default=20000)
    p.add_argument("--requests", type=int, default=200)
    args = p.parse_args()
    print(json.dumps({"series": args.series, "requests": args.requests,
                      **asyncio.run(main(args.series, args.requests))}))
