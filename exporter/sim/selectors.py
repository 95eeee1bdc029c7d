"""Label and field selectors, parsed and matched like ``k8s.io/apimachinery`` does.

Label selectors: comma-separated requirements (AND) of the forms ``key``, ``!key``, ``key=v``,
``key==v``, ``key!=v``, ``key in (a,b)``, ``key notin (a,b)``, ``key>N`` and ``key<N``. Keys are
qualified names (optional DNS-subdomain prefix), values are label values. ``!=`` and ``notin`` also
match objects without the key, as in Kubernetes.

Field selectors: comma-separated ``field=v``, ``field==v`` or ``field!=v`` terms with backslash
escapes; which fields may be used is decided by the caller (the resource type).

Syntax errors raise :class:`SelectorError`, which the API server turns into 400 BadRequest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS1123_SUBDOMAIN_RE = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_SPECIAL = "!=(),<>"


class SelectorError(ValueError):
    """A selector that does not parse or holds an invalid key or value."""


def validate_label_key(key: str) -> str | None:
    """The reason ``key`` is not a valid qualified label key, or None when it is."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        return "prefix part must be non-empty"
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN_RE.match(prefix)):
        return "prefix part must be a lowercase RFC 1123 subdomain"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _NAME_RE.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character"
        )
    return None


def validate_label_value(value: str) -> str | None:
    """The reason ``value`` is not a valid label value, or None when it is."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if value and not _NAME_RE.match(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )
    return None


@dataclass(frozen=True, slots=True)
class Requirement:
    """One label requirement: ``key op values``."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.op
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        present = self.key in labels
        if op in ("=", "in"):
            return present and labels[self.key] in self.values
        if op in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        if not present:
            return False
        try:
            have = int(labels[self.key])
        except ValueError:
            return False
        want = int(self.values[0])
        return have > want if op == "gt" else have < want


class LabelSelector:
    """A parsed label selector; an empty selector matches everything."""

    __slots__ = ("requirements", "text")

    def __init__(self, text: str | None) -> None:
        self.text = text or ""
        self.requirements: tuple[Requirement, ...] = tuple(_parse_labels(self.text))

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if not self.requirements:
            return True
        lab = labels or {}
        return all(r.matches(lab) for r in self.requirements)


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in _SPECIAL:
            two = text[i : i + 2]
            if two in ("!=", "=="):
                tokens.append(two)
                i += 2
            else:
                tokens.append(c)
                i += 1
            continue
        j = i
        while j < n and not text[j].isspace() and text[j] not in _SPECIAL:
            j += 1
        tokens.append(text[i:j])
        i = j
    return tokens


def _is_ident(tok: str | None) -> bool:
    return tok is not None and tok not in ("!", "!=", "==", "=", "(", ")", ",", "<", ">")


def _parse_labels(text: str) -> list[Requirement]:
    if not text.strip():
        return []
    toks = _tokenize(text)
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> str | None:
        nonlocal pos
        tok = peek()
        pos += 1
        return tok

    reqs: list[Requirement] = []
    while True:
        tok = take()
        negate = False
        if tok == "!":
            negate = True
            tok = take()
        if not _is_ident(tok) or tok in ("in", "notin"):
            raise SelectorError(f"found '{tok or ''}', expected: identifier")
        assert tok is not None
        key = tok
        reason = validate_label_key(key)
        if reason:
            raise SelectorError(
                f"unable to parse requirement: key: Invalid value: {key!r}: {reason}")
        nxt = peek()
        if negate:
            if nxt not in (None, ","):
                raise SelectorError(f"found '{nxt}', expected: ',' or 'end of string'")
            reqs.append(Requirement(key, "!"))
        elif nxt in (None, ","):
            reqs.append(Requirement(key, "exists"))
        elif nxt in ("=", "==", "!="):
            take()
            val = peek()
            if val in (None, ","):
                value = ""
            elif _is_ident(val):
                value = take() or ""
            else:
                raise SelectorError(f"found '{val}', expected: identifier")
            _check_value(value)
            reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", (value,)))
        elif nxt in ("in", "notin"):
            take()
            if take() != "(":
                raise SelectorError("found '" + (toks[pos - 1] if pos <= len(toks) else "") +
                                    "', expected: '('")
            values: list[str] = []
            while True:
                val = peek()
                if val == ")":
                    take()
                    break
                if val == ",":
                    take()
                    if not values or peek() in (",", ")"):
                        values.append("")
                    continue
                if not _is_ident(val):
                    raise SelectorError(
                        f"found '{val or 'end of string'}', expected: ',', ')' or identifier")
                values.append(take() or "")
            if not values:
                raise SelectorError(
                    "unable to parse requirement: values: Invalid value: []: for 'in', 'notin' "
                    "operators, values set can't be empty"
                )
            for v in values:
                _check_value(v)
            reqs.append(Requirement(key, nxt, tuple(values)))
        elif nxt in (">", "<"):
            take()
            val = take()
            if val is None or not re.fullmatch(r"-?\d+", val):
                raise SelectorError(
                    f"unable to parse requirement: values[0]: Invalid value: {val!r}: "
                    "for 'Gt', 'Lt' operators, the value must be an integer"
                )
            reqs.append(Requirement(key, "gt" if nxt == ">" else "lt", (val,)))
        else:
            raise SelectorError(f"found '{nxt}', expected: '=', '!=', '==', 'in', notin'")
        sep = take()
        if sep is None:
            return reqs
        if sep != ",":
            raise SelectorError(f"found '{sep}', expected: ',' or 'end of string'")


def _check_value(value: str) -> None:
    reason = validate_label_value(value)
    if reason:
        raise SelectorError(
            f"unable to parse requirement: values[0]: Invalid value: {value!r}: {reason}")


@dataclass(frozen=True, slots=True)
class FieldTerm:
    """One field requirement: ``field = value`` or ``field != value``."""

    field: str
    negate: bool
    value: str


class FieldSelector:
    """A parsed field selector; fields are read with per-resource extractor functions."""

    __slots__ = ("_get", "terms", "text")

    def __init__(self, text: str | None,
                 supported: Mapping[str, Callable[[dict[str, Any]], str]]) -> None:
        self.text = text or ""
        self.terms: tuple[FieldTerm, ...] = tuple(_parse_fields(self.text))
        for term in self.terms:
            if term.field not in supported:
                raise SelectorError(f'field label not supported: {term.field}')
        self._get = supported

    @property
    def empty(self) -> bool:
        return not self.terms

    def name_equals(self) -> str | None:
        """The name required by a ``metadata.name=X`` term, if any (used by RBAC resourceNames)."""
        for term in self.terms:
            if term.field == "metadata.name" and not term.negate:
                return term.value
        return None

    def matches(self, obj: dict[str, Any]) -> bool:
        for term in self.terms:
            have = self._get[term.field](obj)
            if (have == term.value) == term.negate:
                return False
        return True


def _parse_fields(text: str) -> list[FieldTerm]:
    if not text.strip():
        return []
    terms: list[FieldTerm] = []
    for raw in _split_unescaped(text, ","):
        for op, negate in (("!=", True), ("==", False), ("=", False)):
            idx = _find_unescaped(raw, op)
            if idx >= 0:
                field = raw[:idx].strip()
                value = _unescape(raw[idx + len(op) :])
                if not field:
                    raise SelectorError(f"invalid selector: '{text}'; can't understand '{raw}'")
                terms.append(FieldTerm(field, negate, value))
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{raw}'")
    return terms


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _find_unescaped(text: str, op: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(op, i):
            return i
        i += 1
    return -1


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt not in "\\,=!":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{nxt}")
            out.append(nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)
