"""Command line: parse settings, configure logging, run one role under the supervisor.

Subcommands:

- ``cluster``: the cluster-wide exporter (CalicoNodeStatus refresher, BGP, IPAM, policy).
- ``node``: node-local BGP metrics from BIRD's control sockets.
- ``probe``: a synthetic-probe agent for one source namespace.
- ``demo``: the exporter, a probe agent and the simulated ``nke-lab`` cluster in one process.
- ``check-config``: validate settings (and the probe config) and print the effective values.
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
    "demo": ("server", "access", "log", "watch", "node_status", "ipam", "demo"),
    "check-config": tuple(config.GROUPS),
}

DESCRIPTIONS = {
    "cluster": "Run the cluster-wide exporter: CalicoNodeStatus per node, BGP, IPAM and policy "
    "metrics from Kubernetes watches.",
    "node": "Run the node-local exporter: BGP metrics straight from BIRD's control sockets.",
    "probe": "Run a synthetic-probe agent for the probes whose source namespace is this one.",
    "demo": "Run the exporter and a probe agent against the built-in simulated Calico cluster.",
    "check-config": "Validate the settings (and the probe config, if any), print the effective "
    "values and exit: 0 when valid, 2 when not.",
    "selector": "Parse a Calico selector, print its canonical form and, given labels, whether it "
    "matches: exit 0 on a match, 1 on no match, 2 on a parse error.",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calico-exporter",
        description="Telemetry agent and Prometheus exporter for Calico networking.",
    )
    parser.add_argument("--version", action="version", version=f"calico-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, groups in GROUPS_BY_COMMAND.items():
        p = sub.add_parser(command, help=DESCRIPTIONS[command], description=DESCRIPTIONS[command])
        p.add_argument("--config-file", default=None, metavar="PATH",
                       help="YAML file of settings (keys are the option names with underscores) "
                       f"[env {config.ENV_PREFIX}CONFIG_FILE]")
        for group in groups:
            g = p.add_argument_group(group.replace("_", " "))
            for opt in config.options():
                if opt.group == group:
                    _add_option(g, opt)
    sel = sub.add_parser("selector", help=DESCRIPTIONS["selector"],
                         description=DESCRIPTIONS["selector"])
    sel.add_argument("expression", help="the selector, e.g. \"app == 'frontend' && has(tier)\"")
    sel.add_argument("--labels", nargs="*", default=None, metavar="KEY=VALUE",
                     help="labels to match the selector against")
    return parser


def _stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _roles() -> dict[str, Callable[[Settings, asyncio.Event], Awaitable[None]]]:
    from exporter.app.run import run_cluster, run_demo, run_node, run_probe

    return {"cluster": run_cluster, "node": run_node, "probe": run_probe, "demo": run_demo}


async def _run(command: str, settings: Settings) -> None:
    await _roles()[command](settings, _stop_event())


def _check_config(settings: Settings) -> int:
    from exporter.app.run import check_probe_config

    errors = check_probe_config(settings)
    if errors:
        for error in errors:
            sys.stderr.write(f"calico-exporter: error: {error}\n")
        return 2
    sys.stdout.write(yaml.safe_dump(config.describe(settings), sort_keys=False))
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
    try:
        settings = config.load(flags=flags, environ=os.environ, config_file=args.config_file)
    except ConfigError as exc:
        sys.stderr.write(f"calico-exporter: error: {exc}\n")
        return 2
    configure_logging(level=settings.log.log_level, fmt=settings.log.log_format)
    if args.command == "check-config":
        return _check_config(settings)
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
