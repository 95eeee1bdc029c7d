"""docs/configuration.md is exactly what the settings dataclasses say."""

from __future__ import annotations

from tools.config_doc import DOC, render


def test_doc_matches_code() -> None:
    """The committed configuration reference equals the one generated from exporter.config."""
    assert DOC.read_text() == render(), "run .venv/bin/python tools/config_doc.py"
