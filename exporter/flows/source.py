"""The Goldmane stream loop: connect over mutual TLS, follow ``Flows.Stream``, resume on failure.

One long-running job (``goldmane-flows``) owns a :class:`~exporter.flows.counters.FlowCounters`
and feeds it through a :class:`~exporter.flows.ingest.WindowTracker` per connection. The loop:

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
from collections.abc import Callable

import grpc
import structlog

from exporter.flows.counters import FlowCounters
from exporter.flows.ingest import WindowTracker
from exporter.flows.tls import ClientFiles, CredentialsError
from exporter.goldmane import api_pb2 as pb
from exporter.goldmane import api_pb2_grpc as pbg

log = structlog.get_logger(__name__)

AGGREGATION_INTERVAL = 15
"""Goldmane streams 15-second windows only (FlowStreamRequest: "It must always be 15s")."""

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


def backoff_delay(attempt: int, *, initial: float, maximum: float,
                  rand: Callable[[float, float], float] = random.uniform) -> float:
    """Full jitter: uniform in [0, min(maximum, initial * 2**attempt)]."""
    return rand(0.0, min(maximum, initial * (2 ** min(attempt, 30))))


class GoldmaneSource:
    """Owns the counters; ``run()`` is the supervised job."""

    def __init__(self, *, address: str, files: ClientFiles, counters: FlowCounters,
                 server_name: str = "", mark: Callable[[bool], None] | None = None,
                 stall_timeout: float = 120.0, quiet: float = 2.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 files_check_interval: float = 10.0) -> None:
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

    @property
    def pending(self) -> bool:
        """Whether received flows wait for their window to be committed."""
        return self._tracker is not None and self._tracker.pending

    def _channel(self, credentials: grpc.ChannelCredentials) -> grpc.aio.Channel:
        options: list[tuple[str, str | int]] = [
            ("grpc.keepalive_time_ms", KEEPALIVE_MS),
            ("grpc.keepalive_timeout_ms", 20_000),
            # Our own backoff decides when to retry; do not let the channel hammer on its own.
            ("grpc.initial_reconnect_backoff_ms", 1000),
            ("grpc.enable_retries", 0),
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
