"""Write docs/probes.md, the probe-file reference, from the probe config model.

Every key comes from ``exporter.probes.config.FIELDS`` (which the parser's key tables derive
from), every outcome from ``exporter.probes.outcome.Outcome`` and its attribute docstrings, the
defaults from the parser's own constants. ``tests/test_probes_doc.py`` fails when the committed
file differs from what this writes, and parses every example with the agent's own parser. Run
``.venv/bin/python tools/probes_doc.py`` after changing the probe config model.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import sys
from pathlib import Path

from exporter.probes import outcome
from exporter.probes.config import FIELDS, MAX_ATTEMPTS, MIN_INTERVAL, PROTOCOLS, format_duration
from exporter.probes.outcome import DEFAULT_DENY_OUTCOMES, DNS_DEFAULT_DENY_OUTCOMES, Outcome

DOC = Path(__file__).resolve().parents[1] / "docs" / "probes.md"

EXAMPLES: tuple[tuple[str, str], ...] = (
    ("An HTTP probe that policy must allow, and the same target from a namespace it must deny",
     """\
defaults:
  interval: 30s
  timeout: 5s
  attempts: 3
  success: majority
probes:
- name: frontend-from-testns
  protocol: http
  target: http://frontend.guestbook.svc.cluster.local/
  expect: allow
  expect_status: [200-299, 301]
  source: {namespace: testns, labels: {run: testpod}}
- name: frontend-from-default
  protocol: http
  target: http://frontend.guestbook.svc.cluster.local/
  expect: deny
  source: {namespace: default, labels: {run: testpod}}
"""),
    ("TCP: the database port is open to its own namespace and closed to another one",
     """\
probes:
- name: redis-from-backend
  protocol: tcp
  target: redis-leader.guestbook.svc.cluster.local:6379
  expect: allow
  source: {namespace: guestbook, labels: {role: backend-probe}}
- name: redis-from-frontend
  protocol: tcp
  target: redis-leader.guestbook.svc.cluster.local:6379
  expect: deny
  interval: 1m
  timeout: 3s
  deny_outcomes: [timeout, refused]
  source: {namespace: shop, labels: {role: storefront-probe}}
"""),
    ("DNS: the cluster resolver answers for a Service, and an egress-isolated namespace gets "
     "no answer",
     """\
probes:
- name: dns-frontend
  protocol: dns
  target: frontend.guestbook.svc.cluster.local
  type: A
  server: 10.96.0.10:53
  expect: allow
  source: {namespace: default}
- name: dns-from-locked-down
  protocol: dns
  target: kubernetes.default.svc.cluster.local
  expect: deny
  source: {namespace: locked-down}
"""),
    ("ICMP: the internet is reachable, except a network a GlobalNetworkPolicy denies",
     """\
probes:
- name: ping-1.1.1.1
  protocol: icmp
  target: 1.1.1.1
  expect: allow
  attempts: 3
  timeout: 2s
  success: any
  source: {namespace: guestbook}
- name: ping-8.8.8.8
  protocol: icmp
  target: 8.8.8.8
  expect: deny
  attempts: 3
  timeout: 2s
  source: {namespace: guestbook}
"""),
    ("A link-local target: the node's NodeLocal DNSCache, which only `allow_link_local` permits",
     """\
probes:
- name: dns-node-local-cache
  protocol: dns
  target: kubernetes.default.svc.cluster.local
  server: 169.254.20.10
  expect: allow
  allow_link_local: true
  source: {namespace: default}
"""),
)
"""(title, YAML): each is a complete, valid probe file (the test parses it)."""


def outcome_docs() -> dict[str, str]:
    """Attribute docstrings of the Outcome members, read from the source."""
    tree = ast.parse(inspect.getsource(outcome.Outcome))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (isinstance(node, ast.Assign) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            name = node.targets[0].id  # type: ignore[attr-defined]
            docs[Outcome[name].value] = " ".join(nxt.value.value.split())
    return docs


def _table(rows: list[tuple[str, ...]], head: tuple[str, ...]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return out


def render() -> str:
    """The whole of docs/probes.md."""
    lines = [
        "# Probe file reference",
        "",
        "Generated from `exporter/probes/config.py` and `exporter/probes/outcome.py` by",
        "`tools/probes_doc.py`; a test keeps it in step and parses every example below.",
        "",
        "A probe agent (`calico-exporter probe --probe-config FILE`) reads this YAML file, runs",
        "the probes whose `source.namespace` is its own namespace on their schedules, reloads the",
        "file when it changes (and on SIGHUP) and serves `calico_probe_*` metrics. The same",
        "structure is the Helm value `probes.config` and the input of",
        "`deploy/render_probe_agents.py`, which renders one agent per source namespace. Check a",
        "file with `calico-exporter check-config probe --probe-config FILE`: every problem is",
        "listed at once, and a valid file's probes are listed with their schedule.",
        "",
        "Durations are Go/Prometheus durations (`500ms`, `30s`, `1m30s`, `1h`) or plain seconds.",
        "",
        "## Top level",
        "",
    ]
    lines += _table([(f"`{f.key}`", f.type, f.default or "required", f.help)
                     for f in FIELDS if f.where == "top"], ("key", "type", "default", "meaning"))
    lines += ["", "## Every probe, and `defaults`", "",
              "These keys may be set in `defaults` (for every probe) and in each probe (for that "
              "probe).", ""]
    lines += _table([(f"`{f.key}`", f.type, f"`{f.default}`", f.help)
                     for f in FIELDS if f.where == "defaults"], ("key", "type", "default",
                                                                 "meaning"))
    lines += ["", "## Every probe", ""]
    rows = [(f"`{f.key}`", f.type, f"`{f.default}`" if f.default else "required", f.help)
            for f in FIELDS if f.where == "probe" and f.protocol is None]
    rows += [(f"`source.{f.key}`", f.type, f"`{f.default}`" if f.default else "required", f.help)
             for f in FIELDS if f.where == "source"]
    lines += _table(rows, ("key", "type", "default", "meaning"))
    for protocol in PROTOCOLS:
        keys = [f for f in FIELDS if f.protocol == protocol]
        if not keys:
            continue
        lines += ["", f"## `{protocol}` probes only", ""]
        lines += _table([(f"`{f.key}`", f.type, f"`{f.default}`" if f.default else "none",
                          f.help) for f in keys], ("key", "type", "default", "meaning"))
    lines += [
        "",
        f"Limits: `interval` at least {format_duration(MIN_INTERVAL)}; `attempts` from 1 to "
        f"{MAX_ATTEMPTS}; `attempts` x `timeout` within `interval`; unknown keys, and keys of "
        "another protocol, are errors.",
        "",
        "## Outcomes",
        "",
        "Each attempt ends in one outcome; a run combines its attempts by `success` into one. The",
        "outcome is the `outcome` label of `calico_probe_outcome`.",
        "",
    ]
    docs = outcome_docs()
    lines += _table([(f"`{o.value}`", docs[o.value],
                      "yes" if o in DEFAULT_DENY_OUTCOMES else
                      "DNS probes" if o in DNS_DEFAULT_DENY_OUTCOMES else "no")
                     for o in Outcome], ("outcome", "meaning", "denied by default"))
    lines += [
        "",
        "## Verdicts",
        "",
        "- `expect: allow` matches when the run's outcome is `success`.",
        "- `expect: deny` matches when it is one of `deny_outcomes`.",
        "- `error` (the probe could not run) matches neither: it is its own result.",
        "",
        "`calico_probe_success` is 1 when the verdict matches, so a refused `expect: deny` probe",
        "has `calico_probe_success 1` and `calico_probe_reachable 0`; `calico_probe_runs_total`",
        "counts runs by `result` (`match`, `mismatch`, `error`). An unexpected allow is a",
        "security regression (`CalicoNetworkPolicyUnexpectedAllow`), an unexpected deny an",
        "outage (`CalicoNetworkPolicyUnexpectedDeny`).",
        "",
        "## Examples",
    ]
    for title, text in EXAMPLES:
        lines += ["", f"### {title}", "", "```yaml", text.rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    DOC.write_text(render())
    sys.stderr.write(f"wrote {DOC}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
