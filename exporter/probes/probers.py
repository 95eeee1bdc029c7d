"""The prober registry and the one place where an attempt's timeout is enforced.

A prober is ``async def probe_x(probe: Probe) -> Attempt``: it tries once and classifies what it
saw. It may leave silence to the caller: :func:`run_attempt` bounds every attempt by the
probe's ``timeout`` (``asyncio.timeout``, which cancels the prober and closes its sockets) and
turns the expiry into ``timeout`` (``dns_timeout`` for DNS). A prober that raises is reported as
``error`` with the exception in the detail, never as a crash of the scheduler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

import structlog

from exporter.probes.config import Probe, ProtocolName, format_duration
from exporter.probes.dns import probe_dns
from exporter.probes.http import probe_http
from exporter.probes.icmp import probe_icmp
from exporter.probes.outcome import Attempt, Outcome
from exporter.probes.tcp import probe_tcp

log = structlog.get_logger(__name__)

Prober = Callable[[Probe], Awaitable[Attempt]]

PROBERS: Mapping[ProtocolName, Prober] = MappingProxyType({
    "dns": probe_dns,
    "http": probe_http,
    "icmp": probe_icmp,
    "tcp": probe_tcp,
})
"""Protocol name to prober; read-only."""

TIMEOUT_OUTCOMES: Mapping[ProtocolName, Outcome] = MappingProxyType({
    "dns": Outcome.DNS_TIMEOUT,
    "http": Outcome.TIMEOUT,
    "icmp": Outcome.TIMEOUT,
    "tcp": Outcome.TIMEOUT,
})
"""What silence until the timeout means, per protocol."""


async def run_attempt(probe: Probe, *, probers: Mapping[ProtocolName, Prober] = PROBERS
                      ) -> Attempt:
    """One attempt of ``probe``, always finished within ``probe.timeout``."""
    prober = probers[probe.protocol]
    try:
        async with asyncio.timeout(probe.timeout):
            return await prober(probe)
    except TimeoutError:
        return Attempt(TIMEOUT_OUTCOMES[probe.protocol],
                       f"no answer within {format_duration(probe.timeout)}")
    except Exception as exc:
        log.exception("probe_failed", probe=probe.name, protocol=probe.protocol)
        return Attempt(Outcome.ERROR, f"prober failed: {exc!r}")


__all__ = ["PROBERS", "TIMEOUT_OUTCOMES", "Prober", "run_attempt"]
