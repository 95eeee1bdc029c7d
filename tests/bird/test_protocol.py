"""The BIRD control-socket client against a fake BIRD that replays real transcripts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exporter.bird.parse import ReplyLine
from exporter.bird.protocol import (
    BirdClient,
    BirdClosed,
    BirdProtocolError,
    BirdReplyError,
    BirdTimeout,
    BirdUnavailable,
)
from tests.bird.fakebird import CLOSE, HANG, FakeBird
from tests.bird.transcripts import REAL

STATUS = REAL["show_status"]["raw"]
PROTOCOLS_ALL = REAL["show_protocols_all_established"]["raw"]


@pytest.fixture
def sock(tmp_path: Path) -> str:
    """A socket path in a fresh directory."""
    return str(tmp_path / "bird.ctl")


@pytest.fixture
async def bird(sock: str) -> AsyncIterator[FakeBird]:
    """A fake BIRD answering show status and show protocols all like BIRD 1.6.8."""
    async with FakeBird(sock, {"show status": STATUS, "show protocols all": PROTOCOLS_ALL,
                               "hang": HANG, "close": CLOSE}) as fake:
        yield fake


async def test_greeting_and_multiline_reply(bird: FakeBird, sock: str) -> None:
    """Greeting read on connect; a multi-line reply ends at its final line."""
    async with BirdClient(sock, timeout=5) as client:
        reply = await client.command("show status")
        assert client.greeting == "BIRD 1.6.8 ready."
        assert reply.code == 13
        assert reply.lines == (
            ReplyLine(1000, "BIRD 1.6.8"),
            ReplyLine(1011, "Router ID is 198.18.0.2"),
            ReplyLine(1011, "Current server time is 2026-11-26 06:42:40"),
            ReplyLine(1011, "Last reboot on 2026-11-26 06:42:32"),
            ReplyLine(1011, "Last reconfiguration on 2026-11-26 06:42:32"),
            ReplyLine(13, "Daemon is up and running"),
        )
        details = await client.command("show protocols all")
        assert details.code == 0
        assert details.lines[1] == ReplyLine(
            1002, "Mesh_198_18_0_3 BGP      master   up     06:42:34    Established")
        assert ReplyLine(1006, "    Neighbor address: 198.18.0.3") in details.lines
        assert client.connects == 1
    assert bird.commands == ["show status", "show protocols all"]


async def test_error_reply_raises_and_keeps_connection(bird: FakeBird, sock: str) -> None:
    """A 9xxx reply raises BirdReplyError with its code and text; the connection stays usable."""
    async with BirdClient(sock, timeout=5) as client:
        with pytest.raises(BirdReplyError) as err:
            await client.command("show foo")
        assert (err.value.code, err.value.text) == (9001, "syntax error")
        assert (await client.command("show status")).code == 13
        assert client.connects == 1


async def test_reply_in_pieces_and_async_and_bare_lines(sock: str) -> None:
    """Split writes are reassembled; + lines skipped; code-less lines reported."""
    pieces = ["1000-BIRD 1.6.8\n10", "11-Router ID is 198.18.0.2\n+async note\nno code\n",
              " Current server time is 2026-11-26 06:42:40\n0013 Daemon is up and running\n"]
    invalid: list[tuple[str, str]] = []
    async with FakeBird(sock, {"show status": pieces}), BirdClient(
            sock, timeout=5, on_invalid=lambda r, line: invalid.append((r, line))) as client:
        reply = await client.command("show status")
    assert [line.text for line in reply.lines] == [
        "BIRD 1.6.8", "Router ID is 198.18.0.2", "no code",
        "Current server time is 2026-11-26 06:42:40", "Daemon is up and running"]
    assert invalid == [("line without reply code", "no code")]


async def test_timeout_drops_connection_then_reconnects(bird: FakeBird, sock: str) -> None:
    """A command BIRD never answers raises BirdTimeout; the next command reconnects."""
    async with BirdClient(sock, timeout=0.2) as client:
        with pytest.raises(BirdTimeout):
            await client.command("hang")
        assert not client.connected
        client.timeout = 5.0
        assert (await client.command("show status")).code == 13
        assert client.connects == 2


async def test_greeting_timeout(sock: str) -> None:
    """A socket that accepts but never greets times out."""
    async with FakeBird(sock, {}, greeting=None), BirdClient(sock, timeout=0.2) as client:
        with pytest.raises(BirdTimeout):
            await client.command("show status")
        assert not client.connected


async def test_bad_greeting(sock: str) -> None:
    """A first line that is not the 0001 welcome is a protocol error."""
    async with FakeBird(sock, {}, greeting="8000 Too many clients\n"), \
            BirdClient(sock, timeout=5) as client:
        with pytest.raises(BirdProtocolError):
            await client.command("show status")


async def test_missing_and_refused_sockets(sock: str, tmp_path: Path) -> None:
    """No socket file is missing=True; a stale file nobody serves is missing=False."""
    async with BirdClient(sock, timeout=5) as client:
        with pytest.raises(BirdUnavailable) as err:
            await client.command("show status")
        assert err.value.missing is True
    stale = str(tmp_path / "stale.ctl")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(stale)
    async with BirdClient(stale, timeout=5) as client:
        with pytest.raises(BirdUnavailable) as err:
            await client.command("show status")
        assert err.value.missing is False


async def test_bird_restart_is_transparent(sock: str) -> None:
    """When BIRD restarts between commands, the next command reconnects once and succeeds."""
    script = {"show status": STATUS}
    first = await FakeBird(sock, script).start()
    async with BirdClient(sock, timeout=5) as client:
        try:
            assert (await client.command("show status")).code == 13
        finally:
            await first.stop()
        async with FakeBird(sock, script) as second:
            assert (await client.command("show status")).code == 13
            assert second.connections == 1
        assert client.connects == 2


async def test_bird_gone_after_restart_attempt(sock: str) -> None:
    """If BIRD stopped and has not come back, the command fails with BirdUnavailable."""
    fake = await FakeBird(sock, {"show status": STATUS}).start()
    async with BirdClient(sock, timeout=5) as client:
        try:
            await client.command("show status")
        finally:
            await fake.stop()
        with pytest.raises(BirdUnavailable):
            await client.command("show status")


async def test_close_in_the_middle_of_a_reply(sock: str) -> None:
    """A connection closed before the final line raises BirdClosed (no retry on a new one)."""
    async with FakeBird(sock, {"show status": "1000-BIRD 1.6.8\n", "close": CLOSE}), \
            BirdClient(sock, timeout=5) as client:
        with pytest.raises(BirdClosed):
            await client.command("close")


async def test_concurrent_commands_are_serialised(bird: FakeBird, sock: str) -> None:
    """Commands issued at once run one after the other and each gets its own reply."""
    async with BirdClient(sock, timeout=5) as client:
        a, b, c = await asyncio.gather(client.command("show status"),
                                       client.command("show protocols all"),
                                       client.command("show status"))
    assert (a.code, b.code, c.code) == (13, 0, 13)
    assert bird.connections == 1


async def test_multiline_command_rejected(sock: str) -> None:
    """A command is one line: a newline in it is refused before anything is sent."""
    async with BirdClient(sock, timeout=5) as client:
        with pytest.raises(ValueError, match="one line"):
            await client.command("show status\nshow route")
