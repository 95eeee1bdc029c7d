"""The ``lab`` fixture: nke-lab, the emulator and the exporter's cluster role, running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.lab import Lab, start_lab, stop_lab


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    """nke-lab with the exporter managing one CalicoNodeStatus per node (period 1 s)."""
    running = await start_lab(tmp_path)
    try:
        yield running
    finally:
        await stop_lab(running)
