"""The live view in a real pseudo-terminal, read back through the pyte terminal emulator."""

from __future__ import annotations

import os
import pty
import select
import time

import pyte
from conftest import cli_env, spawn

from icwschat.simulator import SimulatorServer


def run_in_terminal(
    args: list[str], until: str, columns: int = 100, lines: int = 30
) -> tuple[pyte.Screen, int]:
    screen = pyte.Screen(columns, lines)
    stream = pyte.ByteStream(screen)
    primary, secondary = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = cli_env(TERM="xterm-256color", COLUMNS=str(columns), LINES=str(lines))
    proc = spawn(*args, env=env, stdin=secondary, stdout=secondary, stderr=secondary, start_new_session=True)
    os.close(secondary)
    deadline = time.monotonic() + 30
    seen = ""
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.1)
            if ready:
                try:
                    stream.feed(os.read(primary, 65536))
                except OSError:
                    break
            seen = "\n".join(screen.display)
            if until in seen or proc.poll() is not None:
                break
        assert until in seen, seen
        code = proc.wait(timeout=20)
        while select.select([primary], [], [], 0.2)[0]:
            try:
                data = os.read(primary, 65536)
            except OSError:
                break
            if not data:
                break
            stream.feed(data)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
    return screen, code


def test_live_view_shows_the_chat_and_keeps_hostile_text_inert(logged_in: SimulatorServer) -> None:
    screen, code = run_in_terminal(["watch", "1001", "--interval", "0.1"], until="the chat has ended")
    text = "\n".join(screen.display)
    assert code == 0
    assert "interaction 1001" in text and "chat ended" in text
    assert " system  IC System" in text and " you  Agent One" in text
    assert "Jane Doe: ok" in text
    assert "␛]0;pwned␇" in text and "[red]not markup[/red]" in text
    assert screen.title == ""
    assert "Jane has joined the conversation." in text or "Thank you, bye!" in text
