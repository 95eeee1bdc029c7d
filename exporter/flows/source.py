"""The Goldmane loop: connect over mutual TLS, read the completed flow windows, resume on failure.

One long-running job (``goldmane-flows``) owns a :class:`~exporter.flows.counters.FlowCounters`.
It reads Goldmane's Flows API in one of two ways (``--goldmane-read``), with the same counting
rules and the same resume point (the end of the last window counted):

- ``poll`` (default): every ``poll_interval`` (15 s, Goldmane's window), ``Flows.List`` with
  ``start_time_gte`` = the resume point and ``start_time_lt`` = 30 s before Goldmane's now: one
  reply holds, per flow key, the sum of its windows in that range (``RingIndex.List``: windows
  with start >= gte and end <= lt), counted and committed at once. One gRPC message per poll
  instead of one per flow: about ten times the stream's throughput in Python (bench/flow_ingest).
  The first poll only learns where the completed windows end (nothing before the exporter
  started is counted).
- ``stream``: ``Flows.Stream``, Goldmane's push API, one message per flow key and window, as
  described below.

The stream loop:

1. reads the client certificate, key and CA (``exporter.flows.tls``) and opens a channel;
2. calls ``Flows.Stream`` with ``aggregation_interval=15`` and ``start_time_gte`` = where the
   previous connection stopped (0, "now", on the first one: history before the exporter started
   is not counted, so a restarted exporter never counts a window its predecessor counted);
3. counts every result; a watchdog commits the window being received once the stream has been
   quiet for ``quiet`` seconds, marks the source up once the channel is READY, reconnects when
   nothing arrived for ``stall_timeout`` (a stalled stream) or when the certificate files change;
4. on any failure (TLS, refused, a server that is not Goldmane, Goldmane restarting, a stall)
   logs it, counts it in ``reconnects[reason]``, marks the source down and retries after a
   jittered exponential backoff (full jitter, ``backoff_initial`` doubling to ``backoff_max``;
   reset after a connection that delivered flows).

Reasons (bounded): ``credentials`` (the files cannot be read), ``tls`` (a handshake failed),
``unavailable`` (refused, reset, Goldmane restarting), ``stalled``, ``certificate_changed``,
``ended`` (the server closed the stream cleanly), and the lowercased gRPC status code of any
other error (``unimplemented``: a server without Goldmane's API; ``internal``, ...).

Why ``Flows.Stream`` and not ``Statistics.List``: ``docs/goldmane.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence

import grpc
import structlog

from exporter.flows.counters import Delta, FlowCounters
from exporter.flows.ingest import WindowTracker, attribute
from exporter.flows.tls import ClientFiles, CredentialsError
from exporter.goldmane import api_pb2 as pb
from exporter.goldmane import api_pb2_grpc as pbg

log = structlog.get_logger(__name__)

AGGREGATION_INTERVAL = 15
"""Goldmane streams 15-second windows only (FlowStreamRequest: "It must always be 15s")."""

LIST_LAG = 30
"""``poll`` asks for windows that ended at least this many seconds ago (``start_time_lt`` = -30,
relative to Goldmane's clock): older than the bucket the stream considers complete, so flows
Felix reports late have had one more interval to arrive."""

LIST_FIRST_LOOKBACK = 60
"""The first poll (``start_time_gte`` = -60) only learns where Goldmane's completed windows end;
what it returns happened before the exporter started and is not counted."""

MAX_REPLY_BYTES = 512 * 1024 * 1024
"""A poll's reply holds every flow key of the windows since the last poll in one message
(Goldmane's List does not page deterministically within a window), so the 4 MB default is raised.
Goldmane's Go server sends up to 2 GB."""

CHUNK = 5000
"""Flows counted between yields to the event loop, so a large reply never holds up a scrape."""

KEEPALIVE_MS = 300_000
"""HTTP/2 keepalive pings every 5 minutes: Goldmane's Go gRPC server keeps the default
enforcement policy (MinTime 5 min) and closes connections that ping more often; stalls shorter
than that are caught by ``stall_timeout``."""

_TLS_WORDS = ("ssl", "tls", "handshake", "certificate")


def failure_reason(exc: grpc.aio.AioRpcError) -> str:
    """A bounded label for a failed call."""
    code = exc.code()
    details = (exc.details() or "").lower()
    if code == grpc.StatusCode.UNAVAILABLE and any(w in details for w in _TLS_WORDS):
        return "tls"
    return str(code.name).lower()


def _nothing_completed_yet(exc: grpc.aio.AioRpcError) -> bool:
    """Goldmane's answer to a List whose range is empty after normalization
    (goldmane_filters.go ``validateListRequest``: "startTimeGt (x) must be less than
    startTimeLt (y)"), which a poll gets when no window completed since the previous one."""
    return (exc.code() == grpc.StatusCode.UNKNOWN
            and "must be less than startTimeLt" in (exc.details() or ""))


def backoff_delay(attempt: int, *, initial: float, maximum: float,
                  rand: Callable[[float, float], float] = random.uniform) -> float:
    """Full jitter: uniform in [0, min(maximum, initial * 2**attempt)]."""
    return rand(0.0, min(maximum, initial * (2 ** min(attempt, 30))))


class GoldmaneSource:
    """Owns the counters; ``run()`` is the supervised job."""

    def __init__(self, *, address: str, files: ClientFiles, counters: FlowCounters,
                 server_name: str = "", mark: Callable[[bool], None] | None = None,
                 read: str = "poll", poll_interval: float = 15.0, poll_timeout: float = 60.0,
                 stall_timeout: float = 120.0, quiet: float = 2.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 files_check_interval: float = 10.0) -> None:
        if read not in ("poll", "stream"):
            raise ValueError(f"read must be poll or stream, not {read!r}")
        self.read = read
        self.poll_interval = poll_interval
        self.poll_timeout = poll_timeout
        self.address = address
        self.files = files
        self.counters = counters
        self.server_name = server_name
        self._mark = mark or (lambda ok: None)
        self.stall_timeout = stall_timeout
        self.quiet = quiet
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.files_check_interval = files_check_interval
        self.resume_from: int | None = None
        """Start time of the next connection's first window (None: from now)."""
        self.connected = asyncio.Event()
        """Set while a stream is open on a READY channel (tests wait on it)."""
        self.connections = 0
        self._tracker: WindowTracker | None = None
        self._counting = False

    @property
    def pending(self) -> bool:
        """Whether received flows wait for their window (or poll) to be committed."""
        return self._counting or (self._tracker is not None and self._tracker.pending)

    def _channel(self, credentials: grpc.ChannelCredentials) -> grpc.aio.Channel:
        options: list[tuple[str, str | int]] = [
            ("grpc.keepalive_time_ms", KEEPALIVE_MS),
            ("grpc.keepalive_timeout_ms", 20_000),
            # Our own backoff decides when to retry; do not let the channel hammer on its own.
            ("grpc.initial_reconnect_backoff_ms", 1000),
            ("grpc.enable_retries", 0),
            ("grpc.max_receive_message_length", MAX_REPLY_BYTES),
        ]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        return grpc.aio.secure_channel(self.address, credentials, options=options)

    async def run(self) -> None:
        """Connect, stream, resume; forever (until cancelled)."""
        self._set_up(False)
        attempt = 0
        while True:
            delivered, reason = await self.connect_once()
            self.counters.reconnects[reason] += 1
            if delivered:
                attempt = 0
            delay = backoff_delay(attempt, initial=self.backoff_initial,
                                  maximum=self.backoff_max)
            attempt += 1
            log.info("goldmane_reconnecting", reason=reason, delay=round(delay, 2),
                     resume_from=self.resume_from)
            await asyncio.sleep(delay)

    async def connect_once(self) -> tuple[bool, str]:
        """One connection: (whether it delivered any flow, why it ended)."""
        try:
            loaded = self.files.load()
        except CredentialsError as exc:
            log.warning("goldmane_credentials_unreadable", error=str(exc))
            self._set_up(False)
            return False, "credentials"
        if self.read == "poll":
            return await self._poll_connection(loaded.credentials())
        tracker = self._tracker = WindowTracker(self.counters, resume_from=self.resume_from)
        start = self.resume_from or 0
        request = pb.FlowStreamRequest(start_time_gte=start,
                                       aggregation_interval=AGGREGATION_INTERVAL)
        self.connections += 1
        received_before = self.counters.received
        state = _Watch()
        channel = self._channel(loaded.credentials())
        try:
            call = pbg.FlowsStub(channel).Stream(request)
            watchdog = asyncio.create_task(self._watchdog(channel, call, tracker, state),
                                           name="goldmane-watchdog")
            try:
                reason = await self._read(call, tracker, state)
            finally:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
        finally:
            tracker.abandon()
            self.resume_from = tracker.resume_from
            self.connected.clear()
            self._set_up(False)
            await channel.close(grace=None)
        delivered = self.counters.received > received_before
        return delivered, reason

    async def _poll_connection(self, credentials: grpc.ChannelCredentials) -> tuple[bool, str]:
        """Poll ``Flows.List`` for the completed windows since the resume point, every
        ``poll_interval``, on one channel, until a call fails or the certificate changes."""
        self.connections += 1
        received_before = self.counters.received
        state = _Watch()
        channel = self._channel(credentials)
        stub = pbg.FlowsStub(channel)
        try:
            while True:
                if self.files.changed():
                    log.info("goldmane_certificate_changed")
                    reason = "certificate_changed"
                    break
                first = self.resume_from is None
                gte = -LIST_FIRST_LOOKBACK if self.resume_from is None else self.resume_from
                request = pb.FlowListRequest(start_time_gte=gte, start_time_lt=-LIST_LAG)
                try:
                    reply = await stub.List(request, timeout=self.poll_timeout)
                except grpc.aio.AioRpcError as exc:
                    if _nothing_completed_yet(exc):
                        # The resume point is not yet 30 s in Goldmane's past (validateTimeRange
                        # refuses gte >= lt): no window completed since the last poll.
                        if not state.up:
                            self._connected(state)
                        await asyncio.sleep(self.poll_interval)
                        continue
                    reason = failure_reason(exc)
                    log.warning("goldmane_list_failed", reason=reason, code=exc.code().name,
                                details=exc.details(), address=self.address)
                    break
                if not state.up:
                    self._connected(state)
                if first:
                    ends = [r.flow.end_time for r in reply.flows if r.flow.end_time]
                    self.resume_from = max(ends) if ends else None
                else:
                    await self._count_reply(reply.flows)
                await asyncio.sleep(self.poll_interval)
        finally:
            self.connected.clear()
            self._set_up(False)
            await channel.close(grace=None)
        return self.counters.received > received_before, reason

    async def _count_reply(self, results: Sequence[pb.FlowResult]) -> None:
        """Count one poll's flows (each the sum of a key's windows since the resume point) and
        commit them at once; the resume point moves to the end of the newest window."""
        counters = self.counters
        floor = self.resume_from or 0
        delta = Delta()
        self._counting = True
        try:
            await self._sum_reply(results, floor, delta)
        finally:
            self._counting = False
        newest = max([floor, *(r.flow.end_time for r in results)])
        if delta.flows:
            counters.commit(delta)
        if newest > floor:
            self.resume_from = newest

    async def _sum_reply(self, results: Sequence[pb.FlowResult], floor: int,
                         delta: Delta) -> None:
        counters = self.counters
        for start in range(0, len(results), CHUNK):
            for result in results[start:start + CHUNK]:
                counters.received += 1
                flow = result.flow
                if flow.start_time and flow.start_time < floor:
                    counters.dropped["already_counted"] += 1
                    continue
                reason = attribute(flow, delta, counters)
                if reason is not None:
                    counters.dropped[reason] += 1
            if start + CHUNK < len(results):
                await asyncio.sleep(0)

    async def _read(self, call: grpc.aio.UnaryStreamCall[pb.FlowStreamRequest, pb.FlowResult],
                    tracker: WindowTracker, state: _Watch) -> str:
        loop = asyncio.get_running_loop()
        try:
            async for result in call:
                state.last = loop.time()
                if not state.up:
                    self._connected(state)
                tracker.receive(result)
        except grpc.aio.AioRpcError as exc:
            reason = failure_reason(exc)
            log.warning("goldmane_stream_failed", reason=reason, code=exc.code().name,
                        details=exc.details(), address=self.address)
            return reason
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if state.cancel_reason is None or (task is not None and task.cancelling()):
                raise
            log.warning("goldmane_stream_restarted", reason=state.cancel_reason,
                        address=self.address)
            return state.cancel_reason
        log.warning("goldmane_stream_ended", address=self.address)
        return "ended"

    def _connected(self, state: _Watch) -> None:
        state.up = True
        self.connected.set()
        self._set_up(True)
        log.info("goldmane_connected", address=self.address, resume_from=self.resume_from)

    def _set_up(self, ok: bool) -> None:
        self._mark(ok)

    async def _watchdog(self, channel: grpc.aio.Channel,
                        call: grpc.aio.UnaryStreamCall[pb.FlowStreamRequest, pb.FlowResult],
                        tracker: WindowTracker, state: _Watch) -> None:
        loop = asyncio.get_running_loop()
        state.last = loop.time()
        tick = max(0.05, min(self.quiet, self.stall_timeout) / 4)
        next_files_check = loop.time() + self.files_check_interval
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            if not state.up and channel.get_state() == grpc.ChannelConnectivity.READY:
                self._connected(state)
            silent = now - state.last
            if silent >= self.quiet:
                tracker.quiet()
            if silent >= self.stall_timeout:
                state.cancel_reason = "stalled"
                call.cancel()
                return
            if now >= next_files_check:
                next_files_check = now + self.files_check_interval
                if self.files.changed():
                    log.info("goldmane_certificate_changed")
                    state.cancel_reason = "certificate_changed"
                    call.cancel()
                    return


class _Watch:
    """What the reader and the watchdog of one connection share."""

    __slots__ = ("cancel_reason", "last", "up")

    def __init__(self) -> None:
        self.last = 0.0
        self.up = False
        self.cancel_reason: str | None = None
