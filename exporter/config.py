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
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, NewType, get_type_hints

import yaml

ENV_PREFIX = "CALICO_EXPORTER_"
CALICO_API_GROUPS = ("auto", "crd.projectcalico.org/v1", "projectcalico.org/v3")


class ConfigError(ValueError):
    """A setting has a value we cannot use; ``str()`` is the exact message shown to the user.

    ``problems`` holds one exact line per bad setting when several were found at once."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


WholeSeconds = NewType("WholeSeconds", int)
"""A duration setting kept as whole seconds (it becomes an integer field of an API object).
Every ``float`` setting is a duration in seconds; both accept the duration syntax of
:func:`parse_duration`."""


# --------------------------------------------------------------------------------------------
# Groups


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The HTTP endpoint for /metrics, /healthz and /readyz."""

    listen: str = "0.0.0.0:9808"
    """Address to serve /metrics, /healthz and /readyz on: host:port, [IPv6]:port, or :port for
    every interface."""


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
    """How long a TokenReview result (authenticated or not) is reused for the same token; 0
    never reuses one."""
    access_review_allow_ttl: float = 300.0
    """How long an allowed SubjectAccessReview is reused for the same user and path; 0 never
    reuses one."""
    access_review_deny_ttl: float = 30.0
    """How long a denied SubjectAccessReview is reused for the same user and path; 0 never
    reuses one."""


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
    calico_api_group: str = "auto"
    """API group of Calico's resources: auto (discover it as Calico does: crd.projectcalico.org/v1
    when served, else projectcalico.org/v3; again when it disappears), crd.projectcalico.org/v1
    or projectcalico.org/v3 (Calico's CALICO_API_GROUP)."""


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """The list-then-watch engine."""

    watch_timeout: float = 300.0
    """timeoutSeconds sent with each watch (at most 24h); the server ends the stream after it
    and we resume from the last resourceVersion."""
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
    node_status_update_period: WholeSeconds = WholeSeconds(30)
    """spec.updatePeriodSeconds of our CalicoNodeStatus objects, whole seconds from 0 to 24h;
    calico-node refreshes the status this often (0: only when our spec changes)."""


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
    """Per-policy flow counters from Calico's Goldmane (cluster role, off by default; the demo
    reads its own stand-in with the read mode, series cap and stall timeout set here)."""

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
    node_listen: str = "127.0.0.1:9809"
    """Address of the demo's first node-mode endpoint (the node mode of the first simulated
    node); the other nodes follow on the next ports. Port 0 picks free ports."""
    calico_api: str = "v1"
    """API group of Calico's resources in the simulated cluster: v1 (crd.projectcalico.org
    CRDs), v3 (native projectcalico.org CRDs) or both (v1 CRDs and the Calico API server's v3)."""


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

_NUMBER = r"(?:\d+\.?\d*|\.\d+)"
_BARE = re.compile(_NUMBER)
_COMPONENT = re.compile(rf"({_NUMBER})(ns|us|µs|μs|ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                 "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_TRUE = {"1", "t", "true", "yes", "on"}
_FALSE = {"0", "f", "false", "no", "off"}
DURATION_SYNTAX = "a duration like 30s, 1m30s or 500ms"


def parse_duration(text: str) -> float:
    """A duration as float seconds: Go's syntax (``500ms``, ``30s``, ``1m30s``, ``1.5h``, units
    ns, us, ms, s, m, h), Prometheus' day, week and year units (``1d``, ``2w``, ``1y``), or a
    plain number of seconds (``90``, ``0.5``); an optional sign. ValueError otherwise."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body[1:] if body[:1] in "+-" else body
    if _BARE.fullmatch(body):
        return sign * float(body)
    total, pos = 0.0, 0
    while pos < len(body):
        m = _COMPONENT.match(body, pos)
        if m is None:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not body or pos < len(body):
        raise ValueError(f"{text!r} is not {DURATION_SYNTAX}")
    return sign * total


def split_listen(value: str) -> tuple[str, int]:
    """``host:port``, ``[IPv6]:port`` or ``:port`` (every interface: host "") as (host, port);
    ValueError when it is none of these."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host or ":" not in host:
            raise ValueError(f"{value!r} is not host:port, [IPv6]:port or :port")
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError(f"{value!r} is not host:port, [IPv6]:port or :port "
                         "(an IPv6 address goes in brackets)")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port, [IPv6]:port or :port")
    return host, int(port)


def _shown(value: Any) -> str:
    """A value as it appears in a message: repr, shortened past 40 characters (a 400-digit
    number is still recognisable)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _convert(opt: Option, value: Any) -> Any:
    """The typed value of one raw setting; ValueError (or TypeError) with the reason."""
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
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if isinstance(value, bool | float | dict | list) or not text.lstrip("+-").isdigit():
            raise ValueError(f"{value!r} is not an integer")
        return int(text)
    if opt.type is float or opt.type is WholeSeconds:
        if isinstance(value, bool | dict | list):
            raise ValueError(f"{value!r} is not {DURATION_SYNTAX}")
        try:
            seconds = (float(value) if isinstance(value, int | float)
                       else parse_duration(str(value)))
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds):
            raise ValueError(f"{_shown(value)} is not a finite duration")
        if opt.type is float:
            return seconds
        if not seconds.is_integer():
            raise ValueError(f"{value!r} is not a whole number of seconds")
        return WholeSeconds(int(seconds))
    if opt.type == tuple[str, ...]:
        items = value if isinstance(value, list) else str(value).split(",")
        return tuple(str(i).strip() for i in items if str(i).strip())
    if isinstance(value, dict | list):
        raise ValueError(f"{value!r} is not a string")
    return str(value)


_RANGES: dict[str, tuple[float, bool, float | None]] = {
    "api_timeout": (0, False, None),
    "watch_timeout": (0, False, 86400),
    "inactivity_timeout": (0, False, None),
    "backoff_initial": (0, False, None),
    "backoff_max": (0, False, None),
    "list_page_size": (1, True, None),
    "node_status_update_period": (0, True, 86400),
    "leak_grace_period": (0, True, None),
    "probe_concurrency": (1, True, None),
    "bird_interval": (0, False, None),
    "bird_timeout": (0, False, None),
    "flap_interval": (0, True, None),
    "header_read_timeout": (0, False, None),
    "keepalive_timeout": (0, False, None),
    "max_connections": (1, True, None),
    "token_review_cache_ttl": (0, True, None),
    "access_review_allow_ttl": (0, True, None),
    "access_review_deny_ttl": (0, True, None),
    "goldmane_max_series": (1, True, None),
    "goldmane_stall_timeout": (0, False, None),
}
"""name -> (lowest, lowest allowed, highest allowed): zero or negative values that make no
sense (a timeout, an interval, a page size) are rejected. ``watch_timeout`` becomes the integer
``timeoutSeconds`` of every watch request, so it has a ceiling too (a day; the API server ends
watches after its --min-request-timeout of 30 to 60 minutes anyway). Non-finite durations
(``.inf``, ``.nan`` in YAML, a number too large for a float) never get here: every duration is
refused unless finite."""

_CHOICES: dict[str, tuple[str, ...]] = {
    "log_level": ("debug", "info", "warning", "error"),
    "log_format": ("auto", "json", "console"),
    "calico_api_group": CALICO_API_GROUPS,
    "calico_api": ("v1", "v3", "both"),
    "goldmane_read": ("poll", "stream"),
}


def _range_problem(name: str, value: float) -> str | None:
    limits = _RANGES.get(name)
    if limits is None:
        return None
    low, inclusive, high = limits
    if name == "node_status_update_period" and not low <= value <= (high or 0):
        return "must be between 0 and 86400 seconds (24h)"
    if inclusive and value < low:
        return "must not be negative" if low == 0 else f"must be at least {low:g}"
    if not inclusive and value <= low:
        return f"must be greater than {low:g}"
    if high is not None and value > high:
        return f"must be at most {high:g} seconds ({high / 3600:g}h)"
    return None


def _value_problem(opt: Option, value: Any) -> str | None:
    """Why an otherwise well-typed value is not usable; None when it is."""
    if opt.name in ("listen", "health_listen", "apiserver_listen", "node_listen"):
        if opt.name == "health_listen" and value == "":
            return None  # no separate health listener
        try:
            split_listen(value)
        except ValueError as exc:
            return str(exc)
        return None
    if opt.name == "goldmane_address":
        try:
            host, _ = split_listen(value)
        except ValueError:
            host = ""
        return None if host else f"{value!r} is not host:port or [IPv6]:port"
    if opt.name in _CHOICES and value not in _CHOICES[opt.name]:
        return f"{value!r} is not one of {', '.join(_CHOICES[opt.name])}"
    if opt.name == "node_status_classes":
        bad = [c for c in value if c not in {"Agent", "BGP", "Routes"}]
        if bad or not value:
            return "classes must be a non-empty list of Agent, BGP, Routes"
        return None
    if opt.type in (int, float, WholeSeconds):
        return _range_problem(opt.name, value)
    return None


# --------------------------------------------------------------------------------------------
# Loading


def _where(opt: Option, source: str, path: str) -> str:
    if source == "file":
        return f"{opt.name} in config file {path}"
    return f"{opt.flag} ({opt.env})"


def check(
    *,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
    groups: Iterable[str] | None = None,
) -> tuple[Settings, list[str]]:
    """Settings from defaults, an optional YAML file, the environment and parsed flags, and
    every problem found on the way (one exact message each; empty when all is well).

    ``flags`` maps field names to values given on the command line (absent means not given).
    Only the settings of ``groups`` (default: all) are read and checked; the others keep their
    defaults, so a command is never stopped by a setting it does not use. A bad value keeps the
    default in the returned Settings.
    """
    flags = flags or {}
    environ = environ or {}
    wanted = set(GROUPS if groups is None else groups)
    problems: list[str] = []
    file_values: dict[str, Any] = {}
    path = config_file or environ.get(ENV_PREFIX + "CONFIG_FILE", "")
    if path:
        file_values = _read_file(path, problems)

    values: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
    for opt in options():
        if opt.group not in wanted:
            continue
        if opt.name in flags and flags[opt.name] is not None:
            raw, source = flags[opt.name], "flag"
        elif opt.env in environ:
            raw, source = environ[opt.env], "env"
        elif opt.name == "node_name" and environ.get("NODE_NAME"):
            raw, source = environ["NODE_NAME"], "env"
        elif opt.name in file_values:
            raw, source = file_values[opt.name], "file"
        else:
            continue
        try:
            value = _convert(opt, raw)
        except (TypeError, ValueError) as exc:
            problems.append(f"invalid value for {_where(opt, source, path)}: {exc}")
            continue
        problem = _value_problem(opt, value)
        if problem is not None:
            problems.append(f"invalid value for {_where(opt, source, path)}: {problem}")
            continue
        values[opt.group][opt.name] = value
    settings = Settings(**{g: GROUPS[g](**v) for g, v in values.items()})
    return settings, problems + _combination_problems(settings, wanted)


_GOLDMANE_FILES = ("goldmane_cert_file", "goldmane_key_file", "goldmane_ca_file")


def _combination_problems(settings: Settings, wanted: set[str]) -> list[str]:
    """Values valid one by one that cannot work together: errors, where
    :func:`contradictions` are warnings."""
    out: list[str] = []
    access = settings.access
    if "access" in wanted:
        if bool(access.tls_cert_file) != bool(access.tls_key_file):
            out.append("invalid value for --tls-cert-file (CALICO_EXPORTER_TLS_CERT_FILE): "
                       "--tls-cert-file and --tls-key-file go together")
        if access.tls_client_ca_file and not access.tls_cert_file:
            out.append("invalid value for --tls-client-ca-file "
                       "(CALICO_EXPORTER_TLS_CLIENT_CA_FILE): mutual TLS needs "
                       "--tls-cert-file and --tls-key-file")
    flows = settings.flows
    if "flows" in wanted:
        missing = [opt.flag for opt in options() if opt.name in _GOLDMANE_FILES
                   and not getattr(flows, opt.name)]
        if flows.goldmane_enabled and missing:
            out.append("invalid value for --goldmane-enabled (CALICO_EXPORTER_GOLDMANE_ENABLED): "
                       "Goldmane accepts only mutual TLS: --goldmane-enabled needs "
                       f"{', '.join(missing)}")
        elif bool(flows.goldmane_cert_file) != bool(flows.goldmane_key_file):
            out.append("invalid value for --goldmane-cert-file "
                       "(CALICO_EXPORTER_GOLDMANE_CERT_FILE): --goldmane-cert-file and "
                       "--goldmane-key-file go together")
    return out


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with every way it fails as a ``yaml.YAMLError``: PyYAML's composer
    recurses once per nesting level, so a deeply nested document raises RecursionError."""
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def _read_file(path: str, problems: list[str]) -> dict[str, Any]:
    try:
        loaded = load_yaml(Path(path).read_bytes().decode())
    except OSError as exc:
        problems.append(f"cannot read config file {path}: {exc.strerror}")
        return {}
    except UnicodeDecodeError as exc:
        problems.append(f"config file {path} is not UTF-8 text (byte {exc.start})")
        return {}
    except yaml.YAMLError as exc:
        problems.append(f"config file {path} is not valid YAML: {_one_line(exc)}")
        return {}
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        problems.append(f"config file {path} must be a mapping of setting names to values")
        return {}
    known = {o.name for o in options()}
    for key in sorted(str(k) for k in loaded if k not in known):
        problems.append(f"config file {path}: unknown setting {key!r}")
    return {k: v for k, v in loaded.items() if k in known}


def _one_line(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: what is wrong and where (PyYAML's own text spans lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"{exc.problem}{where}"
    return " ".join(str(exc).split())


def load(
    *,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
    groups: Iterable[str] | None = None,
) -> Settings:
    """Like :func:`check`, but a problem raises ConfigError: the one exact message, or, for
    several, a message listing them all (``problems`` holds each)."""
    settings, problems = check(flags=flags, environ=environ, config_file=config_file,
                               groups=groups)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        lines = "".join(f"\n  {p}" for p in problems)
        raise ConfigError(f"{len(problems)} invalid settings:{lines}", tuple(problems))
    return settings


def contradictions(settings: Settings, groups: Iterable[str] | None = None) -> list[str]:
    """Valid values that work against each other, as warnings (checked for ``groups``)."""
    wanted = set(GROUPS if groups is None else groups)
    out: list[str] = []
    watch, bird = settings.watch, settings.bird
    if "watch" in wanted:
        if watch.backoff_initial > watch.backoff_max:
            out.append(f"--backoff-initial ({watch.backoff_initial:g}s) is greater than "
                       f"--backoff-max ({watch.backoff_max:g}s): every retry waits "
                       f"{watch.backoff_max:g}s at most")
        if watch.inactivity_timeout <= 60:
            out.append(f"--inactivity-timeout ({watch.inactivity_timeout:g}s) is not longer "
                       "than the 60s between an API server's watch bookmarks: quiet but healthy "
                       "watches will be restarted")
    if "bird" in wanted and bird.bird_timeout > bird.bird_interval:
        out.append(f"--bird-timeout ({bird.bird_timeout:g}s) is longer than --bird-interval "
                   f"({bird.bird_interval:g}s): a slow BIRD delays every poll")
    access = settings.access
    if "access" in wanted and access.authorize_scrapers and not access.tls_cert_file:
        out.append("--authorize-scrapers without --tls-cert-file: scrapers send their bearer "
                   "tokens over plain HTTP")
    flows = settings.flows
    if ("flows" in wanted and flows.goldmane_read == "stream"
            and flows.goldmane_stall_timeout <= 15):
        out.append(f"--goldmane-stall-timeout ({flows.goldmane_stall_timeout:g}s) is not longer "
                   "than the 15s between Goldmane's windows: quiet but healthy flow streams "
                   "will be restarted")
    return out


def describe(settings: Settings, groups: Iterable[str] | None = None) -> dict[str, Any]:
    """The effective settings of ``groups`` (default: all) as a flat mapping, for
    ``check-config`` output."""
    wanted = set(GROUPS if groups is None else groups)
    out: dict[str, Any] = {}
    for opt in options():
        if opt.group not in wanted:
            continue
        value = getattr(getattr(settings, opt.group), opt.name)
        out[opt.name] = list(value) if isinstance(value, tuple) else value
    return out


__all__ = [
    "AccessSettings",
    "ConfigError",
    "FlowSettings",
    "Option",
    "Settings",
    "WholeSeconds",
    "check",
    "contradictions",
    "describe",
    "load",
    "load_yaml",
    "options",
    "parse_duration",
    "split_listen",
]
