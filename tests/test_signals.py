"""Signals to a running exporter process: SIGHUP never kills a role, SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from exporter.sim.apiserver import ApiServer


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _healthy(port: int, proc: asyncio.subprocess.Process) -> None:
    """Wait (bounded) until /healthz answers 200; fail if the process ends first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            assert proc.returncode is None, "the exporter exited"
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert loop.time() < deadline, "/healthz never answered"
            await asyncio.sleep(0.1)


async def _logged(proc: asyncio.subprocess.Process, event: str, lines: list[str]) -> None:
    """Read the process's stderr (its JSON log) until a line with ``event`` appears."""
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stderr.readline()).decode()
            assert line, f"stderr ended before {event}"
            lines.append(line)
            if f'"event": "{event}"' in line:
                return


@pytest.mark.parametrize("role", ["cluster", "node"])
async def test_sighup_is_logged_and_ignored(role: str, tmp_path: Path) -> None:
    """Issue 12: SIGHUP (whose default action ends a process, and which some tooling sends to
    ask for a reload) killed the cluster and node roles. It is logged as sighup_ignored; the
    process keeps serving and still stops cleanly on SIGTERM."""
    server = ApiServer()
    await server.start()
    try:
        port = _free_port()
        args = {"cluster": ["--kubeconfig", str(server.write_kubeconfig(tmp_path / "kc"))],
                "node": ["--node-name", "n1", "--bird-socket", str(tmp_path / "bird.ctl"),
                         "--bird6-socket", str(tmp_path / "bird6.ctl")]}[role]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALICO_EXPORTER_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", role, "--listen", f"127.0.0.1:{port}",
            "--log-format", "json", *args, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        lines: list[str] = []
        try:
            await _healthy(port, proc)
            for _ in range(2):
                proc.send_signal(signal.SIGHUP)
                await _logged(proc, "sighup_ignored", lines)
            await _healthy(port, proc)
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                assert proc.stderr is not None
                lines += (await proc.stderr.read()).decode().splitlines()
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert sum('"event": "sighup_ignored"' in line for line in lines) == 2
        assert "Traceback" not in "".join(lines)
    finally:
        await server.stop()
