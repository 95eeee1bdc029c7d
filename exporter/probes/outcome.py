"""The bounded outcome of a probe run, the success rule over attempts, and verdict matching.

An *attempt* is one try of a probe (one connect, one query, one echo); a *run* is up to
``attempts`` tries combined by the probe's success rule into one outcome. The verdict compares
that outcome with what the probe expects:

* ``expect: allow`` matches when the outcome is ``success`` (the target was reached);
* ``expect: deny`` matches when the outcome is one of the probe's ``deny_outcomes``
  (default ``timeout``, ``refused``, ``unreachable``, plus ``dns_timeout`` for DNS probes);
* ``error`` (the probe itself could not run) never matches either verdict: it is its own result.

Every other combination is a mismatch: an unexpected allow is a security regression, an unexpected
deny an outage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Outcome(StrEnum):
    """What one attempt or run observed; the values are the ``outcome`` label values."""

    SUCCESS = "success"
    """The target answered as expected of a reachable service (connected, status in range,
    DNS answer present, echo reply)."""
    REFUSED = "refused"
    """Actively refused: TCP RST, ICMP port unreachable, or a connection reset before a reply."""
    TIMEOUT = "timeout"
    """Nothing came back within the timeout (what a policy DROP looks like)."""
    UNREACHABLE = "unreachable"
    """No route, ICMP network/host unreachable or administratively prohibited."""
    DNS_NXDOMAIN = "dns_nxdomain"
    """The DNS server says the name, or the record asked for, does not exist."""
    DNS_SERVFAIL = "dns_servfail"
    """The DNS server failed to answer (SERVFAIL, REFUSED, a malformed reply)."""
    DNS_TIMEOUT = "dns_timeout"
    """No DNS answer within the timeout, or the resolver gave up (EAI_AGAIN)."""
    HTTP_STATUS_MISMATCH = "http_status_mismatch"
    """The HTTP server answered with a status outside ``expect_status`` (or not HTTP at all)."""
    TLS_ERROR = "tls_error"
    """The TLS handshake failed: bad or untrusted certificate, protocol mismatch."""
    ERROR = "error"
    """The probe could not run: no socket permission, no resolver, a bug. Never a verdict."""


OUTCOMES: tuple[Outcome, ...] = tuple(Outcome)
"""Every outcome, in declaration order: the states of ``calico_probe_outcome``."""

DEFAULT_DENY_OUTCOMES: frozenset[Outcome] = frozenset(
    {Outcome.TIMEOUT, Outcome.REFUSED, Outcome.UNREACHABLE}
)
"""Outcomes that count as "denied" unless a probe or the defaults say otherwise."""

DNS_DEFAULT_DENY_OUTCOMES: frozenset[Outcome] = DEFAULT_DENY_OUTCOMES | {Outcome.DNS_TIMEOUT}
"""The default for DNS probes: a dropped query shows up as ``dns_timeout``."""

Expect = Literal["allow", "deny"]
Result = Literal["match", "mismatch", "error"]
RESULTS: tuple[Result, ...] = ("match", "mismatch", "error")
"""Values of the ``result`` label of ``calico_probe_runs_total``."""


def verdict(outcome: Outcome, *, expect: Expect, deny_outcomes: frozenset[Outcome]) -> Result:
    """Compare a run's outcome with the expectation: match, mismatch, or error."""
    if outcome is Outcome.ERROR:
        return "error"
    if expect == "allow":
        return "match" if outcome is Outcome.SUCCESS else "mismatch"
    return "match" if outcome in deny_outcomes else "mismatch"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one try of a probe observed; ``detail`` is a short human explanation for logs."""

    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SuccessRule:
    """How many of ``attempts`` tries must succeed for the run to be ``success``.

    ``any`` needs 1, ``all`` needs every attempt, ``majority`` more than half, a number N needs N.
    Attempts stop as soon as the result is decided (``any`` stops at the first success).
    """

    attempts: int
    required: int

    @classmethod
    def parse(cls, rule: str | int, attempts: int) -> SuccessRule:
        """Build from the config value; ValueError for an unknown word or an out-of-range number."""
        if rule == "any":
            return cls(attempts, 1)
        if rule == "all":
            return cls(attempts, attempts)
        if rule == "majority":
            return cls(attempts, attempts // 2 + 1)
        if isinstance(rule, int) and not isinstance(rule, bool) and 1 <= rule <= attempts:
            return cls(attempts, rule)
        raise ValueError(rule)

    def decided(self, outcomes: Sequence[Outcome]) -> bool:
        """True once more attempts cannot change the run's outcome."""
        ok = sum(1 for o in outcomes if o is Outcome.SUCCESS)
        failed = len(outcomes) - ok
        return ok >= self.required or failed > self.attempts - self.required

    def combine(self, outcomes: Sequence[Outcome]) -> Outcome:
        """The run's outcome: success when enough attempts succeeded, else the most frequent
        failing outcome (on a tie, the one seen last)."""
        assert outcomes, "a run has at least one attempt"
        failing = [o for o in outcomes if o is not Outcome.SUCCESS]
        if len(outcomes) - len(failing) >= self.required:
            return Outcome.SUCCESS
        counts = Counter(failing)
        best = max(counts.values())
        return next(o for o in reversed(failing) if counts[o] == best)


__all__ = [
    "DEFAULT_DENY_OUTCOMES",
    "DNS_DEFAULT_DENY_OUTCOMES",
    "OUTCOMES",
    "RESULTS",
    "Attempt",
    "Expect",
    "Outcome",
    "Result",
    "SuccessRule",
    "verdict",
]
