"""The command line: settings from flags, env and file; exact errors with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exporter import config
from exporter.config import ConfigError


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CALICO_EXPORTER_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True,
                          text=True, env=full, timeout=30, check=False)


class TestCheckConfig:
    def test_valid(self) -> None:
        """check-config prints the effective settings and exits 0."""
        result = cli("check-config", "--listen", "127.0.0.1:9999",
                     env={"CALICO_EXPORTER_NODE_STATUS_UPDATE_PERIOD": "60"})
        assert result.returncode == 0, result.stderr
        assert "listen: 127.0.0.1:9999" in result.stdout
        assert "node_status_update_period: 60" in result.stdout

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"CALICO_EXPORTER_LISTEN": "nowhere"},
             "invalid value for --listen (CALICO_EXPORTER_LISTEN): 'nowhere' is not host:port"),
            ({"CALICO_EXPORTER_WATCH_TIMEOUT": "soon"},
             "invalid value for --watch-timeout (CALICO_EXPORTER_WATCH_TIMEOUT): "
             "'soon' is not a duration like 30s, 2m or 500ms"),
            ({"CALICO_EXPORTER_MANAGE_NODE_STATUS": "maybe"},
             "invalid value for --manage-node-status (CALICO_EXPORTER_MANAGE_NODE_STATUS): "
             "'maybe' is not a boolean (true or false)"),
            ({"CALICO_EXPORTER_NODE_STATUS_CLASSES": "BGP,Peers"},
             "invalid value for --node-status-classes (CALICO_EXPORTER_NODE_STATUS_CLASSES): "
             "classes must be a non-empty list of Agent, BGP, Routes"),
            ({"CALICO_EXPORTER_NODE_STATUS_UPDATE_PERIOD": "90000"},
             "invalid value for --node-status-update-period "
             "(CALICO_EXPORTER_NODE_STATUS_UPDATE_PERIOD): must be between 0 and 86400"),
            ({"CALICO_EXPORTER_CALICO_API_GROUP": "projectcalico.org/v1"},
             "invalid value for --calico-api-group (CALICO_EXPORTER_CALICO_API_GROUP): "
             "'projectcalico.org/v1' is not one of auto, crd.projectcalico.org/v1, "
             "projectcalico.org/v3"),
            ({"CALICO_EXPORTER_CALICO_API": "v2"},
             "invalid value for --calico-api (CALICO_EXPORTER_CALICO_API): 'v2' is not one of "
             "v1, v3, both"),
        ],
    )
    def test_bad_env(self, env: dict[str, str], message: str) -> None:
        """A bad value prints one exact message and exits 2."""
        result = cli("check-config", env=env)
        assert result.returncode == 2
        assert result.stderr == f"calico-exporter: error: {message}\n"

    def test_unknown_key_in_file(self, tmp_path: Path) -> None:
        """An unknown key in the config file is named in the error."""
        path = tmp_path / "c.yaml"
        path.write_text("listen: 127.0.0.1:1\nlisten_port: 3\n")
        result = cli("check-config", "--config-file", str(path))
        assert result.returncode == 2
        assert result.stderr == (
            f"calico-exporter: error: config file {path}: unknown setting 'listen_port'\n")

    def test_bad_config_at_startup(self) -> None:
        """Any role with a bad setting exits 2 before doing anything."""
        result = cli("cluster", "--backoff-max=-3s")
        assert result.returncode == 2
        assert "invalid value for --backoff-max" in result.stderr


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

    def test_durations(self) -> None:
        """Durations accept ms, s, m, h and plain seconds."""
        assert [config.parse_duration(t) for t in ("500ms", "30s", "2m", "1h", "1.5")] == [
            0.5, 30.0, 120.0, 3600.0, 1.5]
        with pytest.raises(ValueError, match="not a duration"):
            config.parse_duration("3 days")

    def test_unreadable_file(self, tmp_path: Path) -> None:
        """A missing config file is an exact error."""
        with pytest.raises(ConfigError, match="cannot read config file"):
            config.load(config_file=str(tmp_path / "missing.yaml"))


class TestHelp:
    def test_every_option_documented(self) -> None:
        """--help of check-config shows every option with its env var and a docstring."""
        result = cli("check-config", "--help")
        assert result.returncode == 0
        text = " ".join(result.stdout.split())
        for opt in config.options():
            assert opt.flag in text
            assert opt.env in text
            assert opt.help, f"{opt.name} has no docstring"


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

    def test_parse_error(self) -> None:
        """A parse error is printed with its position on stderr, exit 2."""
        result = cli("selector", "app == 'x' &")
        assert result.returncode == 2
        assert result.stdout == ""
        assert "error:" in result.stderr
        assert result.stderr.splitlines()[-1].strip() == "^"


class TestProbeConfigCheck:
    def test_bad_probe_config(self) -> None:
        """check-config validates the probe config: each problem on its own line, exit 2."""
        path = Path(__file__).parent / "probes/testdata/invalid/attempts_do_not_fit.yaml"
        result = cli("check-config", "--probe-config", str(path))
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert lines
        assert all(line.startswith(f"calico-exporter: error: probe config {path}: ")
                   for line in lines)

    def test_good_probe_config(self) -> None:
        """The sample probe config of deploy/ passes check-config."""
        path = Path(__file__).parents[1] / "deploy" / "probes.yaml"
        result = cli("check-config", "--probe-config", str(path))
        assert result.returncode == 0, result.stderr


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


class TestListen:
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
