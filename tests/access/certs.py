"""Test certificates made with the openssl command line (``make test`` installs openssl): a CA,
server certificates for 127.0.0.1 and client certificates it signs. Keys are EC P-256: fast to
make."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd, timeout=60)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def make_ca(folder: Path, name: str) -> Pair:
    """A self-signed CA ``CN=<name>`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    return Pair(cert, key)


def make_cert(folder: Path, name: str, ca: Pair, *, server: bool) -> Pair:
    """A certificate ``CN=<name>`` signed by ``ca``: for 127.0.0.1 (server) or a client."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key, csr = folder / f"{name}.crt", folder / f"{name}.key", folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                   if server else "extendedKeyUsage=clientAuth\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", cwd=folder)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
             cwd=folder)
    return Pair(cert, key)
