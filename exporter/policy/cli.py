"""``calico-exporter selector EXPR [--labels k=v ...]``: check a selector before applying it.

:func:`selector_command` parses EXPR with the exporter's Calico selector engine and returns the
exit code and the text to print: the canonical form and, given labels, ``match`` or
``no match``. ``--labels`` with no pairs matches against the empty label set (what a pod without
labels has). Exit 0 on a match (or when ``--labels`` is not given at all), 1 on no match, 2 when
EXPR does not parse (the error names the column and a caret points at it) or a label is not
``key=value``.
The labels are matched as written: no implicit ``projectcalico.org/*``, ``pcns.*`` or ``pcsa.*``
labels are added.
"""

from __future__ import annotations

from exporter.policy.selector import SelectorError, parse

EXIT_MATCH = 0
EXIT_NO_MATCH = 1
EXIT_ERROR = 2


def _caret(expr: str, offset: int) -> str:
    """The line of ``expr`` holding ``offset``, and a caret under that character."""
    start = expr.rfind("\n", 0, offset) + 1
    end = expr.find("\n", offset)
    line = expr[start:] if end < 0 else expr[start:end]
    pad = "".join("\t" if c == "\t" else " " for c in expr[start:offset])
    return f"  {line}\n  {pad}^"


def parse_labels(items: list[str]) -> dict[str, str]:
    """``key=value`` items as a dict (split at the first ``=``); raises ValueError."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"label {item!r} is not key=value")
        labels[key] = value
    return labels


def selector_command(expr: str, labels: list[str] | None) -> tuple[int, str]:
    """(exit code, text to print) for ``selector EXPR [--labels k=v ...]``; ``labels`` is None
    when no ``--labels`` was given."""
    try:
        selector = parse(expr)
    except SelectorError as err:
        return EXIT_ERROR, f"error: {err}\n{_caret(expr, err.offset)}"
    if labels is None:
        return EXIT_MATCH, selector.text
    try:
        label_map = parse_labels(labels)
    except ValueError as err:
        return EXIT_ERROR, f"error: {err}"
    if selector.matches(label_map):
        return EXIT_MATCH, f"{selector.text}\nmatch"
    return EXIT_NO_MATCH, f"{selector.text}\nno match"
