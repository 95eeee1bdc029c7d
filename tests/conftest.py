"""Suite-wide fixtures: a leaked-task check on every test, structlog set up for tests, and
``lab``: nke-lab, the API emulator and the exporter's cluster role, running, once per Calico
flavour (``calico_api``: v1, v3, both)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.logs import configure_logging
from tests.e2e.lab import CALICO_APIS, Lab, start_lab, stop_lab


@pytest.fixture(autouse=True, scope="session")
def _logging() -> None:
    """Render logs as console text and never cache loggers, so capture_logs works in tests."""
    configure_logging(level="debug", fmt="console", cache=False)


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail any test that leaves asyncio tasks running after its own fixtures are gone."""
    before = set(asyncio.all_tasks())
    yield
    for _ in range(3):
        await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks()
              if t not in before and t is not asyncio.current_task() and not t.done()]
    for task in leaked:
        task.cancel()
    if leaked:
        await asyncio.gather(*leaked, return_exceptions=True)
        pytest.fail("leaked asyncio tasks: " + ", ".join(sorted(t.get_name() for t in leaked)))


@pytest.fixture(params=CALICO_APIS)
def calico_api(request: pytest.FixtureRequest) -> str:
    """The Calico flavour the emulator serves: every end-to-end test runs against each."""
    return str(request.param)


@pytest.fixture
async def lab(tmp_path: Path, calico_api: str) -> AsyncIterator[Lab]:
    """nke-lab with the exporter managing one CalicoNodeStatus per node (period 1 s)."""
    running = await start_lab(tmp_path, calico_api=calico_api)
    try:
        yield running
    finally:
        await stop_lab(running)
