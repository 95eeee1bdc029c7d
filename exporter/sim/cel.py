"""A small evaluator for the CEL subset used by ``x-kubernetes-validations`` rules in CRDs.

Supported: literals (int, double, string, bool, null, lists), identifiers (``self``,
``oldSelf``, macro variables), field selection, indexing, ``has(x.f)``, ``size(x)`` and
``x.size()``, ``x.contains(s)``, ``startsWith``, ``endsWith``, ``matches``, the macros
``exists``, ``all``, ``exists_one``, ``map`` and ``filter``, Kubernetes' ``isCIDR(s)`` (the
``net.cidr`` library of k8s.io/apiserver ``pkg/cel/library/cidr.go``: Go's
``netip.ParsePrefix`` succeeds and the address is not IPv4-mapped IPv6), unary ``!`` and ``-``,
arithmetic,
comparisons, ``in``, ``&&``/``||`` (with CEL's commutative error absorption) and ``?:``.
Equality across types is false (heterogeneous equality), as in Kubernetes CEL.

Anything outside the subset raises :class:`CelError`, which the validator reports as a 422.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>\d+\.\d+|\d+)|(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>&&|\|\||==|!=|<=|>=|[-+*/%!<>?:.,()\[\]]))"
)


class CelError(ValueError):
    """A rule outside the supported subset, or an evaluation error (e.g. no such key)."""


Node = tuple[Any, ...]


def _tokenize(text: str) -> list[tuple[str, str]]:
    pos = 0
    out: list[tuple[str, str]] = []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise CelError(f"unsupported syntax at {text[pos:pos + 10]!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.toks[self.pos][1] if self.pos < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        if self.pos >= len(self.toks):
            raise CelError("unexpected end of expression")
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def expect(self, value: str) -> None:
        kind, got = self.take()
        if got != value or kind == "str":
            raise CelError(f"expected {value!r}, found {got!r}")

    def parse(self) -> Node:
        node = self.ternary()
        if self.pos != len(self.toks):
            raise CelError(f"unexpected {self.peek()!r}")
        return node

    def ternary(self) -> Node:
        cond = self.binary(0)
        if self.peek() == "?":
            self.take()
            yes = self.ternary()
            self.expect(":")
            no = self.ternary()
            return ("?", cond, yes, no)
        return cond

    _LEVELS = (("||",), ("&&",), ("==", "!=", "<", "<=", ">", ">=", "in"), ("+", "-"),
               ("*", "/", "%"))

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in self._LEVELS[level] and self.toks[self.pos][0] != "str":
            op = self.take()[1]
            right = self.binary(level + 1)
            left = ("bin", op, left, right)
        return left

    def unary(self) -> Node:
        if self.peek() in ("!", "-"):
            op = self.take()[1]
            return ("un", op, self.unary())
        return self.postfix(self.primary())

    def args(self) -> list[Node]:
        out: list[Node] = []
        if self.peek() == ")":
            self.take()
            return out
        while True:
            out.append(self.ternary())
            tok = self.take()[1]
            if tok == ")":
                return out
            if tok != ",":
                raise CelError(f"expected ',' or ')', found {tok!r}")

    def postfix(self, node: Node) -> Node:
        while True:
            tok = self.peek()
            if tok == ".":
                self.take()
                kind, name = self.take()
                if kind != "id":
                    raise CelError(f"expected a field name, found {name!r}")
                if self.peek() == "(":
                    self.take()
                    node = ("call", name, node, self.args())
                else:
                    node = ("sel", node, name)
            elif tok == "[":
                self.take()
                idx = self.ternary()
                self.expect("]")
                node = ("idx", node, idx)
            else:
                return node

    def primary(self) -> Node:
        kind, tok = self.take()
        if kind == "num":
            return ("lit", float(tok) if "." in tok else int(tok))
        if kind == "str":
            return ("lit", bytes(tok[1:-1], "utf-8").decode("unicode_escape"))
        if kind == "id":
            if tok in ("true", "false"):
                return ("lit", tok == "true")
            if tok == "null":
                return ("lit", None)
            if self.peek() == "(":
                self.take()
                return ("call", tok, None, self.args())
            return ("id", tok)
        if tok == "(":
            node = self.ternary()
            self.expect(")")
            return node
        if tok == "[":
            items: list[Node] = []
            while self.peek() != "]":
                items.append(self.ternary())
                if self.peek() == ",":
                    self.take()
            self.take()
            return ("list", items)
        raise CelError(f"unexpected {tok!r}")


_CACHE: dict[str, Node] = {}


def compile_rule(text: str) -> Node:
    node = _CACHE.get(text)
    if node is None:
        node = _CACHE[text] = _Parser(text).parse()
    return node


def evaluate(text: str, env: dict[str, Any]) -> Any:
    """Evaluate a rule with ``env`` (``self`` and, for transition rules, ``oldSelf``)."""
    return _eval(compile_rule(text), env)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "num"
    return type(value).__name__


def _equal(a: Any, b: Any) -> bool:
    if _kind(a) != _kind(b):
        return False
    return bool(a == b)


def _eval(node: Node, env: dict[str, Any]) -> Any:
    op = node[0]
    if op == "lit":
        return node[1]
    if op == "id":
        if node[1] not in env:
            raise CelError(f"undeclared reference to '{node[1]}'")
        return env[node[1]]
    if op == "list":
        return [_eval(n, env) for n in node[1]]
    if op == "sel":
        base = _eval(node[1], env)
        if not isinstance(base, dict) or node[2] not in base:
            raise CelError(f"no such key: {node[2]}")
        return base[node[2]]
    if op == "idx":
        base, idx = _eval(node[1], env), _eval(node[2], env)
        try:
            return base[idx]
        except (KeyError, IndexError, TypeError) as exc:
            raise CelError(f"no such key: {idx}") from exc
    if op == "un":
        value = _eval(node[2], env)
        if node[1] == "!":
            if not isinstance(value, bool):
                raise CelError("no such overload: !_")
            return not value
        return -value
    if op == "?":
        return _eval(node[2] if _eval(node[1], env) is True else node[3], env)
    if op == "bin":
        return _binary(node[1], node[2], node[3], env)
    if op == "call":
        return _call(node[1], node[2], node[3], env)
    raise CelError(f"unsupported node {op}")


def _logic(opname: str, left: Node, right: Node, env: dict[str, Any]) -> bool:
    short = opname == "||"
    err: CelError | None = None
    for side in (left, right):
        try:
            value = _eval(side, env)
        except CelError as exc:
            err = exc
            continue
        if not isinstance(value, bool):
            raise CelError(f"no such overload: _{opname}_")
        if value is short:
            return short
    if err is not None:
        raise err
    return not short


def _binary(op: str, left: Node, right: Node, env: dict[str, Any]) -> Any:
    if op in ("||", "&&"):
        return _logic(op, left, right, env)
    a, b = _eval(left, env), _eval(right, env)
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op == "in":
        if isinstance(b, dict):
            return a in b
        if isinstance(b, list):
            return any(_equal(a, x) for x in b)
        raise CelError("no such overload: @in")
    if _kind(a) != _kind(b):
        raise CelError(f"no such overload: _{op}_")
    try:
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a // b if isinstance(a, int) and isinstance(b, int) else a / b
        if op == "%":
            return a % b
    except (TypeError, ZeroDivisionError) as exc:
        raise CelError(str(exc)) from exc
    raise CelError(f"unsupported operator {op}")


_MACROS = ("exists", "all", "exists_one", "map", "filter")


def is_cidr(text: str) -> bool:
    """Kubernetes CEL ``isCIDR``: Go's ``netip.ParsePrefix`` accepts it (an address without a
    zone, no leading zeros in IPv4 octets, ``/`` and a decimal prefix length without leading
    zeros within the family's bits) and the address is not an IPv4-mapped IPv6 address."""
    address, slash, bits = text.partition("/")
    if not slash or not bits.isdigit() or not bits.isascii() or (len(bits) > 1
                                                                   and bits[0] == "0"):
        return False
    if "%" in address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if int(bits) > ip.max_prefixlen:
        return False
    return not (isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None)


def _call(name: str, target: Node | None, args: list[Node], env: dict[str, Any]) -> Any:
    if target is None and name == "has":
        if len(args) != 1 or args[0][0] != "sel":
            raise CelError("has() requires a field selection")
        base = _eval(args[0][1], env)
        return isinstance(base, dict) and args[0][2] in base
    if target is not None and name in _MACROS:
        coll = _eval(target, env)
        if len(args) != 2 or args[0][0] != "id":
            raise CelError(f"{name}() requires a variable and an expression")
        var = args[0][1]
        items = list(coll) if isinstance(coll, dict | list) else None
        if items is None:
            raise CelError(f"no such overload: {name}")
        results = [_eval(args[1], {**env, var: item}) for item in items]
        if name == "exists":
            return any(r is True for r in results)
        if name == "all":
            return all(r is True for r in results)
        if name == "exists_one":
            return sum(1 for r in results if r is True) == 1
        if name == "map":
            return results
        return [item for item, r in zip(items, results, strict=True) if r is True]
    values = [_eval(a, env) for a in args]
    if name == "isCIDR" and target is None:
        if len(values) != 1 or not isinstance(values[0], str):
            raise CelError("no such overload: isCIDR")
        return is_cidr(values[0])
    if name == "size":
        subject = _eval(target, env) if target is not None else (values[0] if values else None)
        if not isinstance(subject, str | list | dict):
            raise CelError("no such overload: size")
        return len(subject)
    if target is None:
        raise CelError(f"undeclared function {name}")
    subject = _eval(target, env)
    if not isinstance(subject, str) or len(values) != 1 or not isinstance(values[0], str):
        raise CelError(f"no such overload: {name}")
    if name == "contains":
        return values[0] in subject
    if name == "startsWith":
        return subject.startswith(values[0])
    if name == "endsWith":
        return subject.endswith(values[0])
    if name == "matches":
        return re.search(values[0], subject) is not None
    raise CelError(f"undeclared function {name}")
