"""Hot reload of the probe configuration file: on change (polled) and on SIGHUP.

Every ``poll_interval`` seconds the file is read (following symlinks, so the atomic ``..data``
symlink swap of a Kubernetes ConfigMap volume is followed) and compared with what the last
attempt read, good or bad; any difference triggers a reload. Content, not ``stat``: a probe file
is a few kilobytes, and no signature of (inode, mtime, size) sees every change. A file written
back to an earlier version after a bad edit keeps the bad version's inode and size, and an mtime
that can equal it (one timestamp tick, ``cp -p``, ``touch -r``); comparing with the last *good*
load instead would take such a revert for "unchanged" and leave the failed reload reported
until SIGHUP. SIGHUP (or :meth:`ConfigReloader.request_reload`) reloads unconditionally. No
file-watching dependency.

A good file is applied to the scheduler (unchanged probes keep their results and schedule). A bad
one keeps the running configuration, logs one ``probe_config_reload_failed`` line with the first
problem and the number of problems, and is counted in :class:`ReloadStatus` (exported as
``calico_probe_config_last_reload_successful`` and ``calico_probe_config_reload_failures_total``)
and in the process telemetry (``invalid_objects["probe_config"]``, ``source_up["probe_config"]``).
The very first load has no configuration to fall back on: it raises :class:`ProbeConfigError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import structlog

from exporter.model.telemetry import Telemetry
from exporter.probes.config import ProbeConfig, ProbeConfigError, parse_probe_config
from exporter.probes.results import ReloadStatus
from exporter.probes.scheduler import Scheduler

log = structlog.get_logger(__name__)

TELEMETRY_SOURCE = "probe_config"


class ConfigReloader:
    """Loads the probe config into a scheduler, then keeps it current."""

    def __init__(
        self,
        path: str,
        *,
        namespace: str,
        scheduler: Scheduler,
        status: ReloadStatus,
        telemetry: Telemetry | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self.path = path
        self.namespace = namespace
        self._scheduler = scheduler
        self._status = status
        self._status.path = path
        self._telemetry = telemetry
        self._poll_interval = poll_interval
        self._seen: bytes | None = None
        """What the last attempt read (None: it could not read the file)."""
        self._requested = asyncio.Event()
        self._config: ProbeConfig | None = None
        self._errors: list[str] = []

    def load_initial(self) -> ProbeConfig:
        """First load; ProbeConfigError (nothing applied) when the file is not valid."""
        if not self.reload(reason="initial") or self._config is None:
            raise ProbeConfigError(self.path, self._errors)
        return self._config

    @property
    def config(self) -> ProbeConfig | None:
        """The configuration in force (the last good one)."""
        return self._config

    def request_reload(self) -> None:
        """Reload at the next check even if the file looks unchanged (what SIGHUP does)."""
        self._requested.set()

    def reload(self, *, reason: str) -> bool:
        """Read, validate and apply the file now; False (old config kept) when it is bad."""
        try:
            content = Path(self.path).read_bytes()
        except OSError as exc:
            self._seen = None
            return self._failed(reason, [f"cannot read: {exc.strerror}"])
        self._seen = content
        try:
            text = content.decode()
        except UnicodeDecodeError:
            return self._failed(reason, ["cannot read: not UTF-8 text"])
        config, errors = parse_probe_config(text)
        if config is None:
            return self._failed(reason, errors)
        self._config = config
        mine = config.for_namespace(self.namespace)
        before = {p.name: p for p in self._scheduler.probes}
        after = {p.name: p for p in mine}
        self._scheduler.apply(mine)
        status = self._status
        status.last_successful = True
        status.last_success_timestamp = time.time()
        status.successes += 1
        status.last_error = ""
        status.probes_in_file = len(config.probes)
        status.probes_here = len(mine)
        if self._telemetry is not None:
            self._telemetry.source_up[TELEMETRY_SOURCE] = True
        log.info(
            "probe_config_loaded",
            path=self.path,
            reason=reason,
            namespace=self.namespace,
            probes=len(mine),
            probes_in_file=len(config.probes),
            added=len(after.keys() - before.keys()),
            removed=len(before.keys() - after.keys()),
            changed=sum(1 for n in after.keys() & before.keys() if after[n] != before[n]),
        )
        return True

    def _failed(self, reason: str, errors: list[str]) -> bool:
        self._errors = errors
        status = self._status
        status.last_successful = False
        status.failures += 1
        status.last_error = errors[0]
        if self._telemetry is not None:
            self._telemetry.source_up[TELEMETRY_SOURCE] = False
            self._telemetry.invalid_objects[TELEMETRY_SOURCE] += 1
        log.error(
            "probe_config_reload_failed",
            path=self.path,
            reason=reason,
            error=errors[0],
            errors=len(errors),
            kept_probes=len(self._scheduler.probes),
        )
        return False

    def _changed(self) -> bool:
        """Whether the file now differs from what the last attempt read (a file that cannot
        be read differs from one that could, once)."""
        try:
            content = Path(self.path).read_bytes()
        except OSError:
            return self._seen is not None
        return content != self._seen

    async def run(self, stop: asyncio.Event | None = None, *, handle_sighup: bool = True) -> None:
        """Poll the file and serve reload requests until ``stop`` is set (or cancellation);
        SIGHUP requests a reload while this runs, when the loop can take signal handlers."""
        loop = asyncio.get_running_loop()
        stop = stop or asyncio.Event()
        installed = False
        if handle_sighup:
            try:
                loop.add_signal_handler(signal.SIGHUP, self.request_reload)
                installed = True
            except (NotImplementedError, RuntimeError, ValueError) as exc:
                log.info("probe_config_sighup_unavailable", reason=str(exc))
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_interval):
                        await _first(stop.wait(), self._requested.wait())
                if stop.is_set():
                    break
                if self._requested.is_set():
                    self._requested.clear()
                    self.reload(reason="sighup")
                elif self._changed():
                    self.reload(reason="changed")
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGHUP)


async def _first(*aws: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of the coroutines finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["TELEMETRY_SOURCE", "ConfigReloader"]
