"""The Calico selector language (calico-model §3.2), exactly as Calico v3.32 parses it.

A re-implementation of ``libcalico-go/lib/selector/{tokenizer,parser}``:

- Tokens: only space and tab are whitespace (a newline is an error); strings are ``"..."`` or
  ``'...'`` with no escapes; labels are ``[a-zA-Z0-9_./-]{1,512}``; ``has(``, ``all(`` and
  ``global(`` take no space before ``(``; the word operators ``contains``, ``starts with``,
  ``ends with``, ``not in`` and ``in`` are recognised only right after a label, need a word
  boundary after their last word and accept any space between their words, none included
  (``notin``, ``startswith``); ``!=`` is lexed before ``!``.
- Grammar: ``||`` < ``&&`` < ``!`` (any run of ``!`` folds into one negation, an even run
  cancels) < parentheses < match operators; sets may be empty and may end with a comma; the empty
  selector is ``all()``; exactly the end of input must remain after a complete parse.
- Evaluation: ``!=`` and ``not in`` are true when the label is absent; every other operator is
  false then; ``all()`` and ``global()`` are always true.
- Canonical form (Calico's ``String()``): ``&&``/``||`` groups in parentheses, ``!`` glued to its
  operand, sets sorted and deduplicated, strings quoted with ``"`` unless they contain ``"``.
  Like Calico, ``!(!x)`` prints as ``!!x``, which reads back as ``x``: printing is a fixed point
  from the second round on.

Every error names what was expected and where: :class:`SelectorError` carries the 0-based
``offset`` into the text and renders it as a 1-based column. Parsed selectors are compiled once
into a closure over a label getter (``dict.get`` or an endpoint view), and
:class:`SelectorCache` shares them by source text and by canonical form.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

MAX_LABEL_LENGTH = 512
"""Calico's ``tokenizer.MaxLabelLength``."""

Getter = Callable[[str], "str | None"]
"""Label lookup: the label's value, or None when the endpoint does not have it."""

Predicate = Callable[[Getter], bool]
"""A compiled selector: true when the labels behind the getter match."""

MatchOp = Literal["==", "!=", "contains", "starts with", "ends with"]

_IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
_WHITESPACE = " \t"


class SelectorError(ValueError):
    """A selector that does not parse: the reason and where (``offset`` 0-based, column 1-based)."""

    def __init__(self, reason: str, *, offset: int) -> None:
        super().__init__(f"{reason} at column {offset + 1}")
        self.reason = reason
        self.offset = offset

    @property
    def column(self) -> int:
        return self.offset + 1


# --------------------------------------------------------------------------------------------
# Tokenizer


class Tok(enum.Enum):
    """Token kinds, as Calico's ``tokenizer.Kind``."""

    LABEL = "label"
    STRING = "string"
    LBRACE = "{"
    RBRACE = "}"
    COMMA = ","
    EQ = "=="
    NE = "!="
    IN = "in"
    NOT = "!"
    NOT_IN = "not in"
    CONTAINS = "contains"
    STARTS_WITH = "starts with"
    ENDS_WITH = "ends with"
    ALL = "all()"
    HAS = "has()"
    LPAREN = "("
    RPAREN = ")"
    AND = "&&"
    OR = "||"
    GLOBAL = "global()"
    EOF = "end of selector"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its value (label or string contents) and where it starts."""

    kind: Tok
    value: str
    offset: int

    def describe(self) -> str:
        if self.kind is Tok.EOF:
            return "end of selector"
        if self.kind is Tok.LABEL:
            return f"label {self.value!r}"
        if self.kind is Tok.STRING:
            return f"string {_quote(self.value)}"
        if self.kind is Tok.HAS:
            return f"'has({self.value})'"
        return f"'{self.kind.value}'"


def _skip_whitespace(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WHITESPACE:
        i += 1
    return i


def _cut_identifier(text: str, i: int) -> tuple[str, int]:
    n = len(text)
    j = i
    while j < n and text[j] in _IDENTIFIER_CHARS:
        j += 1
    if j == i:
        raise SelectorError("expected identifier", offset=i)
    if j - i > MAX_LABEL_LENGTH:
        raise SelectorError(
            f"label too long ({j - i} characters, at most {MAX_LABEL_LENGTH})", offset=i
        )
    return text[i:j], j


def _word_boundary(text: str, i: int) -> bool:
    return i >= len(text) or text[i] not in _IDENTIFIER_CHARS


def _cut_word(text: str, i: int, word: str) -> int:
    """End of ``word`` at ``i`` followed by a word boundary, or -1."""
    if text.startswith(word, i) and _word_boundary(text, i + len(word)):
        return i + len(word)
    return -1


def _cut_words(text: str, i: int, *words: str) -> int:
    """End of a multi-word operator (any space or tab after each word, none included), or -1."""
    j = i
    for word in words:
        if not text.startswith(word, j):
            return -1
        j = _skip_whitespace(text, j + len(word))
    return j if _word_boundary(text, j) else -1


_SINGLE = {"(": Tok.LPAREN, ")": Tok.RPAREN, "{": Tok.LBRACE, "}": Tok.RBRACE, ",": Tok.COMMA}
_PAIRS = {"=": Tok.EQ, "&": Tok.AND, "|": Tok.OR}


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with one EOF token; raises SelectorError."""
    tokens: list[Token] = []
    n = len(text)
    i = 0
    while True:
        i = _skip_whitespace(text, i)
        if i >= n:
            tokens.append(Token(Tok.EOF, "", i))
            return tokens
        c = text[i]
        start = i
        if c in _SINGLE:
            tokens.append(Token(_SINGLE[c], "", start))
            i += 1
        elif c == '"' or c == "'":
            end = text.find(c, i + 1)
            if end < 0:
                raise SelectorError("unterminated string", offset=start)
            tokens.append(Token(Tok.STRING, text[i + 1 : end], start))
            i = end + 1
        elif c in _PAIRS:
            if not text.startswith(c + c, i):
                raise SelectorError(f"expected {c}{c}", offset=start)
            tokens.append(Token(_PAIRS[c], "", start))
            i += 2
        elif c == "!":
            if text.startswith("!=", i):
                tokens.append(Token(Tok.NE, "", start))
                i += 2
            else:
                tokens.append(Token(Tok.NOT, "", start))
                i += 1
        elif tokens and tokens[-1].kind is Tok.LABEL:
            i = _operator(text, i, tokens)
        elif text.startswith("has(", i):
            j = _skip_whitespace(text, i + 4)
            label, j = _cut_identifier(text, j)
            j = _skip_whitespace(text, j)
            if not text.startswith(")", j):
                raise SelectorError("no closing ')' after has(", offset=j)
            tokens.append(Token(Tok.HAS, label, start))
            i = j + 1
        elif text.startswith("all(", i) or text.startswith("global(", i):
            kind = Tok.ALL if c == "a" else Tok.GLOBAL
            word = "all(" if kind is Tok.ALL else "global("
            j = _skip_whitespace(text, i + len(word))
            if not text.startswith(")", j):
                raise SelectorError(f"no closing ')' after {word}", offset=j)
            tokens.append(Token(kind, "", start))
            i = j + 1
        else:
            label, i = _cut_identifier(text, i)
            tokens.append(Token(Tok.LABEL, label, start))


def _operator(text: str, i: int, tokens: list[Token]) -> int:
    """Lex the word operator that must follow a label; returns the new position."""
    for kind, words in (
        (Tok.CONTAINS, ("contains",)),
        (Tok.STARTS_WITH, ("starts", "with")),
        (Tok.ENDS_WITH, ("ends", "with")),
        (Tok.NOT_IN, ("not", "in")),
        (Tok.IN, ("in",)),
    ):
        end = _cut_word(text, i, words[0]) if len(words) == 1 else _cut_words(text, i, *words)
        if end >= 0:
            tokens.append(Token(kind, "", i))
            return end
    raise SelectorError(f"expected operator after label {tokens[-1].value!r}", offset=i)


# --------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True, slots=True)
class All:
    """``all()``, and the empty selector."""


@dataclass(frozen=True, slots=True)
class Global:
    """``global()``: true on evaluation; its scoping comes from effective-selector rewriting."""


@dataclass(frozen=True, slots=True)
class Has:
    """``has(label)``."""

    label: str


@dataclass(frozen=True, slots=True)
class Match:
    """``label <op> "value"`` for ``==``, ``!=``, ``contains``, ``starts with``, ``ends with``."""

    label: str
    op: MatchOp
    value: str


@dataclass(frozen=True, slots=True)
class SetMatch:
    """``label in {...}`` or ``label not in {...}``; values sorted and unique."""

    label: str
    negated: bool
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """``!operand``."""

    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    """Two or more operands joined by ``&&``."""

    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Two or more operands joined by ``||``."""

    operands: tuple[Node, ...]


Node = All | Global | Has | Match | SetMatch | Not | And | Or

_MATCH_OPS: dict[Tok, MatchOp] = {
    Tok.EQ: "==",
    Tok.NE: "!=",
    Tok.CONTAINS: "contains",
    Tok.STARTS_WITH: "starts with",
    Tok.ENDS_WITH: "ends with",
}


# --------------------------------------------------------------------------------------------
# Parser


class _Parser:
    __slots__ = ("i", "tokens")

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def parse_or(self) -> Node:
        nodes = [self.parse_and()]
        while self.peek().kind is Tok.OR:
            self.i += 1
            nodes.append(self.parse_and())
        return nodes[0] if len(nodes) == 1 else Or(tuple(nodes))

    def parse_and(self) -> Node:
        nodes = [self.parse_operation()]
        while self.peek().kind is Tok.AND:
            self.i += 1
            nodes.append(self.parse_operation())
        return nodes[0] if len(nodes) == 1 else And(tuple(nodes))

    def parse_operation(self) -> Node:
        negated = False
        while self.peek().kind is Tok.NOT:
            negated = not negated
            self.i += 1
        tok = self.peek()
        node: Node
        if tok.kind is Tok.HAS:
            node = Has(tok.value)
            self.i += 1
        elif tok.kind is Tok.ALL:
            node = All()
            self.i += 1
        elif tok.kind is Tok.GLOBAL:
            node = Global()
            self.i += 1
        elif tok.kind is Tok.LABEL:
            node = self.parse_label_operation(tok)
        elif tok.kind is Tok.LPAREN:
            self.i += 1
            node = self.parse_or()
            close = self.peek()
            if close.kind is not Tok.RPAREN:
                raise SelectorError(f"expected ')', found {close.describe()}", offset=close.offset)
            self.i += 1
        else:
            raise SelectorError(f"unexpected {tok.describe()}", offset=tok.offset)
        return Not(node) if negated else node

    def parse_label_operation(self, label: Token) -> Node:
        tokens = self.tokens
        if len(tokens) - self.i < 3:
            end = tokens[-1]
            raise SelectorError(
                f"expected operator after label {label.value!r}, found end of selector",
                offset=end.offset,
            )
        op = tokens[self.i + 1]
        operand = tokens[self.i + 2]
        match_op = _MATCH_OPS.get(op.kind)
        if match_op is not None:
            if operand.kind is not Tok.STRING:
                raise SelectorError(
                    f"expected string after '{op.kind.value}', found {operand.describe()}",
                    offset=operand.offset,
                )
            self.i += 3
            return Match(label.value, match_op, operand.value)
        if op.kind is Tok.IN or op.kind is Tok.NOT_IN:
            if operand.kind is not Tok.LBRACE:
                raise SelectorError(
                    f"expected set literal after '{op.kind.value}', found {operand.describe()}",
                    offset=operand.offset,
                )
            j = self.i + 3
            values: list[str] = []
            while tokens[j].kind is Tok.STRING:
                values.append(tokens[j].value)
                j += 1
                if tokens[j].kind is Tok.COMMA:
                    j += 1
                else:
                    break
            if tokens[j].kind is not Tok.RBRACE:
                raise SelectorError(
                    f"expected '}}', found {tokens[j].describe()}", offset=tokens[j].offset
                )
            self.i = j + 1
            return SetMatch(label.value, op.kind is Tok.NOT_IN, tuple(sorted(set(values))))
        raise SelectorError(
            f"expected operator after label {label.value!r}, found {op.describe()}",
            offset=op.offset,
        )


def parse_node(text: str) -> Node:
    """The AST of ``text``; raises SelectorError naming the position."""
    tokens = tokenize(text)
    if tokens[0].kind is Tok.EOF:
        return All()
    parser = _Parser(tokens)
    node = parser.parse_or()
    rest = parser.peek()
    if rest.kind is not Tok.EOF:
        raise SelectorError(
            f"unexpected content at end of selector: {rest.describe()}", offset=rest.offset
        )
    return node


# --------------------------------------------------------------------------------------------
# Canonical form


def _quote(value: str) -> str:
    quote = "'" if '"' in value else '"'
    return f"{quote}{value}{quote}"


def canonical(node: Node) -> str:
    """Calico's ``String()`` of a selector AST."""
    if isinstance(node, All):
        return "all()"
    if isinstance(node, Global):
        return "global()"
    if isinstance(node, Has):
        return f"has({node.label})"
    if isinstance(node, Match):
        return f"{node.label} {node.op} {_quote(node.value)}"
    if isinstance(node, SetMatch):
        op = "not in" if node.negated else "in"
        return f"{node.label} {op} {{{', '.join(_quote(v) for v in node.values)}}}"
    if isinstance(node, Not):
        return "!" + canonical(node.operand)
    joiner = " && " if isinstance(node, And) else " || "
    return "(" + joiner.join(canonical(op) for op in node.operands) + ")"


# --------------------------------------------------------------------------------------------
# Label rewriting and analysis


def label_names(node: Node) -> frozenset[str]:
    """Every label name the selector reads."""
    if isinstance(node, Has | Match | SetMatch):
        return frozenset((node.label,))
    if isinstance(node, Not):
        return label_names(node.operand)
    if isinstance(node, And | Or):
        return frozenset().union(*(label_names(op) for op in node.operands))
    return frozenset()


def with_prefix(node: Node, prefix: str) -> Node:
    """Calico's ``PrefixVisitor``: every label name gets ``prefix`` (``pcns.``, ``pcsa.``)."""
    if isinstance(node, Has):
        return Has(prefix + node.label)
    if isinstance(node, Match):
        return Match(prefix + node.label, node.op, node.value)
    if isinstance(node, SetMatch):
        return SetMatch(prefix + node.label, node.negated, node.values)
    if isinstance(node, Not):
        return Not(with_prefix(node.operand, prefix))
    if isinstance(node, And):
        return And(tuple(with_prefix(op, prefix) for op in node.operands))
    if isinstance(node, Or):
        return Or(tuple(with_prefix(op, prefix) for op in node.operands))
    return node


# --------------------------------------------------------------------------------------------
# Compilation


def _always(get: Getter) -> bool:
    return True


def compile_node(node: Node) -> Predicate:
    """A closure evaluating ``node`` against a label getter, with Calico's semantics."""
    if isinstance(node, All | Global):
        return _always
    if isinstance(node, Has):
        return _compile_has(node.label)
    if isinstance(node, Match):
        return _compile_match(node.label, node.op, node.value)
    if isinstance(node, SetMatch):
        return _compile_set(node.label, node.negated, frozenset(node.values))
    if isinstance(node, Not):
        return _compile_not(compile_node(node.operand))
    predicates = tuple(compile_node(op) for op in node.operands)
    if isinstance(node, And):
        return _compile_and(predicates)
    return _compile_or(predicates)


def _compile_has(label: str) -> Predicate:
    def has(get: Getter) -> bool:
        return get(label) is not None

    return has


def _compile_match(label: str, op: MatchOp, value: str) -> Predicate:
    if op == "==":

        def eq(get: Getter) -> bool:
            return get(label) == value

        return eq
    if op == "!=":

        def ne(get: Getter) -> bool:
            return get(label) != value

        return ne
    if op == "contains":

        def contains(get: Getter) -> bool:
            actual = get(label)
            return actual is not None and value in actual

        return contains
    if op == "starts with":

        def starts_with(get: Getter) -> bool:
            actual = get(label)
            return actual is not None and actual.startswith(value)

        return starts_with

    def ends_with(get: Getter) -> bool:
        actual = get(label)
        return actual is not None and actual.endswith(value)

    return ends_with


def _compile_set(label: str, negated: bool, values: frozenset[str]) -> Predicate:
    if negated:

        def not_in(get: Getter) -> bool:
            return get(label) not in values

        return not_in

    def in_(get: Getter) -> bool:
        return get(label) in values

    return in_


def _compile_not(operand: Predicate) -> Predicate:
    def not_(get: Getter) -> bool:
        return not operand(get)

    return not_


def _compile_and(predicates: tuple[Predicate, ...]) -> Predicate:
    if len(predicates) == 2:
        first, second = predicates

        def and2(get: Getter) -> bool:
            return first(get) and second(get)

        return and2

    def and_(get: Getter) -> bool:
        for predicate in predicates:  # noqa: SIM110 (faster than all() over a generator)
            if not predicate(get):
                return False
        return True

    return and_


def _compile_or(predicates: tuple[Predicate, ...]) -> Predicate:
    if len(predicates) == 2:
        first, second = predicates

        def or2(get: Getter) -> bool:
            return first(get) or second(get)

        return or2

    def or_(get: Getter) -> bool:
        for predicate in predicates:  # noqa: SIM110 (faster than any() over a generator)
            if predicate(get):
                return True
        return False

    return or_


# --------------------------------------------------------------------------------------------
# Selector and cache


@dataclass(frozen=True, slots=True, eq=False)
class Selector:
    """A parsed, compiled selector: AST, canonical text, predicate and the labels it reads."""

    root: Node
    text: str
    """The canonical form (Calico's ``String()``)."""
    predicate: Predicate
    labels: frozenset[str]

    @classmethod
    def from_node(cls, node: Node) -> Selector:
        return cls(node, canonical(node), compile_node(node), label_names(node))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Evaluate against a plain label map."""
        return self.predicate(labels.get)

    def __str__(self) -> str:
        return self.text


def parse(text: str) -> Selector:
    """Parse and compile ``text``; raises SelectorError naming the position."""
    return Selector.from_node(parse_node(text))


class SelectorCache:
    """Selectors parsed once per source text and compiled once per canonical form.

    Failures are cached too (as reason and offset), so a bad selector seen on every relist costs
    one dictionary lookup. When either table exceeds ``max_entries`` both are cleared: selectors
    in use are re-parsed on their next event, which is cheap, and memory stays bounded.
    """

    __slots__ = ("_by_canonical", "_by_text", "max_entries")

    def __init__(self, *, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._by_text: dict[str, Selector | tuple[str, int]] = {}
        self._by_canonical: dict[str, Selector] = {}

    def __len__(self) -> int:
        return len(self._by_canonical)

    def parse(self, text: str) -> Selector:
        """The compiled selector for ``text``; raises SelectorError (a fresh one each time)."""
        hit = self._by_text.get(text)
        if hit is None:
            hit = self._parse(text)
        if isinstance(hit, tuple):
            raise SelectorError(hit[0], offset=hit[1])
        return hit

    def _parse(self, text: str) -> Selector | tuple[str, int]:
        if len(self._by_text) >= self.max_entries or len(self._by_canonical) >= self.max_entries:
            self._by_text.clear()
            self._by_canonical.clear()
        result: Selector | tuple[str, int]
        try:
            node = parse_node(text)
        except SelectorError as err:
            result = (err.reason, err.offset)
        else:
            key = canonical(node)
            selector = self._by_canonical.get(key)
            if selector is None:
                selector = Selector(node, key, compile_node(node), label_names(node))
                self._by_canonical[key] = selector
            result = selector
        self._by_text[text] = result
        return result
