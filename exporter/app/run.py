"""The roles as coroutines: build components, serve /metrics, supervise the jobs until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Iterable

import structlog

from exporter.app.access import scraper_authorizer
from exporter.app.cluster import Role, build_cluster_role
from exporter.app.flows import build_flows_role, demo_goldmane
from exporter.app.supervisor import supervise
from exporter.config import ConfigError, Settings
from exporter.kube.client import connect
from exporter.metrics.bgp import BGPCollector
from exporter.metrics.exposition import render
from exporter.metrics.http import HttpCollector
from exporter.metrics.registry import build_registry
from exporter.metrics.self import SelfCollector
from exporter.model.http import HttpStats
from exporter.model.telemetry import Telemetry
from exporter.server import make_app, serve_endpoints

log = structlog.get_logger(__name__)


async def serve_roles(roles: Iterable[Role], *, settings: Settings, telemetry: Telemetry,
                      stop: asyncio.Event,
                      on_serving: Callable[[int], None] | None = None) -> None:
    """Serve the roles' collectors on one endpoint and supervise all their jobs.

    ``on_serving`` gets the bound port once /metrics answers (port 0 in the settings picks one).
    """
    roles = list(roles)
    collectors = [c for role in roles for c in role.collectors]
    stats = HttpStats()
    registry = build_registry([*collectors, SelfCollector(telemetry), HttpCollector(stats)])
    jobs = {name: job for role in roles for name, job in role.jobs.items()}

    def ready() -> bool:
        return all(role.ready() for role in roles)

    async with scraper_authorizer(settings, stats) as authorizer, serve_endpoints(
        make_app(registry, ready=ready, render=render, authorizer=authorizer), ready=ready,
        listen=settings.server.listen, access=settings.access, stats=stats,
    ) as port:
        if on_serving is not None:
            on_serving(port)
        freezer = asyncio.create_task(_freeze_heap_when_ready(ready), name="heap-freeze")
        try:
            await supervise(jobs, stop=stop)
        finally:
            freezer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await freezer


async def _freeze_heap_when_ready(ready: Callable[[], bool]) -> None:
    """After the initial sync, move the loaded state out of the cyclic garbage collector's way.

    The stores hold hundreds of thousands of long-lived objects; without this, every full
    collection walks them all and a scrape that happens to trigger one takes 100+ ms. Frozen
    objects are still freed by reference counting when a watch deletes them.
    """
    while not ready():  # noqa: ASYNC110  (readiness is a predicate over several roles)
        await asyncio.sleep(0.2)
    gc.collect()
    gc.freeze()
    log.info("heap_frozen", objects=gc.get_freeze_count())


async def run_node(settings: Settings, stop: asyncio.Event) -> None:
    """Node mode: BGP state straight from this node's BIRD sockets; no Kubernetes API at all."""
    from exporter.bird.poller import BirdPoller

    telemetry = Telemetry()
    try:
        poller = BirdPoller(settings.bird, telemetry=telemetry)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    role = Role(jobs={"bird-poller": poller.run}, collectors=[BGPCollector(poller.snapshot)],
                checks=[poller.polled.is_set])
    await serve_roles([role], settings=settings, telemetry=telemetry, stop=stop)


async def run_cluster(settings: Settings, stop: asyncio.Event) -> None:
    telemetry = Telemetry()
    async with connect(settings.kube) as api:
        role = build_cluster_role(api, settings, telemetry)
        flows = build_flows_role(settings.flows, telemetry)
        await serve_roles([role, flows], settings=settings, telemetry=telemetry, stop=stop)


DEMO_BANNER = """
calico-exporter demo: the simulated cluster {scenario!r} is running.

  Metrics    http://{listen}/metrics      (also /healthz and /readyz)
  Kube API   {apiserver}  (an emulator; kubeconfig: {kubeconfig})

Replay the write-up against the simulated lab:

  kubectl --kubeconfig {kubeconfig} get ippools.crd.projectcalico.org -o yaml
  kubectl --kubeconfig {kubeconfig} get caliconodestatuses.crd.projectcalico.org -o yaml
  kubectl --kubeconfig {kubeconfig} get pods -A -o wide

Try:  curl -s http://{listen}/metrics | grep -E 'calico_(bgp_peers|ippool_utiliz|probe_succ)'
A probe agent (source namespace "demo") runs HTTP, TCP and DNS probes against targets the demo
serves on loopback; one of them is expected to be denied (a closed port), and matches.
A Goldmane stand-in streams the lab's flows over mutual TLS every 15 s; per-policy verdicts:
  curl -s http://{listen}/metrics | grep -E 'calico_policy_(staged_)?flow_connections'
{flap}Stop with Ctrl-C.
"""


async def run_demo(settings: Settings, stop: asyncio.Event) -> None:
    """The cluster role (and a probe agent) against the emulator running the simulated lab."""
    import dataclasses
    import sys
    import tempfile
    from pathlib import Path

    from exporter.app.probe import demo_probe_role
    from exporter.server import split_host_port
    from exporter.sim.apiserver import ApiServer
    from exporter.sim.cluster import SimCluster
    from exporter.sim.scenario import ScenarioError, load

    try:
        scenario = load(settings.demo.scenario)
    except ScenarioError as exc:
        raise ConfigError(
            f"invalid value for --scenario (CALICO_EXPORTER_SCENARIO): {exc}") from None
    host, port = split_host_port(settings.demo.apiserver_listen)
    # TLS because kubectl sends its bearer token only over TLS.
    apiserver = ApiServer(token="demo-token", tls=True)  # noqa: S106  (the emulator's own token)
    try:
        await apiserver.start(host, port)
    except OSError as exc:
        raise ConfigError(
            "invalid value for --apiserver-listen (CALICO_EXPORTER_APISERVER_LISTEN): cannot "
            f"listen on {settings.demo.apiserver_listen}: {exc.strerror or exc}") from None
    cluster = SimCluster(apiserver, scenario)
    try:
        with tempfile.TemporaryDirectory(prefix="calico-exporter-demo-") as tmp:
            kubeconfig = apiserver.write_kubeconfig(Path(tmp) / "kubeconfig")
            await cluster.start()
            if settings.demo.flap_interval > 0:
                cluster.start_flapping(settings.demo.flap_interval)
            settings = dataclasses.replace(
                settings, kube=dataclasses.replace(settings.kube, kubeconfig=str(kubeconfig)))
            telemetry = Telemetry()
            async with connect(settings.kube) as api, demo_probe_role(
                settings, telemetry=telemetry, directory=Path(tmp)
            ) as probe_role, demo_goldmane(scenario, Path(tmp)) as flow_settings:
                role = build_cluster_role(api, settings, telemetry)
                flows_role = build_flows_role(flow_settings, telemetry)

                def banner(port: int) -> None:
                    host = settings.server.listen.rpartition(":")[0]
                    sys.stdout.write(DEMO_BANNER.format(
                        scenario=scenario.name, listen=f"{host}:{port}", apiserver=apiserver.url,
                        kubeconfig=kubeconfig, flap=(
                            f"A BGP session flaps every {settings.demo.flap_interval:.0f} s so "
                            "dashboards and alerts have something to show.\n"
                            if settings.demo.flap_interval > 0 else "")))
                    sys.stdout.flush()

                await serve_roles([role, probe_role, flows_role], settings=settings,
                                  telemetry=telemetry, stop=stop, on_serving=banner)
    finally:
        await cluster.stop()
        await apiserver.stop()


def check_probe_config(settings: Settings) -> list[str]:
    """Exact error messages for the probe config named by the settings (none when valid)."""
    if not settings.probes.probe_config:
        return []
    from exporter.probes.config import validate_probe_config

    path = settings.probes.probe_config
    return [f"probe config {path}: {error}" for error in validate_probe_config(path)]


def selector(expression: str, labels: list[str] | None) -> tuple[int, str]:
    """The ``selector`` subcommand: (exit code, text to print)."""
    from exporter.policy.cli import selector_command

    return selector_command(expression, labels or [])


async def run_probe(settings: Settings, stop: asyncio.Event) -> None:
    """A probe agent: the probes of this source namespace, on their schedules."""
    from exporter.app.probe import run_probe_role

    await run_probe_role(settings, stop=stop)
