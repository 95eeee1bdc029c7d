"""Structured logging setup: JSON lines in a cluster, a readable console on a terminal.

Every module logs through ``structlog.get_logger(__name__)`` with a snake_case event name and
key-values (``log.info("watch_restarted", resource=..., reason=...)``). This module only decides
where and how those events are rendered.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def configure_logging(*, level: str = "info", fmt: str = "auto", stream: TextIO | None = None,
                      cache: bool = True) -> None:
    """Render logs as JSON (``fmt="json"``), for a console, or by whether ``stream`` is a tty."""
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=cache,
    )
