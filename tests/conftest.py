"""Suite-wide fixtures: a leaked-task check on every test, and structlog set up for tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from exporter.logs import configure_logging


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
