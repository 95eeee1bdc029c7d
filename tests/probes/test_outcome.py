"""Outcomes, the success rule over attempts, and verdict matching."""

from __future__ import annotations

import pytest

from exporter.probes.outcome import (
    DEFAULT_DENY_OUTCOMES,
    OUTCOMES,
    Outcome,
    SuccessRule,
    verdict,
)

Oc = Outcome


def test_outcome_values_are_the_contract() -> None:
    """The outcome label values are exactly the ten documented ones, in order."""
    assert [o.value for o in OUTCOMES] == [
        "success", "refused", "timeout", "unreachable", "dns_nxdomain", "dns_servfail",
        "dns_timeout", "http_status_mismatch", "tls_error", "error"]


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_verdict_allow(outcome: Outcome) -> None:
    """expect allow matches only success; error is its own result."""
    expected = "match" if outcome is Oc.SUCCESS else "error" if outcome is Oc.ERROR else "mismatch"
    assert verdict(outcome, expect="allow", deny_outcomes=DEFAULT_DENY_OUTCOMES) == expected


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_verdict_deny_default(outcome: Outcome) -> None:
    """expect deny matches timeout, refused and unreachable by default; error never matches."""
    if outcome is Oc.ERROR:
        expected = "error"
    elif outcome in (Oc.TIMEOUT, Oc.REFUSED, Oc.UNREACHABLE):
        expected = "match"
    else:
        expected = "mismatch"
    assert verdict(outcome, expect="deny", deny_outcomes=DEFAULT_DENY_OUTCOMES) == expected


def test_verdict_deny_configurable() -> None:
    """A probe that only accepts a silent drop as denial treats a refusal as a mismatch."""
    drop_only = frozenset({Oc.TIMEOUT})
    assert verdict(Oc.TIMEOUT, expect="deny", deny_outcomes=drop_only) == "match"
    assert verdict(Oc.REFUSED, expect="deny", deny_outcomes=drop_only) == "mismatch"


@pytest.mark.parametrize(("rule", "attempts", "required"), [
    ("any", 3, 1), ("all", 3, 3), ("majority", 3, 2), ("majority", 4, 3), (2, 4, 2), (1, 1, 1)])
def test_success_rule_required(rule: str | int, attempts: int, required: int) -> None:
    """any needs one success, all every attempt, majority more than half, N exactly N."""
    assert SuccessRule.parse(rule, attempts).required == required


@pytest.mark.parametrize(("rule", "attempts"), [("most", 3), (0, 3), (4, 3), (True, 3)])
def test_success_rule_rejects(rule: str | int, attempts: int) -> None:
    """Unknown words and numbers outside 1..attempts are refused."""
    with pytest.raises(ValueError):
        SuccessRule.parse(rule, attempts)


def test_success_rule_decides_early() -> None:
    """Attempts stop once the result cannot change."""
    any3, all3, maj3 = (SuccessRule.parse(r, 3) for r in ("any", "all", "majority"))
    assert any3.decided([Oc.SUCCESS])
    assert not any3.decided([Oc.TIMEOUT, Oc.TIMEOUT])
    assert any3.decided([Oc.TIMEOUT, Oc.TIMEOUT, Oc.TIMEOUT])
    assert all3.decided([Oc.TIMEOUT])
    assert not all3.decided([Oc.SUCCESS, Oc.SUCCESS])
    assert maj3.decided([Oc.SUCCESS, Oc.SUCCESS])
    assert maj3.decided([Oc.REFUSED, Oc.REFUSED])
    assert not maj3.decided([Oc.SUCCESS, Oc.REFUSED])


def test_success_rule_combines_outcomes() -> None:
    """Enough successes give success; otherwise the most frequent failure, the latest on ties."""
    maj3 = SuccessRule.parse("majority", 3)
    assert maj3.combine([Oc.SUCCESS, Oc.TIMEOUT, Oc.SUCCESS]) is Oc.SUCCESS
    assert maj3.combine([Oc.SUCCESS, Oc.TIMEOUT, Oc.TIMEOUT]) is Oc.TIMEOUT
    assert maj3.combine([Oc.REFUSED, Oc.SUCCESS, Oc.TIMEOUT]) is Oc.TIMEOUT
    all2 = SuccessRule.parse("all", 2)
    assert all2.combine([Oc.SUCCESS, Oc.ERROR]) is Oc.ERROR
    any3 = SuccessRule.parse("any", 3)
    assert any3.combine([Oc.TIMEOUT, Oc.UNREACHABLE, Oc.TIMEOUT]) is Oc.TIMEOUT
