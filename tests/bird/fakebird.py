"""A stand-in for BIRD's control socket: a unix server that greets and replays scripted replies.

BIRD is not our code, so replaying its transcripts over a real socket is fair game. Replies are
raw text in BIRD's wire format (``DDDD-``/``DDDD ``/`` `` lines); the special reply ``HANG`` never
answers, ``CLOSE`` closes the connection, and a list of strings is sent piece by piece.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

HANG = "HANG"
CLOSE = "CLOSE"
GREETING = "0001 BIRD 1.6.8 ready.\n"

Script = dict[str, str | list[str]]


class FakeBird:
    """Serves ``script[command]`` for each command line; unknown commands get ``9001``."""

    def __init__(self, path: str, script: Script, *, greeting: str | None = GREETING) -> None:
        self.path = path
        self.script = script
        self.greeting = greeting
        self.commands: list[str] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def open_connections(self) -> int:
        """Client connections currently open."""
        return len(self._writers)

    async def start(self) -> FakeBird:
        """Listen on the path (replacing a stale socket file)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._handle, self.path)
        return self

    async def stop(self, *, unlink: bool = True) -> None:
        """Close the listener and every connection, like a BIRD that exits."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if unlink:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def __aenter__(self) -> FakeBird:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            if self.greeting is None:
                await asyncio.Event().wait()
            writer.write(self.greeting.encode())
            await writer.drain()
            while line := await reader.readline():
                command = line.decode().strip()
                self.commands.append(command)
                reply = self.script.get(command, "9001 syntax error\n")
                if reply == HANG:
                    await asyncio.Event().wait()
                if reply == CLOSE:
                    break
                pieces = [reply] if isinstance(reply, str) else reply
                for piece in pieces:
                    writer.write(piece.encode())
                    await writer.drain()
                    if len(pieces) > 1:
                        await asyncio.sleep(0.01)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            self._handlers.discard(task)
