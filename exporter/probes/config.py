"""The probe configuration: its typed model, the YAML loader and validation with exact messages.

File format (every duration accepts Go/Prometheus durations such as ``500ms``, ``30s``, ``1m30s``,
``1h`` or plain seconds; the full reference, generated from :data:`FIELDS`, is docs/probes.md)::

    defaults:                 # optional; each key may also be set per probe
      interval: 30s           # time between run starts (at least 100ms)
      timeout: 5s             # per attempt; attempts x timeout must fit in the interval
      attempts: 1             # tries per run, 1 to 10
      success: any            # any | all | majority | N: successful attempts for a "success" run
      deny_outcomes: [timeout, refused, unreachable]   # what counts as "denied"
    probes:
      - name: frontend-from-testns         # unique; the ``probe`` label
        protocol: http                     # http | tcp | dns | icmp
        target: http://frontend.guestbook.svc.cluster.local/
        expect: allow                      # allow | deny
        source: {namespace: testns, labels: {run: testpod}}
        method: GET                        # http only (default GET)
        expect_status: [200-299, 301]      # http only (default 200-299); redirects are not followed
        ca_file: /etc/ssl/cluster-ca.pem   # http only: trust this CA instead of the system store
      - name: dns-from-default
        protocol: dns
        target: frontend.guestbook.svc.cluster.local   # absolute name: no search list
        type: A                            # A | AAAA | CNAME | TXT | SRV (default A)
        server: 10.96.0.10:53              # optional IP[:port]; default: first nameserver of
                                           #   /etc/resolv.conf
        expect_answers: [172.20.116.140]   # optional: each must be among the answers
        expect: allow
        source: {namespace: default}
      # tcp: target host:port ([v6]:port); icmp: target host name or IP address
      # allow_link_local: true             # any protocol: see "Link-local targets" below

Default ``deny_outcomes`` is ``timeout, refused, unreachable``, plus ``dns_timeout`` for DNS probes;
a ``deny_outcomes`` in ``defaults`` or in a probe replaces it. ``success`` and ``error`` cannot be
listed: success is never a denial and error never matches a verdict.

Link-local targets: a probe whose target (or DNS ``server``) is a link-local address
(169.254.0.0/16, fe80::/10, IPv4-mapped ones included), a cloud metadata address or a metadata
service name (:data:`METADATA_ADDRESSES`, :data:`METADATA_NAMES`) is refused by validation
unless it sets ``allow_link_local: true``: a probe config must not turn the agent into a way to
read the node's cloud credentials (SSRF). Only literal addresses and those names are checked; a
name that resolves to such an address at run time is not, so keep an egress policy for the
agents too.

All probes of one source namespace are run by one agent, so their ``source.labels`` are merged
and must not give one label two values. The agent pod wears those labels so that policies select
it like the workload it stands for; never copy labels a Service selects on, or the agent becomes
one of that Service's endpoints. :func:`validate_probe_config` returns every problem as
one line (``probes[2] "web": timeout: must be greater than 0``); :func:`load_probe_config` raises
:class:`ProbeConfigError` carrying the same lines.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import unquote, urlsplit

import yaml

from exporter.config import DURATION_SYNTAX, ConfigError, load_yaml, parse_duration
from exporter.probes.outcome import (
    DEFAULT_DENY_OUTCOMES,
    DNS_DEFAULT_DENY_OUTCOMES,
    Expect,
    Outcome,
    SuccessRule,
)

ProtocolName = Literal["dns", "http", "icmp", "tcp"]
PROTOCOLS: tuple[ProtocolName, ...] = get_args(ProtocolName)
HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
DNS_TYPES = ("A", "AAAA", "CNAME", "SRV", "TXT")
MIN_INTERVAL = 0.1
MAX_ATTEMPTS = 10
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True, slots=True)
class Field:
    """One key of the probe file, as documented in docs/probes.md (generated from
    :data:`FIELDS` by ``tools/probes_doc.py``; the parser's key tables derive from it too)."""

    key: str
    where: Literal["top", "defaults", "probe", "source"]
    """Top level; ``defaults`` and every probe (``defaults`` keys may be set per probe); probe
    only; under ``source``."""
    type: str
    help: str
    protocol: ProtocolName | None = None
    """Set for keys only one protocol takes."""
    default: str = ""
    """As written in the file; empty: required (or, for a protocol key, optional with no
    default)."""


FIELDS: tuple[Field, ...] = (
    Field("defaults", "top", "mapping",
          "Values of the `defaults` keys below for every probe that does not set its own.",
          default="built-in defaults"),
    Field("probes", "top", "list of probes", "The probes; may be empty."),
    Field("interval", "defaults", "duration",
          "Time between the starts of two runs, on a fixed grid with a random offset per "
          "probe; at least 100ms. Slots missed while the concurrency limit held a run back are "
          "skipped and counted.", default="30s"),
    Field("timeout", "defaults", "duration",
          "Time one attempt may take; greater than 0. `attempts` x `timeout` must fit in "
          "`interval`.", default="5s"),
    Field("attempts", "defaults", "integer",
          "Tries per run, 1 to 10; a run stops as soon as its result is decided.", default="1"),
    Field("success", "defaults", "any, all, majority or a number",
          "How many attempts must succeed for the run's outcome to be `success` (a number "
          "from 1 to `attempts`); otherwise the run's outcome is the most frequent failing one.",
          default="any"),
    Field("deny_outcomes", "defaults", "list of outcomes",
          "Outcomes that count as denied for `expect: deny`; replaces the default. `success` "
          "and `error` cannot be listed.",
          default="[timeout, refused, unreachable] (DNS: also dns_timeout)"),
    Field("name", "probe", "string",
          "Unique name, the `probe` label: at most 63 letters, digits, `-`, `_` or `.`, "
          "starting and ending with a letter or digit."),
    Field("protocol", "probe", "http, tcp, dns or icmp", "What the probe does."),
    Field("target", "probe", "string",
          "http: an http:// or https:// URL; tcp: host:port or [IPv6]:port; dns: the name to "
          "look up (absolute: no search list); icmp: a host name or IP address. Shown in "
          "`calico_probe_info` and logs without `user:password@` and with the value of every "
          "credential-like query or fragment parameter (`token`, `access_token`, `apikey`, "
          "`key`, `password`, `sig`, `X-Amz-Signature`, any name containing `token`, `secret`, "
          "`auth`, `credential` or ending in `key`, ...) replaced by `REDACTED`; a secret in "
          "the path is not recognised."),
    Field("expect", "probe", "allow or deny",
          "The verdict policy should give: `allow` matches a `success` outcome, `deny` one of "
          "`deny_outcomes`."),
    Field("source", "probe", "mapping", "Where the probe runs from: `namespace` and `labels`."),
    Field("namespace", "source", "namespace name",
          "The agent that runs this probe runs in this namespace (one agent per namespace)."),
    Field("labels", "source", "mapping of label names to strings",
          "Labels the agent pod wears so that policies select it as the workload it stands "
          "for; all probes of a namespace share one agent, so a label has one value per "
          "namespace. Never copy labels a Service selects on.", default="{}"),
    Field("allow_link_local", "probe", "boolean",
          "Let the target (or the DNS `server`) be a link-local address (169.254.0.0/16, "
          "fe80::/10, IPv4-mapped ones included), a cloud metadata address or a metadata "
          "service name; without it such a probe is refused, so a probe file cannot make the "
          "agent read the node's cloud credentials. Only literal addresses and those names are "
          "checked: keep an egress policy for the agents too.", default="false"),
    Field("method", "probe", "DELETE, GET, HEAD, OPTIONS, PATCH, POST or PUT",
          "HTTP method; redirects are not followed.", protocol="http", default="GET"),
    Field("expect_status", "probe", "list of codes or ranges",
          "Status codes (`301`) or inclusive ranges (`200-299`) that make the attempt a "
          "`success`; any other status is `http_status_mismatch`.", protocol="http",
          default="[200-299]"),
    Field("ca_file", "probe", "path",
          "PEM CA bundle to trust for https:// instead of the system store.", protocol="http"),
    Field("type", "probe", "A, AAAA, CNAME, SRV or TXT", "Record type asked for.",
          protocol="dns", default="A"),
    Field("server", "probe", "IP or IP:port ([IPv6]:port)",
          "DNS server to ask; port 53 when left out.", protocol="dns",
          default="first nameserver of /etc/resolv.conf"),
    Field("expect_answers", "probe", "list of strings",
          "Each must be among the answers (addresses compared as addresses, names "
          "case-insensitively, TXT exactly); a missing one makes the attempt `dns_nxdomain`.",
          protocol="dns", default="[]"),
)
"""Every key of the probe file: the reference of docs/probes.md and of the parser."""

_TOP_KEYS = tuple(f.key for f in FIELDS if f.where == "top")
_DEFAULT_KEYS = tuple(sorted(f.key for f in FIELDS if f.where == "defaults"))
_COMMON_KEYS = tuple(f.key for f in FIELDS if f.where in ("probe", "defaults")
                     and f.protocol is None)
_PROTOCOL_KEYS: dict[str, ProtocolName] = {
    f.key: f.protocol for f in FIELDS if f.protocol is not None
}
_BUILTIN_DEFAULTS: dict[str, Any] = {"interval": 30.0, "timeout": 5.0, "attempts": 1,
                                     "success": "any"}

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_STATUS_RANGE = re.compile(r"^\s*(\d{3})\s*-\s*(\d{3})\s*$")

LINK_LOCAL_NETWORKS = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
METADATA_ADDRESSES = frozenset({
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
    ipaddress.ip_address("169.254.170.2"),    # AWS ECS task metadata
    ipaddress.ip_address("fd00:ec2::254"),    # AWS IMDS over IPv6 (not link-local)
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud (not link-local)
})
"""Cloud instance-metadata addresses: refused as probe targets without ``allow_link_local``."""
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog",
                            "instance-data", "instance-data.ec2.internal"})
"""Names of metadata services, refused as probe targets without ``allow_link_local``."""


REDACTED = "REDACTED"
"""What a credential-like query or fragment parameter's value is shown as."""

_CREDENTIAL_NAMES = frozenset({"key", "sig", "pass", "pwd", "code", "jwt", "sid", "otp"})
"""Normalised query-parameter names (lower case, letters and digits only) that carry a secret:
``key`` (Google APIs), ``sig`` (Azure SAS), ``code`` (OAuth), and short password spellings."""
_CREDENTIAL_PARTS = ("token", "secret", "passw", "passphrase", "signature", "credential",
                     "auth", "session", "apikey", "privatekey", "accesskey")
"""Parts that make any name credential-like: ``access_token``, ``X-Amz-Signature``,
``X-Amz-Credential``, ``X-Amz-Security-Token``, ``client_secret``, ``password``, ``api-key``,
``authorization``, ``sessionid``; and every name ending in ``key`` (``x-api-key``,
``subscription-key``)."""
_USERINFO = re.compile(r"(?<=//)[^/?#\s]*@")
_PARAMETER = re.compile(r"(?<=[?&#;])([^=&#;\s]+)=([^&#;\s]*)")


def credential_like(name: str) -> bool:
    """Whether a query (or fragment) parameter name looks like it carries a secret."""
    normal = "".join(c for c in unquote(name).lower() if c.isalnum())
    return (normal in _CREDENTIAL_NAMES or normal.endswith("key")
            or any(part in normal for part in _CREDENTIAL_PARTS))


def redact_url(text: str) -> str:
    """``text`` (a URL, or a message quoting one, valid or not) without ``user:password@``
    and with the value of every credential-like query or fragment parameter
    (:func:`credential_like`: ``?token=``, ``access_token``, ``apikey``, ``key``, ``password``,
    ``sig``, ...) replaced by REDACTED. A secret in the path cannot be told apart and stays."""
    if "//" in text:
        text = _USERINFO.sub("", text)
    if "=" not in text:
        return text
    return _PARAMETER.sub(
        lambda m: f"{m.group(1)}={REDACTED}" if m.group(2) and credential_like(m.group(1))
        else m.group(0), text)


class ProbeConfigError(ConfigError):
    """The probe configuration cannot be used; ``errors`` holds one exact line per problem."""

    def __init__(self, path: str, errors: Sequence[str]) -> None:
        self.path = path
        self.errors = tuple(errors)
        if len(errors) == 1:
            super().__init__(f"probe config {path}: {errors[0]}")
        else:
            lines = "".join(f"\n  {e}" for e in errors)
            super().__init__(f"probe config {path}: {len(errors)} problems:{lines}")


# --------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True, slots=True)
class Source:
    """Where a probe runs from: the agent's namespace and the pod labels it wears."""

    namespace: str
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class HttpParams:
    url: str
    method: str = "GET"
    expect_status: tuple[tuple[int, int], ...] = ((200, 299),)
    """Inclusive (low, high) ranges; a single code is (code, code)."""
    ca_file: str = ""

    def status_ok(self, status: int) -> bool:
        return any(lo <= status <= hi for lo, hi in self.expect_status)


@dataclass(frozen=True, slots=True)
class TcpParams:
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class DnsParams:
    name: str
    """Absolute name without the trailing dot."""
    record_type: str = "A"
    server: tuple[str, int] | None = None
    """(IP, port); None means the first nameserver of /etc/resolv.conf."""
    expect_answers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IcmpParams:
    host: str


Params = HttpParams | TcpParams | DnsParams | IcmpParams


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe as configured; equal probes are "unchanged" across a reload."""

    name: str
    protocol: ProtocolName
    target: str
    expect: Expect
    source: Source
    interval: float
    timeout: float
    attempts: int
    success: SuccessRule
    deny_outcomes: frozenset[Outcome]
    params: Params
    allow_link_local: bool = False
    """The probe may target link-local and metadata addresses (explicit opt-in)."""

    @property
    def public_target(self) -> str:
        """The target without credentials (:func:`redact_url`), for labels and logs."""
        return redact_url(self.target)


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """A whole, valid probe configuration."""

    probes: tuple[Probe, ...] = ()

    def for_namespace(self, namespace: str) -> tuple[Probe, ...]:
        """The probes an agent running in ``namespace`` runs."""
        return tuple(p for p in self.probes if p.source.namespace == namespace)


@dataclass(frozen=True, slots=True)
class Agent:
    """One probe agent to deploy: its namespace and the pod labels it must wear."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)


def agents(config: ProbeConfig) -> list[Agent]:
    """One agent per source namespace of the config, with the merged labels, by namespace."""
    merged: dict[str, dict[str, str]] = {}
    for probe in config.probes:
        merged.setdefault(probe.source.namespace, {}).update(probe.source.labels)
    return [Agent(ns, dict(sorted(labels.items()))) for ns, labels in sorted(merged.items())]


def resolve_source_namespace(
    configured: str, *, namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE
) -> str:
    """The agent's namespace: the setting, else the service-account file, else ``default``."""
    if configured:
        return configured
    try:
        text = namespace_file.read_text().strip()
    except OSError:
        return "default"
    return text or "default"


# --------------------------------------------------------------------------------------------
# Loading


def load_probe_config(path: str) -> ProbeConfig:
    """Read and validate the file; ProbeConfigError lists every problem."""
    config, errors = _read(path)
    if errors:
        raise ProbeConfigError(path, errors)
    assert config is not None
    return config


def validate_probe_config(path: str) -> list[str]:
    """Every problem of the file as one exact line each; empty when the file is valid."""
    return _read(path)[1]


def parse_probe_config(text: str) -> tuple[ProbeConfig | None, list[str]]:
    """Parse YAML text: (config, []) when valid, else (None, problems)."""
    try:
        raw = load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return None, [f"not valid YAML: {exc.problem}{where}"]
    except yaml.YAMLError as exc:
        return None, [f"not valid YAML: {exc}"]
    errors: list[str] = []
    config = _parse(raw, errors)
    return (None, errors) if errors else (config, [])


def _read(path: str) -> tuple[ProbeConfig | None, list[str]]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        return None, [f"cannot read: {exc.strerror}"]
    except UnicodeDecodeError:
        return None, ["cannot read: not UTF-8 text"]
    return parse_probe_config(text)


# --------------------------------------------------------------------------------------------
# Validation


def _q(value: object) -> str:
    """A value as shown in messages: strings in double quotes, others as YAML would show them."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def format_duration(seconds: float) -> str:
    """Seconds as the shortest config-style duration: 500ms, 10s, 1.5s, 2m, 1h."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _parse(raw: object, errors: list[str]) -> ProbeConfig | None:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append('must be a mapping with a "probes" list')
        return None
    for key in raw:
        if key not in _TOP_KEYS:
            errors.append(f"unknown key {_q(key)} (expected {', '.join(_TOP_KEYS)})")
    defaults = _parse_defaults(raw.get("defaults"), errors)
    if "probes" not in raw:
        errors.append("probes: missing")
        return None
    items = raw["probes"]
    if items is None:
        items = []
    if not isinstance(items, list):
        errors.append("probes: must be a list of probes")
        return None
    probes: list[Probe] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        probe = _parse_probe(index, item, defaults, seen, errors)
        if probe is not None:
            probes.append(probe)
    _check_labels(probes, seen, errors)
    return ProbeConfig(tuple(probes))


def _parse_defaults(raw: object, errors: list[str]) -> dict[str, Any]:
    defaults = dict(_BUILTIN_DEFAULTS)
    if raw is None:
        return defaults
    if not isinstance(raw, dict):
        errors.append("defaults: must be a mapping")
        return defaults
    for key in raw:
        if key not in _DEFAULT_KEYS:
            errors.append(
                f"defaults: unknown key {_q(key)} (expected {', '.join(_DEFAULT_KEYS)})"
            )
    for key in ("interval", "timeout"):
        if key in raw:
            value = _duration(f"defaults.{key}", raw[key], errors)
            if value is not None:
                defaults[key] = value
    if "attempts" in raw:
        attempts = _attempts("defaults.attempts", raw["attempts"], errors)
        if attempts is not None:
            defaults["attempts"] = attempts
    if "success" in raw:
        rule = raw["success"]
        if rule in ("any", "all", "majority") or (
                isinstance(rule, int) and not isinstance(rule, bool) and rule >= 1):
            defaults["success"] = rule
        else:
            errors.append(f"defaults.success: {_q(rule)} is not any, all, majority or a number "
                          "of attempts")
    if "deny_outcomes" in raw:
        deny = _deny_outcomes("defaults.deny_outcomes", raw["deny_outcomes"], errors)
        if deny is not None:
            defaults["deny_outcomes"] = deny
    return defaults


def _duration(where: str, value: object, errors: list[str]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        errors.append(f"{where}: {_q(value)} is not {DURATION_SYNTAX}")
        return None
    try:
        seconds = float(value) if isinstance(value, int | float) else parse_duration(value)
    except OverflowError:
        seconds = math.inf
    except ValueError:
        errors.append(f"{where}: {_q(value)} is not {DURATION_SYNTAX}")
        return None
    if not math.isfinite(seconds):
        shown = _q(value)
        shown = shown if len(shown) <= 40 else f"{shown[:37]}..."
        errors.append(f"{where}: {shown} is not a finite duration")
        return None
    if where.endswith("interval") and seconds < MIN_INTERVAL:
        errors.append(f"{where}: must be at least {format_duration(MIN_INTERVAL)}")
        return None
    if where.endswith("timeout") and seconds <= 0:
        errors.append(f"{where}: must be greater than 0")
        return None
    return seconds


def _attempts(where: str, value: object, errors: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPTS:
        errors.append(f"{where}: must be an integer from 1 to {MAX_ATTEMPTS}")
        return None
    return value


def _deny_outcomes(where: str, value: object, errors: list[str]) -> frozenset[Outcome] | None:
    if not isinstance(value, list) or not value:
        errors.append(f"{where}: must be a non-empty list of outcomes")
        return None
    out: set[Outcome] = set()
    ok = True
    for item in value:
        if item == Outcome.SUCCESS.value:
            errors.append(f'{where}: "success" cannot count as denied')
            ok = False
        elif item == Outcome.ERROR.value:
            errors.append(f'{where}: "error" never matches a verdict')
            ok = False
        elif isinstance(item, str) and item in {o.value for o in Outcome}:
            out.add(Outcome(item))
        else:
            errors.append(f"{where}: {_q(item)} is not an outcome")
            ok = False
    return frozenset(out) if ok else None


def _is_hostname(text: str) -> bool:
    name = text.removesuffix(".")
    if not name or len(name) > 253:
        return False
    return all(_DNS_LABEL.match(label) for label in name.split("."))


def _is_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return _is_hostname(text)
    return True


def _split_host_port(text: str) -> tuple[str, str] | None:
    """``host:port`` or ``[v6]:port`` into (host, port text); None when there is no port."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            return None
        return host, rest[1:]
    host, sep, port = text.rpartition(":")
    if not sep or ":" in host:
        return None
    return host, port


def _port(text: str) -> int | None:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        return None
    return int(text)


class _ProbeParser:
    """Validates one probe mapping, appending ``probes[i] "name": key: reason`` lines."""

    def __init__(self, index: int, raw: dict[Any, Any], errors: list[str]) -> None:
        self.raw = raw
        self.errors = errors
        name = raw.get("name")
        self.prefix = f"probes[{index}]" + (f" {_q(name)}" if isinstance(name, str) else "")

    def error(self, key: str, reason: str) -> None:
        self.errors.append(f"{self.prefix}: {key}: {reason}" if key else f"{self.prefix}: {reason}")

    def required(self, key: str) -> object:
        if key not in self.raw or self.raw[key] is None:
            self.error(key, "missing")
            return None
        return self.raw[key]

    def string(self, key: str) -> str | None:
        value = self.required(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(key, f"{_q(value)} is not a string")
            return None
        return value


def _parse_probe(
    index: int, raw: object, defaults: dict[str, Any], seen: dict[str, int], errors: list[str]
) -> Probe | None:
    if not isinstance(raw, dict):
        errors.append(f"probes[{index}]: must be a mapping")
        return None
    p = _ProbeParser(index, raw, errors)
    before = len(errors)

    name = p.string("name")
    if name is not None:
        if not _NAME.match(name):
            p.error("name", f"{_q(name)} is not a valid name (at most 63 letters, digits, "
                            "\"-\", \"_\" or \".\", starting and ending with a letter or digit)")
        elif name in seen:
            p.error("name", f"duplicate of probes[{seen[name]}]")
        else:
            seen[name] = index

    protocol_raw = p.required("protocol")
    protocol: ProtocolName | None = None
    if protocol_raw is not None:
        if protocol_raw in PROTOCOLS:
            protocol = protocol_raw
        else:
            p.error("protocol", f"{_q(protocol_raw)} is not one of {', '.join(PROTOCOLS)}")

    for key in raw:
        if key in _COMMON_KEYS:
            continue
        owner = _PROTOCOL_KEYS.get(key) if isinstance(key, str) else None
        if owner is None:
            p.error("", f"unknown key {_q(key)}")
        elif protocol is not None and owner != protocol:
            p.error(key, f"only valid for {owner} probes")

    expect_raw = p.required("expect")
    expect: Expect | None = None
    if expect_raw is not None:
        if expect_raw in ("allow", "deny"):
            expect = expect_raw
        else:
            p.error("expect", f"{_q(expect_raw)} is not allow or deny")

    source = _parse_source(p)

    interval = defaults["interval"]
    if "interval" in raw:
        interval = _duration(f"{p.prefix}: interval", raw["interval"], errors)
    timeout = defaults["timeout"]
    if "timeout" in raw:
        timeout = _duration(f"{p.prefix}: timeout", raw["timeout"], errors)
    attempts = defaults["attempts"]
    if "attempts" in raw:
        attempts = _attempts(f"{p.prefix}: attempts", raw["attempts"], errors)
    if (interval is not None and timeout is not None and attempts is not None
            and timeout * attempts > interval):
        what = (f"{attempts} attempts of {format_duration(timeout)} do not"
                if attempts > 1 else f"{format_duration(timeout)} does not")
        p.error("timeout", f"{what} fit in the interval of {format_duration(interval)}")
    success: SuccessRule | None = None
    rule = raw.get("success", defaults["success"])
    where = "success" if "success" in raw else "success (from defaults)"
    if attempts is not None:
        try:
            success = SuccessRule.parse(rule, attempts)
        except ValueError:
            if isinstance(rule, int) and not isinstance(rule, bool):
                p.error(where, f"{rule} is not between 1 and attempts ({attempts})")
            else:
                p.error(where, f"{_q(rule)} is not any, all, majority or a number of attempts")

    deny: frozenset[Outcome] | None = defaults.get("deny_outcomes")
    if "deny_outcomes" in raw:
        deny = _deny_outcomes(f"{p.prefix}: deny_outcomes", raw["deny_outcomes"], errors)
    elif deny is None:
        deny = DNS_DEFAULT_DENY_OUTCOMES if protocol == "dns" else DEFAULT_DENY_OUTCOMES

    target = p.string("target")
    params: Params | None = None
    if target is not None and protocol is not None:
        params = _parse_params(p, protocol, target)
    allow_link_local = raw.get("allow_link_local", False)
    if not isinstance(allow_link_local, bool):
        p.error("allow_link_local", f"{_q(allow_link_local)} is not true or false")
    elif params is not None and not allow_link_local:
        _refuse_link_local(p, params)

    if (len(errors) > before or name is None or protocol is None or expect is None
            or source is None or interval is None or timeout is None or attempts is None
            or success is None or deny is None or target is None or params is None):
        return None
    return Probe(name=name, protocol=protocol, target=target, expect=expect, source=source,
                 interval=interval, timeout=timeout, attempts=attempts, success=success,
                 deny_outcomes=deny, params=params, allow_link_local=allow_link_local is True)


def restricted_target(host: str) -> str | None:
    """Why ``host`` (a name or an IP address) may not be probed without ``allow_link_local``,
    or None when it may."""
    text = host.strip().strip("[]").rstrip(".").lower()
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return "is a cloud metadata service name" if text in METADATA_NAMES else None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return "is a cloud metadata address"
    if any(ip in net for net in LINK_LOCAL_NETWORKS):
        return "is link-local"
    return None


def _refuse_link_local(p: _ProbeParser, params: Params) -> None:
    hosts: list[tuple[str, str]] = []
    if isinstance(params, HttpParams):
        hosts.append(("target", urlsplit(params.url).hostname or ""))
    elif isinstance(params, TcpParams | IcmpParams):
        hosts.append(("target", params.host))
    else:
        hosts.append(("target", params.name))
        if params.server is not None:
            hosts.append(("server", params.server[0]))
    for key, host in hosts:
        reason = restricted_target(host)
        if reason is not None:
            p.error(key, f"{_q(host)} {reason}: refused unless the probe sets "
                         "allow_link_local: true")


def _parse_source(p: _ProbeParser) -> Source | None:
    raw = p.required("source")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        p.error("source", "must be a mapping with namespace and optional labels")
        return None
    for key in raw:
        if key not in ("namespace", "labels"):
            p.error("source", f"unknown key {_q(key)} (expected namespace, labels)")
    namespace = raw.get("namespace")
    if namespace is None:
        p.error("source.namespace", "missing")
    elif not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        p.error("source.namespace", f"{_q(namespace)} is not a valid namespace name")
        namespace = None
    labels: list[tuple[str, str]] = []
    raw_labels = raw.get("labels")
    if raw_labels is not None and not isinstance(raw_labels, dict):
        p.error("source.labels", "must be a mapping of label names to values")
    elif raw_labels:
        for key, value in raw_labels.items():
            if not isinstance(key, str) or not _valid_label_key(key):
                p.error("source.labels", f"{_q(key)} is not a valid label name")
            elif not isinstance(value, str):
                p.error(f"source.labels.{key}", f"{_q(value)} is not a string (quote it)")
            elif value and not _LABEL_NAME.match(value):
                p.error(f"source.labels.{key}", f"{_q(value)} is not a valid label value")
            else:
                labels.append((key, value))
    if namespace is None:
        return None
    return Source(namespace, tuple(sorted(labels)))


def _valid_label_key(key: str) -> bool:
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not all(
            _NAMESPACE.match(part) for part in prefix.split("."))):
        return False
    return bool(_LABEL_NAME.match(name))


def _parse_params(p: _ProbeParser, protocol: ProtocolName, target: str) -> Params | None:
    if protocol == "http":
        return _parse_http(p, target)
    if protocol == "tcp":
        split = _split_host_port(target)
        port = _port(split[1]) if split else None
        if split is None or port is None or not _is_host(split[0]):
            p.error("target", f"{_q(redact_url(target))} is not host:port")
            return None
        return TcpParams(split[0], port)
    if protocol == "dns":
        return _parse_dns(p, target)
    if not _is_host(target):
        p.error("target", f"{_q(redact_url(target))} is not a host name or IP address")
        return None
    return IcmpParams(target)


def _parse_http(p: _ProbeParser, target: str) -> HttpParams | None:
    ok = True
    scheme, host = "", None
    try:
        url = urlsplit(target)
        scheme, host = url.scheme, url.hostname
        url.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        host = None
    if scheme not in ("http", "https") or not host or not _is_host(host):
        p.error("target", f"{_q(redact_url(target))} is not an http:// or https:// URL")
        ok = False
    method = p.raw.get("method", "GET")
    if method not in HTTP_METHODS:
        p.error("method", f"{_q(method)} is not one of {', '.join(HTTP_METHODS)}")
        ok = False
    ranges = _expect_status(p, p.raw.get("expect_status", ["200-299"]))
    ca_file = p.raw.get("ca_file", "")
    if not isinstance(ca_file, str):
        p.error("ca_file", f"{_q(ca_file)} is not a path")
        ok = False
    if not ok or ranges is None:
        return None
    return HttpParams(target, method, ranges, ca_file)


def _expect_status(p: _ProbeParser, raw: object) -> tuple[tuple[int, int], ...] | None:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        p.error("expect_status", "must list at least one status code or range")
        return None
    ranges: list[tuple[int, int]] = []
    for item in items:
        low = high = None
        if isinstance(item, int) and not isinstance(item, bool):
            low = high = item
        elif isinstance(item, str):
            m = _STATUS_RANGE.match(item)
            if m:
                low, high = int(m.group(1)), int(m.group(2))
            elif item.strip().isdigit():
                low = high = int(item)
        if low is None or high is None:
            p.error("expect_status", f"{_q(item)} is not a status code or a range like 200-299")
            return None
        if not (100 <= low <= high <= 599):
            p.error("expect_status", f"{_q(item)} is not within 100-599 with low <= high")
            return None
        ranges.append((low, high))
    return tuple(ranges)


def _parse_dns(p: _ProbeParser, target: str) -> DnsParams | None:
    ok = True
    if not _is_hostname(target):
        p.error("target", f"{_q(redact_url(target))} is not a DNS name")
        ok = False
    record_type = p.raw.get("type", "A")
    if record_type not in DNS_TYPES:
        p.error("type", f"{_q(record_type)} is not one of {', '.join(DNS_TYPES)}")
        ok = False
    server: tuple[str, int] | None = None
    if "server" in p.raw:
        server = _dns_server(p.raw["server"])
        if server is None:
            p.error("server", f"{_q(p.raw['server'])} is not an IP address or IP:port")
            ok = False
    answers = p.raw.get("expect_answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        p.error("expect_answers", "must be a list of strings")
        ok = False
    if not ok:
        return None
    return DnsParams(target.removesuffix("."), record_type, server, tuple(answers))


def _dns_server(value: object) -> tuple[str, int] | None:
    if not isinstance(value, str):
        return None
    try:
        return (str(ipaddress.ip_address(value)), 53)
    except ValueError:
        pass
    split = _split_host_port(value)
    if split is None:
        return None
    port = _port(split[1])
    try:
        host = str(ipaddress.ip_address(split[0]))
    except ValueError:
        return None
    return (host, port) if port is not None else None


def _check_labels(probes: Sequence[Probe], index: Mapping[str, int], errors: list[str]) -> None:
    """All probes of a namespace share one agent, so a label may have only one value there."""
    first: dict[tuple[str, str], tuple[str, str]] = {}
    for probe in probes:
        for key, value in probe.source.labels:
            seen = first.setdefault((probe.source.namespace, key), (value, probe.name))
            if seen[0] != value:
                errors.append(
                    f"probes[{index[probe.name]}] {_q(probe.name)}: source.labels.{key}: "
                    f"{_q(value)} conflicts with {_q(seen[0])} from probe {_q(seen[1])} (one "
                    f"agent runs all probes of namespace {_q(probe.source.namespace)})"
                )


__all__ = [
    "PROTOCOLS",
    "Agent",
    "DnsParams",
    "HttpParams",
    "IcmpParams",
    "Params",
    "Probe",
    "ProbeConfig",
    "ProbeConfigError",
    "ProtocolName",
    "Source",
    "TcpParams",
    "agents",
    "credential_like",
    "format_duration",
    "load_probe_config",
    "parse_probe_config",
    "redact_url",
    "resolve_source_namespace",
    "validate_probe_config",
]
