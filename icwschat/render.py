"""The live view: a rich rendering of the cache that fits the terminal, whatever the transcript's length.

Only the lines that fit are built, from the newest upwards, so a frame costs the same at 100 or 100,000
lines. Every piece of server text passes through :func:`icwschat.textsafe.inert` and is placed in ``Text``
objects, never parsed as markup.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import io
import os
import re
import sys
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.rule import Rule
from rich.text import Text

from .cache import ChatCache
from .events import Event
from .models import ChatLine, Member, MemberType
from .router import Router
from .sinks import LOCAL, ROLES, Clock, WatchInfo
from .textsafe import inert

try:
    import termios
except ImportError:  # not POSIX (Windows): no terminal settings to change, and its console echoes no keys
    termios = None  # type: ignore[assignment]

PALETTE = ("cyan", "green", "magenta", "yellow", "blue", "bright_cyan", "bright_green", "bright_magenta")
BADGES = {
    MemberType.SYSTEM: "dim",
    MemberType.CURRENT_USER: "bold white on blue",
    MemberType.INTERNAL: "bold white on dark_green",
    MemberType.EXTERNAL: "bold black on yellow",
    MemberType.NONE: "dim",
}
"""The style of each member type's badge; its words are :data:`icwschat.sinks.ROLES`, as in the plain log."""


def make_console(file: IO[str], *, no_color: bool, force_terminal: bool | None = None) -> Console:
    if isinstance(file, io.TextIOWrapper) and codecs.lookup(file.encoding).name != "utf-8":
        # What a terminal's encoding lacks is shown as \uXXXX rather than ending the command.
        file.reconfigure(errors="backslashreplace")
    return Console(file=file, no_color=no_color, force_terminal=force_terminal, highlight=False, emoji=False)


def draws_views(console: Console) -> bool:
    """Whether the view can be drawn: a terminal that moves the cursor (``TERM=dumb`` cannot) and takes
    UTF-8 (the view's rules, marks and placeholders are not ASCII). Elsewhere the plain log serves."""
    return not console.is_dumb_terminal and _takes_utf8(console)


def _takes_utf8(console: Console) -> bool:
    return codecs.lookup(console.encoding).name == "utf-8"


def member_style(member: Member) -> str:
    if member.type is MemberType.SYSTEM:
        return "dim italic"
    return "bold " + PALETTE[zlib.crc32(member.user_id.encode()) % len(PALETTE)]


def name_text(member: Member) -> Text:
    return Text(inert(member.display_name, multiline=False), style=member_style(member))


def badge(member: Member) -> Text:
    return Text(f" {ROLES[member.type]} ", style=BADGES[member.type])


def line_text(line: ChatLine, clock: Clock = LOCAL) -> Text:
    """``HH:MM:SS Name: text`` with continuation lines indented under the text (the date first when the
    line is not from today)."""
    text = Text(no_wrap=False)
    text.append(clock(line.timestamp) + " ", style="dim")
    text.append_text(name_text(line.member))
    text.append(": ")
    body = inert(line.text)
    if line.message_type == "file":
        text.append("[file] ", style="bold")
    indent = " " * len(text.plain)
    style = "italic dim" if line.member.type is MemberType.SYSTEM else ""
    text.append(body.replace("\n", "\n" + indent), style=style)
    return text


def typing_status(cache: ChatCache) -> Text:
    typing = cache.typing
    if not typing:
        return Text("")
    status = Text()
    for index, member in enumerate(typing):
        if index:
            status.append(" and " if index == len(typing) - 1 else ", ")
        status.append_text(name_text(member))
    status.append(" is typing…" if len(typing) == 1 else " are typing…", style="italic")
    return status


@dataclass
class ViewState:
    """Everything a frame shows besides the cache."""

    info: WatchInfo
    connection: str = "connecting"
    trouble: bool = False
    clock: Clock = LOCAL
    ending: str | None = None
    """How the watch ended (:func:`ending`), once it has: the final frame says so, and shows nobody typing."""


def ending(ended: bool, error: BaseException | None) -> str | None:
    """ "ended" (the chat did), "gave up" (an error ended the watch, e.g. exit 5 after its retries),
    "stopped" (Ctrl-C, SIGTERM), or None: a run that finished on its own, such as a replay that reached the
    end of its capture, keeps its last status."""
    if ended:
        return "ended"
    if error is None:
        return None
    return "gave up" if isinstance(error, Exception) else "stopped"


SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def header(state: ViewState, cache: ChatCache, width: int) -> Text:
    """One line cut by priority to ``width``: the interaction and its state always; as room allows, the
    program's name, the transport, the server and the user, the last ones shortened (no scheme) or dropped
    first. Where even the interaction and its state do not fit, they wrap rather than lose a character."""
    info = state.info
    essentials = Text(f"{inert(info.subject, multiline=False)} · ", style="bold")
    if state.ending is not None and not cache.ended:
        essentials.append(state.ending, style="bold red")
    elif cache.ended:
        essentials.append("chat ended", style="bold red")
    else:
        essentials.append(state.connection, style="bold yellow" if state.trouble else "green")
    server = inert(info.server, multiline=False)
    host = SCHEME.sub("", server)
    user = f"{inert(info.user, multiline=False)} @ " if info.user else ""
    sources = dict.fromkeys([user + server, user + host, host])
    choices = [
        *((True, [info.transport, source]) for source in sources),
        (True, [info.transport]),
        (True, []),
        (False, []),
    ]
    for brand, extras in choices:
        text = Text()
        if brand:
            text.append(" icwschat ", style="bold white on dark_blue")
            text.append(" ")
        text.append_text(essentials)
        for extra in extras:
            text.append(f" · {extra}")
        if text.cell_len <= width:
            break
    return text


MEMBERS = "members: "


def member_rows(cache: ChatCache, width: int, *, typing: bool = True) -> list[Text]:
    """The members, as many to a row as fit: rows break between members, never inside a name or its badge
    (one wider than the terminal is cut with an ellipsis). Later rows are indented under the first."""
    row = Text(MEMBERS, style="bold")
    rows = [row]
    if not cache.members:
        row.append("none yet", style="dim")
    placed = False
    for member in cache.members.values():
        entry = badge(member)
        entry.append(" ")
        entry.append_text(name_text(member))
        if typing and member.is_typing:
            entry.append(" ✎", style="bold")
        if placed and row.cell_len + 2 + entry.cell_len > width:
            row = Text(" " * len(MEMBERS))
            rows.append(row)
            placed = False
        if placed:
            row.append("  ")
        entry.truncate(max(1, width - row.cell_len), overflow="ellipsis")
        row.append_text(entry)
        placed = True
    return rows


def transcript_tail(
    lines: list[ChatLine], console: Console, width: int, height: int, clock: Clock = LOCAL
) -> list[Text]:
    """The last ``height`` screen rows of the transcript, wrapped to ``width``; built newest first."""
    rows: list[Text] = []
    for line in reversed(lines):
        if len(rows) >= height:
            break
        wrapped = list(line_text(line, clock).wrap(console, width))
        rows.extend(reversed(wrapped))
    return list(reversed(rows[:height]))


def build_view(
    state: ViewState, cache: ChatCache, console: Console, *, rows: int | None = None
) -> RenderableType:
    """One frame, exactly ``rows`` high (default: the terminal's height less one)."""
    width = console.width
    height = rows if rows is not None else max(6, console.height - 1)
    members = member_rows(cache, width, typing=state.ending is None)
    top = [*header(state, cache, width).wrap(console, width), *members]
    status = typing_status(cache)
    if cache.ended:
        status = Text("the chat has ended", style="bold red")
    elif state.ending is not None:
        status = Text(state.ending, style="bold red")
    elif state.trouble:
        status = Text(state.connection, style="bold yellow")
    fixed = len(top) + 3
    space = max(1, height - fixed)
    tail = transcript_tail(cache.transcript, console, width, space, state.clock)
    if not cache.transcript:
        tail = [Text("no messages yet", style="dim")]
    padding = [Text("")] * (space - len(tail))
    body: list[RenderableType] = [*top, Rule(style="dim"), *tail, *padding, Rule(style="dim"), status]
    return Group(*body)


class FrameSink:
    """The final frame of the view, printed on close: ``replay`` on a terminal; the live view extends it."""

    def __init__(self, console: Console, clock: Clock = LOCAL) -> None:
        self.console = console
        self.clock = clock
        self.cache: ChatCache | None = None
        self.state: ViewState | None = None

    def _frame(self) -> RenderableType:
        if self.state is None or self.cache is None:
            return Text("")
        return build_view(self.state, self.cache, self.console)

    def started(self, info: WatchInfo) -> None:
        self.state = ViewState(info=info, clock=self.clock)
        self.cache = ChatCache(info.interaction_ids[0] if info.interaction_ids else "")

    def raw(self, messages: list[Any]) -> None:
        pass

    def update(self, events: list[Event], chats: Router) -> None:
        # One chat's view: the first followed (the board of many chats is drawn from all of them).
        self.cache = next((chat.cache for chat in chats), self.cache)
        info = self.state.info if self.state is not None else None
        if self.state is not None and info is not None and not info.interaction_ids and info.queue is None:
            # A replay learns from its capture which chats it plays.
            self.state.info = dataclasses.replace(info, interaction_ids=tuple(chats.chats))

    def status(self, text: str, *, trouble: bool) -> None:
        if self.state is not None:
            self.state.connection = text
            self.state.trouble = trouble

    def idle(self) -> None:
        pass

    def close(self) -> None:
        cache = self.cache
        if self.state is not None and cache is not None:
            # Every runner (Watcher.run, replay) closes its sink in a ``finally``: the exception in flight
            # there, if any, is what ended the watch, with no change to the Sink protocol.
            self.state.ending = ending(cache.ended, sys.exc_info()[1])
        if cache is not None and (cache.members or cache.transcript or cache.ended):
            self.console.print(self._frame())


class QuietKeys:
    """Keys typed at the view are neither echoed into it nor left for the shell: while it runs, echo and line
    editing are off on the terminal; :meth:`restore` puts back the exact settings and discards what was
    typed. Does nothing where there is no terminal to quieten (a pipe, Windows, a background job)."""

    def __init__(self, keys: IO[str]) -> None:
        self._fd = -1
        self._saved: list[Any] | None = None
        if termios is None:
            return
        try:
            fd = keys.fileno()
            if not os.isatty(fd) or _in_background(fd):
                return
            self._saved = termios.tcgetattr(fd)
            quiet = termios.tcgetattr(fd)
            quiet[3] &= ~(termios.ECHO | termios.ICANON)
            termios.tcsetattr(fd, termios.TCSANOW, quiet)
        except (OSError, ValueError, termios.error):  # ValueError: a closed or detached stream
            self._saved = None
            return
        self._fd = fd

    def restore(self) -> None:
        saved, self._saved = self._saved, None
        if saved is not None:
            with contextlib.suppress(termios.error):  # a terminal that has gone away keeps no settings
                termios.tcsetattr(self._fd, termios.TCSAFLUSH, saved)  # TCSAFLUSH: typed keys are discarded


def _in_background(fd: int) -> bool:
    """A job in the background that changed its terminal's settings would be stopped (SIGTTOU)."""
    try:
        return os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:  # not this process's controlling terminal: no job control applies to it
        return False


class LiveSink(FrameSink):
    """The live view on a terminal: an alternate screen while watching, the final frame left on exit.
    ``keys``: the terminal the user types at (standard input), kept quiet while the view runs."""

    def __init__(self, console: Console, keys: IO[str], clock: Clock = LOCAL) -> None:
        super().__init__(console, clock)
        self.live: Live | None = None
        self._size = console.size
        self._keys = keys
        self._quiet: QuietKeys | None = None

    def started(self, info: WatchInfo) -> None:
        super().started(info)
        self.live = Live(
            get_renderable=self._frame,
            console=self.console,
            auto_refresh=False,
            screen=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._quiet = QuietKeys(self._keys)
        try:
            self.live.start(refresh=True)
        except BaseException:
            self._quiet.restore()
            raise

    def update(self, events: list[Event], chats: Router) -> None:
        super().update(events, chats)
        self._refresh()

    def status(self, text: str, *, trouble: bool) -> None:
        super().status(text, trouble=trouble)
        self._refresh()

    def idle(self) -> None:
        size = self.console.size
        if size != self._size:
            self._size = size
            self._refresh()

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.refresh()

    def close(self) -> None:
        if self.live is None:
            return
        try:
            self.live.stop()
        finally:
            self.live = None
            if self._quiet is not None:
                self._quiet.restore()
        super().close()


def print_transcript(console: Console, info: WatchInfo, chats: Router, clock: Clock = LOCAL) -> None:
    """``transcript`` on a terminal: each chat's members and every line, not cut to the screen."""
    for chat in chats:
        state = ViewState(
            info=dataclasses.replace(info, interaction_ids=(chat.interaction_id,), queue=None),
            connection="snapshot",
            clock=clock,
        )
        cache = chat.cache
        parts: Iterable[RenderableType] = (
            header(state, cache, console.width),
            *member_rows(cache, console.width),
            # rich draws a rule in ASCII for a terminal that lacks "─" only when the rule has a title
            Rule(style="dim", characters="─" if _takes_utf8(console) else "-"),
            *(line_text(line, clock) for line in cache.transcript),
        )
        for part in parts:
            console.print(part)
