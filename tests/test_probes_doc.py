"""docs/probes.md is exactly what the probe config model says, and its examples are valid."""

from __future__ import annotations

import pytest
import yaml

from exporter.probes import config as probe_config
from exporter.probes.config import FIELDS, PROTOCOLS, parse_probe_config
from exporter.probes.outcome import Outcome
from tools.probes_doc import DOC, EXAMPLES, outcome_docs, render


def test_doc_matches_code() -> None:
    """The committed probe-file reference equals the one generated from the model."""
    assert DOC.read_text() == render(), "run .venv/bin/python tools/probes_doc.py"


@pytest.mark.parametrize(("title", "text"), EXAMPLES, ids=[t for t, _ in EXAMPLES])
def test_examples_are_valid_probe_files(title: str, text: str) -> None:
    """Every example of the reference is a valid probe file for the agent's own parser."""
    config, errors = parse_probe_config(text)
    assert errors == [], title
    assert config is not None
    assert config.probes


def test_examples_cover_every_protocol_and_both_verdicts() -> None:
    """The examples show HTTP, TCP, DNS and ICMP probes, each with allow and deny."""
    seen = set()
    for _, text in EXAMPLES:
        for probe in yaml.safe_load(text)["probes"]:
            seen.add((probe["protocol"], probe["expect"]))
    assert seen == {(p, e) for p in PROTOCOLS for e in ("allow", "deny")}


def test_every_key_the_parser_knows_is_documented() -> None:
    """The parser's key tables are the documented fields (no key the parser accepts is missing
    from the reference, and none is documented that it refuses)."""
    documented = {f.key for f in FIELDS}
    parser = (set(probe_config._TOP_KEYS) | set(probe_config._COMMON_KEYS)
              | set(probe_config._PROTOCOL_KEYS) | {"namespace", "labels"})
    assert documented == parser
    defaults = {f.key: f.default for f in FIELDS if f.where == "defaults"}
    for key, value in probe_config._BUILTIN_DEFAULTS.items():
        shown = probe_config.format_duration(value) if isinstance(value, float) else str(value)
        assert defaults[key] == shown


def test_every_outcome_is_explained() -> None:
    """Each outcome has its meaning in the reference."""
    docs = outcome_docs()
    assert set(docs) == {o.value for o in Outcome}
    assert all(docs.values())
