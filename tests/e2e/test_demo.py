"""`calico-exporter demo` as a newcomer runs it: a real process, real HTTP, real kubectl."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.lab import Samples, parse_samples, value

MASTER = "nke-dev01-89e792-master-0"
WORKER0 = "nke-dev01-89e792-worker-0"
WORKER1 = "nke-dev01-89e792-worker-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    def __init__(self, proc: subprocess.Popen[str], port: int, banner: str) -> None:
        self.proc, self.port, self.banner = proc, port, banner

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_for(self, predicate: object, *, timeout: float = 30.0) -> Samples:
        deadline = time.monotonic() + timeout
        while True:
            status, text = self.get("/metrics")
            samples = parse_samples(text) if status == 200 else {}
            if samples and predicate(samples):  # type: ignore[operator]
                return samples
            assert time.monotonic() < deadline, "demo never showed the expected numbers"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    """`calico-exporter demo` on free loopback ports, with a 1 s CalicoNodeStatus period."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALICO_EXPORTER_")}
    env.update(CALICO_EXPORTER_LISTEN=f"127.0.0.1:{port}",
               CALICO_EXPORTER_APISERVER_LISTEN=f"127.0.0.1:{free_port()}",
               CALICO_EXPORTER_NODE_STATUS_UPDATE_PERIOD="1",
               CALICO_EXPORTER_LOG_FORMAT="json")
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "demo"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while "Stop with Ctrl-C." not in "".join(lines):
        assert proc.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "".join(lines)
        lines.append(proc.stdout.readline())
    try:
        yield Demo(proc, port, "".join(lines))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_write_up_numbers(demo: Demo) -> None:
    """The demo serves the write-up's BGP, IPAM and policy numbers for nke-lab."""
    got = demo.wait_for(lambda s: value(s, "calico_bgp_peers", node=MASTER, ip_version="4",
                                        state="established") == 2)
    assert value(got, "calico_bgp_routes", node=MASTER, ip_version="4", type="FIB",
                 source_type="NodeMesh") == 2
    assert {dict(lbl)["peer_ip"] for (n, lbl) in got
            if n == "calico_bgp_peer_up" and ("node", MASTER) in lbl} == {
        "192.168.102.103", "192.168.102.104"}
    assert value(got, "calico_ippool_size_addresses", pool="default-ipv4-ippool") == 65536
    blocks = {(dict(lbl)["block"], dict(lbl)["node"]): v for (n, lbl), v in got.items()
              if n == "calico_ipam_block_allocated_addresses"}
    assert blocks[("172.20.116.128/26", WORKER1)] == 11
    assert blocks[("172.20.188.64/26", WORKER0)] == 9
    assert value(got, "calico_network_policy_selected_pods", kind="k8s", namespace="guestbook",
                 policy="mypolicy") == 5
    assert value(got, "calico_pods_isolated", namespace="guestbook", direction="ingress") == 5
    assert value(got, "calico_pods_isolated", namespace="guestbook", direction="egress") == 5
    assert value(got, "calico_pods_not_isolated", namespace="testns", direction="ingress") == 1


def test_banner_commands_work_with_kubectl(demo: Demo) -> None:
    """The kubectl commands the demo prints run against the simulated lab."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not on PATH")
    commands = re.findall(r"^\s+(kubectl --kubeconfig .+)$", demo.banner, re.M)
    assert len(commands) == 3
    outputs = [subprocess.run(cmd.split(), capture_output=True, text=True, timeout=30,
                              check=True).stdout for cmd in commands]
    assert "cidr: 172.20.0.0/16" in outputs[0]
    assert "numberEstablishedV4: 2" in outputs[1]
    assert "frontend-795b566649-4zkqc" in outputs[2]
    assert "172.20.116.140" in outputs[2]


def test_promtool_check_metrics(demo: Demo) -> None:
    """promtool finds nothing to report on the demo's whole exposition."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make test installs Debian prometheus)")
    demo.wait_for(lambda s: value(s, "calico_bgp_peers", node=MASTER, ip_version="4",
                                  state="established") == 2)
    _, text = demo.get("/metrics")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_openmetrics(demo: Demo) -> None:
    """With an OpenMetrics Accept header /metrics answers in OpenMetrics, ending in # EOF."""
    req = urllib.request.Request(f"http://127.0.0.1:{demo.port}/metrics",
                                 headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert resp.read().decode().endswith("# EOF\n")


def test_bad_config_exit_code(tmp_path: Path) -> None:
    """A bad setting stops the demo before it starts, with one message and exit code 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALICO_EXPORTER_")}
    env["CALICO_EXPORTER_SCENARIO"] = str(tmp_path / "missing.yaml")
    result = subprocess.run([sys.executable, "-m", "exporter", "demo", "--listen",
                             f"127.0.0.1:{free_port()}", "--apiserver-listen",
                             f"127.0.0.1:{free_port()}"], env=env, capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "calico-exporter: error: invalid value for --scenario (CALICO_EXPORTER_SCENARIO): "
        "cannot read scenario")


def test_probe_agent(demo: Demo) -> None:
    """The demo's probe agent reports every probe matched, the expected deny included."""
    got = demo.wait_for(lambda s: len([k for k in s if k[0] == "calico_probe_success"]) == 4)
    success = {dict(lbl)["probe"]: v for (n, lbl), v in got.items() if n == "calico_probe_success"}
    assert success == {"frontend-http": 1, "redis-tcp": 1, "frontend-dns": 1, "blocked-port": 1}
    assert value(got, "calico_probe_outcome", probe="blocked-port", source_namespace="demo",
                 protocol="tcp", expect="deny", outcome="refused") == 1


def test_goldmane_flow_families(demo: Demo) -> None:
    """The demo's exporter reads its Goldmane stand-in over mutual TLS: the lab's verdicts show
    per policy (testns allowed into guestbook by mypolicy, the rest of guestbook's ingress denied
    at the end of the default tier, egress to 8.0.0.0/8 denied by custom-deny-egress), the staged
    lockdown would deny the allowed testns traffic, and the namespace pairs are on."""
    def ready(s: Samples) -> bool:
        return bool(value(s, "calico_policy_staged_flow_changed_connections_total",
                          tier="default", kind="staged-calico", namespace="guestbook",
                          policy="lockdown-guestbook", action="deny", direction="ingress"))

    got = demo.wait_for(ready, timeout=90)
    flow = "calico_policy_flow_connections_total"
    assert value(got, flow, tier="default", kind="k8s", namespace="guestbook", policy="mypolicy",
                 action="allow", direction="ingress")
    assert value(got, flow, tier="default", kind="k8s", namespace="guestbook",
                 policy="__end_of_tier__", action="deny", direction="ingress")
    assert value(got, flow, tier="default", kind="calico", namespace="guestbook",
                 policy="custom-deny-egress", action="deny", direction="egress")
    assert value(got, "calico_policy_flow_bytes_total", tier="", kind="profile", namespace="",
                 policy="__profile__", action="allow", direction="ingress")
    assert value(got, "calico_namespace_flow_connections_total", source_namespace="testns",
                 destination_namespace="guestbook", action="allow")
    assert value(got, "calico_exporter_source_up", source="goldmane") == 1
    assert value(got, "calico_exporter_goldmane_flows_received_total")


def test_sigterm_exits_cleanly_within_2s(demo: Demo) -> None:
    """SIGTERM stops the demo (exporter, agent, emulator) cleanly in under 2 s, exit code 0."""
    demo.wait_for(lambda s: True)
    started = time.monotonic()
    demo.proc.send_signal(signal.SIGTERM)
    code = demo.proc.wait(timeout=10)
    assert code == 0
    assert time.monotonic() - started < 2.0
