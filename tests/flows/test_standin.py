"""The Goldmane stand-in behaves as Goldmane v3.32.1 does for a stream client, checked with
cases taken from Goldmane's own tests (projectcalico/calico v3.32.1
goldmane/pkg/goldmane/goldmane_test.go) and its storage code, over real mutual TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from exporter.goldmane import api_pb2 as pb
from exporter.goldmane import api_pb2_grpc as pbg
from exporter.sim.goldmane import GoldmaneStandIn
from tests.flows.world import Certs, end_of_tier, eventually, flow, hit, make_certs, stand_in


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("standin-certs"))


@pytest.fixture
async def gm(certs: Certs) -> AsyncIterator[GoldmaneStandIn]:
    server = stand_in(certs, interval=1)
    await server.start()
    yield server
    await server.stop()


def channel(gm: GoldmaneStandIn, certs: Certs) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(certs.ca.cert.read_bytes(),
                                         certs.client.key.read_bytes(),
                                         certs.client.cert.read_bytes())
    return grpc.aio.secure_channel(f"127.0.0.1:{gm.port}", creds)


class Reader:
    """Reads a stream into a list in the background."""

    def __init__(self, ch: grpc.aio.Channel, start: int) -> None:
        self.call = pbg.FlowsStub(ch).Stream(pb.FlowStreamRequest(start_time_gte=start))
        self.got: list[pb.FlowResult] = []

    async def until(self, n: int) -> list[pb.FlowResult]:
        while len(self.got) < n:
            self.got.append(await self.call.read())  # type: ignore[arg-type]
        return self.got


async def test_streams_from_now_and_from_the_past(gm: GoldmaneStandIn, certs: Certs) -> None:
    """TestStreams/Basic: flows at now-9..now-5; a stream from now-1 gets no history, one from
    now-7 gets now-7, now-6, now-5 in time order and nothing older; a new flow at now-1 reaches
    both streams at the next rollover."""
    now = gm.now
    gm.ingest([flow(name=f"h{i}", start=now - i) for i in range(5, 10)])
    async with channel(gm, certs) as ch:
        present = Reader(ch, -1)
        past = Reader(ch, now - 7)
        got = await past.until(3)
        assert [r.flow.start_time for r in got] == [now - 7, now - 6, now - 5]
        await eventually(lambda: gm.open_streams == 2)
        gm.ingest([flow(name="new", start=now - 1)])
        gm.rollover()
        (first,) = await present.until(1)
        fourth = (await past.until(4))[3]
        assert first.flow.start_time == fourth.flow.start_time == now - 1
        assert first.flow.Key.source_name == "new-*"
        present.call.cancel()
        past.call.cancel()


async def test_a_key_comes_once_per_bucket_with_that_bucket_counters(gm: GoldmaneStandIn,
                                                                     certs: Certs) -> None:
    """TestStreams/SameFlowOverTime: one flow key in ten buckets gives ten results with the same
    ID, each with its own bucket's start time and counters (never cumulative)."""
    now = gm.now
    for i in range(0, 20, 2):
        gm.ingest([flow(name="same", start=now - 2 - i, started=1, packets=4)])
    async with channel(gm, certs) as ch:
        reader = Reader(ch, now - 30)
        got = await reader.until(10)
        assert sorted(r.flow.start_time for r in got) == [now - 2 - i for i in range(18, -1, -2)]
        assert {r.id for r in got} == {1}
        assert all(r.flow.num_connections_started == 1 and r.flow.packets_in
                   + r.flow.packets_out == 4 for r in got)
        assert all(r.flow.end_time == r.flow.start_time + 1 for r in got)
        reader.call.cancel()


async def test_restart_forgets_everything_and_renumbers(gm: GoldmaneStandIn,
                                                        certs: Certs) -> None:
    """A restarted Goldmane has no history (memory only) and numbers keys from 1 again
    (BucketRing.nextID); open streams break."""
    now = gm.now
    gm.ingest([flow(name="a", start=now - 3), flow(name="b", start=now - 3)])
    await gm.restart(shift=7)
    async with channel(gm, certs) as ch:
        listed = await pbg.FlowsStub(ch).List(pb.FlowListRequest())
        assert listed.flows == []
        gm.ingest([flow(name="b", start=gm.now - 2)])
        listed = await pbg.FlowsStub(ch).List(pb.FlowListRequest())
        assert [r.id for r in listed.flows] == [1]


async def test_statistics_count_each_policy_once_per_flow(gm: GoldmaneStandIn,
                                                          certs: Certs) -> None:
    """storage/stats.go AddFlow: a flow adds its packets once to every policy of its enforced and
    pending traces (an end-of-tier hit under its trigger), by the hit's action and direction."""
    k8s = hit("np", namespace="web")
    f = flow(reporter=pb.Dst, action=pb.Deny, packets=10, enforced=[
        hit("pass-all", tier="platform", action=pb.Pass), end_of_tier(k8s, index=1)],
        start=gm.now - 5)
    gm.ingest([f])
    async with channel(gm, certs) as ch:
        results = [r async for r in pbg.StatisticsStub(ch).List(
            pb.StatisticsRequest(type=pb.PacketCount, group_by=pb.Policy))]
    by_name = {r.policy.name: r for r in results}
    assert set(by_name) == {"pass-all", "np"}
    assert list(by_name["pass-all"].passed_in) == [5]
    assert list(by_name["np"].denied_in) == [5]
    assert list(by_name["np"].allowed_in) == [0]
