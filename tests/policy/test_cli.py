"""selector_command: canonical form, match / no match / parse error with exit codes 0, 1, 2."""

from __future__ import annotations

import pytest

from exporter.policy.cli import selector_command


def test_canonical_form_without_labels() -> None:
    """Without --labels the canonical form is printed and the exit code is 0."""
    assert selector_command("app=='web'&&!has(legacy)", None) == (
        0, '(app == "web" && !has(legacy))')


def test_empty_label_set() -> None:
    """--labels with no pairs is the empty label set: all() and !has(x) match it, a label
    comparison does not."""
    assert selector_command("all()", []) == (0, "all()\nmatch")
    assert selector_command("!has(app)", []) == (0, "!has(app)\nmatch")
    assert selector_command("app == 'web'", []) == (1, 'app == "web"\nno match')


def test_match() -> None:
    """Labels that match: exit 0 and 'match'."""
    assert selector_command("app in {'web', 'api'}", ["app=web", "tier=front"]) == (
        0, 'app in {"api", "web"}\nmatch')


def test_no_match() -> None:
    """Labels that do not match: exit 1 and 'no match'; an absent label satisfies !=."""
    assert selector_command("app == 'web'", ["app=db"]) == (1, 'app == "web"\nno match')
    assert selector_command("app != 'web'", ["tier=db"]) == (0, 'app != "web"\nmatch')


def test_values_may_contain_equals_and_be_empty() -> None:
    """A label splits at its first '='; an empty value is a present label."""
    assert selector_command("a == 'x=y' && has(b)", ["a=x=y", "b="])[0] == 0


def test_parse_error_shows_column_and_caret() -> None:
    """A parse error exits 2 and points at the column."""
    code, text = selector_command("app == 'web' && tier = 'db'", ["app=web"])
    assert code == 2
    assert text == (
        "error: expected == at column 22\n"
        "  app == 'web' && tier = 'db'\n"
        "                       ^")


def test_parse_error_keeps_tabs_under_caret() -> None:
    """Tabs before the error are kept in the caret line so the caret lines up."""
    code, text = selector_command("a ==\t'b", [])
    assert (code, text.splitlines()[2]) == (2, "      \t^")


@pytest.mark.parametrize("label", ["app", "=web"])
def test_bad_label_argument(label: str) -> None:
    """A label that is not key=value exits 2."""
    assert selector_command("all()", [label]) == (2, f"error: label {label!r} is not key=value")
