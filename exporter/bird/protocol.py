"""An asyncio client of BIRD 1.x's control socket (the protocol ``birdc`` speaks).

One :class:`BirdClient` holds one connection to one socket (``bird.ctl`` or ``bird6.ctl``). It
connects lazily, reads the ``0001`` greeting, then runs one command at a time: it writes the
command and reads lines until the final line of the reply (a 4-digit code followed by a space:
``0000`` OK, ``0013`` status, ``8xxx``/``9xxx`` errors). Every exchange (connect and greeting
included) has a timeout; after a timeout or a broken connection the connection is dropped, and
the next command reconnects. When BIRD restarts, the kept connection is dead: the command that
finds this reconnects once and is retried, so a restart costs no failed poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from types import TracebackType

import structlog

from exporter.bird.parse import InvalidSink, LineKind, Reply, ReplyLine, log_invalid, split_line

log = structlog.get_logger(__name__)

_LINE_LIMIT = 1 << 20
"""Longest reply line accepted; BIRD's are well under 1 KiB."""


class BirdError(Exception):
    """Talking to BIRD failed; ``str()`` says why."""


class BirdUnavailable(BirdError):
    """The socket cannot be connected to (no such file, refused, permission denied)."""

    def __init__(self, message: str, *, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing
        """True when the socket file does not exist (BIRD not running, or no IPv6)."""


class BirdTimeout(BirdError):
    """BIRD did not complete an exchange within the timeout."""


class BirdClosed(BirdError):
    """BIRD closed the connection in the middle of an exchange."""


class BirdProtocolError(BirdError):
    """BIRD said something that is not the control protocol (bad greeting, huge line)."""


class BirdReplyError(BirdError):
    """BIRD answered the command with an error code (8xxx run-time, 9xxx parse error)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"BIRD error {code:04d}: {text}")
        self.code = code
        self.text = text


class BirdClient:
    """A connection to one BIRD control socket; use ``await command("show status")``."""

    def __init__(self, path: str, *, timeout: float,
                 on_invalid: InvalidSink = log_invalid) -> None:
        self.path = path
        self.timeout = timeout
        self._on_invalid = on_invalid
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self.greeting = ""
        """Text of the last ``0001`` welcome line, e.g. ``BIRD v0.3.3+birdv1.6.8 ready.``."""
        self.connects = 0
        """Connections opened so far (a reconnect after a BIRD restart adds one)."""

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._writer is not None

    async def __aenter__(self) -> BirdClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def command(self, command: str) -> Reply:
        """Run one command and return its reply; raises BirdReplyError on 8xxx/9xxx, and the
        other BirdError subclasses when BIRD cannot be reached or does not answer in time."""
        if "\n" in command or "\r" in command:
            raise ValueError("a BIRD command is one line")
        async with self._lock:
            reused = self.connected
            if not reused:
                await self._connect()
            try:
                reply = await self._exchange(command)
            except BirdClosed:
                if not reused:
                    raise
                # The kept connection died (BIRD restarted since the last command): once more.
                log.info("bird_reconnect", path=self.path)
                await self._connect()
                reply = await self._exchange(command)
        if not reply.ok:
            assert reply.code is not None
            raise BirdReplyError(reply.code, reply.text)
        return reply

    async def close(self) -> None:
        """Close the connection, if any; the next command reconnects."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # ----------------------------------------------------------------------------------------

    async def _connect(self) -> None:
        await self.close()
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    reader, writer = await asyncio.open_unix_connection(
                        self.path, limit=_LINE_LIMIT)
                except OSError as exc:
                    missing = exc.errno == errno.ENOENT
                    reason = exc.strerror or type(exc).__name__
                    raise BirdUnavailable(f"cannot connect to {self.path}: {reason}",
                                          missing=missing) from None
                self._reader, self._writer = reader, writer
                self.connects += 1
                greeting = await self._read_reply()
        except TimeoutError:
            await self.close()
            raise BirdTimeout(f"no greeting from {self.path} within {self.timeout}s") from None
        except BirdError:
            await self.close()
            raise
        if greeting.code != 1:
            await self.close()
            raise BirdProtocolError(f"unexpected greeting from {self.path}: "
                                    f"{greeting.code} {greeting.text!r}")
        self.greeting = greeting.text

    async def _exchange(self, command: str) -> Reply:
        assert self._writer is not None
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    self._writer.write(command.encode() + b"\n")
                    await self._writer.drain()
                except (ConnectionError, OSError) as exc:
                    raise BirdClosed(f"cannot write to {self.path}: {exc}") from None
                return await self._read_reply()
        except TimeoutError:
            await self.close()
            raise BirdTimeout(
                f"no complete reply to {command!r} from {self.path} within {self.timeout}s"
            ) from None
        except BirdError:
            await self.close()
            raise

    async def _read_reply(self) -> Reply:
        assert self._reader is not None
        lines: list[ReplyLine] = []
        prev = 0
        while True:
            try:
                raw = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                raise BirdClosed(f"{self.path} closed the connection") from None
            except asyncio.LimitOverrunError:
                raise BirdProtocolError(f"line longer than {_LINE_LIMIT} bytes from "
                                        f"{self.path}") from None
            except (ConnectionError, OSError) as exc:
                raise BirdClosed(f"cannot read from {self.path}: {exc}") from None
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            kind, line = split_line(text, prev)
            if kind is LineKind.ASYNC:
                continue
            if kind is LineKind.BARE:
                self._on_invalid("line without reply code", text)
            lines.append(line)
            prev = line.code
            if kind is LineKind.FINAL:
                return Reply(tuple(lines), line.code)


__all__ = [
    "BirdClient",
    "BirdClosed",
    "BirdError",
    "BirdProtocolError",
    "BirdReplyError",
    "BirdTimeout",
    "BirdUnavailable",
]
