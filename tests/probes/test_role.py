"""The probe role end to end, and the demo's loopback targets with their probe config."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from exporter.app.probe import build_probe_agent, demo_probe_role, run_probe_role
from exporter.app.supervisor import supervise
from exporter.config import ConfigError, ProbeSettings, ServerSettings, Settings
from exporter.model.telemetry import Telemetry
from exporter.probes.config import load_probe_config, parse_probe_config
from exporter.probes.demo import FRONTEND_NAME, serve_demo_targets
from exporter.probes.outcome import Outcome
from exporter.probes.scheduler import run_probe
from tests.probes.scrape import Series, exposition, parse, value

DEMO_EXPECTED = {
    "frontend-http": Outcome.SUCCESS,
    "redis-tcp": Outcome.SUCCESS,
    "frontend-dns": Outcome.SUCCESS,
    "blocked-port": Outcome.REFUSED,
}


DEMO_LABELS = [
    {"probe": name, "source_namespace": "demo", "protocol": proto, "expect": expect}
    for name, proto, expect in (("frontend-http", "http", "allow"), ("redis-tcp", "tcp", "allow"),
                                ("frontend-dns", "dns", "allow"), ("blocked-port", "tcp", "deny"))
]


async def scrape(session: aiohttp.ClientSession, base: str) -> Series:
    """GET /metrics and parse it."""
    async with session.get(base + "/metrics") as response:
        assert response.status == 200
        return parse(await response.text())


async def wait_until(condition: Callable[[], bool], *, limit: float = 20.0) -> None:
    """Poll until condition() holds; fail after limit (a hang guard, not a timing check)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


def settings(path: str, *, namespace: str = "demo", concurrency: int = 8) -> Settings:
    """Settings of a probe agent on a free loopback port."""
    return Settings(server=ServerSettings(listen="127.0.0.1:0"),
                    probes=ProbeSettings(probe_config=path, source_namespace=namespace,
                                         probe_concurrency=concurrency))


async def test_demo_probes_all_match() -> None:
    """Every demo probe gets its expected outcome and matches, one of them by being denied."""
    async with serve_demo_targets() as targets:
        config, errors = parse_probe_config(targets.config(namespace="demo"))
        assert errors == []
        assert config is not None
        semaphore = asyncio.Semaphore(4)
        runs = {p.name: await run_probe(p, semaphore=semaphore) for p in config.probes}
    assert {name: run.outcome for name, run in runs.items()} == DEMO_EXPECTED
    assert {run.result for run in runs.values()} == {"match"}
    assert [p.expect for p in config.probes].count("deny") == 1


async def test_demo_dns_server_answers_dnspython() -> None:
    """The demo's DNS server is a real DNS server to an independent client."""
    async with serve_demo_targets() as targets:
        answer = await dns.asyncquery.udp(dns.message.make_query(FRONTEND_NAME, "A"), "127.0.0.1",
                                          port=targets.dns_port, timeout=2)
        missing = await dns.asyncquery.udp(dns.message.make_query("x.example", "A"), "127.0.0.1",
                                           port=targets.dns_port, timeout=2)
    assert [r.address for r in answer.answer[0]] == ["127.0.0.1"]
    assert missing.rcode() == dns.rcode.NXDOMAIN


async def test_probe_role_serves_verdicts(tmp_path: Path) -> None:
    """run_probe_role loads the config, runs this namespace's probes and serves their verdicts
    and the exporter's own metrics on /metrics; /readyz is ready."""
    async with serve_demo_targets() as targets:
        path = tmp_path / "probes.yaml"
        path.write_text(targets.config(namespace="demo", interval="200ms", timeout="150ms")
                        + "  - {name: elsewhere, protocol: tcp, target: '127.0.0.1:1', "
                          "expect: allow, source: {namespace: other}}\n")
        ports: list[int] = []
        stop = asyncio.Event()
        role = asyncio.create_task(run_probe_role(settings(str(path)), stop=stop,
                                                  on_serving=ports.append))
        try:
            await wait_until(lambda: bool(ports))
            base = f"http://127.0.0.1:{ports[0]}"
            async with aiohttp.ClientSession() as session:
                deadline = asyncio.get_running_loop().time() + 20
                while True:
                    series = await scrape(session, base)
                    if all(value(series, "calico_probe_success", **labels) == 1.0
                           for labels in DEMO_LABELS):
                        break
                    assert asyncio.get_running_loop().time() < deadline, "probes never matched"
                    await asyncio.sleep(0.05)
                async with session.get(base + "/readyz") as response:
                    assert response.status == 200
        finally:
            stop.set()
            await role
    assert value(series, "calico_probe_config_probes", scope="agent") == 4.0
    assert value(series, "calico_probe_config_probes", scope="file") == 5.0
    assert value(series, "calico_exporter_source_up", source="probe_config") == 1.0
    assert not any(dict(labels).get("probe") == "elsewhere" for _, labels in series)


async def test_demo_probe_role(tmp_path: Path) -> None:
    """The demo's probe role, supervised like any role, brings all four demo probes to a match."""
    async with demo_probe_role(settings(""), telemetry=Telemetry(), directory=tmp_path,
                               interval="2s") as role:
        assert role.ready()
        stop = asyncio.Event()
        jobs = asyncio.create_task(supervise(role.jobs, stop=stop))
        try:
            await wait_until(lambda: all(
                value(parse(exposition(*role.collectors)), "calico_probe_success", **labels)
                == 1.0 for labels in DEMO_LABELS))
        finally:
            stop.set()
            await jobs
    assert (tmp_path / "probes.yaml").exists()


def test_agent_needs_a_config_file() -> None:
    """Without --probe-config the role refuses to start with an exact message."""
    with pytest.raises(ConfigError) as info:
        build_probe_agent(settings(""), telemetry=Telemetry())
    assert str(info.value) == ("invalid value for --probe-config (CALICO_EXPORTER_PROBE_CONFIG): "
                               "the probe role needs a probe configuration file")


def test_agent_rejects_zero_concurrency(tmp_path: Path) -> None:
    """A concurrency of 0 could never run a probe: refused with an exact message."""
    path = tmp_path / "p.yaml"
    path.write_text("probes: []\n")
    with pytest.raises(ConfigError) as info:
        build_probe_agent(settings(str(path), concurrency=0), telemetry=Telemetry())
    assert str(info.value) == ("invalid value for --probe-concurrency "
                               "(CALICO_EXPORTER_PROBE_CONCURRENCY): must be at least 1")


def test_agent_namespace_from_service_account(tmp_path: Path) -> None:
    """With no --source-namespace the agent takes the service-account namespace."""
    path = tmp_path / "p.yaml"
    path.write_text("probes: []\n")
    ns_file = tmp_path / "namespace"
    ns_file.write_text("guestbook")
    agent = build_probe_agent(settings(str(path), namespace=""), telemetry=Telemetry(),
                              namespace_file=ns_file)
    assert agent.namespace == "guestbook"


def test_example_config_is_valid() -> None:
    """The shipped example (the write-up's checks) validates."""
    example = Path(__file__).parents[2] / "exporter" / "probes" / "example.yaml"
    assert len(load_probe_config(str(example)).probes) == 5
