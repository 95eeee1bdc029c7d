"""Settings: frozen dataclasses with defaults, documented field by field.

Each group below is one concern. Every field is a command-line flag (``--field-name``), an
environment variable (``CALICO_EXPORTER_FIELD_NAME``) and a key of the optional YAML file given by
``--config-file``; precedence is flag, then env, then file, then default. The attribute docstring
under each field is the ``--help`` text, so documentation and code cannot drift.

A value that does not parse raises :class:`ConfigError` with one exact message; the CLI prints it
and exits with code 2. This module imports only the standard library and PyYAML.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, get_type_hints

import yaml

ENV_PREFIX = "CALICO_EXPORTER_"


class ConfigError(ValueError):
    """A setting has a value we cannot use; ``str()`` is the exact message shown to the user."""


# --------------------------------------------------------------------------------------------
# Groups


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The HTTP endpoint for /metrics, /healthz and /readyz."""

    listen: str = "0.0.0.0:9808"
    """Address to serve /metrics, /healthz and /readyz on, as host:port."""


@dataclass(frozen=True, slots=True)
class AccessSettings:
    """Who may connect to the HTTP endpoint, for how long, over what, and who may scrape it."""

    header_read_timeout: float = 10.0
    """Close a connection whose first request (TLS handshake included) has not fully sent its
    headers this long after it was accepted, so idle and half-sent connections cannot pile up."""
    keepalive_timeout: float = 75.0
    """Close a kept-alive connection that has been idle (or is half-way through sending its next
    request) this long after the previous response."""
    max_connections: int = 128
    """Most connections served at once on --listen; one more is closed at once (plain HTTP gets a
    503 first). The health listener has its own limit of 32."""
    health_listen: str = ""
    """Also serve /healthz and /readyz, plain HTTP and without authorization, on this host:port,
    so scrapers cannot starve the liveness probe; empty: only on --listen."""
    tls_cert_file: str = ""
    """PEM certificate (chain) for HTTPS on --listen; empty serves plain HTTP. Reloaded, with the
    key and client CA, when the files change (a mounted Secret rotating)."""
    tls_key_file: str = ""
    """PEM private key of --tls-cert-file."""
    tls_client_ca_file: str = ""
    """PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS)."""
    authorize_scrapers: bool = False
    """Require a bearer token on every path but /healthz and /readyz: checked with a
    TokenReview, then a SubjectAccessReview for verb get on the non-resource URL (/metrics), as
    kube-rbac-proxy does. Needs create on tokenreviews and subjectaccessreviews."""
    token_review_cache_ttl: float = 60.0
    """How long a TokenReview result (authenticated or not) is reused for the same token."""
    access_review_allow_ttl: float = 300.0
    """How long an allowed SubjectAccessReview is reused for the same user and path."""
    access_review_deny_ttl: float = 30.0
    """How long a denied SubjectAccessReview is reused for the same user and path."""


@dataclass(frozen=True, slots=True)
class LogSettings:
    """Structured logging."""

    log_level: str = "info"
    """Lowest level logged: debug, info, warning or error."""
    log_format: str = "auto"
    """json, console, or auto (console on a terminal, JSON otherwise)."""


@dataclass(frozen=True, slots=True)
class KubeSettings:
    """How to reach the Kubernetes API."""

    kubeconfig: str = ""
    """Path to a kubeconfig file; empty means in-cluster config when running in a pod, else
    $KUBECONFIG or ~/.kube/config."""
    context: str = ""
    """kubeconfig context to use; empty means the current context."""
    api_timeout: float = 10.0
    """Timeout of one non-watch API request, in seconds."""


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """The list-then-watch engine."""

    watch_timeout: float = 300.0
    """timeoutSeconds sent with each watch; the server ends the stream after it and we resume
    from the last resourceVersion."""
    inactivity_timeout: float = 70.0
    """Restart a watch that delivered nothing (not even a bookmark) for this long: the real API
    server sends a bookmark about every 60 s, so silence means a dead connection."""
    backoff_initial: float = 0.5
    """First delay before retrying a failed list or watch, in seconds; doubles up to
    backoff_max, with full jitter."""
    backoff_max: float = 30.0
    """Longest delay between retries of a failed list or watch, in seconds."""
    list_page_size: int = 500
    """Objects per LIST page (limit/continue), so a big cluster is listed in chunks."""


@dataclass(frozen=True, slots=True)
class NodeStatusSettings:
    """Management of one CalicoNodeStatus per node (cluster role)."""

    manage_node_status: bool = True
    """Create, repair and delete one CalicoNodeStatus per Node. Off: only watch the
    CalicoNodeStatus objects that exist."""
    node_status_prefix: str = "calico-exporter-"
    """Name prefix of the CalicoNodeStatus objects we own; the node name follows it."""
    node_status_classes: tuple[str, ...] = ("Agent", "BGP", "Routes")
    """Status classes requested from calico-node (comma-separated): Agent, BGP, Routes."""
    node_status_update_period: int = 30
    """spec.updatePeriodSeconds of our CalicoNodeStatus objects (0 to 86400); calico-node
    refreshes the status this often."""


@dataclass(frozen=True, slots=True)
class IpamSettings:
    """IPAM utilization and leak detection."""

    leak_grace_period: float = 300.0
    """An allocation whose pod has been gone for longer than this counts as leaked, in seconds."""


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """Synthetic probes (probe role)."""

    probe_config: str = ""
    """Path of the probe configuration YAML; reloaded when it changes and on SIGHUP."""
    source_namespace: str = ""
    """Namespace this agent runs in; only probes whose source.namespace equals it run. Empty
    means the pod's service-account namespace, or "default" outside a cluster."""
    probe_concurrency: int = 64
    """Most probe runs in flight at once."""


@dataclass(frozen=True, slots=True)
class BirdSettings:
    """Node mode: BGP state read from BIRD's control sockets."""

    node_name: str = ""
    """Name of the node this agent runs on; empty means $NODE_NAME."""
    bird_socket: str = "/var/run/calico/bird.ctl"
    """BIRD (IPv4) control socket."""
    bird6_socket: str = "/var/run/calico/bird6.ctl"
    """BIRD6 (IPv6) control socket; a missing socket means no IPv6, not an error."""
    bird_interval: float = 5.0
    """How often to read BIRD's state, in seconds."""
    bird_timeout: float = 2.0
    """Timeout of one exchange with BIRD, in seconds."""


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """Per-policy flow counters from Calico's Goldmane (cluster role; off by default)."""

    goldmane_enabled: bool = False
    """Read flows from Goldmane's gRPC API (Calico 3.30+, a tech preview not on every install)
    and export per-policy allow, deny and pass counters. Needs the three --goldmane-*-file
    settings: Goldmane accepts only mutual TLS."""
    goldmane_address: str = "goldmane.calico-system.svc:7443"
    """Goldmane's gRPC endpoint, as host:port."""
    goldmane_read: str = "poll"
    """How to read Goldmane's flows: poll (Flows.List of the completed windows every 15 s, one
    message per poll) or stream (Flows.Stream, one message per flow and window: about a tenth of
    the throughput in Python). Both count every window once and resume where they stopped."""
    goldmane_server_name: str = ""
    """Name to verify in Goldmane's server certificate; empty: the host of --goldmane-address.
    The operator issues it for goldmane, goldmane.calico-system and the .svc names."""
    goldmane_cert_file: str = ""
    """PEM client certificate Goldmane trusts (signed by a CA in its goldmane-ca-bundle);
    re-read, with the key and CA, when the files change."""
    goldmane_key_file: str = ""
    """PEM private key of --goldmane-cert-file."""
    goldmane_ca_file: str = ""
    """PEM CA bundle that signed Goldmane's server certificate (tigera-ca-bundle's ca.crt)."""
    goldmane_max_series: int = 10000
    """Most label sets per flow family; traffic of further policies (or namespace pairs) is
    counted under policy="__other__" (source_namespace="__other__")."""
    goldmane_namespace_pairs: bool = False
    """Also export calico_namespace_flow_connections_total (one series per source namespace,
    destination namespace and action, so up to namespaces squared). A plain switch until the
    metrics allow-list replaces it."""
    goldmane_stall_timeout: float = 120.0
    """Reconnect when the flow stream delivered nothing for this long (Goldmane streams every
    15 s while any traffic flows); the reconnect resumes where the stream stopped."""


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """The built-in simulated cluster (demo role)."""

    scenario: str = "nke-lab"
    """Simulated cluster to run: a built-in scenario name or a path to a scenario YAML."""
    flap_interval: float = 180.0
    """Take one BGP peer down and up again this often in the demo, in seconds; 0 disables."""
    apiserver_listen: str = "127.0.0.1:6443"
    """Address of the emulated Kubernetes API server in the demo, as host:port."""


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings of one process; roles read the groups they need."""

    server: ServerSettings = field(default_factory=ServerSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    log: LogSettings = field(default_factory=LogSettings)
    kube: KubeSettings = field(default_factory=KubeSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    node_status: NodeStatusSettings = field(default_factory=NodeStatusSettings)
    ipam: IpamSettings = field(default_factory=IpamSettings)
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    bird: BirdSettings = field(default_factory=BirdSettings)
    flows: FlowSettings = field(default_factory=FlowSettings)
    demo: DemoSettings = field(default_factory=DemoSettings)


GROUPS: dict[str, type[Any]] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(Settings)
}


# --------------------------------------------------------------------------------------------
# Field metadata


@dataclass(frozen=True, slots=True)
class Option:
    """One setting as the CLI sees it."""

    group: str
    name: str
    type: Any
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


@cache
def _docstrings(cls: type[Any]) -> dict[str, str]:
    """Attribute docstrings of a dataclass, read from its source."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


@cache
def options() -> tuple[Option, ...]:
    """Every setting of every group, in declaration order."""
    out: list[Option] = []
    for group, cls in GROUPS.items():
        hints = get_type_hints(cls)
        docs = _docstrings(cls)  # type: ignore[arg-type]
        for f in dataclasses.fields(cls):
            out.append(Option(group, f.name, hints[f.name], f.default, docs.get(f.name, "")))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Value parsing

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_TRUE = {"1", "t", "true", "yes", "on"}
_FALSE = {"0", "f", "false", "no", "off"}


def parse_duration(text: str) -> float:
    """``500ms``, ``30s``, ``2m``, ``1h`` or plain seconds, as float seconds; ValueError else."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30s, 2m or 500ms")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _convert(opt: Option, value: Any, source: str) -> Any:
    where = f"{opt.flag} ({opt.env})" if source != "file" else opt.name
    try:
        if opt.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(f"{value!r} is not a boolean (true or false)")
        if opt.type is int:
            if isinstance(value, bool):
                raise ValueError(f"{value!r} is not an integer")
            return int(value)
        if opt.type is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return parse_duration(str(value))
        if opt.type == tuple[str, ...]:
            items = value if isinstance(value, list) else str(value).split(",")
            return tuple(str(i).strip() for i in items if str(i).strip())
        if isinstance(value, dict | list):
            raise ValueError(f"{value!r} is not a string")
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid value for {where}: {exc}") from None


def _check_host_port(opt: Option, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            f"invalid value for {opt.flag} ({opt.env}): {value!r} is not host:port"
        )


def _validate(settings: Settings) -> None:
    """Cross-field and range checks; each failure is one exact message."""
    by_name = {o.name: o for o in options()}
    _check_host_port(by_name["listen"], settings.server.listen)
    _check_host_port(by_name["apiserver_listen"], settings.demo.apiserver_listen)
    if settings.log.log_level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(
            "invalid value for --log-level (CALICO_EXPORTER_LOG_LEVEL): "
            f"{settings.log.log_level!r} is not one of debug, info, warning, error"
        )
    if settings.log.log_format not in {"auto", "json", "console"}:
        raise ConfigError(
            "invalid value for --log-format (CALICO_EXPORTER_LOG_FORMAT): "
            f"{settings.log.log_format!r} is not one of auto, json, console"
        )
    _validate_access(settings.access, by_name)
    _validate_flows(settings.flows, by_name)
    ns = settings.node_status
    bad = [c for c in ns.node_status_classes if c not in {"Agent", "BGP", "Routes"}]
    if bad or not ns.node_status_classes:
        raise ConfigError(
            "invalid value for --node-status-classes (CALICO_EXPORTER_NODE_STATUS_CLASSES): "
            "classes must be a non-empty list of Agent, BGP, Routes"
        )
    if not 0 <= ns.node_status_update_period <= 86400:
        raise ConfigError(
            "invalid value for --node-status-update-period "
            "(CALICO_EXPORTER_NODE_STATUS_UPDATE_PERIOD): must be between 0 and 86400"
        )
    for opt in options():
        group = getattr(settings, opt.group)
        value = getattr(group, opt.name)
        if opt.type in (int, float) and value < 0:
            raise ConfigError(f"invalid value for {opt.flag} ({opt.env}): must not be negative")


def _validate_access(access: AccessSettings, by_name: Mapping[str, Option]) -> None:
    if access.health_listen:
        _check_host_port(by_name["health_listen"], access.health_listen)
    for name in ("header_read_timeout", "keepalive_timeout", "max_connections"):
        if not getattr(access, name) > 0:
            opt = by_name[name]
            raise ConfigError(f"invalid value for {opt.flag} ({opt.env}): must be positive")
    if bool(access.tls_cert_file) != bool(access.tls_key_file):
        raise ConfigError("invalid value for --tls-cert-file (CALICO_EXPORTER_TLS_CERT_FILE): "
                          "--tls-cert-file and --tls-key-file go together")
    if access.tls_client_ca_file and not access.tls_cert_file:
        raise ConfigError("invalid value for --tls-client-ca-file "
                          "(CALICO_EXPORTER_TLS_CLIENT_CA_FILE): mutual TLS needs "
                          "--tls-cert-file and --tls-key-file")


def _validate_flows(flows: FlowSettings, by_name: Mapping[str, Option]) -> None:
    _check_host_port(by_name["goldmane_address"], flows.goldmane_address)
    if flows.goldmane_read not in {"poll", "stream"}:
        raise ConfigError("invalid value for --goldmane-read (CALICO_EXPORTER_GOLDMANE_READ): "
                          f"{flows.goldmane_read!r} is not one of poll, stream")
    for name in ("goldmane_max_series", "goldmane_stall_timeout"):
        if not getattr(flows, name) > 0:
            opt = by_name[name]
            raise ConfigError(f"invalid value for {opt.flag} ({opt.env}): must be positive")
    if flows.goldmane_enabled:
        for name in ("goldmane_cert_file", "goldmane_key_file", "goldmane_ca_file"):
            if not getattr(flows, name):
                opt = by_name[name]
                raise ConfigError(f"invalid value for {opt.flag} ({opt.env}): Goldmane "
                                  "requires mutual TLS: --goldmane-enabled needs "
                                  "--goldmane-cert-file, --goldmane-key-file and "
                                  "--goldmane-ca-file")


# --------------------------------------------------------------------------------------------
# Loading


def load(
    *,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Settings:
    """Build Settings from defaults, an optional YAML file, the environment and parsed flags.

    ``flags`` maps field names to values given on the command line (absent means not given).
    """
    flags = flags or {}
    environ = environ or {}
    file_values: dict[str, Any] = {}
    path = config_file or environ.get(ENV_PREFIX + "CONFIG_FILE", "")
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must be a mapping of setting names to values")
        known = {o.name for o in options()}
        unknown = sorted(str(k) for k in loaded if k not in known)
        if unknown:
            raise ConfigError(f"config file {path}: unknown setting {unknown[0]!r}")
        file_values = loaded

    groups: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
    for opt in options():
        if opt.name in flags and flags[opt.name] is not None:
            value = _convert(opt, flags[opt.name], "flag")
        elif opt.env in environ:
            value = _convert(opt, environ[opt.env], "env")
        elif opt.name == "node_name" and environ.get("NODE_NAME"):
            value = environ["NODE_NAME"]
        elif opt.name in file_values:
            value = _convert(opt, file_values[opt.name], "file")
        else:
            continue
        groups[opt.group][opt.name] = value
    settings = Settings(**{g: GROUPS[g](**values) for g, values in groups.items()})
    _validate(settings)
    return settings


def describe(settings: Settings) -> dict[str, Any]:
    """The effective settings as a flat mapping, for ``check-config`` output."""
    out: dict[str, Any] = {}
    for opt in options():
        value = getattr(getattr(settings, opt.group), opt.name)
        out[opt.name] = list(value) if isinstance(value, tuple) else value
    return out


__all__ = [
    "AccessSettings",
    "ConfigError",
    "FlowSettings",
    "Option",
    "Settings",
    "describe",
    "load",
    "options",
    "parse_duration",
]
