"""DNS wire format (RFC 1035): build a query, parse a response. Pure functions, no I/O.

Enough of the format for a probe: one question, recursion desired, no EDNS; answers of type A,
AAAA, CNAME, NS, PTR, MX, TXT and SRV rendered as text (other types as hex). Names in responses
are decompressed with a bound on pointer chains, and every read is bounds-checked:
:class:`DnsFormatError` for anything malformed.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

TYPES: dict[str, int] = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15,
                         "TXT": 16, "AAAA": 28, "SRV": 33, "OPT": 41}
TYPE_NAMES: dict[int, str] = {v: k for k, v in TYPES.items()}
CLASS_IN = 1

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
RCODE_NAMES = {NOERROR: "NOERROR", FORMERR: "FORMERR", SERVFAIL: "SERVFAIL",
               NXDOMAIN: "NXDOMAIN", NOTIMP: "NOTIMP", REFUSED: "REFUSED"}

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_MAX_POINTERS = 64


class DnsFormatError(ValueError):
    """A DNS message (or a name to put in one) is malformed."""


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    rtype: int
    rclass: int = CLASS_IN


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record; ``data`` is its rdata as text (``10 5 8080 web.example``)."""

    name: str
    rtype: int
    rclass: int
    ttl: int
    data: str


@dataclass(frozen=True, slots=True)
class Message:
    ident: int
    flags: int
    questions: tuple[Question, ...]
    answers: tuple[Record, ...]

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x8000)

    @property
    def truncated(self) -> bool:
        return bool(self.flags & 0x0200)

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F


def normalize_name(name: str) -> str:
    """Lower-case, without the trailing dot (the root is ``.``)."""
    return name.lower().removesuffix(".") or "."


def encode_name(name: str) -> bytes:
    """An absolute name in wire format; DnsFormatError for an empty or oversized label."""
    name = name.removesuffix(".")
    out = bytearray()
    if name:
        for label in name.split("."):
            raw = label.encode("ascii", errors="strict") if label.isascii() else b""
            if not raw or len(raw) > 63:
                raise DnsFormatError(f"bad label {label!r} in {name!r}")
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > 255:
        raise DnsFormatError(f"name {name!r} is longer than 255 bytes")
    return bytes(out)


def build_query(name: str, rtype: int, *, ident: int, recursion_desired: bool = True) -> bytes:
    """One-question query message."""
    flags = 0x0100 if recursion_desired else 0
    return (_HEADER.pack(ident & 0xFFFF, flags, 1, 0, 0, 0) + encode_name(name)
            + struct.pack("!HH", rtype, CLASS_IN))


def _need(data: bytes, offset: int, size: int) -> None:
    if offset < 0 or offset + size > len(data):
        raise DnsFormatError("message truncated")


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    """The (possibly compressed) name at offset, and the offset just after it."""
    labels: list[str] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        _need(data, offset, 1)
        length = data[offset]
        if length & 0xC0 == 0xC0:
            _need(data, offset, 2)
            if end < 0:
                end = offset + 2
            jumps += 1
            if jumps > _MAX_POINTERS:
                raise DnsFormatError("compression pointer loop")
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise DnsFormatError("unsupported label type")
        offset += 1
        if length == 0:
            break
        _need(data, offset, length)
        total += length + 1
        if total > 255:
            raise DnsFormatError("name longer than 255 bytes")
        labels.append(data[offset:offset + length].decode("ascii", errors="backslashreplace"))
        offset += length
    return (".".join(labels) or "."), (end if end >= 0 else offset)


def _rdata_text(data: bytes, rtype: int, start: int, length: int) -> str:
    rdata = data[start:start + length]
    if rtype == TYPES["A"]:
        if length != 4:
            raise DnsFormatError("A record is not 4 bytes")
        return str(ipaddress.IPv4Address(rdata))
    if rtype == TYPES["AAAA"]:
        if length != 16:
            raise DnsFormatError("AAAA record is not 16 bytes")
        return str(ipaddress.IPv6Address(rdata))
    if rtype in (TYPES["CNAME"], TYPES["NS"], TYPES["PTR"]):
        return _read_name(data, start)[0]
    if rtype == TYPES["MX"]:
        _need(data, start, 2)
        return f"{struct.unpack_from('!H', data, start)[0]} {_read_name(data, start + 2)[0]}"
    if rtype == TYPES["SRV"]:
        _need(data, start, 6)
        priority, weight, port = struct.unpack_from("!HHH", data, start)
        return f"{priority} {weight} {port} {_read_name(data, start + 6)[0]}"
    if rtype == TYPES["TXT"]:
        parts: list[str] = []
        pos = 0
        while pos < length:
            size = rdata[pos]
            if pos + 1 + size > length:
                raise DnsFormatError("TXT string overruns its record")
            parts.append(rdata[pos + 1:pos + 1 + size].decode("utf-8", errors="backslashreplace"))
            pos += 1 + size
        return "".join(parts)
    return rdata.hex()


def parse_message(data: bytes) -> Message:
    """Header, questions and answers of a message (authority and additional are skipped)."""
    _need(data, 0, _HEADER.size)
    ident, flags, qdcount, ancount, _, _ = _HEADER.unpack_from(data, 0)
    offset = _HEADER.size
    questions: list[Question] = []
    for _ in range(qdcount):
        name, offset = _read_name(data, offset)
        _need(data, offset, 4)
        rtype, rclass = struct.unpack_from("!HH", data, offset)
        offset += 4
        questions.append(Question(name, rtype, rclass))
    answers: list[Record] = []
    for _ in range(ancount):
        name, offset = _read_name(data, offset)
        _need(data, offset, _RR.size)
        rtype, rclass, ttl, rdlength = _RR.unpack_from(data, offset)
        offset += _RR.size
        _need(data, offset, rdlength)
        answers.append(Record(name, rtype, rclass, ttl, _rdata_text(data, rtype, offset, rdlength)))
        offset += rdlength
    return Message(ident, flags, tuple(questions), tuple(answers))


__all__ = [
    "CLASS_IN",
    "NXDOMAIN",
    "RCODE_NAMES",
    "SERVFAIL",
    "TYPES",
    "TYPE_NAMES",
    "DnsFormatError",
    "Message",
    "Question",
    "Record",
    "build_query",
    "encode_name",
    "normalize_name",
    "parse_message",
]
