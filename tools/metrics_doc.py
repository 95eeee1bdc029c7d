"""Write docs/metrics.md from the metric declarations (``SPECS``) of every collector module.

``tests/test_metrics_doc.py`` fails when the committed file differs from what this prints, so
the reference cannot drift from the code. Run ``.venv/bin/python tools/metrics_doc.py`` after
adding a metric.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

MODULES = {
    "bgp": "BGP and BIRD (cluster mode from CalicoNodeStatus, node mode from BIRD)",
    "ipam": "IPAM utilization",
    "policy": "Network policy selection and isolation",
    "probes": "Synthetic probes",
    "flows": "Traffic verdicts from Calico's Goldmane (cluster mode with --goldmane-enabled)",
    "self": "The exporter itself",
    "http": "The HTTP endpoint (connections and scraper authorization)",
}
DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def render() -> str:
    lines = [
        "# Metrics reference",
        "",
        "Generated from the code by `tools/metrics_doc.py`; a test keeps it in step. Names are a",
        "contract: they are added, never renamed. None reuses a name Calico itself exports.",
        "State sets (`..._state`, `calico_probe_outcome`) have one series per state, 1 for the",
        "current one; `_info` gauges are always 1 and carry properties as labels.",
        "A label marked *(optional)* is on some series of its family only. `peer_port` is there",
        "only where sessions on more than one port go to the same peer IP of a node (confd's",
        "`_port_N` protocols; the session without a suffix has `peer_port=\"179\"`): every other",
        "peer keeps exactly the other labels, and a query that aggregates `by (peer_ip)` adds up",
        "the sessions of such an IP (README, \"Node mode notes\").",
        "",
    ]
    for module, title in MODULES.items():
        specs = importlib.import_module(f"exporter.metrics.{module}").SPECS
        lines += [f"## {title}", "", "| name | type | labels | help |", "| --- | --- | --- | --- |"]
        for spec in specs:
            labels = ", ".join([*(f"`{label}`" for label in spec.labels),
                                *(f"`{label}` *(optional)*" for label in spec.optional_labels)])
            labels = labels or "-"
            lines.append(f"| `{spec.name}` | {spec.type} | {labels} | {spec.help} |")
        lines.append("")
    lines += _runtime()
    return "\n".join(lines)


def _runtime() -> list[str]:
    """The process and Python runtime families every mode also serves, as prometheus-client
    declares them."""
    from exporter.metrics.self import runtime_collectors

    lines = ["## Process and Python runtime (prometheus-client's collectors, every mode)", "",
             "| name | type | labels | help |", "| --- | --- | --- | --- |"]
    for collector in runtime_collectors():
        for family in collector.collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            labels = ", ".join(f"`{k}`" for k in sorted({k for s in family.samples
                                                          for k in s.labels})) or "-"
            lines.append(f"| `{name}` | {family.type} | {labels} | {family.documentation} |")
    lines.append("")
    return lines


def main() -> int:
    DOC.write_text(render())
    sys.stderr.write(f"wrote {DOC}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
