"""Command line: parse settings, configure logging, run one role under the supervisor.

Subcommands:

- ``cluster``: the cluster-wide exporter (CalicoNodeStatus refresher, BGP, IPAM, policy).
- ``node``: node-local BGP metrics from BIRD's control sockets.
- ``probe``: a synthetic-probe agent for one source namespace.
- ``demo``: the exporter (cluster mode with Goldmane's flows, node mode per node), a probe agent,
  the simulated ``nke-lab`` cluster and a Goldmane stand-in in one process.
- ``check-config MODE``: validate the settings of one mode and what it needs (kubeconfig, node
  name, probe config) and print that mode's effective values.
- ``selector``: parse a Calico selector, print its canonical form, optionally match labels.

Every setting is a flag, an env var ``CALICO_EXPORTER_<NAME>`` and a key of ``--config-file``;
a bad value prints one exact message and exits with code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
import yaml

from exporter import __version__, config
from exporter.config import ConfigError, Settings
from exporter.logs import configure_logging

log = structlog.get_logger(__name__)

GROUPS_BY_COMMAND: dict[str, tuple[str, ...]] = {
    "cluster": ("server", "access", "log", "kube", "watch", "node_status", "ipam", "flows"),
    "node": ("server", "access", "log", "bird", "kube"),
    "probe": ("server", "access", "log", "probes", "kube"),
    "demo": ("server", "access", "log", "watch", "node_status", "ipam", "flows", "demo"),
}
"""The setting groups each mode reads; ``check-config MODE`` checks exactly these."""
MODES = tuple(GROUPS_BY_COMMAND)

DESCRIPTIONS = {
    "cluster": "Run the cluster-wide exporter: CalicoNodeStatus per node, BGP, IPAM and policy "
    "metrics from Kubernetes watches.",
    "node": "Run the node-local exporter: BGP metrics straight from BIRD's control sockets.",
    "probe": "Run a synthetic-probe agent for the probes whose source namespace is this one.",
    "demo": "Run the exporter (cluster mode with Goldmane's flows, and node mode for every node) "
    "and a probe agent against the built-in simulated Calico cluster and a Goldmane stand-in.",
    "check-config": "Validate the settings of one mode and what it will need (cluster: the "
    "kubeconfig and, with --goldmane-enabled, Goldmane's client certificate files; node: a "
    "node name; probe: the probe config, whose probes are listed with their schedule; any mode: "
    "the TLS files, and with --authorize-scrapers the kubeconfig), print that mode's effective "
    "settings and exit: 0 when valid (warnings about contradictions go to stderr), 2 when not, "
    "with every problem listed.",
    "selector": "Parse a Calico selector, print its canonical form and, given labels, whether it "
    "matches: exit 0 on a match, 1 on no match, 2 on a parse error. --labels with no pairs is "
    "the empty label set; --labels may be repeated.",
}


def _add_option(parser: argparse._ArgumentGroup, opt: config.Option) -> None:
    default = ",".join(opt.default) if isinstance(opt.default, tuple) else opt.default
    text = f"{opt.help} [env {opt.env}; default {default!r}]"
    if opt.type is bool:
        parser.add_argument(opt.flag, dest=opt.name, default=None,
                            action=argparse.BooleanOptionalAction, help=text)
    else:
        parser.add_argument(opt.flag, dest=opt.name, default=None, metavar=opt.name.upper(),
                            help=text)


def _add_settings(p: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    p.add_argument("--config-file", default=None, metavar="PATH",
                   help="YAML file of settings (keys are the option names with underscores) "
                   f"[env {config.ENV_PREFIX}CONFIG_FILE]")
    for group in groups:
        g = p.add_argument_group(group.replace("_", " "))
        for opt in config.options():
            if opt.group == group:
                _add_option(g, opt)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calico-exporter",
        description="Telemetry agent and Prometheus exporter for Calico networking.",
    )
    parser.add_argument("--version", action="version", version=f"calico-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, groups in GROUPS_BY_COMMAND.items():
        p = sub.add_parser(command, help=DESCRIPTIONS[command], description=DESCRIPTIONS[command])
        _add_settings(p, groups)
    check = sub.add_parser("check-config", help=DESCRIPTIONS["check-config"],
                           description=DESCRIPTIONS["check-config"])
    modes = check.add_subparsers(dest="mode", required=True, metavar="MODE")
    for mode, groups in GROUPS_BY_COMMAND.items():
        text = f"check the settings of `calico-exporter {mode}`"
        _add_settings(modes.add_parser(mode, help=text, description=text), groups)
    sel = sub.add_parser("selector", help=DESCRIPTIONS["selector"],
                         description=DESCRIPTIONS["selector"])
    sel.add_argument("expression", help="the selector, e.g. \"app == 'frontend' && has(tier)\"")
    sel.add_argument("--labels", nargs="*", action="extend", default=None, metavar="KEY=VALUE",
                     help="labels to match the selector against; with no pairs, the empty label "
                     "set; repeat to add more")
    return parser


def _stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT. SIGHUP, whose default action ends the process, is
    logged and ignored: the ``cluster`` and ``node`` roles read their settings once, at
    start (restart the pod to change them); a probe agent's reloader (``probe``, ``demo``)
    takes SIGHUP over while it runs, to reload the probe file."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _sighup_ignored)
    return stop


def _sighup_ignored() -> None:
    log.info("sighup_ignored", reason="settings are read at start: restart to change them")


def _roles() -> dict[str, Callable[[Settings, asyncio.Event], Awaitable[None]]]:
    from exporter.app.run import run_cluster, run_demo, run_node, run_probe

    return {"cluster": run_cluster, "node": run_node, "probe": run_probe, "demo": run_demo}


async def _run(command: str, settings: Settings) -> None:
    await _roles()[command](settings, _stop_event())


def _check_config(mode: str, flags: dict[str, Any], config_file: str | None) -> int:
    from exporter.app.check import check_mode

    groups = GROUPS_BY_COMMAND[mode]
    settings, problems = config.check(flags=flags, environ=os.environ, config_file=config_file,
                                      groups=groups)
    report = check_mode(mode, settings, environ=os.environ)
    for warning in [*config.contradictions(settings, groups), *report.warnings]:
        sys.stderr.write(f"calico-exporter: warning: {warning}\n")
    problems += report.problems
    if problems:
        for problem in problems:
            sys.stderr.write(f"calico-exporter: error: {problem}\n")
        return 2
    sys.stdout.write(yaml.safe_dump(config.describe(settings, groups), sort_keys=False))
    if report.details:
        sys.stdout.write(yaml.safe_dump(report.details, sort_keys=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "selector":
        from exporter.app.run import selector

        code, text = selector(args.expression, args.labels)
        (sys.stdout if code < 2 else sys.stderr).write(text + "\n")
        return code
    flags: dict[str, Any] = {
        opt.name: getattr(args, opt.name) for opt in config.options() if hasattr(args, opt.name)
    }
    if args.command == "check-config":
        return _check_config(args.mode, flags, args.config_file)
    try:
        settings = config.load(flags=flags, environ=os.environ, config_file=args.config_file,
                               groups=GROUPS_BY_COMMAND[args.command])
    except ConfigError as exc:
        sys.stderr.write(f"calico-exporter: error: {exc}\n")
        return 2
    configure_logging(level=settings.log.log_level, fmt=settings.log.log_format)
    try:
        asyncio.run(_run(args.command, settings))
    except ConfigError as exc:
        sys.stderr.write(f"calico-exporter: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:
        log.error("exiting", reason="a task failed", errors=[repr(e) for e in group.exceptions])
        return 1
    log.info("stopped")
    return 0
