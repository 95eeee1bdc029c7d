"""docs/metrics.md is exactly what the metric declarations say, and names stay clean."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from tools.metrics_doc import DOC, MODULES, render

CALICO_TSV = Path(__file__).parent / "data" / "calico-oss-prometheus-metrics-v3.32.1.tsv"


def all_specs() -> list:
    return [s for m in MODULES for s in importlib.import_module(f"exporter.metrics.{m}").SPECS]


def test_doc_matches_code() -> None:
    """The committed metrics reference equals the one generated from SPECS."""
    assert DOC.read_text() == render(), "run .venv/bin/python tools/metrics_doc.py"


def test_names_unique_and_well_formed() -> None:
    """Names are unique, snake_case, prefixed calico_, counters end in _total, help is set."""
    specs = all_specs()
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    for spec in specs:
        assert re.fullmatch(r"calico_[a-z0-9_]+", spec.name), spec.name
        assert spec.help
        assert spec.name.endswith("_total") == (spec.type == "counter"), spec.name


def test_no_name_calico_exports() -> None:
    """None of our names is one Calico v3.32.1 already exports."""
    theirs = {line.split("\t")[1] for line in CALICO_TSV.read_text().splitlines()[2:] if line}
    ours = set()
    for spec in all_specs():
        ours.add(spec.name)
        if spec.type == "histogram":
            ours |= {spec.name + suffix for suffix in ("_bucket", "_sum", "_count")}
    assert not ours & theirs
