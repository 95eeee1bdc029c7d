"""The write-up's checks rebuilt in network namespaces, with nftables rules as the policy.

Topology (every address in 198.18.0.0/15; nothing leaves these namespaces)::

    a "testns"    198.18.1.2 --+
    b "default"   198.18.2.2 --+-- rtr (nftables = the policy) -- dst 198.18.3.2 (HTTP :8080)
    c "guestbook" 198.18.4.2 --+                                  198.18.3.3

Policy in rtr's forward hook: b -> 198.18.3.2:8080 dropped; echo requests to 198.18.3.3 dropped;
198.18.3.2:8081 rejected with a TCP reset, :8082 with ICMP admin-prohibited; 198.18.3.4 rejected
with ICMP host-unreachable. Each agent is the real probe agent run with ``ip netns exec`` in its
source namespace; the test reads its /metrics over a Unix socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.probes.scrape import Series, parse, value

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
LEAVES = {  # role: (address, gateway)
    "a": ("198.18.1.2", "198.18.1.1"),
    "b": ("198.18.2.2", "198.18.2.1"),
    "c": ("198.18.4.2", "198.18.4.1"),
    "dst": ("198.18.3.2", "198.18.3.1"),
}
POLICY = """
table inet netpolicy {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ip saddr 198.18.2.0/24 ip daddr 198.18.3.2 tcp dport 8080 drop comment "default-to-frontend"
    ip daddr 198.18.3.3 icmp type echo-request drop
    ip daddr 198.18.3.2 tcp dport 8081 reject with tcp reset
    ip daddr 198.18.3.2 tcp dport 8082 reject with icmp type admin-prohibited
    ip daddr 198.18.3.4 reject with icmp type host-unreachable
  }
}
"""
RESTORE_DROP = ('insert rule inet netpolicy forward ip saddr 198.18.2.0/24 ip daddr 198.18.3.2 '
                'tcp dport 8080 drop comment "default-to-frontend"\n')


def run(*cmd: str, check: bool = True) -> str:
    """Run a command, return its stdout; CalledProcessError (with stderr) on failure."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, cmd, done.stdout, done.stderr)
    return done.stdout


@dataclass
class Lab:
    """The namespaces, their names by role, and the processes started in them."""

    ns: dict[str, str]
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def exec(self, role: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns[role], *cmd]

    def nft(self, *args: str) -> str:
        return run(*self.exec("rtr", "nft", *args))


def _build(lab: Lab, suffix: str) -> None:
    rtr = lab.ns["rtr"]
    run("ip", "-n", rtr, "link", "set", "lo", "up")
    run(*lab.exec("rtr", "sysctl", "-qw", "net.ipv4.ip_forward=1"))
    for role, (address, gateway) in LEAVES.items():
        leaf, inner, outer = lab.ns[role], f"v{role}{suffix}", f"r{role}{suffix}"
        run("ip", "link", "add", inner, "netns", leaf, "type", "veth", "peer", "name", outer,
            "netns", rtr)
        run("ip", "-n", leaf, "link", "set", "lo", "up")
        run("ip", "-n", leaf, "addr", "add", f"{address}/24", "dev", inner)
        run("ip", "-n", leaf, "link", "set", inner, "up")
        run("ip", "-n", leaf, "route", "add", "default", "via", gateway)
        run("ip", "-n", rtr, "addr", "add", f"{gateway}/24", "dev", outer)
        run("ip", "-n", rtr, "link", "set", outer, "up")
    run("ip", "-n", lab.ns["dst"], "addr", "add", "198.18.3.3/24", "dev", f"vdst{suffix}")
    run(*lab.exec("c", "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"))
    (lab.tmp / "policy.nft").write_text(POLICY)
    lab.nft("-f", str(lab.tmp / "policy.nft"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The namespaces, veths, routes, nftables policy and the HTTP target; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("network-namespace tests need root")
    if shutil.which("ip") is None or shutil.which("nft") is None:
        pytest.skip("network-namespace tests need iproute2 and nftables")
    suffix = secrets.token_hex(2)
    lab = Lab({role: f"cxp{suffix}{role}" for role in ("rtr", *LEAVES)},
              tmp_path_factory.mktemp("netns"))
    created: list[str] = []
    try:
        for name in lab.ns.values():
            try:
                run("ip", "netns", "add", name)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"ip netns add does not work here: {exc.stderr.strip()}")
            created.append(name)
        _build(lab, suffix)
        www = lab.tmp / "www"
        www.mkdir()
        (www / "index.html").write_text("<title>Guestbook</title>\n")
        lab.procs.append(subprocess.Popen(
            lab.exec("dst", sys.executable, "-m", "http.server", "8080", "--bind", "198.18.3.2",
                     "--directory", str(www)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(200):
            if "198.18.3.2:8080" in run(*lab.exec("dst", "ss", "-ltnH")):
                break
            subprocess.run(["sleep", "0.05"], check=True)
        else:
            pytest.fail("the HTTP target did not start")
        yield lab
    finally:
        for proc in lab.procs:
            proc.terminate()
            proc.wait(timeout=10)
        for name in created:
            run("ip", "netns", "del", name, check=False)


@dataclass
class Agent:
    """A probe agent process inside one namespace."""

    proc: asyncio.subprocess.Process
    socket: Path
    log: Path

    async def scrape(self) -> Series:
        connector = aiohttp.UnixConnector(path=str(self.socket))
        async with aiohttp.ClientSession(connector=connector) as session, \
                session.get("http://agent/metrics") as response:
            return parse(await response.text())

    async def wait_runs(self, probe: str, count: int, *, limit: float = 30.0) -> Series:
        """Scrape until ``probe`` has completed ``count`` runs (a hang guard after limit)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            series = await self.scrape()
            if runs(series, probe) >= count:
                return series
            assert loop.time() < deadline, f"{probe} never reached {count} runs"
            assert self.proc.returncode is None, self.log.read_text()
            await asyncio.sleep(0.1)

    def events(self, probe: str) -> list[dict[str, object]]:
        """The agent's probe_verdict log events for one probe."""
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == "probe_verdict" and event.get("probe") == probe:
                    out.append(event)
        return out


def runs(series: Series, probe: str) -> float:
    """Completed runs of a probe, all results."""
    return sum(v for (name, labels), v in series.items()
               if name == "calico_probe_runs_total" and dict(labels).get("probe") == probe)


def outcome(series: Series, probe: str) -> str:
    """The outcome whose state-set series is 1."""
    found = [dict(labels)["outcome"] for (name, labels), v in series.items()
             if name == "calico_probe_outcome" and dict(labels).get("probe") == probe and v == 1]
    assert len(found) == 1, found
    return found[0]


def success(series: Series, probe: str) -> float | None:
    """calico_probe_success of a probe (whatever its other labels)."""
    for (name, labels), v in series.items():
        if name == "calico_probe_success" and dict(labels).get("probe") == probe:
            return v
    return None


def probe(name: str, protocol: str, target: str, expect: str, namespace: str,
          **keys: object) -> dict[str, object]:
    """One probe entry with a 1 s interval and a 500 ms timeout."""
    return {"name": name, "protocol": protocol, "target": target, "expect": expect,
            "source": {"namespace": namespace}, "interval": "1s", "timeout": "500ms", **keys}


@dataclass
class Agents:
    """Starts probe agents in the lab's namespaces and remembers them for cleanup."""

    lab: Lab
    started: list[Agent] = field(default_factory=list)

    async def start(self, role: str, namespace: str, probes: list[dict[str, object]]) -> Agent:
        """Run an agent for ``namespace`` inside the ``role`` netns with these probes."""
        lab = self.lab
        config = lab.tmp / f"{role}-{namespace}.yaml"
        config.write_text(yaml.safe_dump({"probes": probes}))
        sock, log = lab.tmp / f"{role}-{namespace}.sock", lab.tmp / f"{role}-{namespace}.log"
        sock.unlink(missing_ok=True)
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *lab.exec(role, sys.executable, "-m", "tests.probes.netns_agent", "--config",
                          str(config), "--namespace", namespace, "--socket", str(sock)),
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        agent = Agent(proc, sock, log)
        self.started.append(agent)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not sock.exists():
            assert proc.returncode is None, log.read_text()
            assert loop.time() < deadline, "agent did not start"
            await asyncio.sleep(0.05)
        return agent


@pytest.fixture
async def agents(lab: Lab) -> AsyncIterator[Agents]:
    """An agent starter; every agent is stopped afterwards."""
    starter = Agents(lab)
    try:
        yield starter
    finally:
        for agent in starter.started:
            if agent.proc.returncode is None:
                agent.proc.terminate()
            await asyncio.wait_for(agent.proc.wait(), 10)


FRONTEND = "http://198.18.3.2:8080/"


async def test_http_allowed_from_testns_dropped_from_default(agents: Agents) -> None:
    """PART-2: the frontend answers testns (success) and not default (timeout); both probes
    match their expectation."""
    testns = await agents.start("a", "testns", [
        probe("frontend-from-testns", "http", FRONTEND, "allow", "testns")])
    default = await agents.start("b", "default", [
        probe("frontend-from-default", "http", FRONTEND, "deny", "default")])
    allowed = await testns.wait_runs("frontend-from-testns", 1)
    denied = await default.wait_runs("frontend-from-default", 1)
    assert outcome(allowed, "frontend-from-testns") == "success"
    assert outcome(denied, "frontend-from-default") == "timeout"
    assert success(allowed, "frontend-from-testns") == 1.0
    assert success(denied, "frontend-from-default") == 1.0
    assert value(denied, "calico_probe_reachable", probe="frontend-from-default",
                 source_namespace="default", protocol="http", expect="deny") == 0.0


async def test_icmp_drop_and_rejects(agents: Agents) -> None:
    """PART-3: the ICMP target behind a drop rule times out (denied) while the other answers;
    reject rules give refused (TCP reset) or unreachable (ICMP prohibited / host unreachable)."""
    guestbook = await agents.start("c", "guestbook", [
        probe("ping-allowed", "icmp", "198.18.3.2", "allow", "guestbook"),
        probe("ping-dropped", "icmp", "198.18.3.3", "deny", "guestbook"),
        probe("ping-rejected", "icmp", "198.18.3.4", "deny", "guestbook"),
        probe("tcp-reset", "tcp", "198.18.3.2:8081", "deny", "guestbook"),
        probe("tcp-prohibited", "tcp", "198.18.3.2:8082", "deny", "guestbook"),
        probe("http-reset", "http", "http://198.18.3.2:8081/", "deny", "guestbook"),
    ])
    testns = await agents.start("a", "testns", [
        probe("ping-raw", "icmp", "198.18.3.2", "allow", "testns"),
        probe("ping-raw-dropped", "icmp", "198.18.3.3", "deny", "testns"),
        probe("ping-raw-rejected", "icmp", "198.18.3.4", "deny", "testns")])
    expected = {"ping-allowed": "success", "ping-dropped": "timeout",
                "ping-rejected": "unreachable", "tcp-reset": "refused",
                "tcp-prohibited": "unreachable", "http-reset": "refused"}
    series: Series = {}
    for name in expected:
        series = await guestbook.wait_runs(name, 1)
    assert {name: outcome(series, name) for name in expected} == expected
    assert {name: success(series, name) for name in expected} == dict.fromkeys(expected, 1.0)
    for name in ("ping-raw", "ping-raw-dropped", "ping-raw-rejected"):
        raw = await testns.wait_runs(name, 1)
    assert [outcome(raw, n) for n in ("ping-raw", "ping-raw-dropped", "ping-raw-rejected")] == [
        "success", "timeout", "unreachable"]
    # ping_group_range allows datagram ICMP sockets in c; a keeps the kernel default (raw)
    assert "(datagram socket)" in str(guestbook.events("ping-allowed")[0]["detail"])
    assert "(raw socket)" in str(testns.events("ping-raw")[0]["detail"])


async def test_flipping_a_rule_flips_success(lab: Lab, agents: Agents) -> None:
    """Removing the drop rule makes the next run that starts afterwards reach the target
    (unexpected allow: success 0); restoring it brings success back to 1. A run starts at most
    one interval after the change (fixed grid) and ends within the timeout."""
    default = await agents.start("b", "default", [
        probe("frontend-from-default", "http", FRONTEND, "deny", "default")])
    series = await default.wait_runs("frontend-from-default", 1)
    assert success(series, "frontend-from-default") == 1.0
    listing = lab.nft("-a", "list", "chain", "inet", "netpolicy", "forward")
    handle = re.search(r'comment "default-to-frontend" # handle (\d+)', listing)
    assert handle is not None, listing
    try:
        lab.nft("delete", "rule", "inet", "netpolicy", "forward", "handle", handle.group(1))
        # the run in flight may predate the change; the one after it cannot
        series = await default.wait_runs("frontend-from-default",
                                         int(runs(series, "frontend-from-default")) + 2)
        assert outcome(series, "frontend-from-default") == "success"
        assert success(series, "frontend-from-default") == 0.0
        assert value(series, "calico_probe_runs_total", probe="frontend-from-default",
                     source_namespace="default", protocol="http", expect="deny",
                     result="mismatch") is not None
    finally:
        (lab.tmp / "restore.nft").write_text(RESTORE_DROP)
        lab.nft("-f", str(lab.tmp / "restore.nft"))
    series = await default.wait_runs("frontend-from-default",
                                     int(runs(series, "frontend-from-default")) + 2)
    assert outcome(series, "frontend-from-default") == "timeout"
    assert success(series, "frontend-from-default") == 1.0


ONE_PING = """
import asyncio, yaml
from exporter.probes.config import parse_probe_config
from exporter.probes.probers import run_attempt
config, _ = parse_probe_config(yaml.safe_dump({"probes": [{"name": "p", "protocol": "icmp",
    "target": "198.18.3.2", "expect": "allow", "source": {"namespace": "x"}, "timeout": "1s"}]}))
attempt = asyncio.run(run_attempt(config.probes[0]))
print(attempt.outcome.value)
print(attempt.detail)
"""


def test_icmp_without_permission_is_error(lab: Lab) -> None:
    """Without CAP_NET_RAW and outside ping_group_range the probe reports error with a clear
    reason; where ping_group_range allows it, the same process pings through a datagram socket."""
    def ping(role: str) -> list[str]:
        return run(*lab.exec(role, "setpriv", "--bounding-set=-net_raw", sys.executable, "-c",
                             ONE_PING)).splitlines()

    denied = ping("a")
    assert denied[0] == "error"
    assert denied[1] == ('ICMP not permitted: datagram sockets need gid 0 inside '
                         'net.ipv4.ping_group_range (now "1 0") and raw sockets need CAP_NET_RAW')
    allowed = ping("c")
    assert allowed == ["success", "echo reply from 198.18.3.2 (datagram socket)"]
