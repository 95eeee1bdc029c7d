"""A probe agent for the network-namespace tests: run inside a netns with ``ip netns exec``.

It wires the agent exactly as the probe role does (:func:`build_probe_agent`) but serves
``/metrics`` on a Unix socket, which the test process in the host namespace can reach (a TCP port
inside the netns cannot be). Stops on SIGTERM.

    python -m tests.probes.netns_agent --config F --namespace testns --socket /tmp/x.sock
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from exporter.app.probe import build_probe_agent
from exporter.config import ProbeSettings, Settings
from exporter.logs import configure_logging
from exporter.metrics.probes import ProbeCollector
from exporter.model.telemetry import Telemetry


async def main(config: str, namespace: str, socket_path: str) -> None:
    agent = build_probe_agent(
        Settings(probes=ProbeSettings(probe_config=config, source_namespace=namespace)),
        telemetry=Telemetry(), poll_interval=0.2)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProbeCollector(agent.results, agent.status))

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, socket_path).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(agent.scheduler.run(stop))
            group.create_task(agent.reloader.run(stop))
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--socket", required=True)
    args = parser.parse_args()
    configure_logging(level="info", fmt="json")
    asyncio.run(main(args.config, args.namespace, args.socket))
