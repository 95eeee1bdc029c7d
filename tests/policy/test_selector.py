"""The Calico selector engine: conformance with Calico's own tests, grammar details, properties."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.policy.selector import (
    All,
    And,
    Global,
    Has,
    Match,
    Node,
    Not,
    Or,
    SelectorCache,
    SelectorError,
    SetMatch,
    canonical,
    compile_node,
    parse,
    parse_node,
    with_prefix,
)
from tests.policy.reference import CONFORMANCE_FILES, DATA, cases

MATCH_CASES = cases("match-cases.yaml")
CANONICAL_CASES = cases("canonical-cases.yaml")
INVALID_CASES = cases("invalid-cases.yaml")


def _id(case: dict[str, Any]) -> str:
    return repr(case["selector"])


# --------------------------------------------------------------------------------------------
# Conformance with Calico's parser_test.go and tokenizer_test.go


def test_data_files_match_their_recorded_provenance() -> None:
    """Every file of tests/policy/data hashes (as ``git hash-object``) to the blob its README
    records with its upstream source, and the README lists exactly those files: an edited,
    added or lost conformance file fails here, wherever the tests run."""
    readme = (DATA / "README.md").read_text()
    listed = dict(re.findall(r"^\| (\S+\.yaml) \| ([0-9a-f]{40}) \|$", readme, re.M))
    assert set(CONFORMANCE_FILES) <= set(listed)
    assert sorted(listed) == sorted(p.name for p in DATA.glob("*.yaml"))
    for name, blob in listed.items():
        data = (DATA / name).read_bytes()
        digest = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False)
        assert digest.hexdigest() == blob, name


def test_conformance_files_name_their_upstream_tag() -> None:
    """Each conformance file's header names the Calico tag and commit its README records."""
    for name in CONFORMANCE_FILES:
        header = (DATA / name).read_text().splitlines()[1]
        assert header == ("# Source: github.com/projectcalico/calico tag v3.32.1 "
                          "(commit 0ca9d1b93644778cafdf1812f3dda02ac0c361e8)"), name


def test_conformance_case_counts() -> None:
    """Every case of the three files is loaded (69 match, 17 canonical, 29 invalid)."""
    assert (len(MATCH_CASES), len(CANONICAL_CASES), len(INVALID_CASES)) == (69, 17, 29)
    assert sum(c["match"] for c in MATCH_CASES) == 34


@pytest.mark.parametrize("case", MATCH_CASES, ids=_id)
def test_match_cases(case: dict[str, Any]) -> None:
    """Evaluation agrees with Calico, also after re-parsing the canonical form."""
    labels = case["labels"] or {}
    selector = parse(case["selector"])
    assert selector.matches(labels) is case["match"]
    assert parse(selector.text).matches(labels) is case["match"]


@pytest.mark.parametrize("case", CANONICAL_CASES, ids=_id)
def test_canonical_cases(case: dict[str, Any]) -> None:
    """String() agrees with Calico, and the canonical form is a fixed point."""
    assert parse(case["selector"]).text == case["canonical"]
    assert parse(case["canonical"]).text == case["canonical"]


@pytest.mark.parametrize("case", INVALID_CASES, ids=_id)
def test_invalid_cases(case: dict[str, Any]) -> None:
    """Selectors Calico rejects raise SelectorError with a position inside or just past them."""
    with pytest.raises(SelectorError) as info:
        parse(case["selector"])
    assert 0 <= info.value.offset <= len(case["selector"])
    assert str(info.value).endswith(f" at column {info.value.offset + 1}")


# --------------------------------------------------------------------------------------------
# Grammar details (calico-model §3.2)


@pytest.mark.parametrize(("text", "canonical"), [
    ('a notin {"x"}', 'a not in {"x"}'),
    ('a not \t in {"x"}', 'a not in {"x"}'),
    ('a startswith "x"', 'a starts with "x"'),
    ('a starts  with "x"', 'a starts with "x"'),
    ('a endswith"x"', 'a ends with "x"'),
    ('a contains"x"', 'a contains "x"'),
    ('a in{"x"}', 'a in {"x"}'),
    ("a in {}", "a in {}"),
    ('a in {"x",}', 'a in {"x"}'),
    ('a not in {"y", "x", }', 'a not in {"x", "y"}'),
    ("\thas(\ta\t)\t", "has(a)"),
    ("all(  )", "all()"),
    ("global(\t)", "global()"),
    ("a==''", 'a == ""'),
    ("in == 'x'", 'in == "x"'),
    ("has == 'x'", 'has == "x"'),
    ("allx == 'x'", 'allx == "x"'),
    ("a == 'b' && c == 'd' && e == 'f'", '(a == "b" && c == "d" && e == "f")'),
    ("a == 'b' || c == 'd' && e == 'f'", '(a == "b" || (c == "d" && e == "f"))'),
    ("(a == 'b' || c == 'd') && e == 'f'", '((a == "b" || c == "d") && e == "f")'),
    ("!a == 'b'", '!a == "b"'),
    ("!!a == 'b'", 'a == "b"'),
    ("!!!has(a)", "!has(a)"),
    ("!(has(a) && has(b))", "!(has(a) && has(b))"),
    ("x.y/z-1_2 == 'v'", 'x.y/z-1_2 == "v"'),
])
def test_grammar_accepts(text: str, canonical: str) -> None:
    """Word operators with any or no space between words, sets with trailing commas, folding."""
    assert parse(text).text == canonical


@pytest.mark.parametrize(("text", "column", "reason"), [
    ("a == 'b'\n", 9, "expected identifier"),
    ("a ==\r'b'", 5, "expected identifier"),
    ("a\v== 'b'", 2, "expected operator after label 'a'"),
    ('a == "b\\" "', 11, "unterminated string"),
    ("has (a)", 5, "expected operator after label 'has', found '('"),
    ("all ()", 5, "expected operator after label 'all', found '('"),
    ("a instance {'x'}", 3, "expected operator after label 'a'"),
    ("a containsx 'x'", 3, "expected operator after label 'a'"),
    ("a startswithx 'x'", 3, "expected operator after label 'a'"),
    ("a in 'x'", 6, "expected set literal after 'in', found string \"x\""),
    ("a in {'x' 'y'}", 11, "expected '}', found string \"y\""),
    ("a in {,}", 7, "expected '}', found ','"),
    ("a = 'b'", 3, "expected =="),
    ("a == 'b' & c == 'd'", 10, "expected &&"),
    ("a == 'b' | c == 'd'", 10, "expected ||"),
    ("a == 'b' c == 'd'", 10, "unexpected content at end of selector: label 'c'"),
    ("!", 2, "unexpected end of selector"),
    ("a", 2, "expected operator after label 'a', found end of selector"),
    ("a ==", 5, "expected string after '==', found end of selector"),
    ("(a == 'b'", 10, "expected ')', found end of selector"),
    ("a == 'b' && (", 14, "unexpected end of selector"),
])
def test_grammar_rejects_with_position(text: str, column: int, reason: str) -> None:
    """Only space and tab are whitespace, no escapes, word boundaries; errors name the column."""
    with pytest.raises(SelectorError) as info:
        parse(text)
    assert (info.value.reason, info.value.column) == (reason, column)


def test_label_length_limit() -> None:
    """Labels of 512 characters parse; 513 do not (tokenizer.MaxLabelLength)."""
    assert parse("a" * 512 + " == 'x'").labels == {"a" * 512}
    assert parse(f"has({'b' * 512})").matches({"b" * 512: ""})
    with pytest.raises(SelectorError, match="label too long"):
        parse("a" * 513 + " == 'x'")
    with pytest.raises(SelectorError, match="label too long"):
        parse(f"has({'b' * 513})")


@pytest.mark.parametrize(("text", "labels", "expected"), [
    ("a != 'x'", {}, True),
    ("a not in {'x'}", {}, True),
    ("a == 'x'", {}, False),
    ("a in {'x'}", {}, False),
    ("a contains ''", {}, False),
    ("a contains ''", {"a": ""}, True),
    ("a starts with ''", {"a": "v"}, True),
    ("a ends with 'z'", {"a": "xyz"}, True),
    ("a in {}", {"a": "x"}, False),
    ("a not in {}", {"a": "x"}, True),
    ("has(a)", {"a": ""}, True),
    ("global()", {"a": "x"}, True),
    ("!all()", {}, False),
])
def test_absent_label_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    """!= and not in are true when the label is absent; every other operator is false then."""
    assert parse(text).matches(labels) is expected


def test_double_negation_through_parentheses_prints_like_calico() -> None:
    """!(!x) prints !!x as Calico's String() does, which reads back as x: stable from round 2."""
    first = parse("!(!has(a))")
    assert first.root == Not(Not(Has("a")))
    assert first.text == "!!has(a)"
    assert parse(first.text).text == "has(a)"
    assert parse("has(a)").text == "has(a)"


def test_prefix_visitor_prints_like_calico() -> None:
    """PrefixVisitor output from parser_test.go's visitor tests: top-level groups in parens."""
    root = parse_node("k == 'v' && x == 'y'")
    assert parse(canonical(with_prefix(root, "visited/"))).text == (
        '(visited/k == "v" && visited/x == "y")')
    assert canonical(with_prefix(parse_node("!(k == 'v')"), "visited/")) == '!visited/k == "v"'


def test_cache_shares_compiled_selectors_and_remembers_errors() -> None:
    """Equivalent texts share one compiled selector; errors are raised afresh from the cache."""
    cache = SelectorCache()
    first = cache.parse("a == 'x' && has(b)")
    assert cache.parse('a=="x"&&has(b)') is first
    assert len(cache) == 1
    for _ in range(2):
        with pytest.raises(SelectorError) as info:
            cache.parse("a ==")
        assert info.value.column == 5


def test_cache_is_bounded() -> None:
    """Past max_entries the cache starts over instead of growing."""
    cache = SelectorCache(max_entries=10)
    for i in range(25):
        cache.parse(f"a == '{i}'")
        assert len(cache) <= 10


# --------------------------------------------------------------------------------------------
# Depth (issue 12, defect 1): no limit of our own, as in Calico


ETCD_REQUEST_LIMIT = 1536 * 1024
"""etcd's default --max-request-bytes, 1.5 MiB (etcd.io/docs/v3.6/dev-guide/limit): no object,
so no selector, is longer. Calico's CRDs give selectors no maxLength
(crd.projectcalico.org_networkpolicies.yaml at v3.32.1), and Calico's parser has no depth
limit: parseOperation recurses into parseOrExpression at every "(" (libcalico-go/lib/selector/
parser/parser.go at v3.32.1) on a Go stack that grows to 1 GB."""


def _negated(depth: int) -> str:
    return "!(" * depth + "a == 'b'" + ")" * depth


def _alternating(depth: int) -> str:
    """``a != 'z' && (b == 'y' || (a != 'z' && (b == 'y' || ... has(c) ...))``: without b,
    only the innermost has(c) decides."""
    ops = ("a != 'z' && (", "b == 'y' || (")
    return "".join(ops[i % 2] for i in range(depth)) + "has(c)" + ")" * depth


@pytest.mark.parametrize("depth", [330, 1_000, 5_000])
def test_deep_selectors_parse_as_calico_parses_them(depth: int) -> None:
    """The 330 parentheses that crashed the exporter with RecursionError, Python's default
    recursion limit, and far beyond: parenthesised, negated and alternating &&/|| groups parse,
    print and evaluate as Calico would, without touching the recursion limit."""
    plain = parse("(" * depth + "a == 'b'" + ")" * depth)
    assert plain.text == 'a == "b"'
    negated = parse(_negated(depth))
    assert negated.text == "!" * depth + 'a == "b"'
    assert negated.matches({"a": "b"}) is (depth % 2 == 0)
    alternating = parse(_alternating(depth))
    assert alternating.labels == {"a", "b", "c"}
    assert alternating.matches({"c": ""})
    assert not alternating.matches({})
    assert alternating.matches({"b": "y"})
    assert not alternating.matches({"a": "z", "c": ""})
    assert parse(alternating.text).text == alternating.text
    assert canonical(with_prefix(alternating.root, "pcns.")).count("pcns.") == depth + 1


def test_largest_selector_an_object_can_hold_parses() -> None:
    """A selector as long as etcd lets an object be, nested as deep as that allows, parses and
    evaluates: nothing Calico accepts is counted invalid here."""
    depth = (ETCD_REQUEST_LIMIT - len("has(c)")) // len("a != 'z' && ()")
    text = _alternating(depth)
    assert ETCD_REQUEST_LIMIT - 20 < len(text) <= ETCD_REQUEST_LIMIT
    selector = SelectorCache().parse(text)
    assert selector.matches({"c": ""})
    assert not selector.matches({})


@pytest.mark.parametrize(("text", "column", "reason"), [
    ("(" * 5000 + "a == 'b'" + ")" * 4999, 10008, "expected ')', found end of selector"),
    ("(" * 5000 + "a == 'b'" + ")" * 5001, 10009,
     "unexpected content at end of selector: ')'"),
    ("!(" * 5000 + "a ==" + ")" * 5000, 10005, "expected string after '==', found ')'"),
])
def test_deep_selectors_calico_rejects_are_errors(text: str, column: int, reason: str) -> None:
    """A deep selector that Calico rejects (parser.go: ErrExpectedRParen, trailing tokens, a
    missing string) is a SelectorError at the same place as a shallow one: no other exception."""
    with pytest.raises(SelectorError) as info:
        parse(text)
    assert (info.value.reason, info.value.column) == (reason, column)


# --------------------------------------------------------------------------------------------
# Properties


_LABELS = st.sampled_from(["a", "b", "app", "x.y/z", "k-1", "pcns.team", "in", "has"])
_VALUE_CHARS = "ab'\" ,{}()!&|=\t"
_VALUES = st.text(alphabet=_VALUE_CHARS, max_size=4).filter(
    lambda v: not ('"' in v and "'" in v))
_WS = st.text(alphabet=" \t", max_size=2)
_WS1 = st.text(alphabet=" \t", min_size=1, max_size=2)


@st.composite
def _quoted(draw: st.DrawFn) -> str:
    value = draw(_VALUES)
    if '"' in value:
        return f"'{value}'"
    if "'" in value:
        return f'"{value}"'
    quote = draw(st.sampled_from(["'", '"']))
    return f"{quote}{value}{quote}"


@st.composite
def _leaf(draw: st.DrawFn) -> str:
    label, ws, ws1 = draw(_LABELS), draw(_WS), draw(_WS1)
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return f"has({ws}{label}{draw(_WS)})"
    if kind == 1:
        return draw(st.sampled_from(["all()", "global()", f"all({ws})"]))
    if kind == 2:
        return f"{label}{ws}{draw(st.sampled_from(['==', '!=']))}{draw(_WS)}{draw(_quoted())}"
    if kind in (3, 4, 5):
        op = draw(st.sampled_from(
            ["contains", "starts with", "startswith", "ends with", "endswith", "starts\twith"]))
        return f"{label}{ws1}{op}{ws}{draw(_quoted())}"
    items = draw(st.lists(_quoted(), max_size=4))
    body = f"{draw(_WS)},{draw(_WS)}".join(items)
    if items and draw(st.booleans()):
        body += ","
    op = draw(st.sampled_from(["in", "not in", "notin", "not\t in"]))
    return f"{label}{ws1}{op}{ws}{{{draw(_WS)}{body}{draw(_WS)}}}"


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    nots = st.text(alphabet="!", max_size=3)
    return st.one_of(
        st.builds(lambda n, w1, e, w2: f"{n}({w1}{e}{w2})", nots, _WS, children, _WS),
        st.builds(lambda a, w1, op, w2, b: f"{a}{w1}{op}{w2}{b}",
                  children, _WS, st.sampled_from(["&&", "||"]), _WS, children),
        st.builds(lambda n, w, e: f"{n}{w}{e}", nots, _WS, children),
    )


SELECTORS = st.recursive(_leaf(), _extend, max_leaves=8)
LABEL_MAPS = st.dictionaries(_LABELS, st.text(alphabet="ab'\" ,", max_size=3), max_size=4)


def _has_double_negation(node: Node) -> bool:
    if isinstance(node, Not):
        return isinstance(node.operand, Not) or _has_double_negation(node.operand)
    if isinstance(node, And | Or):
        return any(_has_double_negation(op) for op in node.operands)
    return False


def _reference(node: Node, labels: dict[str, str]) -> bool:
    """A direct AST interpreter, written from the calico-model §3.2 evaluation table."""
    if isinstance(node, All | Global):
        return True
    if isinstance(node, Has):
        return node.label in labels
    if isinstance(node, Not):
        return not _reference(node.operand, labels)
    if isinstance(node, And):
        return all(_reference(op, labels) for op in node.operands)
    if isinstance(node, Or):
        return any(_reference(op, labels) for op in node.operands)
    if isinstance(node, SetMatch):
        if node.label not in labels:
            return node.negated
        return (labels[node.label] in node.values) != node.negated
    assert isinstance(node, Match)
    if node.label not in labels:
        return node.op == "!="
    value = labels[node.label]
    return {
        "==": value == node.value,
        "!=": value != node.value,
        "contains": node.value in value,
        "starts with": value.startswith(node.value),
        "ends with": value.endswith(node.value),
    }[node.op]


@settings(max_examples=400)
@given(SELECTORS, st.lists(LABEL_MAPS, max_size=6))
def test_round_trip_through_canonical_form(text: str, label_maps: list[dict[str, str]]) -> None:
    """print(parse(print(parse(s)))) == print(parse(s)) with equal evaluation.

    Exactly so unless the selector negates a parenthesised negation, which Calico prints as
    ``!!`` (read back as no negation): then the second round is the fixed point.
    """
    first = parse(text)
    second = parse(first.text)
    third = parse(second.text)
    if not _has_double_negation(first.root):
        assert second.text == first.text
        assert second.root == first.root
    assert third.text == second.text
    deep = compile_node(first.root, closure_depth=0)
    for labels in label_maps:
        expected = _reference(first.root, labels)
        assert first.matches(labels) is expected
        assert second.matches(labels) is expected
        assert deep(labels.get) is expected


@given(st.text(alphabet=" \t\n'\"{}(),=!&|abcdeghilnorstw_./-", max_size=40))
def test_arbitrary_text_parses_or_raises_selector_error(text: str) -> None:
    """Any text either parses (and round-trips) or raises SelectorError with a sane position."""
    offset = -1
    try:
        selector = parse(text)
    except SelectorError as err:
        offset = err.offset
    if offset >= 0:
        assert offset <= len(text)
    else:
        assert parse(parse(selector.text).text).text == parse(selector.text).text
