"""A Goldmane stand-in: Calico's flow aggregator, served over gRPC with mutual TLS.

Built from the same ``api.proto`` as the exporter (``exporter.goldmane``, generated data
definitions only; the simulator imports nothing else of the exporter). It reproduces what a
client of Goldmane v3.32.1 sees, read from projectcalico/calico ``goldmane/``:

- **Buckets** (``pkg/storage/bucket_ring.go``): a ring of 242 buckets of ``interval`` seconds
  (15, about an hour), in memory only. At start the head bucket is one interval in the future
  and the bucket before it holds "now" (``NewBucketRing``: ``newestBucketStart = now + interval``);
  a flow is filed into the bucket containing its ``start_time``; flows with the same key in one
  bucket are summed (``diachronic_flow.go`` ``AddFlow``). Every key gets an ID, stable while the
  process lives (``BucketRing.AddFlow``: ``nextID++``).
- **Stream** (``pkg/server/flow_service.go``, ``pkg/stream/``): at each rollover the bucket two
  behind the head (the last complete one, ``streamingBucket``) is sent to every open stream, one
  ``FlowResult`` per key with that bucket's counters only and ``start_time``/``end_time`` of the
  bucket (``DeferredFlowBuilder``): per-window counters, never cumulative. A stream opened with
  ``start_time_gte`` = 0 gets no history; a positive (absolute) or negative (relative) value
  first gets every bucket from the one containing that time up to, not including, the streaming
  bucket (``Goldmane.backfill``, ``BucketRing.Backfill``, ``BackfillEndTime``); a time outside
  the ring gets no backfill at all (``iterBucketsTime`` fails and the error is ignored).
- **Restart** (:meth:`GoldmaneStandIn.restart`): everything is forgotten, streams end with
  UNAVAILABLE, IDs start again at 1, and the new ring's bucket boundaries follow the new start
  time (``shift``), so windows after a restart straddle the old ones.
- **Statistics** (``pkg/storage/stats.go``): per policy (or policy rule) and direction, over the
  requested time range, the packet, byte or live-connection counts of every enforced and pending
  hit (an end-of-tier hit counts under its trigger), allowed, denied and passed, in and out.
- **List** (``pkg/storage/ring_index.go`` ``RingIndex.List``): per key, the sum of its windows
  that start at or after ``start_time_gte`` and end at or before ``start_time_lt`` (a key with
  a window starting in the range but none ending in it comes with zero counters), newest first,
  with paging; a range that is empty after normalization is an error. **FilterHints**: namespace
  and name hints.

Felix's side (``FlowCollector.Connect``) is not served: tests and the demo call :meth:`ingest`,
which is what Goldmane does with each received flow. The stand-in keeps its own ledger of every
flow ingested (:attr:`GoldmaneStandIn.ledger`) so tests compare the exporter's counters with it.

Control API, synchronous on the server's event loop: ``ingest``, ``rollover``, ``restart``
(async), ``stall`` (stop sending on open streams while keeping them open), ``now``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import grpc

from exporter.goldmane import api_pb2 as pb
from exporter.goldmane import api_pb2_grpc as pbg

NUM_BUCKETS = 242
INTERVAL = 15


@dataclass(slots=True)
class _Window:
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    started: int = 0
    completed: int = 0
    live: int = 0

    def add(self, flow: pb.Flow) -> None:
        self.packets_in += flow.packets_in
        self.packets_out += flow.packets_out
        self.bytes_in += flow.bytes_in
        self.bytes_out += flow.bytes_out
        self.started += flow.num_connections_started
        self.completed += flow.num_connections_completed
        self.live += flow.num_connections_live


@dataclass(slots=True)
class _Bucket:
    start: int
    end: int
    flows: dict[bytes, _Window] = field(default_factory=dict)
    hits: list[pb.Flow] = field(default_factory=list)
    """The flows as received (for Statistics, which Goldmane indexes per flow on arrival)."""


@dataclass(slots=True)
class _Key:
    id: int
    key: pb.FlowKey


class Ring:
    """Goldmane's bucket ring for one process lifetime."""

    def __init__(self, now: int, *, interval: int = INTERVAL, size: int = NUM_BUCKETS) -> None:
        self.interval = interval
        newest = now + interval
        oldest = newest - interval * (size - 1)
        self.buckets = [_Bucket(oldest + i * interval, oldest + (i + 1) * interval)
                        for i in range(size)]
        self.head = size - 1
        self.keys: dict[bytes, _Key] = {}
        self.next_id = 0

    def _index_of(self, t: int) -> int | None:
        for offset in range(len(self.buckets)):
            i = (self.head - offset) % len(self.buckets)
            b = self.buckets[i]
            if b.start <= t < b.end:
                return i
        return None

    def add(self, flow: pb.Flow) -> bool:
        """File one flow into its bucket; False when its time is outside the ring."""
        i = self._index_of(flow.start_time)
        if i is None:
            return False
        raw = flow.Key.SerializeToString(deterministic=True)
        if raw not in self.keys:
            self.next_id += 1
            key = pb.FlowKey()
            key.CopyFrom(flow.Key)
            self.keys[raw] = _Key(self.next_id, key)
        bucket = self.buckets[i]
        bucket.flows.setdefault(raw, _Window()).add(flow)
        bucket.hits.append(flow)
        return True

    @property
    def streaming(self) -> int:
        """Index of the bucket the next rollover streams: two behind the head."""
        return (self.head - 2) % len(self.buckets)

    def rollover(self) -> _Bucket:
        """Stream the streaming bucket, then move the head one interval on."""
        flushed = self.buckets[self.streaming]
        start = self.buckets[self.head].end
        self.head = (self.head + 1) % len(self.buckets)
        self.buckets[self.head] = _Bucket(start, start + self.interval)
        return flushed

    def results(self, bucket: _Bucket) -> list[pb.FlowResult]:
        out = []
        for raw, w in bucket.flows.items():
            k = self.keys[raw]
            flow = pb.Flow(start_time=bucket.start, end_time=bucket.end,
                           packets_in=w.packets_in, packets_out=w.packets_out,
                           bytes_in=w.bytes_in, bytes_out=w.bytes_out,
                           num_connections_started=w.started,
                           num_connections_completed=w.completed, num_connections_live=w.live)
            flow.Key.CopyFrom(k.key)
            out.append(pb.FlowResult(id=k.id, flow=flow))
        return out

    def ordered(self) -> list[_Bucket]:
        """Oldest to newest (the head, one interval in the future, last)."""
        n = len(self.buckets)
        return [self.buckets[(self.head + 1 + i) % n] for i in range(n)]

    def backfill(self, start: int) -> list[_Bucket]:
        """Buckets from the one containing ``start`` up to, not including, the streaming one."""
        first = self._index_of(start)
        if first is None:
            return []
        out = []
        i = first
        while i != self.streaming:
            out.append(self.buckets[i])
            i = (i + 1) % len(self.buckets)
            if i == first:
                break
        return out

    def beginning(self) -> int:
        return self.buckets[(self.head + 1) % len(self.buckets)].start


def _staged_or_trigger(hit: pb.PolicyHit) -> pb.PolicyHit:
    return hit.trigger if hit.kind == pb.EndOfTier else hit


class GoldmaneStandIn:
    """The stand-in server; ``await start()``, feed it, ``await stop()``."""

    def __init__(self, *, server_cert: bytes, server_key: bytes, client_ca: bytes,
                 interval: int = INTERVAL, clock: Callable[[], float] = time.time,
                 keep_ledger: bool = True) -> None:
        self._creds = grpc.ssl_server_credentials([(server_key, server_cert)],
                                                  root_certificates=client_ca,
                                                  require_client_auth=True)
        self.interval = interval
        self.now = int(clock())
        """The stand-in's clock (seconds): starts at the real time, moves by rollovers."""
        self.ring = Ring(self.now, interval=interval)
        self.keep_ledger = keep_ledger
        self.ledger: list[pb.Flow] = []
        """Every flow ingested since creation (restarts included), as ingested; empty unless
        ``keep_ledger`` (the demo runs for days)."""
        self.streamed = 0
        """FlowResults sent on streams (all streams, backfill included)."""
        self.queued = 0
        """FlowResults queued for streams (sent, or to be sent once the stream reads on)."""
        self.listed = 0
        """Flows returned by List calls."""
        self.list_calls = 0
        """List calls received (answered or refused)."""
        self.restarts = 0
        self._streams: set[asyncio.Queue[list[pb.FlowResult] | None]] = set()
        self._stalled = asyncio.Event()
        self._stalled.set()  # set = not stalled
        self._server: grpc.aio.Server | None = None
        self.port = 0
        self.host = "127.0.0.1"

    # ---------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.host = host
        server = grpc.aio.server()
        pbg.add_FlowsServicer_to_server(_Flows(self), server)
        pbg.add_StatisticsServicer_to_server(_Statistics(self), server)
        self.port = server.add_secure_port(f"{host}:{port}", self._creds)
        await server.start()
        self._server = server
        return self.port

    async def stop(self) -> None:
        """Stop serving at once, as a Goldmane process ends: open streams break."""
        if self._server is not None:
            await self._server.stop(grace=0)
            self._server = None

    async def restart(self, *, shift: int = 0) -> None:
        """A new Goldmane process on the same port: empty ring, IDs from 1, clock + shift."""
        await self.stop()
        self.now += shift
        self.ring = Ring(self.now, interval=self.interval)
        self.restarts += 1
        await self.start(self.host, self.port)

    # ---------------------------------------------------------------- control

    def ingest(self, flows: Iterable[pb.Flow]) -> int:
        """Felix's flows arriving; a flow without a start time is stamped "now". Returns how
        many the ring accepted (others fall outside its hour)."""
        accepted = 0
        for flow in flows:
            if not flow.start_time:
                flow.start_time = self.now
                flow.end_time = self.now
            if self.keep_ledger:
                self.ledger.append(flow)
            accepted += self.ring.add(flow)
        return accepted

    def rollover(self, times: int = 1) -> None:
        """Advance the clock by one interval per time, streaming the completed bucket."""
        for _ in range(times):
            self.now += self.interval
            bucket = self.ring.rollover()
            results = self.ring.results(bucket)
            if results:
                for queue in self._streams:
                    queue.put_nowait(results)
                    self.queued += len(results)

    def push(self, results: list[pb.FlowResult]) -> None:
        """Send one window's results, as given, to every open stream, without aggregating
        (the benchmark measures the client alone this way)."""
        for queue in self._streams:
            queue.put_nowait(results)
            self.queued += len(results)

    def stall(self, stalled: bool = True) -> None:
        """Stop (or resume) sending on open streams; connections stay open."""
        if stalled:
            self._stalled.clear()
        else:
            self._stalled.set()

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # ---------------------------------------------------------------- serving

    def _normalize(self, t: int) -> int:
        return self.now + t if t < 0 else t

    async def stream(self, request: pb.FlowStreamRequest) -> AsyncIterator[pb.FlowResult]:
        queue: asyncio.Queue[list[pb.FlowResult] | None] = asyncio.Queue()
        self._streams.add(queue)
        try:
            if request.start_time_gte != 0:
                for bucket in self.ring.backfill(self._normalize(request.start_time_gte)):
                    results = self.ring.results(bucket)
                    queue.put_nowait(results)
                    self.queued += len(results)
            while True:
                batch = await queue.get()
                if batch is None:
                    return
                for result in batch:
                    await self._stalled.wait()
                    self.streamed += 1
                    yield result
        finally:
            self._streams.discard(queue)

    def aggregate(self, gte: int, lt: int) -> list[tuple[int, pb.Flow]]:
        """Goldmane's ``RingIndex.List`` over [gte, lt]: every key with a window starting in
        [gte, lt) (``DiachronicFlow.Within``), with the sum of its windows that start at or
        after gte and end at or before lt (``GetWindows``, ``AggregateWindows``); a key whose
        only windows end after lt comes with zero counters and times. (id, Flow) per key."""
        sums: dict[bytes, tuple[int, int, _Window]] = {}
        matched: list[bytes] = []
        for bucket in self.ring.ordered():
            if not (gte == 0 or bucket.start >= gte) or not bucket.start < lt:
                continue
            for raw, w in bucket.flows.items():
                if raw not in sums:
                    sums[raw] = (0, 0, _Window())
                    matched.append(raw)
                if bucket.end > lt:
                    continue
                first, last, total = sums[raw]
                sums[raw] = (first or bucket.start, max(last, bucket.end), total)
                total.packets_in += w.packets_in
                total.packets_out += w.packets_out
                total.bytes_in += w.bytes_in
                total.bytes_out += w.bytes_out
                total.started += w.started
                total.completed += w.completed
                total.live += w.live
        out = []
        for raw in matched:
            first, last, w = sums[raw]
            k = self.ring.keys[raw]
            flow = pb.Flow(start_time=first, end_time=last, packets_in=w.packets_in,
                           packets_out=w.packets_out, bytes_in=w.bytes_in,
                           bytes_out=w.bytes_out, num_connections_started=w.started,
                           num_connections_completed=w.completed, num_connections_live=w.live)
            flow.Key.CopyFrom(k.key)
            out.append((k.id, flow))
        self.listed += len(out)
        return out

    def time_range(self, gte: int, lt: int) -> tuple[int, int]:
        """Goldmane's normalizeTimeRange: 0 is the beginning of history / now."""
        gte = self.ring.beginning() if gte == 0 else self._normalize(gte)
        lt = self.now if lt == 0 else self._normalize(lt)
        return gte, lt

    def statistics(self, request: pb.StatisticsRequest) -> list[pb.StatisticsResult]:
        gte, lt = self.time_range(request.start_time_gte, request.start_time_lt)
        results: dict[_StatKey, pb.StatisticsResult] = {}
        for bucket in self.ring.ordered():
            if not gte <= bucket.start < lt:
                continue
            for key, values in _bucket_statistics(bucket, request).items():
                res = results.get(key)
                if res is None:
                    res = results[key] = _statistics_result(key, request)
                series = (res.allowed_in, res.allowed_out, res.denied_in, res.denied_out,
                          res.passed_in, res.passed_out)
                for seq, v in zip(series, values, strict=True):
                    if request.time_series:
                        seq.append(v)
                    elif seq:
                        seq[0] += v
                    else:
                        seq.append(v)
                if request.time_series:
                    res.x.append(bucket.start)
        return [results[k] for k in sorted(results)]


_StatKey = tuple[str, str, int, str, int, int, str]
"""(namespace, name, kind, tier, action, rule index, direction); the last three are 0, 0, ""
when grouping by policy (stats.go ``policyID``)."""

_DIRECTION = {pb.Src: "egress", pb.Dst: "ingress"}
_OFFSET = {pb.Allow: 0, pb.Deny: 2, pb.Pass: 4}


def _bucket_statistics(bucket: _Bucket, request: pb.StatisticsRequest
                       ) -> dict[_StatKey, list[int]]:
    """One bucket's counts per policy (or rule) key, as stats.go's statisticsIndex keeps them:
    each flow adds once to each policy (and rule) of its enforced and pending traces."""
    out: dict[_StatKey, list[int]] = {}
    match = request.policy_match if request.HasField("policy_match") else None
    for flow in bucket.hits:
        key = flow.Key
        direction = _DIRECTION.get(key.reporter, "ingress")
        if request.type == pb.PacketCount:
            vin, vout = flow.packets_in, flow.packets_out
        elif request.type == pb.ByteCount:
            vin, vout = flow.bytes_in, flow.bytes_out
        else:
            vin = flow.num_connections_live if direction == "ingress" else 0
            vout = flow.num_connections_live if direction == "egress" else 0
        seen: dict[_StatKey, int] = {}
        for hit in [*key.policies.enforced_policies, *key.policies.pending_policies]:
            meta = _staged_or_trigger(hit)
            if not _matches(match, meta, hit.action):
                continue
            if request.group_by == pb.PolicyRule:
                k: _StatKey = (meta.namespace, meta.name, meta.kind, meta.tier, hit.action,
                               meta.policy_index, direction)
            else:
                k = (meta.namespace, meta.name, meta.kind, meta.tier, 0, 0, "")
            seen.setdefault(k, hit.action)
        for k, action in seen.items():
            offset = _OFFSET.get(cast(Any, action))
            if offset is None:
                continue
            values = out.setdefault(k, [0, 0, 0, 0, 0, 0])
            values[offset] += vin
            values[offset + 1] += vout
    return out


def _matches(match: pb.PolicyMatch | None, hit: pb.PolicyHit, action: int) -> bool:
    if match is None:
        return True
    for sm, value in ((match.namespace, hit.namespace), (match.name, hit.name),
                      (match.tier, hit.tier)):
        if sm.value and not (value == sm.value if sm.type == pb.Exact else sm.value in value):
            return False
    if match.kind and match.kind != hit.kind:
        return False
    return not (match.action and match.action != action)


def _statistics_result(key: _StatKey, request: pb.StatisticsRequest) -> pb.StatisticsResult:
    namespace, name, kind, tier, action, rule_index, dirname = key
    policy = pb.PolicyHit(namespace=namespace, name=name, kind=cast(Any, kind), tier=tier)
    direction = pb.Any
    if request.group_by == pb.PolicyRule:
        policy.action = cast(Any, action)
        policy.rule_index = rule_index
        direction = pb.Egress if dirname == "egress" else pb.Ingress
    return pb.StatisticsResult(policy=policy, direction=direction, group_by=request.group_by,
                               type=request.type)


class _Flows(pbg.FlowsServicer):
    def __init__(self, gm: GoldmaneStandIn) -> None:
        self.gm = gm

    async def Stream(self, request: pb.FlowStreamRequest,
                     context: grpc.aio.ServicerContext[pb.FlowStreamRequest, pb.FlowResult],
                     ) -> AsyncIterator[pb.FlowResult]:
        async for result in self.gm.stream(request):
            yield result

    async def List(self, request: pb.FlowListRequest,
                   context: grpc.aio.ServicerContext[pb.FlowListRequest, pb.FlowListResult],
                   ) -> pb.FlowListResult:
        self.gm.list_calls += 1
        gte, lt = self.gm.time_range(request.start_time_gte, request.start_time_lt)
        if gte >= lt:
            await context.abort(grpc.StatusCode.UNKNOWN,
                                f"startTimeGt ({gte}) must be less than startTimeLt ({lt})")
        flows = sorted(self.gm.aggregate(gte, lt), key=lambda f: (-f[1].start_time, f[0]))
        total = len(flows)
        if request.page_size > 0:
            pages = (total + request.page_size - 1) // request.page_size
            first = request.page * request.page_size
            flows = flows[first:first + request.page_size]
        else:
            pages = 1 if total else 0
        return pb.FlowListResult(
            meta=pb.ListMetadata(totalPages=pages, totalResults=total),
            flows=[pb.FlowResult(id=i, flow=f) for i, f in flows])

    async def FilterHints(self, request: pb.FilterHintsRequest,
                          context: grpc.aio.ServicerContext[pb.FilterHintsRequest,
                                                            pb.FilterHintsResult],
                          ) -> pb.FilterHintsResult:
        field_of: dict[int, Callable[[pb.FlowKey], str]] = {
            pb.FilterTypeDestName: lambda k: k.dest_name,
            pb.FilterTypeSourceName: lambda k: k.source_name,
            pb.FilterTypeDestNamespace: lambda k: k.dest_namespace,
            pb.FilterTypeSourceNamespace: lambda k: k.source_namespace,
        }
        get = field_of.get(request.type)
        if get is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"unsupported filter type {request.type}")
            raise AssertionError("unreachable")
        gte, lt = self.gm.time_range(request.start_time_gte, request.start_time_lt)
        values = sorted({get(f.Key) for _, f in self.gm.aggregate(gte, lt)})
        return pb.FilterHintsResult(meta=pb.ListMetadata(totalPages=1, totalResults=len(values)),
                                    hints=[pb.FilterHint(value=v) for v in values])


class _Statistics(pbg.StatisticsServicer):
    def __init__(self, gm: GoldmaneStandIn) -> None:
        self.gm = gm

    async def List(self, request: pb.StatisticsRequest,
                   context: grpc.aio.ServicerContext[pb.StatisticsRequest, pb.StatisticsResult],
                   ) -> AsyncIterator[pb.StatisticsResult]:
        for result in self.gm.statistics(request):
            yield result
