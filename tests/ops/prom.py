"""A real Prometheus server (Debian ``prometheus``) for end-to-end tests.

``run_prometheus(workdir, targets={"calico-exporter": ["127.0.0.1:9808"]}, rule_files=[...])``
starts ``prometheus`` on a free 127.0.0.1 port with a temporary TSDB under ``workdir``, scraping
those targets and evaluating those rules every second, waits until ``/-/ready`` answers, and yields
a :class:`Prometheus` to query ``/api/v1/query``, ``/api/v1/alerts`` and ``/api/v1/targets``.
On exit the server is stopped by its PID (SIGTERM, then SIGKILL after a grace period).

``shorten_for(source, dest, "1s")`` writes a copy of a rules file with every ``for`` replaced, so a
test sees alerts fire in seconds; nothing else of the rules changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import aiohttp
import yaml

T = TypeVar("T")


class PrometheusError(RuntimeError):
    """Prometheus did not start, exited, or answered an API call with an error."""


def shorten_for(source: Path, dest: Path, duration: str) -> Path:
    """Copy the rules file ``source`` to ``dest`` with every rule's ``for`` set to ``duration``."""
    data = yaml.safe_load(source.read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = duration
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def prometheus_config(targets: Mapping[str, Sequence[str]], *, rule_files: Sequence[Path] = (),
                      scrape_interval: str = "1s", evaluation_interval: str = "1s",
                      ) -> dict[str, Any]:
    """prometheus.yml content: one static scrape job per ``targets`` key (the job name)."""
    return {
        "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                   "evaluation_interval": evaluation_interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(hosts)}]}
                           for job, hosts in targets.items()],
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Prometheus:
    """A running server: its base URL, process and log file."""

    url: str
    process: asyncio.subprocess.Process
    log: Path
    session: aiohttp.ClientSession

    @property
    def pid(self) -> int:
        return self.process.pid

    async def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the ``data`` of a success answer, else PrometheusError."""
        async with self.session.get(f"{self.url}/api/v1/{path}", params=params) as resp:
            body = await resp.json()
        if body.get("status") != "success":
            raise PrometheusError(f"/api/v1/{path} {params}: {body}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query: the result vector as [{"metric": {...}, "value": [ts, "v"]}]."""
        data = await self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    async def alerts(self) -> list[dict[str, Any]]:
        """Active alerts: [{"labels", "annotations", "state" (pending|firing), "value", ...}]."""
        alerts: list[dict[str, Any]] = (await self.api("alerts"))["alerts"]
        return alerts

    async def firing(self, alertname: str) -> list[dict[str, Any]]:
        return [a for a in await self.alerts()
                if a["labels"]["alertname"] == alertname and a["state"] == "firing"]

    async def targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = (await self.api("targets"))["activeTargets"]
        return targets

    async def wait_for(self, check: Callable[[], Awaitable[T]], *, timeout: float = 30.0,
                       interval: float = 0.2) -> T:
        """Poll ``check()`` until it returns something truthy and return that. The timeout only
        bounds a hang: on expiry PrometheusError carries the last value and the server log."""
        last: T | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            last = await check()
            if last:
                return last
            if self.process.returncode is not None:
                break
            await asyncio.sleep(interval)
        raise PrometheusError(f"condition not met; last value {last!r}\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


async def _stop(process: asyncio.subprocess.Process, grace: float) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        await process.wait()


def _prepare(workdir: Path, binary: str, config: dict[str, Any], port: int,
             ) -> tuple[list[str], Path, BinaryIO]:
    """Write prometheus.yml under ``workdir``; the command line, the log path and its file."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    log = workdir / "prometheus.log"
    argv = [binary, f"--config.file={config_file}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"]
    return argv, log, log.open("wb")


@contextlib.asynccontextmanager
async def run_prometheus(workdir: Path, *, targets: Mapping[str, Sequence[str]],
                         rule_files: Sequence[Path] = (), scrape_interval: str = "1s",
                         evaluation_interval: str = "1s", startup_timeout: float = 30.0,
                         binary: str | None = None) -> AsyncIterator[Prometheus]:
    """Run ``prometheus`` against ``targets`` ({job: [host:port, ...]}) with ``rule_files``."""
    binary = binary or shutil.which("prometheus")
    if binary is None:
        raise FileNotFoundError("prometheus is not installed (Debian package prometheus)")
    config = prometheus_config(targets, rule_files=rule_files, scrape_interval=scrape_interval,
                               evaluation_interval=evaluation_interval)
    port = free_port()
    argv, log, log_file = _prepare(workdir, binary, config, port)
    with log_file:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            prom = Prometheus(f"http://127.0.0.1:{port}", process, log, session)

            async def ready() -> bool:
                try:
                    async with session.get(f"{prom.url}/-/ready") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await prom.wait_for(ready, timeout=startup_timeout)
            yield prom
    finally:
        await _stop(process, grace=10.0)
