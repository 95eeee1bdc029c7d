"""The exporter's Goldmane source against the stand-in, over real mutual TLS on loopback.

Every test compares the exporter's counters with totals computed from the stand-in's own ledger
of ingested flows (``tests/flows/world.py``), and checks that no counter ever went down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tracemalloc
from pathlib import Path

import aiohttp
import grpc
import pytest

from exporter.app.flows import build_flows_role
from exporter.app.run import serve_roles
from exporter.config import FlowSettings, ServerSettings, Settings
from exporter.flows.counters import FlowCounters
from exporter.flows.ingest import WindowTracker
from exporter.flows.tls import ClientFiles
from exporter.goldmane import api_pb2 as pb
from exporter.model.telemetry import Telemetry
from tests.access.certs import make_ca, make_cert
from tests.flows.world import (
    Certs,
    eventually,
    expected_policy,
    flow,
    hit,
    make_certs,
    never_decreased,
    reasons,
    rig,
    snapshot,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("goldmane-certs"))


def traffic(n: int, *, policies: int = 4, start_name: int = 0) -> list[pb.Flow]:
    """n flows from n pod groups, decided by one of ``policies`` policies, both reporters."""
    out = []
    for i in range(start_name, start_name + n):
        reporter = pb.Src if i % 2 else pb.Dst
        action = pb.Deny if i % 5 == 0 else pb.Allow
        decided = hit(f"p{i % policies}", namespace=f"ns{i % 3}", action=action, index=1)
        out.append(flow(name=f"g{i}", reporter=reporter, action=action, started=1 + i % 3,
                        packets=5 + i % 7, nbytes=400 + i,
                        enforced=[hit("sec", tier="security", action=pb.Pass), decided]))
    return out


@pytest.mark.parametrize("read", ["stream", "poll"])
async def test_counters_equal_the_stand_in_totals(read: str, certs: Certs) -> None:
    """Flows over several windows are counted exactly once each: the exporter's per-policy
    connections, packets and bytes equal the totals of what the stand-in ingested."""
    async with rig(certs, read=read) as r:
        await r.streaming()
        for w in range(4):
            r.gm.ingest(traffic(30, start_name=30 * w))
            r.gm.rollover()
        r.gm.rollover(3)
        await r.settle()
        assert snapshot(r.counters) == expected_policy(r.gm.ledger)
        assert r.counters.windows == (4 if read == "stream" else r.counters.windows)
        assert r.counters.windows >= 1
        assert r.up[-1] is True


@pytest.mark.parametrize("read", ["stream", "poll"])
async def test_goldmane_restart_mid_run_neither_loses_nor_double_counts(read: str,
                                                                        certs: Certs) -> None:
    """Goldmane restarts (forgetting everything, new IDs, shifted buckets) and Felix replays the
    flows it had already sent; the exporter resumes from where it stopped (a stream reconnects,
    a poller asks the new process): the replayed flows are not counted again, new ones are, and
    no counter goes down."""
    async with rig(certs, read=read) as r:
        await r.streaming()
        first = traffic(40)
        r.gm.ingest(first)
        r.gm.rollover(3)
        await r.settle()
        before = snapshot(r.counters)
        assert before == expected_policy(first)
        await r.gm.restart(shift=7)
        replay = [pb.Flow.FromString(f.SerializeToString()) for f in first]
        r.gm.ingest(replay)  # Felix re-sends its cache to the new Goldmane
        if read == "stream":  # a poller's next call simply reaches the new process
            await eventually(lambda: r.source.connections >= 2)
        await r.streaming()
        second = traffic(40, start_name=1000)
        r.gm.ingest(second)
        r.gm.rollover(3)
        await r.settle()
        after = snapshot(r.counters)
        assert never_decreased(before, after)
        assert after == expected_policy(first + second)
        assert set(reasons(r.counters.reconnects)) <= {"unavailable"}


async def test_stalled_stream_is_restarted_and_resumes_exactly(certs: Certs) -> None:
    """A stream that stops delivering (the connection stays open) is cancelled after the stall
    timeout, counted, and resumed from the last committed window: windows streamed meanwhile
    come again through the backfill and count once."""
    async with rig(certs, stall_timeout=1.0) as r:
        await r.streaming()
        a = traffic(20)
        r.gm.ingest(a)
        r.gm.rollover(3)
        await r.settle()
        r.gm.stall()
        b = traffic(20, start_name=100)
        r.gm.ingest(b)
        r.gm.rollover(3)
        await eventually(lambda: r.counters.reconnects["stalled"] >= 1)
        r.gm.stall(False)
        await eventually(lambda: r.source.connections >= 2)
        await r.streaming()
        await eventually(lambda: not r.source.pending
                         and snapshot(r.counters) == expected_policy(a + b))


@pytest.mark.parametrize("read", ["stream", "poll"])
async def test_zero_counters_and_unknown_enums_over_the_wire(read: str, certs: Certs) -> None:
    """Stale all-zero flows are dropped and counted; a newer Calico's enum values travel as
    numbers, are counted as unknown and do not break the stream."""
    async with rig(certs, read=read) as r:
        await r.streaming()
        good = traffic(5)
        stale = [flow(name="stale", started=0, packets=0, nbytes=0, enforced=[hit("p0")])]
        future = [flow(name="future", action=4, reporter=3, enforced=[hit("x", kind=12,
                                                                          action=4)])]
        r.gm.ingest(good + stale + future)
        r.gm.rollover(3)
        await r.settle()
        assert r.counters.dropped["zero_counters"] == 1
        assert r.counters.unknown_values["kind"] >= 1
        assert ("default", "unknown", "ns", "x", "unknown", "unknown") in r.counters.policy
        del r.counters.policy[("default", "unknown", "ns", "x", "unknown", "unknown")]
        assert snapshot(r.counters) == expected_policy(good)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("read", ["stream", "poll"])
async def test_burst_of_100000_flows_is_exact_and_memory_bounded(read: str, certs: Certs) -> None:
    """100,000 distinct flows in one window, over the wire: counted exactly, and what the
    exporter keeps grows with the policies (20 here), not with the flows: replaying the same
    results through the ingest path under tracemalloc retains well under 2 MB."""
    async with rig(certs, read=read, quiet=1.0) as r:
        await r.streaming()
        burst = traffic(100_000, policies=20)
        r.gm.ingest(burst)
        now = r.gm.now
        results = r.gm.ring.results(next(b for b in r.gm.ring.buckets if b.start <= now < b.end))
        r.gm.rollover(3)
        await r.settle(within=150)
        assert snapshot(r.counters) == expected_policy(burst)
        assert r.counters.received == 100_000
        assert len(r.counters.policy) <= 20 * 3 * 2 * 2  # policy x namespace x action x dir
    assert len(results) == 100_000
    tracemalloc.start()
    try:
        counters = FlowCounters()
        tracker = WindowTracker(counters, resume_from=None)
        tracker.receive_all(results)
        tracker.quiet()
        retained = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert snapshot(counters) == expected_policy(burst)
    assert retained < 2_000_000, retained


@pytest.mark.parametrize("read", ["stream", "poll"])
async def test_tls_failure_is_counted_and_retried_until_the_certificate_is_fixed(
        read: str, certs: Certs, tmp_path: Path) -> None:
    """A client certificate Goldmane does not trust: every attempt fails, is counted and retried
    with backoff, the source stays down; once the mounted files are replaced by a trusted pair
    the next attempt connects and counts."""
    other = make_ca(tmp_path, "other-ca")
    wrong = make_cert(tmp_path, "intruder", other, server=False)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(wrong.cert.read_bytes())
    key.write_bytes(wrong.key.read_bytes())
    files = ClientFiles(cert=str(cert), key=str(key), ca=str(certs.ca.cert))
    async with rig(certs, read=read, files=files) as r:
        await eventually(lambda: sum(r.counters.reconnects.values()) >= 3)
        assert not r.source.connected.is_set()
        assert set(reasons(r.counters.reconnects)) <= {"unavailable", "tls"}
        assert r.up[-1] is False
        cert.write_bytes(certs.client.cert.read_bytes())
        key.write_bytes(certs.client.key.read_bytes())
        await r.streaming()
        r.gm.ingest(traffic(3))
        r.gm.rollover(3)
        await r.settle()
        assert snapshot(r.counters) == expected_policy(r.gm.ledger)


@pytest.mark.parametrize("read", ["stream", "poll"])
async def test_certificate_rotation_reconnects_and_keeps_counting(read: str, certs: Certs,
                                                                  tmp_path: Path) -> None:
    """The mounted Secret rotates while connected: the source notices the change, reconnects
    with the new files (reason certificate_changed) and loses nothing."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(certs.client.cert.read_bytes())
    key.write_bytes(certs.client.key.read_bytes())
    files = ClientFiles(cert=str(cert), key=str(key), ca=str(certs.ca.cert))
    async with rig(certs, read=read, files=files) as r:
        await r.streaming()
        r.gm.ingest(traffic(5))
        r.gm.rollover(3)
        await r.settle()
        fresh = make_cert(tmp_path / "new", "calico-exporter", certs.ca, server=False)
        cert.write_bytes(fresh.cert.read_bytes())
        key.write_bytes(fresh.key.read_bytes())
        await eventually(lambda: r.counters.reconnects["certificate_changed"] == 1)
        r.gm.ingest(traffic(5, start_name=50))
        r.gm.rollover(3)
        await eventually(lambda: r.source.connected.is_set() and not r.source.pending
                         and snapshot(r.counters) == expected_policy(r.gm.ledger))


async def test_a_server_that_speaks_something_else_is_retried(certs: Certs) -> None:
    """An HTTP/1.1 server where Goldmane should be: the TLS handshake fails, each attempt is
    counted (reason tls) and retried."""
    async def http1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http1, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    from exporter.flows.counters import FlowCounters
    from exporter.flows.source import GoldmaneSource

    counters = FlowCounters()
    source = GoldmaneSource(address=f"127.0.0.1:{port}", files=certs.files(), counters=counters,
                            backoff_initial=0.05, backoff_max=0.1)
    task = asyncio.create_task(source.run(), name="goldmane-flows")
    try:
        await eventually(lambda: counters.reconnects["tls"] >= 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        await server.wait_closed()


async def test_a_grpc_server_without_goldmane_is_unimplemented(certs: Certs) -> None:
    """A TLS gRPC server that does not serve Goldmane's API: reason unimplemented, retried."""
    server = grpc.aio.server()
    creds = grpc.ssl_server_credentials(
        [(certs.server.key.read_bytes(), certs.server.cert.read_bytes())],
        root_certificates=certs.ca.cert.read_bytes(), require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    from exporter.flows.counters import FlowCounters
    from exporter.flows.source import GoldmaneSource

    counters = FlowCounters()
    source = GoldmaneSource(address=f"127.0.0.1:{port}", files=certs.files(), counters=counters,
                            backoff_initial=0.05, backoff_max=0.1)
    task = asyncio.create_task(source.run(), name="goldmane-flows")
    try:
        await eventually(lambda: counters.reconnects["unimplemented"] >= 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(0)


async def test_the_exporter_keeps_serving_while_goldmane_is_down(certs: Certs) -> None:
    """Goldmane unreachable: /metrics and /readyz keep answering, with source_up 0 for goldmane
    and the failed attempts counted."""
    flows = FlowSettings(goldmane_enabled=True, goldmane_address="127.0.0.1:1",
                         goldmane_cert_file=str(certs.client.cert),
                         goldmane_key_file=str(certs.client.key),
                         goldmane_ca_file=str(certs.ca.cert))
    settings = dataclasses.replace(Settings(), flows=flows,
                                   server=ServerSettings(listen="127.0.0.1:0"))
    telemetry = Telemetry()
    role = build_flows_role(flows, telemetry)
    stop = asyncio.Event()
    ports: list[int] = []
    task = asyncio.create_task(serve_roles([role], settings=settings, telemetry=telemetry,
                                           stop=stop, on_serving=ports.append), name="serve")
    try:
        await eventually(lambda: bool(ports))
        async with aiohttp.ClientSession() as http:
            async def scrape() -> str:
                async with http.get(f"http://127.0.0.1:{ports[0]}/metrics") as resp:
                    assert resp.status == 200
                    return await resp.text()

            for _ in range(100):
                text = await scrape()
                if 'calico_exporter_goldmane_reconnects_total{reason="unavailable"}' in text:
                    break
                await asyncio.sleep(0.1)
            assert 'calico_exporter_source_up{source="goldmane"} 0.0' in text
            async with http.get(f"http://127.0.0.1:{ports[0]}/readyz") as resp:
                assert resp.status == 200
    finally:
        stop.set()
        await task
