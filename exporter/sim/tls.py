"""A self-signed TLS certificate for the emulator, made with the standard library only.

kubectl (client-go) sends bearer tokens only over TLS, so the emulator can serve HTTPS. The
certificate is an RSA-2048, SHA-256, X.509 v3 certificate for ``localhost``, ``127.0.0.1`` and
``::1``, valid for ten years, that is its own CA (``CA:TRUE``), so the kubeconfig can carry it as
``certificate-authority-data``. The key is generated per server instance and never leaves the
temporary directory it is written to.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
from datetime import UTC, datetime, timedelta

_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def _int(n: int) -> bytes:
    raw = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big")
    return _tlv(0x02, raw)


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body.extend(reversed(chunk))
    return _tlv(0x06, bytes(body))


_NULL = b"\x05\x00"


def _is_probable_prime(n: int, rounds: int = 24) -> bool:
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        a = secrets.randbelow(n - 3) + 2
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if _is_probable_prime(candidate):
            return candidate


def _pem(label: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode()


def _time(when: datetime) -> bytes:
    if when.year < 2050:
        return _tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, when.strftime("%Y%m%d%H%M%SZ").encode())


def self_signed(common_name: str = "sim-apiserver",
                hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"), *,
                client: bool = False) -> tuple[bytes, bytes]:
    """``(certificate PEM, PKCS#1 private key PEM)`` of a new self-signed server certificate
    (also valid for TLS client authentication with ``client``)."""
    e = 65537
    while True:
        p, q = _prime(1024), _prime(1024)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e:
            break
    n = p * q
    d = pow(e, -1, phi)
    key_der = _seq(_int(0), _int(n), _int(e), _int(d), _int(p), _int(q), _int(d % (p - 1)),
                   _int(d % (q - 1)), _int(pow(q, -1, p)))
    public_key = _seq(_int(n), _int(e))
    spki = _seq(_seq(_oid("1.2.840.113549.1.1.1"), _NULL), _tlv(0x03, b"\x00" + public_key))
    name = _seq(_tlv(0x31, _seq(_oid("2.5.4.3"), _tlv(0x0C, common_name.encode()))))
    sans = b""
    for host in hosts:
        try:
            sans += _tlv(0x87, ipaddress.ip_address(host).packed)
        except ValueError:
            sans += _tlv(0x82, host.encode())
    ski = hashlib.sha1(public_key, usedforsecurity=False).digest()
    extensions = _seq(
        _seq(_oid("2.5.29.19"), b"\x01\x01\xff", _tlv(0x04, _seq(b"\x01\x01\xff"))),
        _seq(_oid("2.5.29.15"), b"\x01\x01\xff", _tlv(0x04, b"\x03\x02\x02\xa4")),
        _seq(_oid("2.5.29.37"), _tlv(0x04, _seq(_oid("1.3.6.1.5.5.7.3.1"), *(
            (_oid("1.3.6.1.5.5.7.3.2"),) if client else ())))),
        _seq(_oid("2.5.29.14"), _tlv(0x04, _tlv(0x04, ski))),
        _seq(_oid("2.5.29.17"), _tlv(0x04, _seq(sans))),
    )
    now = datetime.now(UTC).replace(microsecond=0)
    sig_alg = _seq(_oid("1.2.840.113549.1.1.11"), _NULL)
    tbs = _seq(
        _tlv(0xA0, _int(2)),
        _int(secrets.randbits(120) | (1 << 119)),
        sig_alg,
        name,
        _seq(_time(now - timedelta(hours=1)), _time(now + timedelta(days=3650))),
        name,
        spki,
        _tlv(0xA3, extensions),
    )
    k = (n.bit_length() + 7) // 8
    digest_info = _SHA256_DIGEST_INFO + hashlib.sha256(tbs).digest()
    em = b"\x00\x01" + b"\xff" * (k - len(digest_info) - 3) + b"\x00" + digest_info
    signature = pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")
    cert_der = _seq(tbs, sig_alg, _tlv(0x03, b"\x00" + signature))
    return _pem("CERTIFICATE", cert_der), _pem("RSA PRIVATE KEY", key_der)
