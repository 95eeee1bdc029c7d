"""The command line: settings from flags, env and file; exact errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exporter import config
from exporter.app import GROUPS_BY_COMMAND
from exporter.config import ConfigError
from tests.access.certs import make_ca, make_cert


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CALICO_EXPORTER_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, env=full, timeout=30, check=False)


class TestCheckConfig:
    def test_valid(self) -> None:
        """check-config MODE prints that mode's effective settings (only those) and exits 0."""
        result = cli("check-config", "node", "--listen", "127.0.0.1:9999", "--node-name", "n1",
                     env={"CALICO_EXPORTER_BIRD_INTERVAL": "1m30s"})
        assert result.returncode == 0, result.stderr
        shown = yaml.safe_load(result.stdout)
        assert shown["listen"] == "127.0.0.1:9999"
        assert shown["bird_interval"] == 90.0
        assert set(shown) == {o.name for o in config.options()
                              if o.group in GROUPS_BY_COMMAND["node"]}

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"CALICO_EXPORTER_LISTEN": "nowhere"},
             "invalid value for --listen (CALICO_EXPORTER_LISTEN): 'nowhere' is not host:port, "
             "[IPv6]:port or :port"),
            ({"CALICO_EXPORTER_WATCH_TIMEOUT": "soon"},
             "invalid value for --watch-timeout (CALICO_EXPORTER_WATCH_TIMEOUT): "
             "'soon' is not a duration like 30s, 1m30s or 500ms"),
            ({"CALICO_EXPORTER_MANAGE_NODE_STATUS": "maybe"},
             "invalid value for --manage-node-status (CALICO_EXPORTER_MANAGE_NODE_STATUS): "
             "'maybe' is not a boolean (true or false)"),
            ({"CALICO_EXPORTER_NODE_STATUS_CLASSES": "BGP,Peers"},
             "invalid value for --node-status-classes (CALICO_EXPORTER_NODE_STATUS_CLASSES): "
             "classes must be a non-empty list of Agent, BGP, Routes"),
            ({"CALICO_EXPORTER_NODE_STATUS_UPDATE_PERIOD": "25h"},
             "invalid value for --node-status-update-period "
             "(CALICO_EXPORTER_NODE_STATUS_UPDATE_PERIOD): must be between 0 and 86400 seconds "
             "(24h)"),
            ({"CALICO_EXPORTER_LIST_PAGE_SIZE": "lots"},
             "invalid value for --list-page-size (CALICO_EXPORTER_LIST_PAGE_SIZE): 'lots' is "
             "not an integer"),
            ({"CALICO_EXPORTER_CALICO_API_GROUP": "projectcalico.org/v1"},
             "invalid value for --calico-api-group (CALICO_EXPORTER_CALICO_API_GROUP): "
             "'projectcalico.org/v1' is not one of auto, crd.projectcalico.org/v1, "
             "projectcalico.org/v3"),
            ({"CALICO_EXPORTER_MAX_CONNECTIONS": "0"},
             "invalid value for --max-connections (CALICO_EXPORTER_MAX_CONNECTIONS): must be at "
             "least 1"),
        ],
    )
    def test_bad_env(self, env: dict[str, str], message: str, kubeconfig: Path) -> None:
        """A bad value prints one exact message and exits 2."""
        result = cli("check-config", "cluster", "--kubeconfig", str(kubeconfig), env=env)
        assert result.returncode == 2
        assert result.stderr == f"calico-exporter: error: {message}\n"

    def test_unknown_key_in_file(self, tmp_path: Path) -> None:
        """An unknown key in the config file is named in the error."""
        path = tmp_path / "c.yaml"
        path.write_text("listen: 127.0.0.1:1\nlisten_port: 3\n")
        result = cli("check-config", "probe", "--config-file", str(path), "--probe-config",
                     str(PROBES))
        assert result.returncode == 2
        assert result.stderr == (
            f"calico-exporter: error: config file {path}: unknown setting 'listen_port'\n")

    def test_bad_config_at_startup(self) -> None:
        """Any role with a bad setting exits 2 before doing anything."""
        result = cli("cluster", "--backoff-max=-3s")
        assert result.returncode == 2
        assert result.stderr == ("calico-exporter: error: invalid value for --backoff-max "
                                 "(CALICO_EXPORTER_BACKOFF_MAX): must be greater than 0\n")

    def test_several_problems_at_startup(self) -> None:
        """A role started with several bad settings lists them all in its one message."""
        result = cli("node", "--listen", "x", "--bird-interval", "0")
        assert result.returncode == 2
        assert result.stderr == (
            "calico-exporter: error: 2 invalid settings:\n"
            "  invalid value for --listen (CALICO_EXPORTER_LISTEN): 'x' is not host:port, "
            "[IPv6]:port or :port\n"
            "  invalid value for --bird-interval (CALICO_EXPORTER_BIRD_INTERVAL): must be "
            "greater than 0\n")

    def test_settings_that_would_spin_are_refused(self) -> None:
        """--inactivity-timeout 0 with --backoff-max 0 (a watch loop of 610 requests/s, issue
        12) and --bird-timeout 0 are refused at start-up, each named."""
        result = cli("cluster", "--inactivity-timeout", "0", "--backoff-max", "0")
        assert result.returncode == 2
        assert result.stderr == (
            "calico-exporter: error: 2 invalid settings:\n"
            "  invalid value for --inactivity-timeout (CALICO_EXPORTER_INACTIVITY_TIMEOUT): "
            "must be greater than 0\n"
            "  invalid value for --backoff-max (CALICO_EXPORTER_BACKOFF_MAX): must be greater "
            "than 0\n")
        result = cli("node", "--node-name", "n1", "--bird-timeout", "0")
        assert result.returncode == 2
        assert result.stderr == ("calico-exporter: error: invalid value for --bird-timeout "
                                 "(CALICO_EXPORTER_BIRD_TIMEOUT): must be greater than 0\n")

    def test_other_modes_settings_do_not_matter(self, kubeconfig: Path) -> None:
        """A mode is not stopped (nor check-config of it failed) by a bad setting it never
        reads: node mode's bird_interval does not concern the cluster mode."""
        env = {"CALICO_EXPORTER_BIRD_INTERVAL": "often"}
        assert cli("check-config", "cluster", "--kubeconfig", str(kubeconfig),
                   env=env).returncode == 0
        assert cli("check-config", "node", "--node-name", "n", env=env).returncode == 2


PROBES = Path(__file__).parents[1] / "deploy" / "examples" / "lab" / "probes.yaml"


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    """A valid kubeconfig (it is only parsed: nothing connects to its server)."""
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.removeprefix("calico-exporter: error: ") for line in result.stderr.splitlines()
            if line.startswith("calico-exporter: error: ")]


class TestCheckConfigModes:
    """check-config MODE for each mode, with several problems at once: every one is reported,
    including what the mode needs beyond its settings; exit 0 valid, 2 invalid."""

    def test_cluster(self, tmp_path: Path) -> None:
        """cluster: bad settings and a kubeconfig that does not exist, all reported."""
        result = cli("check-config", "cluster", "--kubeconfig", str(tmp_path / "none"),
                     "--listen", "9808", "--leak-grace-period=-5m",
                     env={"CALICO_EXPORTER_API_TIMEOUT": "0"})
        assert result.returncode == 2
        assert _errors(result) == [
            "invalid value for --listen (CALICO_EXPORTER_LISTEN): '9808' is not host:port, "
            "[IPv6]:port or :port",
            "invalid value for --api-timeout (CALICO_EXPORTER_API_TIMEOUT): must be greater "
            "than 0",
            "invalid value for --leak-grace-period (CALICO_EXPORTER_LEAK_GRACE_PERIOD): must not "
            "be negative",
            "invalid value for --kubeconfig (CALICO_EXPORTER_KUBECONFIG): no kubeconfig file at "
            f"{tmp_path / 'none'}",
        ]

    def test_cluster_kubeconfig_that_does_not_parse(self, tmp_path: Path) -> None:
        """cluster: a kubeconfig that exists but is not one is an error, as `cluster` says."""
        path = tmp_path / "kubeconfig"
        path.write_text("apiVersion: v1\n")
        result = cli("check-config", "cluster", "--kubeconfig", str(path))
        assert result.returncode == 2
        (error,) = _errors(result)
        assert error.startswith(f"invalid kubeconfig {path}: ")

    def test_cluster_valid_with_warning(self, kubeconfig: Path) -> None:
        """cluster: valid, with the API server it would use; a backoff contradiction warns."""
        result = cli("check-config", "cluster", "--kubeconfig", str(kubeconfig),
                     "--backoff-initial", "1m", "--backoff-max", "1s")
        assert result.returncode == 0, result.stderr
        assert yaml.safe_load(result.stdout)["api_server"] == "https://127.0.0.1:6443"
        assert result.stderr == (
            "calico-exporter: warning: --backoff-initial (60s) is greater than --backoff-max "
            "(1s): every retry waits 1s at most\n")

    def test_node(self) -> None:
        """node: bad settings and the missing node name, all reported."""
        result = cli("check-config", "node", "--bird-interval", "5x", "--bird-timeout", "0s",
                     "--bird-socket", "/nonexistent/bird.ctl")
        assert result.returncode == 2
        assert _errors(result) == [
            "invalid value for --bird-interval (CALICO_EXPORTER_BIRD_INTERVAL): '5x' is not a "
            "duration like 30s, 1m30s or 500ms",
            "invalid value for --bird-timeout (CALICO_EXPORTER_BIRD_TIMEOUT): must be greater "
            "than 0",
            "node mode needs a node name: set --node-name or NODE_NAME",
        ]
        assert ("calico-exporter: warning: --bird-socket /nonexistent/bird.ctl does not exist "
                "here") in result.stderr

    def test_node_access_and_kube(self, tmp_path: Path) -> None:
        """node: the access and kube settings node mode reads are checked with the rest, every
        problem at once: bad values, TLS files that go together or cannot be read, and the
        kubeconfig --authorize-scrapers needs."""
        result = cli("check-config", "node", "--node-name", "n1", "--header-read-timeout", "0",
                     "--keepalive-timeout", "1m30s", "--health-listen", "9810",
                     "--calico-api-group", "v3", "--tls-client-ca-file", str(tmp_path / "ca"),
                     "--authorize-scrapers", "--kubeconfig", str(tmp_path / "none"))
        assert result.returncode == 2
        assert _errors(result) == [
            "invalid value for --header-read-timeout (CALICO_EXPORTER_HEADER_READ_TIMEOUT): must "
            "be greater than 0",
            "invalid value for --health-listen (CALICO_EXPORTER_HEALTH_LISTEN): '9810' is not "
            "host:port, [IPv6]:port or :port",
            "invalid value for --calico-api-group (CALICO_EXPORTER_CALICO_API_GROUP): 'v3' is "
            "not one of auto, crd.projectcalico.org/v1, projectcalico.org/v3",
            "invalid value for --tls-client-ca-file (CALICO_EXPORTER_TLS_CLIENT_CA_FILE): mutual "
            "TLS needs --tls-cert-file and --tls-key-file",
            "invalid value for --kubeconfig (CALICO_EXPORTER_KUBECONFIG): no kubeconfig file at "
            f"{tmp_path / 'none'}",
        ]
        assert ("calico-exporter: warning: --authorize-scrapers without --tls-cert-file: "
                "scrapers send their bearer tokens over plain HTTP\n") in result.stderr

    def test_probe_tls_files(self, tmp_path: Path) -> None:
        """probe: TLS files that do not exist are reported as the probe role would report them
        at start-up; the access settings are shown with the mode's others."""
        cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
        result = cli("check-config", "probe", "--probe-config", str(PROBES), "--tls-cert-file",
                     str(cert), "--tls-key-file", str(key))
        assert result.returncode == 2
        assert _errors(result) == [
            "invalid value for --tls-cert-file (CALICO_EXPORTER_TLS_CERT_FILE): cannot use "
            f"{cert}, {key}: No such file or directory"]
        valid = cli("check-config", "probe", "--probe-config", str(PROBES),
                    "--max-connections", "64")
        assert valid.returncode == 0, valid.stderr
        shown = yaml.safe_load(valid.stdout)
        assert shown["max_connections"] == 64
        assert shown["calico_api_group"] == "auto"

    def test_cluster_goldmane_settings(self, kubeconfig: Path) -> None:
        """cluster: the Goldmane settings in the one scheme, every problem at once: a choice, a
        dialable address, a series cap, a duration, and the mutual-TLS files
        --goldmane-enabled needs."""
        result = cli("check-config", "cluster", "--kubeconfig", str(kubeconfig),
                     "--goldmane-enabled", "--goldmane-cert-file", "/c.crt",
                     "--goldmane-read", "push", "--goldmane-address", ":7443",
                     env={"CALICO_EXPORTER_GOLDMANE_MAX_SERIES": "0",
                          "CALICO_EXPORTER_GOLDMANE_STALL_TIMEOUT": "2 minutes"})
        assert result.returncode == 2
        assert _errors(result) == [
            "invalid value for --goldmane-address (CALICO_EXPORTER_GOLDMANE_ADDRESS): ':7443' "
            "is not host:port or [IPv6]:port",
            "invalid value for --goldmane-read (CALICO_EXPORTER_GOLDMANE_READ): 'push' is not "
            "one of poll, stream",
            "invalid value for --goldmane-max-series (CALICO_EXPORTER_GOLDMANE_MAX_SERIES): must "
            "be at least 1",
            "invalid value for --goldmane-stall-timeout (CALICO_EXPORTER_GOLDMANE_STALL_TIMEOUT): "
            "'2 minutes' is not a duration like 30s, 1m30s or 500ms",
            "invalid value for --goldmane-enabled (CALICO_EXPORTER_GOLDMANE_ENABLED): Goldmane "
            "accepts only mutual TLS: --goldmane-enabled needs --goldmane-key-file, "
            "--goldmane-ca-file",
        ]
        pair = cli("check-config", "cluster", "--kubeconfig", str(kubeconfig),
                   "--goldmane-cert-file", "/c.crt")
        assert _errors(pair) == [
            "invalid value for --goldmane-cert-file (CALICO_EXPORTER_GOLDMANE_CERT_FILE): "
            "--goldmane-cert-file and --goldmane-key-file go together"]

    def test_cluster_goldmane_files(self, kubeconfig: Path, tmp_path: Path) -> None:
        """cluster with --goldmane-enabled: the client certificate, key and CA must make a client
        context (a key of another certificate does not); valid files show where and how it
        reads; a stall timeout within Goldmane's 15 s windows warns when streaming."""
        ca = make_ca(tmp_path / "ca", "operator-ca")
        client = make_cert(tmp_path / "client", "calico-exporter", ca, server=False)
        other = make_cert(tmp_path / "other", "someone-else", ca, server=False)
        files = ["--goldmane-cert-file", str(client.cert), "--goldmane-ca-file", str(ca.cert)]
        bad = cli("check-config", "cluster", "--kubeconfig", str(kubeconfig),
                  "--goldmane-enabled", *files, "--goldmane-key-file", str(other.key))
        assert bad.returncode == 2
        (error,) = _errors(bad)
        assert error.startswith(
            "invalid value for --goldmane-cert-file (CALICO_EXPORTER_GOLDMANE_CERT_FILE): cannot "
            f"use {client.cert}, {other.key}, {ca.cert}: ")
        good = cli("check-config", "cluster", "--kubeconfig", str(kubeconfig),
                   "--goldmane-enabled", *files, "--goldmane-key-file", str(client.key),
                   "--goldmane-read", "stream", "--goldmane-stall-timeout", "10s")
        assert good.returncode == 0, good.stderr
        shown = yaml.safe_load(good.stdout)
        assert shown["goldmane"] == {"address": "goldmane.calico-system.svc:7443",
                                     "read": "stream"}
        assert shown["goldmane_stall_timeout"] == 10.0
        assert good.stderr == (
            "calico-exporter: warning: --goldmane-stall-timeout (10s) is not longer than the 15s "
            "between Goldmane's windows: quiet but healthy flow streams will be restarted\n")

    def test_goldmane_settings_are_read_by_cluster_and_demo_only(self, kubeconfig: Path) -> None:
        """The flows group belongs to cluster and demo: a bad Goldmane setting fails their
        check, never node's or probe's."""
        env = {"CALICO_EXPORTER_GOLDMANE_READ": "push"}
        assert cli("check-config", "demo", env=env).returncode == 2
        assert cli("check-config", "cluster", "--kubeconfig", str(kubeconfig),
                   env=env).returncode == 2
        assert cli("check-config", "node", "--node-name", "n", env=env).returncode == 0
        assert cli("check-config", "probe", "--probe-config", str(PROBES),
                   env=env).returncode == 0

    def test_probe(self) -> None:
        """probe: bad settings and every problem of the probe file, all reported."""
        path = Path(__file__).parent / "probes/testdata/invalid/several_problems.yaml"
        result = cli("check-config", "probe", "--probe-config", str(path),
                     "--probe-concurrency", "0")
        assert result.returncode == 2
        assert _errors(result) == [
            "invalid value for --probe-concurrency (CALICO_EXPORTER_PROBE_CONCURRENCY): must be "
            "at least 1",
            f'probe config {path}: probes[0] "web": timeout: must be greater than 0',
            f'probe config {path}: probes[1] "ping": target: missing',
        ]

    def test_probe_lists_probes_with_schedule(self) -> None:
        """probe: a valid file lists every probe with its schedule and whether this agent's
        source namespace runs it."""
        result = cli("check-config", "probe", "--probe-config", str(PROBES),
                     "--source-namespace", "default")
        assert result.returncode == 0, result.stderr
        shown = yaml.safe_load(result.stdout)
        assert shown["source_namespace"] == "default"
        probes = {p["name"]: p for p in shown["probes"]}
        assert len(probes) == 5
        assert probes["frontend-from-default"] == {
            "name": "frontend-from-default", "protocol": "http",
            "target": "http://frontend.guestbook.svc.cluster.local/", "expect": "deny",
            "source": "default", "runs_here": True,
            "schedule": "every 30s, 3 x 5s attempts, success: 2 of 3"}
        assert probes["frontend-from-testns"]["runs_here"] is False

    def test_probe_needs_a_file(self) -> None:
        """probe: no probe config at all is an error, as `probe` would say."""
        result = cli("check-config", "probe")
        assert result.returncode == 2
        assert _errors(result) == [
            "invalid value for --probe-config (CALICO_EXPORTER_PROBE_CONFIG): the probe role "
            "needs a probe configuration file"]

    def test_demo(self, tmp_path: Path) -> None:
        """demo: bad settings and a scenario that cannot be read, all reported."""
        result = cli("check-config", "demo", "--apiserver-listen", "localhost",
                     "--flap-interval=-1s", "--scenario", str(tmp_path / "none.yaml"),
                     "--calico-api", "v2")
        assert result.returncode == 2
        errors = _errors(result)
        assert errors[:3] == [
            "invalid value for --flap-interval (CALICO_EXPORTER_FLAP_INTERVAL): must not be "
            "negative",
            "invalid value for --apiserver-listen (CALICO_EXPORTER_APISERVER_LISTEN): "
            "'localhost' is not host:port, [IPv6]:port or :port",
            "invalid value for --calico-api (CALICO_EXPORTER_CALICO_API): 'v2' is not one of "
            "v1, v3, both",
        ]
        assert errors[3].startswith("invalid value for --scenario (CALICO_EXPORTER_SCENARIO): "
                                    "cannot read scenario")
        assert len(errors) == 4

    def test_demo_valid(self) -> None:
        """demo: the built-in scenario is valid and only the demo's settings are shown."""
        result = cli("check-config", "demo")
        assert result.returncode == 0, result.stderr
        shown = yaml.safe_load(result.stdout)
        assert shown["scenario"] == {"name": "nke-lab", "nodes": 3, "pods": 25}
        assert "kubeconfig" not in shown
        assert "bird_interval" not in shown


class TestPrecedence:
    def test_flag_over_env_over_file(self, tmp_path: Path) -> None:
        """Flags win over env vars, which win over the file, which wins over defaults."""
        path = tmp_path / "c.yaml"
        path.write_text("listen: 127.0.0.1:1\nlog_level: debug\nbird_interval: 7s\n")
        settings = config.load(
            flags={"listen": "127.0.0.1:3"},
            environ={"CALICO_EXPORTER_LISTEN": "127.0.0.1:2",
                     "CALICO_EXPORTER_LOG_LEVEL": "warning"},
            config_file=str(path),
        )
        assert settings.server.listen == "127.0.0.1:3"
        assert settings.log.log_level == "warning"
        assert settings.bird.bird_interval == 7.0

    def test_node_name_from_downward_api(self) -> None:
        """The node name falls back to $NODE_NAME, as the DaemonSet sets it."""
        assert config.load(environ={"NODE_NAME": "n1"}).bird.node_name == "n1"

    @pytest.mark.parametrize("source", ["flag", "env", "file"])
    def test_fractional_page_size_is_refused(self, source: str, tmp_path: Path) -> None:
        """list_page_size: 1.9 is refused from every source instead of becoming 1."""
        path = tmp_path / "c.yaml"
        path.write_text("list_page_size: 1.9\n")
        where = {"flag": ({"flags": {"list_page_size": "1.9"}},
                          "--list-page-size (CALICO_EXPORTER_LIST_PAGE_SIZE): '1.9'"),
                 "env": ({"environ": {"CALICO_EXPORTER_LIST_PAGE_SIZE": "1.9"}},
                         "--list-page-size (CALICO_EXPORTER_LIST_PAGE_SIZE): '1.9'"),
                 "file": ({"config_file": str(path)},
                          f"list_page_size in config file {path}: 1.9")}
        kwargs, shown = where[source]
        with pytest.raises(ConfigError) as info:
            config.load(**kwargs)  # type: ignore[arg-type]
        assert str(info.value) == f"invalid value for {shown} is not an integer"

    def test_config_file_not_utf8_or_too_deep(self, tmp_path: Path) -> None:
        """A config file that is not UTF-8, or nests deeper than PyYAML can recurse, is one
        message and exit 2, at start-up and in check-config, not a traceback."""
        binary = tmp_path / "binary.yaml"
        binary.write_bytes(b"log_level: \"\xff\xfe\"\n")
        deep = tmp_path / "deep.yaml"
        deep.write_text("listen: " + "[" * 20_000 + "]" * 20_000 + "\n")
        for path, reason in ((binary, "is not UTF-8 text (byte 12)"),
                             (deep, "is not valid YAML: nested too deeply")):
            result = cli("node", "--node-name", "n1", "--config-file", str(path))
            assert result.returncode == 2, result.stderr
            assert result.stderr == f"calico-exporter: error: config file {path} {reason}\n"
            result = cli("check-config", "node", "--node-name", "n1", "--config-file", str(path))
            assert result.returncode == 2, result.stderr
            assert _errors(result) == [f"config file {path} {reason}"]
            assert "Traceback" not in result.stderr

    def test_unreadable_file(self, tmp_path: Path) -> None:
        """A missing config file is an exact error."""
        with pytest.raises(ConfigError, match="cannot read config file"):
            config.load(config_file=str(tmp_path / "missing.yaml"))


GO_DURATIONS = [
    # golang/go go1.23.0 src/time/time_test.go, parseDurationTests (seconds here)
    ("0", 0.0), ("5s", 5.0), ("30s", 30.0), ("1478s", 1478.0), ("-5s", -5.0), ("+5s", 5.0),
    ("-0", 0.0), ("+0", 0.0), ("5.0s", 5.0), ("5.6s", 5.6), ("5.s", 5.0), (".5s", 0.5),
    ("1.004s", 1.004), ("100.00100s", 100.001), ("10ns", 10e-9), ("11us", 11e-6),
    ("12µs", 12e-6), ("12μs", 12e-6), ("13ms", 0.013), ("14s", 14.0), ("15m", 900.0),
    ("16h", 57600.0), ("3h30m", 12600.0), ("10.5s4m", 250.5), ("-2m3.4s", -123.4),
    ("1h2m3s4ms5us6ns", 3723.004005006), ("39h9m14.425s", 39 * 3600 + 9 * 60 + 14.425),
    ("52763797000ns", 52.763797), ("0.3333333333333333333h", 1200.0),
    # prometheus/common v0.62.0 model/time_test.go, TestParseDuration (Prometheus units)
    ("0w", 0.0), ("324ms", 0.324), ("3s", 3.0), ("5m", 300.0), ("1h", 3600.0),
    ("4d", 4 * 86400.0), ("4d1h", 4 * 86400.0 + 3600), ("14d", 14 * 86400.0),
    ("3w", 21 * 86400.0), ("3w2d1h", 23 * 86400.0 + 3600), ("10y", 3650 * 86400.0),
    # ours: a bare number is seconds (Go would refuse "3")
    ("3", 3.0), ("90", 90.0), ("1.5", 1.5),
]
BAD_DURATIONS = [
    # golang/go go1.23.0 src/time/time_test.go, parseDurationErrorTests (the syntax ones)
    "", "-", "s", ".", "-.", ".s", "+.s", "\x85\x85", "\uFFFD hello \uFFFD world",
    # and ours
    "3 days", "1m30", "5 s", "1.2.3s", "s5",
]
DURATION_OPTIONS = [o for o in config.options() if o.type in (float, config.WholeSeconds)]
FORMS = [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1m30s", 90.0),
         ("45", 45.0), ("2.5", 2.5)]


class TestDurations:
    """One duration syntax for every duration setting, from flags, env and the file."""

    @pytest.mark.parametrize(("text", "seconds"), GO_DURATIONS)
    def test_go_and_prometheus_syntax(self, text: str, seconds: float) -> None:
        """parse_duration reads what Go's time.ParseDuration and Prometheus' model.ParseDuration
        read, to the same value (cases from their own tests)."""
        assert config.parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-12)

    @pytest.mark.parametrize("text", BAD_DURATIONS)
    def test_not_a_duration(self, text: str) -> None:
        """Text that is neither a Go/Prometheus duration nor a number is refused."""
        with pytest.raises(ValueError, match="is not a duration like 30s, 1m30s or 500ms"):
            config.parse_duration(text)

    def test_every_duration_setting_is_covered(self) -> None:
        """The float settings and node_status_update_period are exactly the durations."""
        assert {o.name for o in DURATION_OPTIONS} == {
            "api_timeout", "watch_timeout", "inactivity_timeout", "backoff_initial",
            "backoff_max", "node_status_update_period", "leak_grace_period", "bird_interval",
            "bird_timeout", "flap_interval", "header_read_timeout", "keepalive_timeout",
            "token_review_cache_ttl", "access_review_allow_ttl", "access_review_deny_ttl",
            "goldmane_stall_timeout"}

    @pytest.mark.parametrize("opt", DURATION_OPTIONS, ids=lambda o: o.name)
    @pytest.mark.parametrize(("text", "seconds"), FORMS, ids=[f for f, _ in FORMS])
    def test_every_form_on_every_setting(self, opt: config.Option, text: str, seconds: float,
                                         tmp_path: Path) -> None:
        """Each form works as a flag, an env var and a config-file value (whole seconds only
        for node_status_update_period, which becomes an integer of the API object)."""
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({opt.name: text}))
        sources = [{"flags": {opt.name: text}}, {"environ": {opt.env: text}},
                   {"config_file": str(path)}]
        for source in sources:
            if opt.type is config.WholeSeconds and not seconds.is_integer():
                with pytest.raises(ConfigError, match="is not a whole number of seconds"):
                    config.load(**source)  # type: ignore[arg-type]
                continue
            settings = config.load(**source)  # type: ignore[arg-type]
            got = getattr(getattr(settings, opt.group), opt.name)
            assert got == seconds
            assert type(got) is (int if opt.type is config.WholeSeconds else float)

    @pytest.mark.parametrize("opt", DURATION_OPTIONS, ids=lambda o: o.name)
    def test_zero_and_negative(self, opt: config.Option) -> None:
        """A negative duration is always refused, zero where it makes no sense (a timeout, an
        interval, a backoff), each time naming the flag; zero stays valid where it means
        something (no grace period, no flapping, no periodic refresh, no reuse of a review)."""
        zero_ok = {"leak_grace_period", "flap_interval", "node_status_update_period",
                   "token_review_cache_ttl", "access_review_allow_ttl", "access_review_deny_ttl"}
        with pytest.raises(ConfigError) as negative:
            config.load(flags={opt.name: "-1m"})
        assert str(negative.value) == f"invalid value for {opt.flag} ({opt.env}): " + (
            "must be between 0 and 86400 seconds (24h)" if opt.name == "node_status_update_period"
            else "must not be negative" if opt.name in zero_ok else "must be greater than 0")
        if opt.name in zero_ok:
            assert getattr(getattr(config.load(flags={opt.name: "0s"}), opt.group),
                           opt.name) == 0
        else:
            with pytest.raises(ConfigError, match=f"^invalid value for {opt.flag} .*: must be "
                                                  "greater than 0$"):
                config.load(flags={opt.name: "0s"})

    @pytest.mark.parametrize("opt", DURATION_OPTIONS, ids=lambda o: o.name)
    def test_non_finite_durations_are_refused(self, opt: config.Option, tmp_path: Path) -> None:
        """Issue 12, defect 10: .nan, .inf and -.inf in the config file, and a number too
        large for a float from any source, are refused naming the setting, where they used to
        pass validation and crash the process (int(inf), a sleep of nan)."""
        path = tmp_path / "c.yaml"
        huge = "1" + "0" * 400
        for text, shown in ((".nan", "nan"), (".inf", "inf"), ("-.inf", "-inf"),
                            (huge, f"{huge[:37]}...")):
            path.write_text(f"{opt.name}: {text}\n")
            with pytest.raises(ConfigError) as info:
                config.load(config_file=str(path))
            assert str(info.value) == (f"invalid value for {opt.name} in config file {path}: "
                                       f"{shown} is not a finite duration")
        for source in ({"flags": {opt.name: huge}}, {"environ": {opt.env: huge}}):
            with pytest.raises(ConfigError) as info:
                config.load(**source)  # type: ignore[arg-type]
            assert str(info.value) == (f"invalid value for {opt.flag} ({opt.env}): "
                                       f"'{huge[:36]}... is not a finite duration")

    def test_watch_timeout_infinite_or_too_long(self, tmp_path: Path) -> None:
        """watch_timeout: .inf fails check-config (exit 2) instead of passing it and then
        exiting when the first watch turns it into an integer; it becomes the integer
        timeoutSeconds of every watch, so more than a day is refused too."""
        path = tmp_path / "c.yaml"
        path.write_text("watch_timeout: .inf\n")
        result = cli("check-config", "cluster", "--config-file", str(path), "--kubeconfig",
                     str(tmp_path / "none"))
        assert result.returncode == 2
        assert _errors(result)[0] == (f"invalid value for watch_timeout in config file {path}: "
                                      "inf is not a finite duration")
        with pytest.raises(ConfigError) as info:
            config.load(flags={"watch_timeout": "25h"})
        assert str(info.value) == ("invalid value for --watch-timeout "
                                   "(CALICO_EXPORTER_WATCH_TIMEOUT): must be at most 86400 "
                                   "seconds (24h)")
        assert config.load(flags={"watch_timeout": "24h"}).watch.watch_timeout == 86400

    def test_node_status_update_period_takes_30s(self) -> None:
        """The review's case: --node-status-update-period 30s works (it was an int())."""
        result = cli("check-config", "cluster", "--node-status-update-period", "30s",
                     "--kubeconfig", "/nonexistent")
        assert "node-status-update-period" not in result.stderr

    def test_file_error_names_the_key_and_file(self, tmp_path: Path) -> None:
        """A bad duration in the config file names the key and the file."""
        path = tmp_path / "c.yaml"
        path.write_text("bird_interval: soon\n")
        with pytest.raises(ConfigError) as info:
            config.load(config_file=str(path))
        assert str(info.value) == (f"invalid value for bird_interval in config file {path}: "
                                   "'soon' is not a duration like 30s, 1m30s or 500ms")


class TestHelp:
    def test_every_option_documented(self) -> None:
        """--help of the modes shows every option with its env var and a docstring, and
        check-config MODE --help the same options as the mode."""
        seen = set()
        for mode, groups in GROUPS_BY_COMMAND.items():
            result = cli(mode, "--help")
            assert result.returncode == 0
            text = " ".join(result.stdout.split())
            checked = cli("check-config", mode, "--help")
            assert checked.returncode == 0
            for opt in config.options():
                if opt.group not in groups:
                    assert opt.flag + " " not in text
                    continue
                seen.add(opt.name)
                assert opt.flag in text
                assert opt.env in text
                assert opt.flag in checked.stdout
                assert opt.help, f"{opt.name} has no docstring"
        assert seen == {o.name for o in config.options()}


class TestSelector:
    def test_match(self) -> None:
        """A matching selector prints its canonical form and 'match', exit 0."""
        result = cli("selector", "app == 'frontend' && has(tier)", "--labels", "app=frontend",
                     "tier=web")
        assert result.returncode == 0
        assert result.stdout == '(app == "frontend" && has(tier))\nmatch\n'

    def test_no_match(self) -> None:
        """A selector that does not match the labels exits 1."""
        result = cli("selector", "app in {'a', 'b'}", "--labels", "app=c")
        assert result.returncode == 1
        assert result.stdout.endswith("no match\n")

    def test_canonical_only(self) -> None:
        """Without labels the canonical form is printed and the exit code is 0."""
        result = cli("selector", " all() ")
        assert (result.returncode, result.stdout) == (0, "all()\n")

    def test_empty_label_set(self) -> None:
        """--labels with no pairs evaluates against the empty label set (an unlabelled pod)."""
        result = cli("selector", "app == 'frontend'", "--labels")
        assert (result.returncode, result.stdout) == (1, 'app == "frontend"\nno match\n')
        result = cli("selector", "!has(app)", "--labels")
        assert (result.returncode, result.stdout) == (0, "!has(app)\nmatch\n")

    def test_labels_accumulate(self) -> None:
        """--labels given twice adds to the first instead of replacing it."""
        result = cli("selector", "app == 'a' && tier == 'b'", "--labels", "app=a",
                     "--labels", "tier=b")
        assert (result.returncode, result.stdout) == (
            0, '(app == "a" && tier == "b")\nmatch\n')

    def test_parse_error(self) -> None:
        """A parse error is printed with its position on stderr, exit 2."""
        result = cli("selector", "app == 'x' &")
        assert result.returncode == 2
        assert result.stdout == ""
        assert "error:" in result.stderr
        assert result.stderr.splitlines()[-1].strip() == "^"


class TestKubeconfig:
    def test_missing_kubeconfig(self) -> None:
        """A kubeconfig that does not exist is one exact message and exit 2, no traceback."""
        result = cli("cluster", "--listen", "127.0.0.1:0", "--kubeconfig", "/nonexistent/kc")
        assert result.returncode == 2
        assert result.stderr == (
            "calico-exporter: error: invalid value for --kubeconfig "
            "(CALICO_EXPORTER_KUBECONFIG): no kubeconfig file at /nonexistent/kc\n")

    def test_broken_kubeconfig(self, tmp_path: Path) -> None:
        """A kubeconfig that does not parse as one is named in the error, exit 2."""
        path = tmp_path / "kubeconfig"
        path.write_text("apiVersion: v1\n")
        result = cli("cluster", "--listen", "127.0.0.1:0", "--kubeconfig", str(path))
        assert result.returncode == 2
        assert result.stderr.startswith(f"calico-exporter: error: invalid kubeconfig {path}: ")
        assert "Traceback" not in result.stderr


GARBAGE_KUBECONFIGS = [
    (b"- a\n", "not a YAML mapping"),
    (b"clusters: 5\n", "clusters must be a list of mappings with a name"),
    (b"contexts: [{context: {}}]\n", "contexts must be a list of mappings with a name"),
    (b"current-context: [x]\n", "current-context must be a string"),
    (b"{\n", "not valid YAML: expected the node content, but found '<stream end>' (line 2, "
              "column 1)"),
    (b"garbage: [\n\x00\xff", "not UTF-8 text (byte 12)"),
    (b"a: " + b"[" * 20_000 + b"]" * 20_000, "not valid YAML: nested too deeply"),
    (b"apiVersion: v1\ncurrent-context: x\n"
     b"contexts: [{name: x, context: {cluster: c, user: u}}]\n"
     b"clusters: [{name: c, cluster: {server: 'http://[::1'}}]\n"
     b"users: [{name: u, user: {token: t}}]\n",
     "server 'http://[::1' is not a URL: Invalid IPv6 URL"),
    (b"apiVersion: v1\ncurrent-context: x\n"
     b"contexts: [{name: x, context: {cluster: c, user: u}}]\n"
     b"clusters: [{name: c, cluster: {server: 'ftp://api'}}]\n"
     b"users: [{name: u, user: {token: t}}]\n",
     "server 'ftp://api' is not an http:// or https:// URL"),
    (b"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
     b"clusters: [{name: c, cluster: 5}]\nusers: [{name: u, user: 7}]\n",
     "malformed (TypeError: argument of type 'int' is not iterable)"),
]


@pytest.mark.parametrize(("content", "reason"), GARBAGE_KUBECONFIGS,
                         ids=[r.split(" ")[0] + str(i) for i, (_, r) in
                              enumerate(GARBAGE_KUBECONFIGS)])
async def test_garbage_kubeconfig_is_one_message(content: bytes, reason: str,
                                                 tmp_path: Path) -> None:
    """Issue 12: a kubeconfig of any garbage (not UTF-8, not YAML, nested too deep, the wrong
    shape, a server that is no URL) is one ConfigError naming the file and the reason, where
    kubernetes-asyncio raised TypeError or let the exporter run against no server."""
    from exporter.kube.client import client_configuration

    path = tmp_path / "kubeconfig"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        await client_configuration(config.KubeSettings(kubeconfig=str(path)), environ={})
    assert str(info.value) == f"invalid kubeconfig {path}: {reason}"


def test_garbage_kubeconfig_at_startup(tmp_path: Path) -> None:
    """The cluster role started with such a kubeconfig prints that one line and exits 2."""
    path = tmp_path / "kubeconfig"
    path.write_bytes(GARBAGE_KUBECONFIGS[0][0])
    result = cli("cluster", "--listen", "127.0.0.1:0", "--kubeconfig", str(path))
    assert result.returncode == 2
    assert result.stderr == (f"calico-exporter: error: invalid kubeconfig {path}: "
                             "not a YAML mapping\n")


class TestListen:
    @pytest.mark.parametrize(("text", "host", "port"), [
        (":9808", "", 9808), ("0.0.0.0:9808", "0.0.0.0", 9808), ("[::1]:9808", "::1", 9808),
        ("localhost:80", "localhost", 80), ("[fd00::1]:0", "fd00::1", 0),
    ])
    def test_listen_forms(self, text: str, host: str, port: int) -> None:
        """--listen takes :port (every interface), host:port and [IPv6]:port."""
        assert config.split_listen(text) == (host, port)
        assert config.load(flags={"listen": text}).server.listen == text

    @pytest.mark.parametrize("text", ["9808", "::1:9808", "[::1]", "host:", "host:99999",
                                      "[]:80", "[1.2.3.4]:80"])
    def test_bad_listen(self, text: str) -> None:
        """Anything else is refused with the flag's name."""
        with pytest.raises(ConfigError, match=r"^invalid value for --listen"):
            config.load(flags={"listen": text})

    def test_serves_on_every_interface(self) -> None:
        """A node exporter started with --listen :PORT answers on 127.0.0.1:PORT."""
        import socket
        import time
        import urllib.request

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        full = {k: v for k, v in os.environ.items() if not k.startswith("CALICO_EXPORTER_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "node", "--node-name", "n1", "--listen",
             f":{port}", "--bird-socket", "/nonexistent/bird.ctl"],
            env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                                timeout=2) as resp:
                        assert resp.status == 200
                        break
                except OSError:
                    assert proc.poll() is None
                    assert time.monotonic() < deadline, "never answered"
                    time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def test_address_in_use(self) -> None:
        """A listen address already taken is one exact message and exit 2."""
        import socket

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = cli("node", "--node-name", "n1", "--listen", f"127.0.0.1:{port}",
                         "--bird-socket", "/nonexistent/bird.ctl")
        assert result.returncode == 2
        assert result.stderr.startswith(
            "calico-exporter: error: invalid value for --listen (CALICO_EXPORTER_LISTEN): "
            f"cannot listen on 127.0.0.1:{port}: ")
