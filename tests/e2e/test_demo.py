"""`calico-exporter demo` as a newcomer runs it: a real process, real HTTP, real kubectl."""

from __future__ import annotations

import contextlib
import json
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
import yaml

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
        self.kubeconfig = re.search(r"kubeconfig: (\S+)\)", banner).group(1)  # type: ignore[union-attr]
        self.node_ports = {m.group(2): int(m.group(1)) for m in re.finditer(
            r"http://127\.0\.0\.1:(\d+)/metrics  \((\S+)\)", banner)}

    def get(self, path: str, port: int | None = None) -> tuple[int, str]:
        url = f"http://127.0.0.1:{port or self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def kubectl(self, *args: str) -> str:
        return subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args],
                              capture_output=True, text=True, timeout=30, check=True).stdout

    def wait_for(self, predicate: object, *, timeout: float = 30.0,
                 port: int | None = None) -> Samples:
        deadline = time.monotonic() + timeout
        while True:
            status, text = self.get("/metrics", port)
            samples = parse_samples(text) if status == 200 else {}
            if samples and predicate(samples):  # type: ignore[operator]
                return samples
            assert time.monotonic() < deadline, "demo never showed the expected numbers"
            time.sleep(0.2)


@contextlib.contextmanager
def running_demo(*args: str) -> Iterator[Demo]:
    """`calico-exporter demo ARGS` on free loopback ports, with a 1 s CalicoNodeStatus period."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALICO_EXPORTER_")}
    env.update(CALICO_EXPORTER_LISTEN=f"127.0.0.1:{port}",
               CALICO_EXPORTER_APISERVER_LISTEN=f"127.0.0.1:{free_port()}",
               CALICO_EXPORTER_NODE_LISTEN="127.0.0.1:0",
               CALICO_EXPORTER_NODE_STATUS_UPDATE_PERIOD="1",
               CALICO_EXPORTER_LOG_FORMAT="json")
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "demo", *args], env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    try:
        while "Stop with Ctrl-C." not in "".join(lines):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            lines.append(proc.stdout.readline())
        yield Demo(proc, port, "".join(lines))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    """The default demo (Calico's data in crd.projectcalico.org/v1)."""
    with running_demo() as running:
        yield running


def kubectl_outputs(demo: Demo) -> list[str]:
    """The output of each kubectl command of the demo's banner that looks at the cluster."""
    commands = re.findall(r"^\s+(kubectl --kubeconfig \S+ get .+)$", demo.banner, re.M)
    assert len(commands) == 6
    return [subprocess.run(cmd.split(), capture_output=True, text=True, timeout=30,
                           check=True).stdout for cmd in commands]


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
                 policy="mypolicy", tier="default") == 5
    assert value(got, "calico_network_policy_tiers", tier="security", order="100") == 1
    assert value(got, "calico_network_policy_staged_enforced_pods", kind="staged",
                 namespace="guestbook", policy="default-allow-egress", tier="default",
                 action="Delete") == 5
    assert value(got, "calico_pods_isolated", namespace="guestbook", direction="ingress") == 5
    assert value(got, "calico_pods_isolated", namespace="guestbook", direction="egress") == 5
    assert value(got, "calico_pods_not_isolated", namespace="testns", direction="ingress") == 1


def test_banner_commands_work_with_kubectl(demo: Demo) -> None:
    """The kubectl commands the demo prints to look at the cluster run against it."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not on PATH")
    outputs = kubectl_outputs(demo)
    assert "cidr: 172.20.0.0/16" in outputs[0]
    assert "numberEstablishedV4: 2" in outputs[1]
    assert "frontend-795b566649-4zkqc" in outputs[2]
    assert "172.20.116.140" in outputs[2]
    assert "name: kube-baseline" in outputs[3]
    assert "default-allow-egress" in outputs[4]
    header, row = outputs[5].splitlines()[:2]
    assert header.split() == ["NAME", "TIER", "PRIORITY", "AGE"]
    assert row.split()[:3] == ["kube-system-internal", "Admin", "10"]


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


def _taken_after_a_free_port() -> socket.socket:
    """A listening socket on a port whose predecessor is free (so the demo's second node-mode
    endpoint is the one that fails)."""
    while True:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        with socket.socket() as before:
            try:
                before.bind(("127.0.0.1", taken.getsockname()[1] - 1))
            except OSError:
                taken.close()
                continue
        taken.listen()
        return taken


def test_node_listen_in_use_exit_code() -> None:
    """A node-mode port of the demo already taken stops it with one message naming
    --node-listen, exit code 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALICO_EXPORTER_")}
    with _taken_after_a_free_port() as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "exporter", "demo", "--listen", f"127.0.0.1:{free_port()}",
             "--apiserver-listen", f"127.0.0.1:{free_port()}", "--node-listen",
             f"127.0.0.1:{port - 1}"], env=env, capture_output=True, text=True, timeout=60,
            check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "calico-exporter: error: invalid value for --node-listen (CALICO_EXPORTER_NODE_LISTEN): "
        f"cannot listen on 127.0.0.1:{port}: ")


def test_probe_agent(demo: Demo) -> None:
    """The demo's probe agent reports every probe matched, the expected deny included."""
    got = demo.wait_for(lambda s: len([k for k in s if k[0] == "calico_probe_success"]) == 4)
    success = {dict(lbl)["probe"]: v for (n, lbl), v in got.items() if n == "calico_probe_success"}
    assert success == {"frontend-http": 1, "redis-tcp": 1, "frontend-dns": 1, "blocked-port": 1}
    assert value(got, "calico_probe_outcome", probe="blocked-port", source_namespace="demo",
                 protocol="tcp", expect="deny", outcome="refused") == 1


def test_banner_explains_without_outside_documents(demo: Demo) -> None:
    """The banner says what runs (the cluster, node mode per node, the probe agent), the
    flapping session and the leak after the grace period, and refers to nothing outside the
    repository."""
    text = demo.banner
    for needed in ("BGP full mesh", "node mode for each node", "flap", "--leak-grace-period",
                   "calico_ipam_leaked_addresses", "selects no pod"):
        assert needed in text, needed
    assert "write-up" not in text
    assert "seed" not in text
    assert set(demo.node_ports) == {MASTER, WORKER0, WORKER1}


def test_node_mode_per_node(demo: Demo) -> None:
    """Each node's node-mode endpoint serves that node's BGP from its simulated BIRD socket:
    per-peer routes and state-change times, which only node mode has."""
    for node, port in demo.node_ports.items():
        got = demo.wait_for(lambda s, n=node: value(  # type: ignore[misc]
            s, "calico_bird_ready", node=n, ip_version="4") == 1, port=port)
        peers = {dict(lbl)["peer_ip"] for (n, lbl) in got
                 if n == "calico_bgp_peer_state_change_timestamp_seconds"}
        assert len(peers) == 2
        routes = {(dict(lbl)["peer_ip"], dict(lbl)["direction"]): v for (n, lbl), v in got.items()
                  if n == "calico_bgp_peer_routes"}
        assert set(routes) == {(p, d) for p in peers for d in ("imported", "exported")}
        assert all(v == 1 for v in routes.values()), routes
        assert {dict(lbl)["node"] for (n, lbl) in got if n.startswith("calico_bgp")} == {node}
        assert value(got, "calico_exporter_source_up", source="bird") == 1


def test_network_sets_and_a_policy_that_selects_nothing(demo: Demo) -> None:
    """The demo has a NetworkSet, a GlobalNetworkSet and a policy whose selector matches no pod."""
    got = demo.wait_for(lambda s: value(s, "calico_network_sets", kind="global",
                                        namespace="") == 1)
    assert value(got, "calico_network_sets", kind="calico", namespace="default") == 1
    assert value(got, "calico_network_policy_selected_pods", kind="k8s", namespace="default",
                 policy="allow-web-to-testpod", tier="default") == 0


def test_process_metrics(demo: Demo) -> None:
    """The demo serves prometheus-client's process_* and python_gc_* families, main endpoint
    and node-mode endpoints alike."""
    for port in [demo.port, *demo.node_ports.values()]:
        got = demo.wait_for(lambda s: True, port=port)
        assert (value(got, "process_resident_memory_bytes") or 0) > 0
        assert value(got, "process_start_time_seconds") is not None
        assert value(got, "python_gc_collections_total", generation="0") is not None


def _ip(demo: Demo, name: str, namespace: str = "default") -> tuple[str, str]:
    deadline = time.monotonic() + 20
    while True:
        pod = yaml.safe_load(demo.kubectl("get", "pod", name, "-n", namespace, "-o", "yaml"))
        ip = (pod.get("status") or {}).get("podIP")
        if ip:
            return ip, pod["spec"]["nodeName"]
        assert time.monotonic() < deadline, f"pod {name} never got an address"
        time.sleep(0.2)


def test_kubectl_run_gets_an_address(demo: Demo) -> None:
    """A pod created with kubectl is scheduled, gets an address from the pool and runs; the
    IPAM numbers and workload endpoints of its node go up by one."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not on PATH")
    before = demo.wait_for(lambda s: value(s, "calico_workload_endpoints", node=WORKER0) == 9)
    demo.kubectl("run", "nc-run", "--image=busybox", "--overrides",
                 json.dumps({"spec": {"nodeName": WORKER0}}))
    ip, node = _ip(demo, "nc-run")
    assert node == WORKER0
    assert ip.startswith("172.20.188.")  # worker-0's block 172.20.188.64/26
    got = demo.wait_for(lambda s: value(s, "calico_workload_endpoints", node=WORKER0) == 10)
    pool = "default-ipv4-ippool"
    assert value(got, "calico_ipam_node_allocated_addresses", node=WORKER0, pool=pool) == (
        value(before, "calico_ipam_node_allocated_addresses", node=WORKER0, pool=pool) or 0) + 1
    assert "1/1     Running" in demo.kubectl("get", "pod", "nc-run")


def test_unscheduled_pod_is_scheduled(demo: Demo) -> None:
    """A pod without nodeName is put on a node by the demo's scheduler and gets an address
    from that node's block."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not on PATH")
    demo.kubectl("run", "web", "--image=nginx")
    ip, node = _ip(demo, "web")
    assert node in {MASTER, WORKER0, WORKER1}
    block = {MASTER: "172.20.85.", WORKER0: "172.20.188.", WORKER1: "172.20.116."}[node]
    assert ip.startswith(block)


@pytest.mark.parametrize(("flavour", "group"), [("v3", "projectcalico.org"),
                                               ("both", "crd.projectcalico.org")])
def test_calico_api_flavours(flavour: str, group: str) -> None:
    """`demo --calico-api v3|both`: the simulated cluster writes where Calico's data is, the
    exporter discovers that group (v1 when the Calico API server's v3 is also served) and serves
    the write-up's numbers, the demo's network sets are there, node mode runs per node from the
    simulated BIRD sockets, the banner's kubectl commands read that group, a pod created
    with kubectl gets an address from the IPAM in that group, and the Goldmane stand-in's flows
    (traced from that group's policies, staged ones included) join the policy series."""
    with running_demo("--calico-api", flavour, "--flap-interval", "0") as running:
        got = running.wait_for(lambda s: value(s, "calico_bgp_peers", node=MASTER,
                                               ip_version="4", state="established") == 2
                               and value(s, "calico_network_sets", kind="global",
                                         namespace="") == 1)
        version = "v3" if group == "projectcalico.org" else "v1"
        assert value(got, "calico_exporter_calico_api_info", group=group, version=version) == 1
        assert value(got, "calico_network_policy_selected_pods", kind="k8s",
                     namespace="guestbook", policy="mypolicy", tier="default") == 5
        assert value(got, "calico_network_policy_tiers", tier="security", order="100") == 1
        assert value(got, "calico_network_policy_staged_enforced_pods", kind="staged",
                     namespace="guestbook", policy="default-allow-egress", tier="default",
                     action="Delete") == 5
        assert value(got, "calico_network_sets", kind="calico", namespace="default") == 1
        assert f"ippools.{group} " in running.banner
        assert f"tiers.{group} " in running.banner
        assert set(running.node_ports) == {MASTER, WORKER0, WORKER1}
        for node, port in running.node_ports.items():
            node_got = running.wait_for(lambda s, n=node: value(  # type: ignore[misc]
                s, "calico_bird_ready", node=n, ip_version="4") == 1, port=port)
            assert len([k for k in node_got
                        if k[0] == "calico_bgp_peer_state_change_timestamp_seconds"]) == 2
        if shutil.which("kubectl") is not None:
            outputs = kubectl_outputs(running)
            assert f"apiVersion: {group}/{version}" in outputs[0]
            assert "numberEstablishedV4: 2" in outputs[1]
            assert "name: kube-baseline" in outputs[3]
            assert "default-allow-egress" in outputs[4]
            pool = "default-ipv4-ippool"
            before = value(got, "calico_ipam_node_allocated_addresses", node=WORKER0,
                           pool=pool) or 0
            running.kubectl("run", "nc-run", "--image=busybox", "--overrides",
                            json.dumps({"spec": {"nodeName": WORKER0}}))
            ip, _ = _ip(running, "nc-run")
            assert ip.startswith("172.20.188.")  # worker-0's block 172.20.188.64/26
            running.wait_for(lambda s: value(s, "calico_ipam_node_allocated_addresses",
                                             node=WORKER0, pool=pool) == before + 1)
        flows = running.wait_for(would_deny, timeout=90)
        assert joined_kinds(flows) == {"k8s", "calico", "global", "cluster", "staged"}


FLOW_FAMILIES = ("calico_policy_flow_connections_total",
                 "calico_policy_staged_flow_connections_total",
                 "calico_policy_staged_flow_changed_connections_total")
JOIN = ("kind", "namespace", "tier", "policy")


def would_deny(s: Samples) -> bool:
    """The staged lockdown of the demo's guestbook would deny testns's allowed traffic."""
    return bool(value(s, "calico_policy_staged_flow_changed_connections_total",
                      tier="default", kind="staged", namespace="guestbook",
                      policy="lockdown-guestbook", action="deny", direction="ingress"))


def joined_kinds(got: Samples) -> set[str]:
    """The join of the flow families with calico_network_policy_selected_pods on
    {kind,namespace,tier,policy}: every flow series that names a policy finds its policy series
    (asserted); the kinds joined."""
    policies = {tuple(dict(lbl)[k] for k in JOIN) for (n, lbl) in got
                if n == "calico_network_policy_selected_pods"}
    named = {tuple(dict(lbl)[k] for k in JOIN) for (n, lbl) in got
             if n in FLOW_FAMILIES and not dict(lbl)["policy"].startswith("__")}
    assert named, "no flow series names a policy"
    assert named <= policies, sorted(named - policies)
    return {kind for kind, _, _, _ in named}


def test_goldmane_flow_families(demo: Demo) -> None:
    """The demo's exporter reads its Goldmane stand-in over mutual TLS: the lab's verdicts show
    per policy (testns allowed into guestbook by mypolicy, the rest of guestbook's ingress denied
    at the end of the default tier, egress to 8.0.0.0/8 denied by custom-deny-egress, DNS allowed
    by the security tier's allow-dns, kube-system's own DNS accepted by the kube-admin tier's
    ClusterNetworkPolicy), the demo's staged lockdown would deny the allowed testns traffic and
    the scenario's staged frontend-ingress would allow what is denied, and the namespace pairs
    are on."""
    got = demo.wait_for(would_deny, timeout=90)
    flow = "calico_policy_flow_connections_total"
    assert value(got, flow, tier="default", kind="k8s", namespace="guestbook", policy="mypolicy",
                 action="allow", direction="ingress")
    assert value(got, flow, tier="default", kind="k8s", namespace="guestbook",
                 policy="__end_of_tier__", action="deny", direction="ingress")
    assert value(got, flow, tier="default", kind="calico", namespace="guestbook",
                 policy="custom-deny-egress", action="deny", direction="egress")
    assert value(got, flow, tier="security", kind="global", namespace="",
                 policy="security.allow-dns", action="allow", direction="egress")
    assert value(got, flow, tier="kube-admin", kind="cluster", namespace="",
                 policy="kube-system-internal", action="allow", direction="ingress")
    assert value(got, "calico_policy_staged_flow_changed_connections_total", tier="default",
                 kind="staged", namespace="guestbook", policy="frontend-ingress",
                 action="allow", direction="ingress")
    assert value(got, "calico_policy_flow_bytes_total", tier="", kind="profile", namespace="",
                 policy="__profile__", action="allow", direction="ingress")
    assert value(got, "calico_namespace_flow_connections_total", source_namespace="testns",
                 destination_namespace="guestbook", action="allow")
    assert value(got, "calico_exporter_source_up", source="goldmane") == 1
    assert value(got, "calico_exporter_goldmane_flows_received_total")


def test_flow_series_join_the_policy_series(demo: Demo) -> None:
    """Every flow series that names a policy has the kind, namespace, tier and policy of that
    policy's calico_network_policy_selected_pods series, for every kind the demo's traffic
    meets (Kubernetes, Calico, global in tier security, ClusterNetworkPolicy, staged)."""
    got = demo.wait_for(would_deny, timeout=90)
    assert joined_kinds(got) == {"k8s", "calico", "global", "cluster", "staged"}


def test_sigterm_exits_cleanly_within_2s(demo: Demo) -> None:
    """SIGTERM stops the demo (exporter, agent, emulator) cleanly in under 2 s, exit code 0
    (the module's last test: it stops the demo the others use)."""
    demo.wait_for(lambda s: True)
    started = time.monotonic()
    demo.proc.send_signal(signal.SIGTERM)
    code = demo.proc.wait(timeout=10)
    assert code == 0
    assert time.monotonic() - started < 2.0
