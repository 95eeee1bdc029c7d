"""BIRD transcripts shared by the bird tests: Calico upstream ones, real BIRD 1.6.8 captures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).parent / "data"
UPSTREAM_FILE = DATA / "bird-socket-transcripts-node-populator-tests.yaml"
UPSTREAM: dict[str, Any] = yaml.safe_load(UPSTREAM_FILE.read_text())
"""Calico v3.32.1's populator test transcripts, by name."""
REAL: dict[str, Any] = yaml.safe_load((DATA / "bird-1.6.8-debian-captures.yaml").read_text())
"""Replies captured from Debian BIRD 1.6.8 (without the greeting, which is ``greeting``)."""
