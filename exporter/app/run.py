"""The roles as coroutines: build components, serve /metrics, supervise the jobs until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from exporter.app.access import scraper_authorizer
from exporter.app.cluster import Role, build_cluster_role
from exporter.app.flows import build_flows_role, demo_goldmane
from exporter.app.supervisor import Job, supervise
from exporter.config import BirdSettings, ConfigError, Settings
from exporter.kube.client import connect
from exporter.metrics.bgp import BGPCollector
from exporter.metrics.exposition import render
from exporter.metrics.http import HttpCollector
from exporter.metrics.registry import build_registry
from exporter.metrics.self import SelfCollector, runtime_collectors
from exporter.model.http import HttpStats
from exporter.model.telemetry import Telemetry
from exporter.server import make_app, serve_guarded

if TYPE_CHECKING:
    from exporter.sim.scenario import Scenario

log = structlog.get_logger(__name__)


@dataclass
class Endpoint:
    """One /metrics endpoint of the process: where it listens, the roles it serves, and the
    telemetry its self metrics report."""

    listen: str
    roles: list[Role]
    telemetry: Telemetry = field(default_factory=Telemetry)
    setting: str = "listen"
    """The option ``listen`` comes from, named in the error when it cannot be bound."""

    def ready(self) -> bool:
        return all(role.ready() for role in self.roles)


async def serve_endpoints(endpoints: list[Endpoint], *, settings: Settings, stop: asyncio.Event,
                          on_serving: Callable[[list[int]], None] | None = None) -> None:
    """Serve each endpoint's collectors on its own address and supervise all their jobs as one
    group (job names are unique across endpoints). ``on_serving`` gets the bound ports, in
    order, once every endpoint answers (port 0 picks one).

    Every endpoint gets the access settings (connection limit, timeouts, TLS, scraper
    authorization) and its own connection and review counters; ``--health-listen``, when set,
    serves the process's /healthz and /readyz (every endpoint ready) once, next to the first."""
    jobs: dict[str, Job] = {}
    for endpoint in endpoints:
        for name, job in (j for role in endpoint.roles for j in role.jobs.items()):
            assert name not in jobs, f"two jobs named {name}"
            jobs[name] = job

    def ready() -> bool:
        return all(endpoint.ready() for endpoint in endpoints)

    async with contextlib.AsyncExitStack() as stack:
        ports = []
        for i, endpoint in enumerate(endpoints):
            stats = HttpStats()
            authorizer = await stack.enter_async_context(scraper_authorizer(settings, stats))
            collectors = [c for role in endpoint.roles for c in role.collectors]
            registry = build_registry([*collectors, SelfCollector(endpoint.telemetry),
                                       HttpCollector(stats), *runtime_collectors()])
            app = make_app(registry, ready=endpoint.ready, render=render, authorizer=authorizer)
            ports.append(await stack.enter_async_context(serve_guarded(
                app, ready=ready, listen=endpoint.listen, access=settings.access, stats=stats,
                setting=endpoint.setting, health=i == 0)))
        if on_serving is not None:
            on_serving(ports)
        freezer = asyncio.create_task(_freeze_heap_when_ready(ready), name="heap-freeze")
        try:
            await supervise(jobs, stop=stop)
        finally:
            freezer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await freezer


async def serve_roles(roles: Iterable[Role], *, settings: Settings, telemetry: Telemetry,
                      stop: asyncio.Event,
                      on_serving: Callable[[int], None] | None = None) -> None:
    """Serve the roles' collectors on one endpoint (``--listen``) and supervise all their jobs.

    ``on_serving`` gets the bound port once /metrics answers (port 0 in the settings picks one).
    """
    await serve_endpoints([Endpoint(settings.server.listen, list(roles), telemetry)],
                          settings=settings, stop=stop,
                          on_serving=None if on_serving is None else (
                              lambda ports: on_serving(ports[0])))


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


def node_role(bird: BirdSettings, *, telemetry: Telemetry, job: str = "bird-poller") -> Role:
    """Node mode for one node: its BIRD poller (job ``job``) and the BGP collector over it."""
    from exporter.bird.poller import BirdPoller

    try:
        poller = BirdPoller(bird, telemetry=telemetry)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return Role(jobs={job: poller.run}, collectors=[BGPCollector(poller.snapshot)],
                checks=[poller.polled.is_set])


async def run_node(settings: Settings, stop: asyncio.Event) -> None:
    """Node mode: BGP state straight from this node's BIRD sockets; no Kubernetes API at all."""
    telemetry = Telemetry()
    role = node_role(settings.bird, telemetry=telemetry)
    await serve_roles([role], settings=settings, telemetry=telemetry, stop=stop)


async def run_cluster(settings: Settings, stop: asyncio.Event) -> None:
    telemetry = Telemetry()
    async with connect(settings.kube) as api:
        role = build_cluster_role(api, settings, telemetry)
        flows = build_flows_role(settings.flows, telemetry, policies=role.policies)
        await serve_roles([role, flows], settings=settings, telemetry=telemetry, stop=stop)


DEMO_BANNER = """
calico-exporter demo: a simulated Calico cluster, {scenario!r}:
{description}.

What runs here, all in this process:
  - an emulated Kubernetes API server holding the cluster's objects (nodes, pods, Calico IP
    pools and IPAM blocks, policies), and one simulated calico-node per node that reports its
    BGP state into a CalicoNodeStatus and answers on BIRD's control socket;
  - the exporter in cluster mode, watching that API: the metrics below;
  - the exporter in node mode for each node, reading that node's BIRD socket (per-peer routes
    and the time each session last changed come from there);
  - a probe agent for namespace "demo" running HTTP, TCP and DNS probes against targets served
    on loopback; one of them is expected to be denied (a closed port), and matches;
  - a Goldmane stand-in serving the lab's flows over mutual TLS every 15 s, their policy
    verdicts computed from the cluster's policies, and the exporter reading them.

  Metrics     http://{listen}/metrics      (also /healthz and /readyz)
  Node mode   {node_endpoints}
  Kube API    {apiserver}  (an emulator; kubeconfig: {kubeconfig})

Look at it with kubectl:

  kubectl --kubeconfig {kubeconfig} get ippools.{calico} -o yaml
  kubectl --kubeconfig {kubeconfig} get caliconodestatuses.{calico} -o yaml
  kubectl --kubeconfig {kubeconfig} get pods -A -o wide

Policy tiers, a staged Set and Delete, a ClusterNetworkPolicy in tier kube-admin:

  kubectl --kubeconfig {kubeconfig} get tiers.{calico} -o yaml
  kubectl --kubeconfig {kubeconfig} get stagednetworkpolicies.{calico} -A
  kubectl --kubeconfig {kubeconfig} get clusternetworkpolicies

Try:  curl -s http://{listen}/metrics | grep -E 'calico_(bgp_peers|ippool_utiliz|probe_succ)'
      curl -s http://{listen}/metrics | grep -E 'calico_network_policy_(tiers|selected|staged)'
      curl -s http://{listen}/metrics | grep -E 'calico_policy_(staged_)?flow_connections'
A probe agent (source namespace "demo") runs HTTP, TCP and DNS probes against targets the demo
serves on loopback; one of them is expected to be denied (a closed port), and matches.

Change it and watch the numbers move (curl -s http://{listen}/metrics | grep calico_ipam):

  kubectl --kubeconfig {kubeconfig} run web --image=nginx    # scheduled, gets an address
  kubectl --kubeconfig {kubeconfig} delete pod web           # its address stays allocated
A pod deleted with kubectl keeps its address, as if the CNI plugin never released it: after
--leak-grace-period ({grace}) calico_ipam_leaked_addresses counts it on its node.
In namespace "default" a NetworkPolicy with a typo in its selector selects no pod
(calico_network_policy_selected_pods 0), next to a NetworkSet and a GlobalNetworkSet.
In "guestbook" the staged policy lockdown-guestbook would deny what mypolicy lets testns send
today: calico_policy_staged_flow_changed_connections_total{{action="deny"}} counts it (the
CalicoStagedPolicyWouldDeny alert), with the labels of its calico_network_policy_* series.
{flap}Stop with Ctrl-C.
"""


async def run_demo(settings: Settings, stop: asyncio.Event) -> None:
    """The cluster role, node mode for every node and a probe agent against the emulator
    running the simulated cluster."""
    import dataclasses
    import sys
    import tempfile

    from exporter.app.probe import demo_probe_role
    from exporter.server import split_host_port
    from exporter.sim.apiserver import ApiServer
    from exporter.sim.bird import BirdSockets
    from exporter.sim.cluster import SimCluster
    from exporter.sim.demo import seed_extras
    from exporter.sim.lifecycle import PodLifecycle
    from exporter.sim.scenario import ScenarioError, load

    try:
        scenario = load(settings.demo.scenario)
    except ScenarioError as exc:
        raise ConfigError(
            f"invalid value for --scenario (CALICO_EXPORTER_SCENARIO): {exc}") from None
    host, port = split_host_port(settings.demo.apiserver_listen)
    # TLS because kubectl sends its bearer token only over TLS.
    apiserver = ApiServer(token="demo-token", tls=True,  # noqa: S106  (the emulator's token)
                          calico_api=settings.demo.calico_api)
    try:
        await apiserver.start(host, port)
    except OSError as exc:
        raise ConfigError(
            "invalid value for --apiserver-listen (CALICO_EXPORTER_APISERVER_LISTEN): cannot "
            f"listen on {settings.demo.apiserver_listen}: {exc.strerror or exc}") from None
    cluster = SimCluster(apiserver, scenario)
    lifecycle = PodLifecycle(apiserver, cluster, on_started=cluster.node_changed)
    try:
        with tempfile.TemporaryDirectory(prefix="calico-exporter-demo-") as tmp:
            kubeconfig = apiserver.write_kubeconfig(Path(tmp) / "kubeconfig")
            await cluster.start()
            seed_extras(apiserver)
            lifecycle.start()
            birds = BirdSockets(cluster, Path(tmp) / "bird")
            await birds.start()
            try:
                if settings.demo.flap_interval > 0:
                    cluster.start_flapping(settings.demo.flap_interval)
                settings = dataclasses.replace(
                    settings, kube=dataclasses.replace(settings.kube, kubeconfig=str(kubeconfig)))
                telemetry = Telemetry()
                nodes = sorted(cluster.nodes)
                node_endpoints = _node_endpoints(settings.demo.node_listen, nodes, birds.path)
                async with connect(settings.kube) as api, demo_probe_role(
                    settings, telemetry=telemetry, directory=Path(tmp)
                ) as probe_role, demo_goldmane(
                    apiserver, Path(tmp), settings=settings.flows
                ) as flow_settings:
                    role = build_cluster_role(api, settings, telemetry)
                    flows_role = build_flows_role(flow_settings, telemetry,
                                                  policies=role.policies)

                    def banner(ports: list[int]) -> None:
                        sys.stdout.write(demo_banner(
                            settings, scenario=scenario, ports=ports, nodes=nodes,
                            node_endpoints=node_endpoints, apiserver=apiserver.url,
                            kubeconfig=kubeconfig, calico=apiserver.calico_group))
                        sys.stdout.flush()

                    main = Endpoint(settings.server.listen, [role, probe_role, flows_role],
                                    telemetry)
                    await serve_endpoints([main, *node_endpoints], settings=settings, stop=stop,
                                          on_serving=banner)
            finally:
                await birds.stop()
    finally:
        lifecycle.stop()
        await cluster.stop()
        await apiserver.stop()


def demo_banner(settings: Settings, *, scenario: Scenario, ports: list[int], nodes: list[str],
                node_endpoints: list[Endpoint], apiserver: str, kubeconfig: Path,
                calico: str) -> str:
    """The demo's banner, once its endpoints listen on ``ports`` (main first, then one per
    node); ``calico`` is the API group the simulated cluster keeps Calico's resources in."""
    import textwrap

    from exporter.probes.config import format_duration
    from exporter.server import display_address

    node_lines = "\n              ".join(
        f"http://{display_address(e.listen, p)}/metrics  ({n})"
        for n, e, p in zip(nodes, node_endpoints, ports[1:], strict=True))
    flap = settings.demo.flap_interval
    flapping = textwrap.fill(
        f"Every {format_duration(flap)} one BGP session goes down for {format_duration(flap / 3)} "
        "and comes back (--flap-interval), so the BGP dashboard and the CalicoBGPPeerDown alert "
        "have something to show.", 96) + "\n" if flap > 0 else ""
    return DEMO_BANNER.format(
        scenario=scenario.name,
        description=textwrap.fill(scenario.description, 96, initial_indent="  ",
                                  subsequent_indent="  "),
        listen=display_address(settings.server.listen, ports[0]), node_endpoints=node_lines,
        apiserver=apiserver, kubeconfig=kubeconfig, calico=calico,
        grace=format_duration(settings.ipam.leak_grace_period), flap=flapping)


def _node_endpoints(first: str, nodes: list[str],
                    socket: Callable[[str, int], Path]) -> list[Endpoint]:
    """One node-mode endpoint per node, on consecutive ports from ``first`` (port 0: any)."""
    from exporter.server import split_host_port

    host, port = split_host_port(first)
    shown = f"[{host}]" if ":" in host else host
    out = []
    for i, node in enumerate(nodes):
        telemetry = Telemetry()
        bird = BirdSettings(node_name=node, bird_socket=str(socket(node, 4)),
                            bird6_socket=str(socket(node, 6)))
        role = node_role(bird, telemetry=telemetry, job=f"bird-poller-{node}")
        out.append(Endpoint(f"{shown}:{port + i if port else 0}", [role], telemetry,
                            setting="node_listen"))
    return out


def selector(expression: str, labels: list[str] | None) -> tuple[int, str]:
    """The ``selector`` subcommand: (exit code, text to print); ``labels`` None when --labels
    was not given, [] for the empty label set."""
    from exporter.policy.cli import selector_command

    return selector_command(expression, labels)


async def run_probe(settings: Settings, stop: asyncio.Event) -> None:
    """A probe agent: the probes of this source namespace, on their schedules."""
    from exporter.app.probe import run_probe_role

    await run_probe_role(settings, stop=stop)
