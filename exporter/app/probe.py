"""The probe role: a synthetic-probe agent for one source namespace.

It loads the probe config (``--probe-config``; the first load must be valid or the process exits
with code 2 and the exact messages), keeps the probes whose ``source.namespace`` is its own
(``--source-namespace``, else the pod's service-account namespace, else ``default``), runs them on
their schedules under ``--probe-concurrency``, reloads the file on change and on SIGHUP, and serves
their metrics on ``--listen``. Jobs: ``probe-scheduler`` and ``probe-config``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from exporter.app.cluster import Role
from exporter.config import ConfigError, Settings
from exporter.metrics.probes import ProbeCollector
from exporter.model.telemetry import Telemetry
from exporter.probes.config import SERVICE_ACCOUNT_NAMESPACE, resolve_source_namespace
from exporter.probes.demo import serve_demo_targets
from exporter.probes.reload import ConfigReloader
from exporter.probes.results import ReloadStatus, Results
from exporter.probes.scheduler import Scheduler


@dataclass(slots=True)
class ProbeAgent:
    """The wired parts of one probe agent."""

    namespace: str
    results: Results
    status: ReloadStatus
    scheduler: Scheduler
    reloader: ConfigReloader

    def role(self) -> Role:
        """Jobs, collector and readiness (ready once a configuration is loaded)."""
        return Role(
            jobs={"probe-scheduler": self.scheduler.run, "probe-config": self.reloader.run},
            collectors=[ProbeCollector(self.results, self.status)],
            checks=[lambda: self.reloader.config is not None],
        )


def build_probe_agent(
    settings: Settings,
    *,
    telemetry: Telemetry,
    config_path: str | None = None,
    namespace: str | None = None,
    namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE,
    poll_interval: float = 1.0,
) -> ProbeAgent:
    """Wire an agent and load its config once; ConfigError (a ProbeConfigError for a bad file)
    when it cannot start. ``config_path`` and ``namespace`` override the settings (the demo)."""
    probes = settings.probes
    path = config_path or probes.probe_config
    if not path:
        raise ConfigError("invalid value for --probe-config (CALICO_EXPORTER_PROBE_CONFIG): "
                          "the probe role needs a probe configuration file")
    if probes.probe_concurrency < 1:
        raise ConfigError("invalid value for --probe-concurrency "
                          "(CALICO_EXPORTER_PROBE_CONCURRENCY): must be at least 1")
    ns = namespace or resolve_source_namespace(probes.source_namespace,
                                               namespace_file=namespace_file)
    results = Results()
    status = ReloadStatus()
    scheduler = Scheduler(results, concurrency=probes.probe_concurrency)
    reloader = ConfigReloader(path, namespace=ns, scheduler=scheduler, status=status,
                              telemetry=telemetry, poll_interval=poll_interval)
    reloader.load_initial()
    return ProbeAgent(ns, results, status, scheduler, reloader)


@asynccontextmanager
async def demo_probe_role(
    settings: Settings,
    *,
    telemetry: Telemetry,
    directory: Path,
    namespace: str = "demo",
    interval: str = "10s",
) -> AsyncIterator[Role]:
    """For ``make demo``: loopback targets, their probe config written to ``directory``, and a
    probe agent for ``namespace`` over it, as a Role to serve beside the others. Four probes,
    all matching; one of them (a closed port) is expected to be denied."""
    async with serve_demo_targets() as targets:
        path = directory / "probes.yaml"
        path.write_text(targets.config(namespace=namespace, interval=interval))
        agent = build_probe_agent(settings, telemetry=telemetry, config_path=str(path),
                                  namespace=namespace)
        yield agent.role()


async def run_probe_role(
    settings: Settings,
    *,
    stop: asyncio.Event,
    telemetry: Telemetry | None = None,
    on_serving: Callable[[int], None] | None = None,
) -> None:
    """Run a probe agent and serve its metrics until ``stop`` is set."""
    from exporter.app.run import serve_roles

    telemetry = telemetry or Telemetry()
    agent = build_probe_agent(settings, telemetry=telemetry)
    await serve_roles([agent.role()], settings=settings, telemetry=telemetry, stop=stop,
                      on_serving=on_serving)


__all__ = ["ProbeAgent", "build_probe_agent", "demo_probe_role", "run_probe_role"]
