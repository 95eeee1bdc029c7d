"""The HTTPS server context, rebuilt when its files change.

A mounted Secret rotates by swapping a symlink, so the files are watched by what ``stat`` says
of them (inode, mtime, size, symlinks followed), checked at most once per ``check_interval`` when
a connection arrives: no background task, and a rotation takes effect for the next connection.
A context is built from the three files together; when that fails (a rotation caught half-way:
new certificate, old key) the previous context stays in use, the failure is logged, and the
files are tried again when they change again. Connections already open keep their session.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

Signature = tuple[tuple[int, int, int] | None, ...]


def build_context(cert_file: str, key_file: str, client_ca_file: str = "") -> ssl.SSLContext:
    """A TLS 1.2+ server context; with ``client_ca_file`` clients must present a certificate
    that CA signed. Raises OSError or ssl.SSLError when a file is missing or does not fit."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        ctx.load_verify_locations(cafile=client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class TlsFiles:
    """The current server context for a certificate, key and optional client CA."""

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str = "", *,
                 check_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """Loads the files now; OSError or ssl.SSLError when they do not make a context."""
        self.files = tuple(f for f in (cert_file, key_file, client_ca_file) if f)
        self._cert, self._key, self._ca = cert_file, key_file, client_ca_file
        self._interval = check_interval
        self._clock = clock
        self._signature = self._stat()
        self._context = build_context(cert_file, key_file, client_ca_file)
        self._checked = clock()
        self.reloads = 0
        """Successful reloads since start."""

    def _stat(self) -> Signature:
        out: list[tuple[int, int, int] | None] = []
        for path in self.files:
            try:
                st = os.stat(path)
            except OSError:
                out.append(None)
            else:
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def context(self) -> ssl.SSLContext:
        """The context for a new connection, rebuilt first when the files changed."""
        now = self._clock()
        if now - self._checked < self._interval:
            return self._context
        self._checked = now
        signature = self._stat()
        if signature == self._signature:
            return self._context
        self._signature = signature
        try:
            self._context = build_context(self._cert, self._key, self._ca)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("tls_reload_failed", files=list(self.files), reason=str(exc),
                        keeping="the previous certificate")
        else:
            self.reloads += 1
            log.info("tls_reloaded", files=list(self.files))
        return self._context


__all__ = ["TlsFiles", "build_context"]
