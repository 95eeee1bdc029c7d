"""Probe config: the parsed model, exact validation messages, agents and the source namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import ConfigError
from exporter.probes.config import (
    Agent,
    DnsParams,
    HttpParams,
    IcmpParams,
    ProbeConfigError,
    Source,
    TcpParams,
    agents,
    format_duration,
    load_probe_config,
    parse_probe_config,
    resolve_source_namespace,
    validate_probe_config,
)
from exporter.probes.outcome import DNS_DEFAULT_DENY_OUTCOMES, Outcome, SuccessRule

DATA = Path(__file__).parent / "testdata"
EXAMPLE = Path(__file__).parents[2] / "exporter" / "probes" / "example.yaml"

INVALID: dict[str, list[str]] = {
    "not_yaml": ["not valid YAML: expected ',' or ']', but got '<stream end>' (line 4, column 1)"],
    "top_not_mapping": ['must be a mapping with a "probes" list'],
    "unknown_top_key": ['unknown key "targets" (expected defaults, probes)'],
    "probes_missing": ["probes: missing"],
    "probes_not_list": ["probes: must be a list of probes"],
    "probe_not_mapping": ["probes[0]: must be a mapping"],
    "name_missing": ["probes[0]: name: missing"],
    "name_invalid": ['probes[0] "Web Server!": name: "Web Server!" is not a valid name (at most '
                     '63 letters, digits, "-", "_" or ".", starting and ending with a letter or '
                     'digit)'],
    "name_duplicate": ['probes[1] "web": name: duplicate of probes[0]'],
    "protocol_unknown": ['probes[0] "web": protocol: "udp" is not one of dns, http, icmp, tcp'],
    "key_for_other_protocol": ['probes[0] "web": method: only valid for http probes'],
    "unknown_probe_key": ['probes[0] "web": unknown key "retries"'],
    "expect_invalid": ['probes[0] "web": expect: "maybe" is not allow or deny'],
    "source_missing": ['probes[0] "web": source: missing'],
    "source_namespace_invalid": ['probes[0] "web": source.namespace: "Test_NS" is not a valid '
                                 'namespace name'],
    "source_label_value_invalid": ['probes[0] "web": source.labels.app: "front end" is not a '
                                   'valid label value'],
    "source_label_not_string": ['probes[0] "web": source.labels.tier: 1 is not a string (quote '
                                'it)'],
    "source_labels_conflict": ['probes[1] "db": source.labels.run: "other" conflicts with '
                               '"testpod" from probe "web" (one agent runs all probes of '
                               'namespace "testns")'],
    "interval_bad": ['probes[0] "web": interval: "3x" is not a duration like 30s, 1m30s or '
                     '500ms'],
    "interval_too_small": ['probes[0] "web": interval: must be at least 100ms'],
    "timeout_zero": ['probes[0] "web": timeout: must be greater than 0'],
    "attempts_do_not_fit": ['probes[0] "web": timeout: 3 attempts of 5s do not fit in the '
                            'interval of 10s'],
    "attempts_out_of_range": ['probes[0] "web": attempts: must be an integer from 1 to 10'],
    "success_unknown": ['probes[0] "web": success: "most" is not any, all, majority or a number '
                        'of attempts'],
    "success_too_many": ['probes[0] "web": success: 4 is not between 1 and attempts (3)'],
    "deny_outcomes_success": ['probes[0] "web": deny_outcomes: "success" cannot count as denied'],
    "deny_outcomes_error": ['probes[0] "web": deny_outcomes: "error" never matches a verdict'],
    "deny_outcomes_unknown": ['probes[0] "web": deny_outcomes: "dropped" is not an outcome'],
    "http_target_not_url": ['probes[0] "web": target: "frontend.guestbook" is not an http:// or '
                            'https:// URL'],
    "http_method_unknown": ['probes[0] "web": method: "FETCH" is not one of DELETE, GET, HEAD, '
                            'OPTIONS, PATCH, POST, PUT'],
    "http_expect_status_pattern": ['probes[0] "web": expect_status: "2xx" is not a status code '
                                   'or a range like 200-299'],
    "http_expect_status_range": ['probes[0] "web": expect_status: "200-700" is not within '
                                 '100-599 with low <= high'],
    "tcp_target_without_port": ['probes[0] "db": target: "redis.guestbook" is not host:port'],
    "dns_target_invalid": ['probes[0] "lookup": target: "frontend..guestbook" is not a DNS name'],
    "dns_type_unknown": ['probes[0] "lookup": type: "MX" is not one of A, AAAA, CNAME, SRV, TXT'],
    "dns_server_not_ip": ['probes[0] "lookup": server: "kube-dns.kube-system:53" is not an IP '
                          'address or IP:port'],
    "dns_expect_answers_not_list": ['probes[0] "lookup": expect_answers: must be a list of '
                                    'strings'],
    "icmp_target_invalid": ['probes[0] "ping": target: "8.8.8.8/32" is not a host name or IP '
                            'address'],
    "defaults_unknown_key": ['defaults: unknown key "retries" (expected attempts, deny_outcomes, '
                             'interval, success, timeout)'],
    "defaults_interval_bad": ['defaults.interval: "often" is not a duration like 30s, 1m30s or '
                              '500ms'],
    "interval_nan": ['probes[0] "web": interval: nan is not a finite duration'],
    "timeout_inf": ['probes[0] "web": interval: inf is not a finite duration',
                    'probes[0] "web": timeout: inf is not a finite duration'],
    "defaults_non_finite": ["defaults.interval: inf is not a finite duration",
                            "defaults.timeout: nan is not a finite duration"],
    "duration_too_large": ['probes[0] "web": interval: "100000000000000000000000000000000000... '
                           "is not a finite duration"],
    "nested_too_deeply": ["not valid YAML: nested too deeply"],
    "several_problems": ['probes[0] "web": timeout: must be greater than 0',
                         'probes[1] "ping": target: missing'],
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_config_messages(case: str) -> None:
    """Each invalid file yields exactly its pinned messages, in file order."""
    assert validate_probe_config(str(DATA / "invalid" / f"{case}.yaml")) == INVALID[case]


def test_every_invalid_file_is_pinned() -> None:
    """No file under testdata/invalid goes untested."""
    assert {p.stem for p in (DATA / "invalid").glob("*.yaml")} == set(INVALID)


def test_load_raises_with_first_message_and_all_errors() -> None:
    """load_probe_config raises a ConfigError naming the file and listing every problem."""
    path = str(DATA / "invalid" / "several_problems.yaml")
    with pytest.raises(ProbeConfigError) as info:
        load_probe_config(path)
    assert isinstance(info.value, ConfigError)
    assert str(info.value) == (f"probe config {path}: 2 problems:\n"
                               '  probes[0] "web": timeout: must be greater than 0\n'
                               '  probes[1] "ping": target: missing')
    assert info.value.errors == tuple(INVALID["several_problems"])


def test_missing_file_message(tmp_path: Path) -> None:
    """A file that cannot be read is reported with the OS reason."""
    assert validate_probe_config(str(tmp_path / "nope.yaml")) == [
        "cannot read: No such file or directory"]


def test_valid_config_model() -> None:
    """Every key of a valid file lands in the typed model, defaults applied where omitted."""
    config = load_probe_config(str(DATA / "valid.yaml"))
    web, db, lookup, ping = config.probes
    assert web.params == HttpParams("https://[::1]:8443/healthz", "HEAD",
                                    ((200, 299), (301, 301), (404, 404)), "/etc/ssl/ca.pem")
    assert web.source == Source("testns", (("app.kubernetes.io/name", "probe"),
                                           ("run", "testpod")))
    assert (web.interval, web.timeout, web.attempts) == (60.0, 2.0, 3)
    assert web.success == SuccessRule(3, 2)
    assert web.deny_outcomes == {Outcome.TIMEOUT, Outcome.REFUSED}
    assert db.params == TcpParams("redis.guestbook.svc.cluster.local", 6379)
    assert (db.interval, db.timeout, db.expect) == (0.5, 0.25, "deny")
    assert lookup.params == DnsParams("_http._tcp.web.guestbook.svc.cluster.local", "SRV",
                                      ("10.96.0.10", 53),
                                      ("0 100 80 web.guestbook.svc.cluster.local",))
    assert ping.params == IcmpParams("198.18.3.2")
    assert ping.deny_outcomes == {Outcome.TIMEOUT, Outcome.UNREACHABLE}
    assert (ping.interval, ping.timeout, ping.success) == (20.0, 5.0, SuccessRule(4, 2))


def test_builtin_defaults_and_dns_deny_outcomes() -> None:
    """Without defaults: 30s interval, 5s timeout, 1 attempt, any; DNS deny includes
    dns_timeout."""
    config, errors = parse_probe_config(
        "probes:\n"
        "  - {name: n, protocol: dns, target: a.b, expect: deny, source: {namespace: x},"
        " server: '[::1]:5353'}\n")
    assert errors == []
    assert config is not None
    probe = config.probes[0]
    assert (probe.interval, probe.timeout, probe.attempts) == (30.0, 5.0, 1)
    assert probe.success == SuccessRule(1, 1)
    assert probe.deny_outcomes == DNS_DEFAULT_DENY_OUTCOMES
    assert probe.params == DnsParams("a.b", "A", ("::1", 5353), ())


def test_empty_probe_list_is_valid() -> None:
    """An agent may have nothing to do: an empty list is a valid config."""
    config, errors = parse_probe_config("probes: []\n")
    assert errors == []
    assert config is not None
    assert config.probes == ()


def test_agents_one_per_namespace_with_merged_labels() -> None:
    """agents() lists each source namespace once, with the union of its probes' labels."""
    config = load_probe_config(str(EXAMPLE))
    assert agents(config) == [
        Agent("default", {"run": "testpod"}),
        Agent("guestbook", {"run": "probe"}),
        Agent("testns", {"run": "testpod"}),
    ]
    assert [p.name for p in config.for_namespace("guestbook")] == [
        "guestbook-to-8.8.8.8", "guestbook-to-1.1.1.1", "guestbook-dns"]


def test_source_namespace_resolution(tmp_path: Path) -> None:
    """The setting wins, then the service-account file, then "default"."""
    ns_file = tmp_path / "namespace"
    assert resolve_source_namespace("", namespace_file=ns_file) == "default"
    ns_file.write_text("testns\n")
    assert resolve_source_namespace("", namespace_file=ns_file) == "testns"
    assert resolve_source_namespace("guestbook", namespace_file=ns_file) == "guestbook"


def test_format_duration() -> None:
    """Durations print the way the config writes them."""
    assert [format_duration(s) for s in (0.25, 1, 1.5, 30, 120, 90, 3600, 7200)] == [
        "250ms", "1s", "1.5s", "30s", "2m", "90s", "1h", "2h"]


def test_public_target_hides_url_credentials() -> None:
    """Credentials in an HTTP target never reach labels or logs."""
    config, errors = parse_probe_config(
        "probes:\n"
        "  - {name: a, protocol: http, target: 'https://user:s3cret@web.test:8443/x?y=1',"
        " expect: allow, source: {namespace: n}}\n"
        "  - {name: b, protocol: tcp, target: 'web.test:80', expect: allow,"
        " source: {namespace: n}}\n")
    assert errors == []
    assert config is not None
    assert [p.public_target for p in config.probes] == ["https://web.test:8443/x?y=1",
                                                        "web.test:80"]


@pytest.mark.parametrize(("target", "public"), [
    ("https://h/p?token=abc&y=2", "https://h/p?token=REDACTED&y=2"),
    ("https://h/?access_token=a&id_token=b&refresh_token=c",
     "https://h/?access_token=REDACTED&id_token=REDACTED&refresh_token=REDACTED"),
    ("https://h/?apikey=a&api_key=b&api-key=c&key=d&x-api-key=e",
     "https://h/?apikey=REDACTED&api_key=REDACTED&api-key=REDACTED&key=REDACTED"
     "&x-api-key=REDACTED"),
    ("https://h/?password=a&passwd=b&pwd=c&client_secret=d",
     "https://h/?password=REDACTED&passwd=REDACTED&pwd=REDACTED&client_secret=REDACTED"),
    ("https://b.blob.core.windows.net/c?sv=2022&se=2026&sp=r&sig=abc%3D",
     "https://b.blob.core.windows.net/c?sv=2022&se=2026&sp=r&sig=REDACTED"),
    ("https://s3.test/o?X-Amz-Credential=a&X-Amz-Date=d&X-Amz-Signature=b"
     "&X-Amz-Security-Token=c",
     "https://s3.test/o?X-Amz-Credential=REDACTED&X-Amz-Date=d&X-Amz-Signature=REDACTED"
     "&X-Amz-Security-Token=REDACTED"),
    ("https://h/cb?code=a&state=s#access_token=b", "https://h/cb?code=REDACTED&state=s"
                                                   "#access_token=REDACTED"),
    ("https://h/?Authorization=a&SessionId=b&access%5Ftoken=c;auth=d",
     "https://h/?Authorization=REDACTED&SessionId=REDACTED&access%5Ftoken=REDACTED"
     ";auth=REDACTED"),
    ("https://u:p@h/?q=search&page=2&token=", "https://h/?q=search&page=2&token="),
])
def test_credential_like_query_parameters_are_redacted(target: str, public: str) -> None:
    """?token= and other credential-like parameters (query and fragment; names compared in
    lower case without punctuation, percent-decoded) show as REDACTED, as user:pass@ is
    dropped; other parameters and empty values stay."""
    config, errors = parse_probe_config(
        f"probes:\n- {{name: a, protocol: http, target: '{target}', expect: allow,"
        " source: {namespace: n}}\n")
    assert errors == []
    assert config is not None
    assert config.probes[0].public_target == public


def test_invalid_target_messages_hide_credentials() -> None:
    """A target that does not validate is quoted in the error without its credentials."""
    _, errors = parse_probe_config(
        "probes:\n- {name: a, protocol: http, target: 'htp://u:s3cret@h/?token=s3cret',"
        " expect: allow, source: {namespace: n}}\n")
    assert errors == ['probes[0] "a": target: "htp://h/?token=REDACTED" is not an http:// or '
                      "https:// URL"]


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1m30s", 90.0),
    ("45", 45.0), ("2.5", 2.5)])
def test_every_duration_form(text: str, seconds: float) -> None:
    """interval and timeout, in defaults and per probe, take every form of the one duration
    syntax (Go/Prometheus strings, plain seconds)."""
    yaml_text = f"""
defaults: {{interval: "{text}", timeout: "{text}"}}
probes:
- {{name: a, protocol: tcp, target: "db:5432", expect: allow, source: {{namespace: x}}}}
- {{name: b, protocol: tcp, target: "db:5432", expect: allow, source: {{namespace: x}},
   interval: "{text}", timeout: "{text}"}}
"""
    config, errors = parse_probe_config(yaml_text)
    assert errors == []
    assert config is not None
    assert [(p.interval, p.timeout) for p in config.probes] == [(seconds, seconds)] * 2


@pytest.mark.parametrize(("key", "value", "message"), [
    ("interval", "-30s", "interval: must be at least 100ms"),
    ("interval", "0", "interval: must be at least 100ms"),
    ("timeout", "0s", "timeout: must be greater than 0"),
    ("timeout", "-1m30s", "timeout: must be greater than 0"),
])
def test_zero_and_negative_durations(key: str, value: str, message: str) -> None:
    """Zero and negative intervals and timeouts are refused with the key in the message."""
    yaml_text = (f'probes:\n- {{name: a, protocol: icmp, target: "10.0.0.1", expect: allow, '
                 f'source: {{namespace: x}}, {key}: "{value}"}}\n')
    assert parse_probe_config(yaml_text)[1] == [f'probes[0] "a": {message}']
