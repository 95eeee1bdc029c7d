"""Run named long-running jobs under one TaskGroup; the first unexpected failure stops all.

Transient errors are the jobs' own business (they retry inside their loops). Anything that
escapes a job is a bug or unrecoverable: it is logged with the job's name, the other jobs are
cancelled and the process exits non-zero so Kubernetes restarts it. A job that returns although
it should run forever is treated the same way. Setting ``stop`` (SIGTERM, SIGINT) cancels every
job and returns normally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import structlog

log = structlog.get_logger(__name__)

Job = Callable[[], Awaitable[None]]


class JobExited(RuntimeError):
    """A job that should run until stopped returned on its own."""


async def guard(name: str, job: Job) -> None:
    """Run one job, logging how it ended if it ended by itself."""
    try:
        await job()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("task_failed", task=name)
        raise
    log.error("task_exited_unexpectedly", task=name)
    raise JobExited(name)


async def supervise(jobs: Mapping[str, Job], *, stop: asyncio.Event) -> None:
    """Run every job as a named task until ``stop`` is set or one of them fails."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(guard(name, job), name=name) for name, job in jobs.items()]
        await stop.wait()
        log.info("stopping", tasks=len(tasks))
        for task in tasks:
            task.cancel()
