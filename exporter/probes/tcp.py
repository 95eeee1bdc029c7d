"""TCP prober: a connect and an immediate close.

``success`` when the handshake completes, ``refused`` on RST (or ICMP port unreachable),
``unreachable`` on no route or ICMP host/net unreachable or prohibited; silence is cut by the
run's timeout (``timeout``).
"""

from __future__ import annotations

import asyncio
import socket

from exporter.probes.config import Probe, TcpParams
from exporter.probes.net import Failed, describe_oserror, outcome_for_oserror, resolve
from exporter.probes.outcome import Attempt, Outcome


async def probe_tcp(probe: Probe) -> Attempt:
    """Connect to ``target`` (host:port) once."""
    params = probe.params
    assert isinstance(params, TcpParams)
    loop = asyncio.get_running_loop()
    try:
        family, addr = await resolve(params.host, params.port, socktype=socket.SOCK_STREAM)
    except Failed as failed:
        return failed.attempt
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, addr)
        except OSError as exc:
            return Attempt(outcome_for_oserror(exc), f"connect {probe.target}: "
                                                     f"{describe_oserror(exc)}")
    return Attempt(Outcome.SUCCESS, f"connected to {probe.target}")


__all__ = ["probe_tcp"]
