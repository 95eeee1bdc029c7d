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
- Depth: none of its own, as in Calico. Calico's parser recurses once per parenthesis
  (``parseOperation`` -> ``parseOrExpression``, parser.go at v3.32.1) with no limit, and a Go
  stack grows to 1 GB, far more than the deepest selector that fits in an object; so what bounds
  a selector is the object's size (etcd's 1.5 MiB request limit; the CRDs give selectors no
  ``maxLength``), about 750,000 parentheses. Here nothing recurses on the text: the parser
  and every walk over the tree use explicit stacks, and a tree deeper than
  :data:`CLOSURE_DEPTH` is evaluated by an explicit-stack evaluator instead of nested closures.
  Python's recursion limit is never met, and time and memory stay linear in the text.

Every error names what was expected and where: :class:`SelectorError` carries the 0-based
``offset`` into the text and renders it as a 1-based column. Parsed selectors are compiled once
into a closure over a label getter (``dict.get`` or an endpoint view), and
:class:`SelectorCache` shares them by source text and by canonical form.
"""

from __future__ import annotations

import enum
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

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


class _Tokens:
    """The tokens of one text as three parallel arrays (kind, value, offset), ending with one
    EOF token: 24 bytes a token, where a :class:`Token` object costs about 80, which matters for
    a selector of a megabyte (see :func:`parse_node`)."""

    __slots__ = ("kinds", "offsets", "values")

    def __init__(self) -> None:
        self.kinds: list[Tok] = []
        self.values: list[str] = []
        self.offsets = array("q")

    def token(self, i: int) -> Token:
        return Token(self.kinds[i], self.values[i], self.offsets[i])


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with one EOF token; raises SelectorError."""
    tokens = _lex(text)
    return [tokens.token(i) for i in range(len(tokens.kinds))]


def _lex(text: str) -> _Tokens:
    tokens = _Tokens()
    labels = tokens.values
    add_kind, add_value, add_offset = tokens.kinds.append, labels.append, tokens.offsets.append
    single = _SINGLE.get
    n = len(text)
    i = 0
    last = Tok.EOF
    while i < n:
        c = text[i]
        if c == " " or c == "\t":
            i += 1
            continue
        start = i
        kind = single(c)
        value = ""
        if kind is not None:
            i += 1
        elif c == '"' or c == "'":
            end = text.find(c, i + 1)
            if end < 0:
                raise SelectorError("unterminated string", offset=start)
            kind, value, i = Tok.STRING, text[i + 1 : end], end + 1
        elif c in _PAIRS:
            if not text.startswith(c + c, i):
                raise SelectorError(f"expected {c}{c}", offset=start)
            kind, i = _PAIRS[c], i + 2
        elif c == "!":
            if text.startswith("!=", i):
                kind, i = Tok.NE, i + 2
            else:
                kind, i = Tok.NOT, i + 1
        elif last is Tok.LABEL:
            kind, i = _operator(text, i, labels[-1])
        elif text.startswith("has(", i):
            j = _skip_whitespace(text, i + 4)
            value, j = _cut_identifier(text, j)
            j = _skip_whitespace(text, j)
            if not text.startswith(")", j):
                raise SelectorError("no closing ')' after has(", offset=j)
            kind, i = Tok.HAS, j + 1
        elif text.startswith("all(", i) or text.startswith("global(", i):
            kind = Tok.ALL if c == "a" else Tok.GLOBAL
            word = "all(" if kind is Tok.ALL else "global("
            j = _skip_whitespace(text, i + len(word))
            if not text.startswith(")", j):
                raise SelectorError(f"no closing ')' after {word}", offset=j)
            i = j + 1
        else:
            value, i = _cut_identifier(text, i)
            kind = Tok.LABEL
        add_kind(kind)
        add_value(value)
        add_offset(start)
        last = kind
    add_kind(Tok.EOF)
    add_value("")
    add_offset(n)
    return tokens


def _operator(text: str, i: int, label: str) -> tuple[Tok, int]:
    """The word operator that must follow a label, and the position after it."""
    for kind, words in (
        (Tok.CONTAINS, ("contains",)),
        (Tok.STARTS_WITH, ("starts", "with")),
        (Tok.ENDS_WITH, ("ends", "with")),
        (Tok.NOT_IN, ("not", "in")),
        (Tok.IN, ("in",)),
    ):
        end = _cut_word(text, i, words[0]) if len(words) == 1 else _cut_words(text, i, *words)
        if end >= 0:
            return kind, end
    raise SelectorError(f"expected operator after label {label!r}", offset=i)


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


def _describe(tokens: _Tokens, i: int) -> str:
    return tokens.token(i).describe()


def _operation(tokens: _Tokens, i: int) -> tuple[Node, int]:
    """The operation (not a parenthesised group) starting at token ``i``, and the next index."""
    kinds, values = tokens.kinds, tokens.values
    kind = kinds[i]
    if kind is Tok.HAS:
        return Has(values[i]), i + 1
    if kind is Tok.ALL:
        return All(), i + 1
    if kind is Tok.GLOBAL:
        return Global(), i + 1
    if kind is not Tok.LABEL:
        raise SelectorError(f"unexpected {_describe(tokens, i)}", offset=tokens.offsets[i])
    label = values[i]
    if len(kinds) - i < 3:
        raise SelectorError(
            f"expected operator after label {label!r}, found end of selector",
            offset=tokens.offsets[-1],
        )
    op = kinds[i + 1]
    operand = kinds[i + 2]
    match_op = _MATCH_OPS.get(op)
    if match_op is not None:
        if operand is not Tok.STRING:
            raise SelectorError(
                f"expected string after '{op.value}', found {_describe(tokens, i + 2)}",
                offset=tokens.offsets[i + 2],
            )
        return Match(label, match_op, values[i + 2]), i + 3
    if op is Tok.IN or op is Tok.NOT_IN:
        if operand is not Tok.LBRACE:
            raise SelectorError(
                f"expected set literal after '{op.value}', found {_describe(tokens, i + 2)}",
                offset=tokens.offsets[i + 2],
            )
        j = i + 3
        members: list[str] = []
        while kinds[j] is Tok.STRING:
            members.append(values[j])
            j += 1
            if kinds[j] is Tok.COMMA:
                j += 1
            else:
                break
        if kinds[j] is not Tok.RBRACE:
            raise SelectorError(
                f"expected '}}', found {_describe(tokens, j)}", offset=tokens.offsets[j]
            )
        return SetMatch(label, op is Tok.NOT_IN, tuple(sorted(set(members)))), j + 1
    raise SelectorError(
        f"expected operator after label {label!r}, found {_describe(tokens, i + 1)}",
        offset=tokens.offsets[i + 1],
    )


def _parse_tokens(tokens: _Tokens) -> tuple[Node, int]:
    """Calico's recursive descent (``parseOrExpression`` -> ``parseAndExpression`` ->
    ``parseOperation``, which recurses into ``parseOrExpression`` after ``(``) without
    recursion: the ``&&`` and ``||`` operands read so far wait on two flat stacks, and each open
    parenthesis remembers only whether it was negated and where its operands start. The same
    tree, the same errors at the same offsets, at any depth (the root, and the index of the
    first token after it)."""
    kinds = tokens.kinds
    ands: list[Node] = []  # operands of the && chains being read, innermost last
    ors: list[Node] = []  # finished && chains of the || chains being read
    negated_groups: list[bool] = []  # per open parenthesis: negated
    and_starts: list[int] = []  # per open parenthesis: the enclosing && chain's start in ands
    or_starts: list[int] = []  # per open parenthesis: the enclosing || chain's start in ors
    and_start = or_start = 0
    i = 0
    while True:
        negated = False
        while kinds[i] is Tok.NOT:
            negated = not negated
            i += 1
        if kinds[i] is Tok.LPAREN:
            negated_groups.append(negated)
            and_starts.append(and_start)
            or_starts.append(or_start)
            and_start, or_start = len(ands), len(ors)
            i += 1
            continue
        node, i = _operation(tokens, i)
        if negated:
            node = Not(node)
        while True:
            ands.append(node)
            kind = kinds[i]
            if kind is Tok.AND:
                i += 1
                break
            if len(ands) - and_start == 1:
                ors.append(ands.pop())
            else:
                ors.append(And(tuple(ands[and_start:])))
                del ands[and_start:]
            if kind is Tok.OR:
                i += 1
                break
            if len(ors) - or_start == 1:
                node = ors.pop()
            else:
                node = Or(tuple(ors[or_start:]))
                del ors[or_start:]
            if not negated_groups:
                return node, i
            if kind is not Tok.RPAREN:
                raise SelectorError(f"expected ')', found {_describe(tokens, i)}",
                                    offset=tokens.offsets[i])
            i += 1
            and_start, or_start = and_starts.pop(), or_starts.pop()
            if negated_groups.pop():
                node = Not(node)


def parse_node(text: str) -> Node:
    """The AST of ``text``; raises SelectorError naming the position.

    No depth limit, as in Calico: its parser recurses once per parenthesis with no bound of
    its own, so only the size of the object bounds a selector (etcd's 1.5 MiB request limit, a
    nesting depth of about 750,000), and that parses here too, in time and memory linear in
    the text."""
    tokens = _lex(text)
    if tokens.kinds[0] is Tok.EOF:
        return All()
    node, i = _parse_tokens(tokens)
    if tokens.kinds[i] is not Tok.EOF:
        raise SelectorError(
            f"unexpected content at end of selector: {_describe(tokens, i)}",
            offset=tokens.offsets[i],
        )
    return node


# --------------------------------------------------------------------------------------------
# Canonical form


def _quote(value: str) -> str:
    quote = "'" if '"' in value else '"'
    return f"{quote}{value}{quote}"


def canonical(node: Node) -> str:
    """Calico's ``String()`` of a selector AST (iterative: any depth, linear time)."""
    parts: list[str] = []
    todo: list[Node | str] = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, Not):
            parts.append("!")
            todo.append(item.operand)
        elif isinstance(item, And | Or):
            joiner = " && " if isinstance(item, And) else " || "
            parts.append("(")
            todo.append(")")
            for index in range(len(item.operands) - 1, -1, -1):
                todo.append(item.operands[index])
                if index:
                    todo.append(joiner)
        else:
            parts.append(_leaf_text(item))
    return "".join(parts)


def _leaf_text(node: Node) -> str:
    if isinstance(node, All):
        return "all()"
    if isinstance(node, Global):
        return "global()"
    if isinstance(node, Has):
        return f"has({node.label})"
    if isinstance(node, Match):
        return f"{node.label} {node.op} {_quote(node.value)}"
    assert isinstance(node, SetMatch)
    op = "not in" if node.negated else "in"
    return f"{node.label} {op} {{{', '.join(_quote(v) for v in node.values)}}}"


# --------------------------------------------------------------------------------------------
# Walking the tree without recursion

R = TypeVar("R")


def _fold(node: Node, leaf: Callable[[Node], R], combine: Callable[[Node, list[R]], R]) -> R:
    """Bottom-up over the tree with an explicit stack: ``leaf(n)`` for every leaf,
    ``combine(n, results of its operands in order)`` for every ``!``, ``&&`` and ``||``."""
    results: list[R] = []
    todo: list[tuple[Node, bool]] = [(node, False)]
    while todo:
        item, expanded = todo.pop()
        if isinstance(item, Not):
            if expanded:
                results.append(combine(item, [results.pop()]))
            else:
                todo.append((item, True))
                todo.append((item.operand, False))
        elif isinstance(item, And | Or):
            if expanded:
                count = len(item.operands)
                operands = results[-count:]
                del results[-count:]
                results.append(combine(item, operands))
            else:
                todo.append((item, True))
                todo.extend((op, False) for op in reversed(item.operands))
        else:
            results.append(leaf(item))
    return results[0]


def deeper_than(node: Node, limit: int) -> bool:
    """Whether the tree nests more than ``limit`` levels (a leaf is 1; each ``!``, ``&&`` or
    ``||`` above it adds one); stops at the first path that does."""
    todo: list[tuple[Node, int]] = [(node, 1)]
    while todo:
        item, level = todo.pop()
        if level > limit:
            return True
        if isinstance(item, Not):
            todo.append((item.operand, level + 1))
        elif isinstance(item, And | Or):
            todo.extend((op, level + 1) for op in item.operands)
    return False


# --------------------------------------------------------------------------------------------
# Label rewriting and analysis


def label_names(node: Node) -> frozenset[str]:
    """Every label name the selector reads."""
    names: set[str] = set()
    todo: list[Node] = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, Has | Match | SetMatch):
            names.add(item.label)
        elif isinstance(item, Not):
            todo.append(item.operand)
        elif isinstance(item, And | Or):
            todo.extend(item.operands)
    return frozenset(names)


def with_prefix(node: Node, prefix: str) -> Node:
    """Calico's ``PrefixVisitor``: every label name gets ``prefix`` (``pcns.``, ``pcsa.``)."""

    def leaf(item: Node) -> Node:
        if isinstance(item, Has):
            return Has(prefix + item.label)
        if isinstance(item, Match):
            return Match(prefix + item.label, item.op, item.value)
        if isinstance(item, SetMatch):
            return SetMatch(prefix + item.label, item.negated, item.values)
        return item

    def combine(item: Node, operands: list[Node]) -> Node:
        if isinstance(item, Not):
            return Not(operands[0])
        return And(tuple(operands)) if isinstance(item, And) else Or(tuple(operands))

    return _fold(node, leaf, combine)


# --------------------------------------------------------------------------------------------
# Compilation

CLOSURE_DEPTH = 48
"""Trees up to this deep compile into nested closures (the fast path: one Python call per
node); deeper ones, which only a hostile or generated selector has, into an explicit-stack
evaluator, so that evaluating never meets Python's recursion limit."""


def _always(get: Getter) -> bool:
    return True


def compile_node(node: Node, *, closure_depth: int = CLOSURE_DEPTH) -> Predicate:
    """A predicate evaluating ``node`` against a label getter, with Calico's semantics: nested
    closures when the tree is at most ``closure_depth`` deep, else the explicit-stack
    evaluator."""
    if not deeper_than(node, closure_depth):
        return _compile_closures(node)
    return _compile_deep(node)


def _compile_leaf(node: Node) -> Predicate:
    if isinstance(node, Has):
        return _compile_has(node.label)
    if isinstance(node, Match):
        return _compile_match(node.label, node.op, node.value)
    if isinstance(node, SetMatch):
        return _compile_set(node.label, node.negated, frozenset(node.values))
    return _always


def _compile_closures(node: Node) -> Predicate:
    """Nested closures; recursive, so only for trees at most CLOSURE_DEPTH deep."""
    if isinstance(node, Not):
        return _compile_not(_compile_closures(node.operand))
    if isinstance(node, And | Or):
        predicates = tuple(_compile_closures(op) for op in node.operands)
        return _compile_and(predicates) if isinstance(node, And) else _compile_or(predicates)
    return _compile_leaf(node)


class _Op:
    """An inner node of a deep tree: ``stop`` is False for ``&&`` (a false operand decides),
    True for ``||`` (a true one does), None for ``!``."""

    __slots__ = ("children", "stop")

    def __init__(self, stop: bool | None, children: tuple[_Op | Predicate, ...]) -> None:
        self.stop = stop
        self.children = children


def _deep_op(node: Node, children: list[_Op | Predicate]) -> _Op | Predicate:
    if isinstance(node, Not):
        child = children[0]
        if isinstance(child, _Op) and child.stop is None:
            return child.children[0]  # !!x evaluates as x
        return _Op(None, (child,))
    return _Op(isinstance(node, Or), tuple(children))


def _compile_deep(node: Node) -> Predicate:
    root = _fold(node, _compile_leaf, _deep_op)
    if not isinstance(root, _Op):
        return root

    def deep(get: Getter) -> bool:
        return _evaluate(root, get)

    return deep


def _evaluate(root: _Op, get: Getter) -> bool:
    """Evaluate a deep tree with an explicit stack, short-circuiting as the closures do."""
    frames: list[list[Any]] = []  # [op, index of the operand being evaluated]
    node: _Op | Predicate = root
    while True:
        while isinstance(node, _Op):
            frames.append([node, 0])
            node = node.children[0]
        value = bool(node(get))
        while frames:
            frame = frames[-1]
            op: _Op = frame[0]
            if op.stop is None:
                value = not value
            elif value is not op.stop:
                index = frame[1] + 1
                if index < len(op.children):
                    frame[1] = index
                    node = op.children[index]
                    break
            frames.pop()
        else:
            return value


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
