"""``calico-exporter check-config MODE``: what a mode will need, checked before it runs.

The settings themselves are checked by :func:`exporter.config.check`; this module adds, per mode,
the checks the mode would otherwise only fail at start-up, with the same messages:

- ``cluster``: the kubeconfig (or the in-cluster service account) loads as ``cluster`` loads it;
  with ``--goldmane-enabled``, Goldmane's client certificate, key and CA make a client context
  (the certificate and key belong together, the CA is a CA bundle);
- ``node``: a node name is set; a BIRD socket that does not exist here is a warning (fine when
  checking away from the node);
- ``probe``: the probe config is given and valid; its probes are listed with their schedule and
  whether this agent's source namespace runs them;
- ``demo``: the scenario loads;
- every mode: the TLS certificate, key and client CA (``--tls-*``), when given, make a server
  context; ``node`` and ``probe`` with ``--authorize-scrapers`` also need the kubeconfig (their
  reviews go to the API server), checked as for ``cluster``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.config import ConfigError, Settings


@dataclass
class Report:
    """What a mode check found: problems (invalid), warnings, and details to print."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def check_mode(mode: str, settings: Settings, *, environ: Mapping[str, str],
               service_account: Path | None = None) -> Report:
    """The checks of ``mode`` (cluster, node, probe or demo) over ``settings``."""
    report = Report()
    if mode == "cluster" or (mode in ("node", "probe") and settings.access.authorize_scrapers):
        _check_kubeconfig(settings, environ, service_account, report)
    if mode == "cluster":
        _check_goldmane(settings, report)
    if mode == "node":
        _check_node(settings, report)
    elif mode == "probe":
        _check_probe(settings, report)
    elif mode == "demo":
        _check_demo(settings, report)
    _check_tls(settings, report)
    return report


def _check_tls(settings: Settings, report: Report) -> None:
    from exporter.server import load_tls

    access = settings.access
    if not (access.tls_cert_file and access.tls_key_file):
        return  # none, or only one of the pair: exporter.config reports that
    try:
        load_tls(access)
    except ConfigError as exc:
        report.problems.append(str(exc))


def _check_goldmane(settings: Settings, report: Report) -> None:
    import ssl

    flows = settings.flows
    files = (flows.goldmane_cert_file, flows.goldmane_key_file, flows.goldmane_ca_file)
    if not flows.goldmane_enabled or not all(files):
        return  # off, or files missing: exporter.config reports that
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=flows.goldmane_ca_file)
        context.load_cert_chain(flows.goldmane_cert_file, flows.goldmane_key_file)
    except (OSError, ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        report.problems.append(
            "invalid value for --goldmane-cert-file (CALICO_EXPORTER_GOLDMANE_CERT_FILE): cannot "
            f"use {', '.join(files)}: {reason}")
        return
    report.details["goldmane"] = {"address": flows.goldmane_address, "read": flows.goldmane_read}


def _check_kubeconfig(settings: Settings, environ: Mapping[str, str],
                      service_account: Path | None, report: Report) -> None:
    from exporter.kube.client import SERVICE_ACCOUNT, client_configuration

    async def load() -> Any:
        return await client_configuration(settings.kube, environ=environ,
                                          service_account=service_account or SERVICE_ACCOUNT)

    try:
        cfg = asyncio.run(load())
    except ConfigError as exc:
        report.problems.append(str(exc))
        return
    report.details["api_server"] = str(cfg.host)


def _check_node(settings: Settings, report: Report) -> None:
    bird = settings.bird
    if not bird.node_name:
        report.problems.append("node mode needs a node name: set --node-name or NODE_NAME")
    if not Path(bird.bird_socket).exists():
        report.warnings.append(
            f"--bird-socket {bird.bird_socket} does not exist here (fine when checking away "
            "from the node; in the pod, mount the host's /var/run/calico)")


def _check_probe(settings: Settings, report: Report) -> None:
    from exporter.probes.config import (
        format_duration,
        resolve_source_namespace,
        validate_probe_config,
    )

    path = settings.probes.probe_config
    if not path:
        report.problems.append("invalid value for --probe-config (CALICO_EXPORTER_PROBE_CONFIG): "
                               "the probe role needs a probe configuration file")
        return
    errors = validate_probe_config(path)
    if errors:
        report.problems += [f"probe config {path}: {error}" for error in errors]
        return
    from exporter.probes.config import load_probe_config

    config = load_probe_config(path)
    namespace = resolve_source_namespace(settings.probes.source_namespace)
    report.details["source_namespace"] = namespace
    report.details["probes"] = [{
        "name": p.name,
        "protocol": p.protocol,
        "target": p.public_target,
        "expect": p.expect,
        "source": p.source.namespace,
        "runs_here": p.source.namespace == namespace,
        "schedule": (f"every {format_duration(p.interval)}, {p.attempts} x "
                     f"{format_duration(p.timeout)} attempts, success: "
                     f"{p.success.required} of {p.attempts}"),
    } for p in config.probes]
    if not config.for_namespace(namespace):
        report.warnings.append(f"no probe has source.namespace {namespace!r}: an agent there "
                               "runs nothing")


def _check_demo(settings: Settings, report: Report) -> None:
    from exporter.sim.scenario import ScenarioError, load

    try:
        scenario = load(settings.demo.scenario)
    except ScenarioError as exc:
        report.problems.append(
            f"invalid value for --scenario (CALICO_EXPORTER_SCENARIO): {exc}")
        return
    report.details["scenario"] = {"name": scenario.name, "nodes": len(scenario.nodes),
                                  "pods": len(scenario.pods)}
