"""The client side of Goldmane's mandatory mutual TLS: certificate, key and CA from files.

Goldmane requires and verifies a client certificate (calico crypto/pkg/tls ``NewMutualTLSConfig``,
``RequireAndVerifyClientCert``), so the three files are mandatory. They are usually a mounted
Secret, which the kubelet swaps atomically when it rotates: :class:`ClientFiles` reads them
together, remembers a fingerprint (size and modification time of each), and
:meth:`ClientFiles.changed` tells the stream loop to reconnect with the new ones. A read that
fails (a file missing half-way through a rotation) raises :class:`CredentialsError`; the loop
logs it, counts it and retries with backoff.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc


class CredentialsError(OSError):
    """A client certificate, key or CA file cannot be read (or is empty)."""


@dataclass(frozen=True, slots=True)
class Loaded:
    cert: bytes
    key: bytes
    ca: bytes
    fingerprint: tuple[tuple[int, int], ...]

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


class ClientFiles:
    """The three PEM files; ``load()`` on every (re)connect, ``changed()`` while connected."""

    def __init__(self, *, cert: str, key: str, ca: str) -> None:
        self._paths = (Path(cert), Path(key), Path(ca))
        self._loaded: Loaded | None = None

    def _fingerprint(self) -> tuple[tuple[int, int], ...]:
        out = []
        for path in self._paths:
            st = os.stat(path)
            out.append((st.st_size, st.st_mtime_ns))
        return tuple(out)

    def load(self) -> Loaded:
        """Read all three files; CredentialsError names the one that failed."""
        contents = []
        try:
            before = self._fingerprint()
        except OSError as exc:
            raise CredentialsError(f"{exc.filename}: {exc.strerror}") from None
        for path in self._paths:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise CredentialsError(f"{path}: {exc.strerror}") from None
            if not data.strip():
                raise CredentialsError(f"{path}: empty")
            contents.append(data)
        self._loaded = Loaded(contents[0], contents[1], contents[2], before)
        return self._loaded

    def changed(self) -> bool:
        """True when a file differs from what the last ``load()`` read (or vanished)."""
        if self._loaded is None:
            return False
        try:
            return self._fingerprint() != self._loaded.fingerprint
        except OSError:
            return True
