"""Socket-level helpers shared by the probers: name resolution and errno to outcome mapping.

A prober signals a definite outcome found deep in a helper by raising :class:`Failed`; every
``OSError`` it does not handle itself is classified by :func:`outcome_for_oserror`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket

from exporter.probes.outcome import Attempt, Outcome

_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN,
                          errno.ENETDOWN, errno.EADDRNOTAVAIL})
_REFUSED = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})
_TIMEOUT = frozenset({errno.ETIMEDOUT})
_FIREWALL = frozenset({errno.EPERM, errno.EACCES})
_IP_RECVERR = 11
"""Linux IP_RECVERR and IPV6_RECVERR (the socket module does not export them)."""
_IPV6_RECVERR = 25


class Failed(Exception):
    """A helper found the attempt's outcome; the prober returns ``attempt``."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.attempt = Attempt(outcome, detail)


def outcome_for_oserror(exc: OSError) -> Outcome:
    """Classify a socket error: refused, unreachable, timeout, or error for anything else.

    EPERM/EACCES on connect or send means a firewall in the agent's own network namespace
    refused to let the packet out, which we report as ``unreachable``. Permission problems when
    *opening* a socket are handled by the prober (they are ``error``).
    """
    code = exc.errno
    if code in _REFUSED:
        return Outcome.REFUSED
    if code in _UNREACHABLE or code in _FIREWALL:
        return Outcome.UNREACHABLE
    if code in _TIMEOUT:
        return Outcome.TIMEOUT
    return Outcome.ERROR


def describe_oserror(exc: OSError) -> str:
    """``ECONNREFUSED (Connection refused)`` style text for a socket error."""
    if exc.errno is None:
        return str(exc) or type(exc).__name__
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    return f"{name} ({os.strerror(exc.errno)})"


def outcome_for_gaierror(exc: socket.gaierror) -> Outcome:
    """Classify a resolver failure: unknown name, resolver timeout, or error."""
    if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
        return Outcome.DNS_NXDOMAIN
    if exc.errno == socket.EAI_AGAIN:
        return Outcome.DNS_TIMEOUT
    if exc.errno == socket.EAI_FAIL:
        return Outcome.DNS_SERVFAIL
    return Outcome.ERROR


def enable_recverr(sock: socket.socket) -> None:
    """Have the kernel report every ICMP error about this socket's packets (host unreachable,
    prohibited, ...) as a socket error, not only the few it deems fatal."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)


async def resolve(host: str, port: int, *, socktype: int) -> tuple[int, tuple[object, ...]]:
    """The first (family, sockaddr) for host:port through the system resolver (libc, in the
    default executor); an IP literal is returned without any lookup."""
    loop = asyncio.get_running_loop()
    flags = socket.AI_NUMERICHOST
    try:
        infos = await loop.getaddrinfo(host, port, type=socktype, flags=flags)
    except socket.gaierror:
        try:
            infos = await loop.getaddrinfo(host, port, type=socktype)
        except socket.gaierror as exc:
            raise Failed(outcome_for_gaierror(exc),
                         f"cannot resolve {host}: {exc.strerror}") from None
    if not infos:
        raise Failed(Outcome.DNS_NXDOMAIN, f"cannot resolve {host}: no address")
    family, _, _, _, sockaddr = infos[0]
    return int(family), tuple(sockaddr)


__all__ = [
    "Failed",
    "describe_oserror",
    "enable_recverr",
    "outcome_for_gaierror",
    "outcome_for_oserror",
    "resolve",
]
