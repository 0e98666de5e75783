"""The live view in a real pseudo-terminal, read back through the pyte terminal emulator."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyte
import pytest
from conftest import cli_env, login, spawn

from icwschat.simulator import Simulator, SimulatorServer, load_scenarios
from icwschat.simulator.scenarios import BUNDLED, Scenario
from icwschat.textsafe import inert

TYPED = b"qxyzzy\x1b[A\x1b[B\x1b[5~"
"""Keys a user presses at the view: q, letters, arrows up and down, PageUp."""


class Terminal:
    """The CLI on a pseudo-terminal of its own, everything it writes fed to a pyte screen.

    The test keeps the terminal's secondary side open, as a shell would, so its settings and pending input
    can be read after the process has gone.
    """

    def __init__(self, args: list[str], columns: int = 100, lines: int = 30, **env: str) -> None:
        self.screen = pyte.HistoryScreen(columns, lines, history=10_000)
        self.stream = pyte.ByteStream(self.screen)
        self.output = b""
        self.primary, self.secondary = pty.openpty()
        fcntl.ioctl(self.secondary, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        self.settings_before = termios.tcgetattr(self.secondary)
        environment = cli_env(**{"TERM": "xterm-256color", **env})
        for name in ("COLUMNS", "LINES"):  # they would fix the width: the terminal's own size is what counts
            environment.pop(name, None)
        self.proc = spawn(
            *args,
            env=environment,
            stdin=self.secondary,
            stdout=self.secondary,
            stderr=self.secondary,
            start_new_session=True,
        )

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        os.close(self.primary)
        os.close(self.secondary)

    @property
    def text(self) -> str:
        return "\n".join(self.screen.display)

    @property
    def rows(self) -> list[str]:
        return [row.rstrip() for row in self.screen.display]

    @property
    def scrollback(self) -> list[str]:
        """Every row that scrolled off the top of the screen, then the screen."""
        width = self.screen.columns
        above = ["".join(row[x].data for x in range(width)).rstrip() for row in self.screen.history.top]
        return above + self.rows

    def resize(self, columns: int, lines: int) -> None:
        """What a terminal window does when dragged: a new size, and SIGWINCH to the program in it."""
        fcntl.ioctl(self.secondary, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        self.screen.resize(lines, columns)
        self.proc.send_signal(signal.SIGWINCH)

    def wait_for_row(self, row: str) -> None:
        self._until(lambda: row in self.rows)
        assert row in self.rows, self.text

    def _read(self, timeout: float) -> bool:
        if not select.select([self.primary], [], [], timeout)[0]:
            return False
        data = os.read(self.primary, 65536)
        self.output += data
        self.stream.feed(data)
        return bool(data)

    def wait_for(self, text: str) -> None:
        self._until(lambda: text in self.text)
        assert text in self.text, self.text

    def _until(self, shown: Callable[[], bool]) -> None:
        """Read until ``shown``, or until the program has ended and all it wrote is read, or 30 s."""
        deadline = time.monotonic() + 30
        while not shown() and time.monotonic() < deadline:
            if not self._read(0.1) and self.proc.poll() is not None and not self._read(0.2):
                return

    def read_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read(0.05)

    def type(self, keys: bytes) -> None:
        os.write(self.primary, keys)

    def exit_code(self) -> int:
        code = self.proc.wait(timeout=20)
        while self._read(0.2):
            pass
        return code

    def pending_input(self) -> bytes:
        """What a shell would read next from the terminal (after the settings were checked: this alters
        them)."""
        raw = termios.tcgetattr(self.secondary)
        raw[3] &= ~termios.ICANON
        raw[6][termios.VMIN] = 0
        raw[6][termios.VTIME] = 0
        termios.tcsetattr(self.secondary, termios.TCSANOW, raw)
        return os.read(self.secondary, 4096)


def run_in_terminal(args: list[str], until: str, **options: Any) -> tuple[pyte.Screen, int]:
    with Terminal(args, **options) as terminal:
        terminal.wait_for(until)
        return terminal.screen, terminal.exit_code()


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


def test_a_dumb_terminal_gets_the_plain_log_as_the_chat_goes(slow_sim: SimulatorServer) -> None:
    with Terminal(["watch", "1001"], TERM="dumb") as terminal:
        terminal.wait_for("Hi, I need help with order 4711.")
        assert "ended" not in terminal.text  # shown while watching, not only in a final frame
        terminal.proc.send_signal(signal.SIGTERM)
        assert terminal.exit_code() == 128 + signal.SIGTERM
    assert b"\x1b" not in terminal.output  # no cursor movement, no alternate screen, no colour
    assert "Agent One: Hello Jane! Let me look that up for you." in terminal.text


def test_a_terminal_that_is_not_utf8_gets_plain_text_with_placeholders(logged_in: SimulatorServer) -> None:
    with Terminal(["watch", "1001"], PYTHONIOENCODING="ascii") as terminal:
        terminal.wait_for("the chat has ended")
        assert terminal.exit_code() == 0
    assert terminal.output.isascii()
    assert "Traceback" not in terminal.text and "bug" not in terminal.text
    assert "Jane Doe: ok" in terminal.text
    assert "\\u241b]0;pwned\\u2407" in terminal.text  # the inert placeholders, themselves escaped


def test_a_transcript_on_a_terminal_that_is_not_utf8_is_readable(logged_in: SimulatorServer) -> None:
    with Terminal(["transcript", "1001"], PYTHONIOENCODING="ascii") as terminal:
        terminal.wait_for("Hi, I need help with order 4711.")
        assert terminal.exit_code() == 0
    assert terminal.output.isascii()
    assert "Traceback" not in terminal.text and "bug" not in terminal.text
    assert "interaction 1001 \\xb7 snapshot" in terminal.text and "-" * 40 in terminal.text


def test_keys_are_not_echoed_and_the_terminal_is_restored_after_sigterm(slow_sim: SimulatorServer) -> None:
    with Terminal(["watch", "1001"]) as terminal:
        terminal.wait_for("interaction 1001")
        terminal.type(TYPED + b"\r")
        terminal.read_for(0.5)
        terminal.proc.send_signal(signal.SIGTERM)
        assert terminal.exit_code() == 128 + signal.SIGTERM
        assert termios.tcgetattr(terminal.secondary) == terminal.settings_before
        assert terminal.pending_input() == b""
    assert b"xyzzy" not in terminal.output and b"^[" not in terminal.output


def test_the_terminal_is_restored_when_the_chat_ends(logged_in: SimulatorServer) -> None:
    with Terminal(["watch", "1001"]) as terminal:
        terminal.wait_for("interaction 1001")
        terminal.type(TYPED + b"\r")
        terminal.wait_for("the chat has ended")
        assert terminal.exit_code() == 0
        assert termios.tcgetattr(terminal.secondary) == terminal.settings_before
        assert terminal.pending_input() == b""
    assert b"xyzzy" not in terminal.output


def test_the_frame_left_after_sigterm_says_stopped_and_nobody_is_typing(slow_sim: SimulatorServer) -> None:
    with Terminal(["watch", "1001"]) as terminal:
        terminal.wait_for("Hi, I need help with order 4711.")
        terminal.proc.send_signal(signal.SIGTERM)
        assert terminal.exit_code() == 128 + signal.SIGTERM
    assert " · stopped · " in terminal.text
    assert "connected" not in terminal.text and "typing" not in terminal.text and "✎" not in terminal.text


# ---- the inline view: the scrollback keeps every line ----------------------------------------------------


def said_lines(scenario: Scenario) -> list[str]:
    """The start of what each member but the system says in a scenario, as the view shows it (the system's
    lines about a join or leave are left out after the view's own)."""
    said = [(line.member, line.text) for line in scenario.history]
    said += [(step.member, step.text) for step in scenario.script if step.op == "say"]
    return [inert(text)[:14] for member, text in said if member != "system"]


def shown_in_order(wanted: list[str], rows: list[str]) -> bool:
    text = "\n".join(rows)
    at = 0
    for piece in wanted:
        at = text.find(piece, at)
        if at < 0:
            return False
    return True


@pytest.fixture
def long_message_sim(tmp_path: Path) -> Iterator[SimulatorServer]:
    """The demo chat with a 5,000-character message in the middle of it."""
    data = json.loads((BUNDLED / "1001-order-enquiry.json").read_text(encoding="utf-8"))
    data["script"].insert(5, {"at": 5.5, "op": "say", "member": "jane", "text": "z" * 5000})
    (tmp_path / "1001.json").write_text(json.dumps(data), encoding="utf-8")
    server = SimulatorServer(Simulator(load_scenarios(tmp_path), speed=20.0), port=0).start()
    try:
        login(server)
        yield server
    finally:
        server.stop()


def test_after_a_5000_character_message_every_earlier_line_is_in_the_scrollback(
    long_message_sim: SimulatorServer,
) -> None:
    scenario = long_message_sim.simulator.scenarios["1001"]
    with Terminal(["watch", "1001", "--interval", "0.1"], columns=80, lines=24) as terminal:
        terminal.wait_for("the chat has ended")
        assert terminal.exit_code() == 0
    rows = terminal.scrollback
    assert shown_in_order(said_lines(scenario), rows), "\n".join(rows)
    assert sum(row.count("z") for row in rows if set(row.strip()) <= {"z"} or "Jane: z" in row) >= 5000
    assert sum(row.startswith(" icwschat ") for row in rows) == 1  # the footer was redrawn in place


@pytest.mark.parametrize("columns", [40, 80, 300])
def test_every_line_and_the_footer_fit_any_width(logged_in: SimulatorServer, columns: int) -> None:
    scenario = logged_in.simulator.scenarios["1001"]
    with Terminal(["watch", "1001", "--interval", "0.1"], columns=columns, lines=24) as terminal:
        terminal.wait_for("the chat has ended")
        assert terminal.exit_code() == 0
    rows = terminal.scrollback
    assert shown_in_order(said_lines(scenario), rows), "\n".join(rows)
    assert any(row.startswith(" icwschat  interaction 1001 · chat ended") for row in rows)
    assert "members:" in terminal.text and "Traceback" not in terminal.text


def test_a_resize_while_watching_redraws_the_footer_at_the_new_width(slow_sim: SimulatorServer) -> None:
    with Terminal(["watch", "1001"], columns=100, lines=30) as terminal:
        terminal.wait_for("Hi, I need help with order 4711.")
        terminal.resize(48, 20)
        terminal.wait_for_row(" icwschat  interaction 1001 · connected · sse")
        terminal.resize(120, 30)
        terminal.wait_for("agent.one @ http://127.0.0.1:")
        terminal.proc.send_signal(signal.SIGTERM)
        assert terminal.exit_code() == 128 + signal.SIGTERM
    assert "Traceback" not in terminal.text
    assert " · stopped · " in terminal.text


def test_several_chats_are_labelled_and_shown_on_a_board(logged_in: SimulatorServer) -> None:
    with Terminal(["watch", "1001", "1002", "--interval", "0.1"], columns=100, lines=30) as terminal:
        terminal.wait_for("every chat has ended")
        assert terminal.exit_code() == 0
    rows = terminal.scrollback
    assert any(row.startswith("[1001] ") and "Jane Doe: ok" in row for row in rows)
    assert any(row.startswith("[1002] ") for row in rows)
    assert " icwschat  2 chats · all ended · sse" in "\n".join(rows)
    heading = next(n for n, row in enumerate(rows) if row.split()[:3] == ["chat", "state", "customer"])
    assert [row.split()[:2] for row in rows[heading + 1 : heading + 3]] == [
        ["1001", "ended"],
        ["1002", "ended"],
    ]
