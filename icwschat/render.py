"""The view on a terminal: chat lines printed into the terminal's own scrollback as their events arrive,
under a small live footer (the connection, the members and who is typing, or the board of several chats).

Lines are drawn from events, never by re-rendering the transcript, and the footer from the chats' state and
a bounded number of rows, so a frame costs the same at 100 or 100,000 lines. Every piece of server text
passes through :func:`icwschat.textsafe.inert` and is placed in ``Text`` objects, never parsed as markup.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import io
import itertools
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from .cache import ChatCache
from .events import CHAT_REMOVED, Event
from .models import BadMessage, ChatLine, Member, MemberType, parse_timestamp
from .router import Chat, Router
from .sinks import (
    LOCAL,
    ROLES,
    Clock,
    Labels,
    Restated,
    WatchInfo,
    chat_state,
    colour_index,
    hang,
    plain_line,
    said,
)
from .textsafe import inert

try:
    import termios
except ImportError:  # not POSIX (Windows): no terminal settings to change, and its console echoes no keys
    termios = None  # type: ignore[assignment]

PALETTE = ("cyan", "green", "magenta", "yellow", "blue", "bright_cyan", "bright_green", "bright_magenta")
"""The colours of names and chat labels, in the order of the plain log's SGR codes."""
BADGES = {
    MemberType.SYSTEM: "dim",
    MemberType.CURRENT_USER: "bold white on blue",
    MemberType.INTERNAL: "bold white on dark_green",
    MemberType.EXTERNAL: "bold black on yellow",
    MemberType.NONE: "dim",
}
"""The style of each member type's badge; its words are :data:`icwschat.sinks.ROLES`, as in the plain log."""
FOOTER_SHARE = 3
"""The footer takes at most a third of the terminal's height (but :data:`FOOTER_MIN` rows)..."""
FOOTER_MIN = 5
"""... so that a short terminal still shows the state, one row of members or chats and the status."""


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


class ConsoleScreen:
    """A console's terminal as the :class:`~icwschat.sinks.Screen` of the line layout: the one place that
    measures and wraps a line, for the view, ``transcript`` and the plain log on a terminal alike."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def width(self) -> int:
        if self.console.is_dumb_terminal:
            # rich takes every TERM=dumb terminal to be 80 columns; the terminal knows better.
            with contextlib.suppress(OSError, ValueError):
                return os.get_terminal_size(self.console.file.fileno()).columns
        return self.console.width

    def cells(self, text: str) -> int:
        return cell_len(text)

    def wrap(self, text: str, width: int) -> list[str]:
        # Text.wrap keeps the space a row was broken at; it is nothing to see.
        return [row.plain.rstrip(" ") for row in Text(text).wrap(self.console, width)]


def terminal_screen(file: IO[str]) -> ConsoleScreen:
    """The screen of the plain log on a terminal (``TERM=dumb``, not UTF-8, ``-o plain``)."""
    return ConsoleScreen(Console(file=file, color_system=None, highlight=False, emoji=False))


def member_style(member: Member) -> str:
    if member.type is MemberType.SYSTEM:
        return "dim italic"
    return "bold " + PALETTE[colour_index(member.user_id)]


def chat_style(interaction_id: str) -> str:
    return "bold " + PALETTE[colour_index(interaction_id)]


def name_text(member: Member) -> Text:
    return Text(inert(member.display_name, multiline=False), style=member_style(member))


def badge(member: Member) -> Text:
    return Text(f" {ROLES[member.type]} ", style=BADGES[member.type])


def tag(label: str, interaction_id: str) -> Text:
    """The mark of a chat's lines when several are followed: its label in its colour."""
    return Text(f"[{label}] ", style=chat_style(interaction_id))


def line_text(
    line: ChatLine, clock: Clock = LOCAL, screen: ConsoleScreen | None = None, label: Text | None = None
) -> Text:
    """``HH:MM:SS Name: text`` (the date first when the line is not from today), the chat's label before it
    when given; wrapped and explicit breaks continue under the text (:func:`icwschat.sinks.hang`)."""
    text = Text(overflow="fold")
    if label is not None:
        text.append_text(label)
    text.append(clock(line.timestamp) + " ", style="dim")
    text.append_text(name_text(line.member))
    text.append(": ")
    hung = hang(text.cell_len, said(line), screen)
    style = "italic dim" if line.member.type is MemberType.SYSTEM else ""
    rows = hung.rows
    if hung.beside:
        text.append(rows[0], style=style)
        rows = rows[1:]
    else:
        text.rstrip()
    for row in rows:
        text.append("\n" + " " * hung.indent)
        text.append(row, style=style)
    return text


def typing_status(members: Iterable[Member]) -> Text:
    typing = [member for member in members if member.is_typing]
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
    """What the footer shows besides the chats."""

    info: WatchInfo
    connection: str = "connecting"
    trouble: bool = False
    clock: Clock = LOCAL
    ending: str | None = None
    """How the watch ended (:func:`ending`), once it has: the last footer says so, and shows nobody typing."""


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


def header(state: ViewState, width: int, ended: str | None = None) -> Text:
    """One line cut by priority to ``width``: what is followed and its state always (``ended``: what to say
    once it has ended); as room allows, the program's name, the transport, the server and the user, the last
    ones shortened (no scheme) or dropped first. Where even the essentials do not fit, they wrap rather than
    lose a character."""
    info = state.info
    essentials = Text(f"{inert(info.subject, multiline=False)} · ", style="bold")
    if state.ending is not None and ended is None:
        essentials.append(state.ending, style="bold red")
    elif ended is not None:
        essentials.append(ended, style="bold red")
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


def member_rows(cache: ChatCache, width: int, *, typing: bool = True, limit: int | None = None) -> list[Text]:
    """The members, as many to a row as fit: rows break between members, never inside a name or its badge
    (one wider than the terminal is cut with an ellipsis). Later rows are indented under the first. At most
    ``limit`` rows, the last then saying how many members are left out."""
    row = Text(MEMBERS, style="bold")
    rows = [row]
    placed_in: list[int] = [0]
    if not cache.members:
        row.append("none yet", style="dim")
    for member in cache.members.values():
        entry = Text()
        entry.append_text(badge(member))  # the badge's style is its own, not the whole entry's
        entry.append(" ")
        entry.append_text(name_text(member))
        if typing and member.is_typing:
            entry.append(" ✎", style="bold")
        if placed_in[-1] and row.cell_len + 2 + entry.cell_len > width:
            row = Text(" " * len(MEMBERS))
            rows.append(row)
            placed_in.append(0)
        if placed_in[-1]:
            row.append("  ")
        entry.truncate(max(1, width - row.cell_len), overflow="ellipsis")
        row.append_text(entry)
        placed_in[-1] += 1
    if limit is None or len(rows) <= limit:
        return rows
    kept = rows[: max(1, limit)]
    more = f"  +{sum(placed_in[len(kept) :])} more"
    kept[-1].truncate(max(1, width - len(more)), overflow="ellipsis")
    kept[-1].append(more, style="dim")
    return kept


BOARD = ("chat", "state", "customer", "agent", "typing", "age", "last")


def board(
    chats: Router, state: ViewState, first_seen: dict[str, datetime], width: int, rows: int
) -> list[RenderableType]:
    """The chats followed, a row each under a heading, in at most ``rows`` rows: those still going first,
    in the order they were followed, then "+N more" for the rest."""
    total = len(chats.chats)
    if not total:
        return [Text("no chats yet", style="dim")]
    room = max(1, rows - 1 - (total >= rows))
    going = (chat for chat in chats if not chat.cache.ended)
    ended = (chat for chat in chats if chat.cache.ended)
    shown = list(itertools.islice(itertools.chain(going, ended), room))
    table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, header_style="bold dim")
    for column in BOARD:
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    now = state.clock.now()
    for chat in shown:
        table.add_row(*_board_row(chat, state, first_seen.get(chat.interaction_id), now))
    parts: list[RenderableType] = [table]
    if total > len(shown):
        parts.append(Text(f"+{total - len(shown)} more", style="dim"))
    return parts


def _board_row(chat: Chat, state: ViewState, first_seen: datetime | None, now: datetime) -> list[Text]:
    members = chat.cache.members.values()
    customer = _person(members, (MemberType.EXTERNAL,), chat.attributes.get("Eic_RemoteName"))
    agent = _person(
        members, (MemberType.INTERNAL, MemberType.CURRENT_USER), chat.attributes.get("Eic_UserName")
    )
    typing = Text(", ").join(name_text(m) for m in members if m.is_typing and state.ending is None)
    last = state.clock(chat.last_activity) if chat.last_activity is not None else ""
    return [
        Text(chat.label, style=chat_style(chat.interaction_id)),
        Text(chat_state(chat), style="red" if chat.cache.ended else ""),
        customer,
        agent,
        typing,
        Text(_age(chat, first_seen, now)),
        Text(last, style="dim"),
    ]


def _person(members: Iterable[Member], types: tuple[MemberType, ...], otherwise: str | None) -> Text:
    """The chat's first member of the first of ``types`` present; else the name the queue gives."""
    for kind in types:
        for member in members:
            if member.type is kind:
                return name_text(member)
    return Text(inert(otherwise or "", multiline=False))


def _age(chat: Chat, first_seen: datetime | None, now: datetime) -> str:
    """How long the chat has been going: since the queue's ``Eic_InitiationTime``, else since first seen."""
    start = first_seen
    with contextlib.suppress(BadMessage):
        start = parse_timestamp(chat.attributes.get("Eic_InitiationTime"))
    if start is None:
        return ""
    return duration(now - start)


def duration(span: timedelta) -> str:
    """``4m``, ``1h05m``, ``3d02h``: minutes are as fine as a board needs (it is redrawn once a minute)."""
    minutes = max(0, int(span.total_seconds()) // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


class Footer:
    """The footer, rendered from the sink's state each time rich draws it: ``Live`` holds this one object,
    so a line printed above it and the footer's redraw below go out together."""

    def __init__(self, sink: FrameSink) -> None:
        self.sink = sink

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.sink.footer(options.max_width, options.size.height)


class FrameSink:
    """Each chat line printed into the terminal's scrollback as its event arrives (and the notices the plain
    log writes), then the footer printed once at the end: ``replay`` on a terminal. :class:`LiveSink` keeps
    the footer live under the lines while watching."""

    def __init__(self, console: Console, clock: Clock = LOCAL) -> None:
        self.console = console
        self.clock = clock
        self.state: ViewState | None = None
        self.chats = Router()
        self._screen = ConsoleScreen(console)
        self._labels = Labels()
        self._restated = Restated()
        self._first_seen: dict[str, datetime] = {}

    @property
    def several(self) -> bool:
        return self._labels.several

    def started(self, info: WatchInfo) -> None:
        self.state = ViewState(info=info, clock=self.clock)
        self._labels.started(info)

    def raw(self, messages: list[Any]) -> None:
        pass

    def update(self, events: list[Event], chats: Router) -> None:
        self.chats = chats
        info = self.state.info if self.state is not None else None
        if self.state is not None and info is not None and not info.interaction_ids and info.queue is None:
            # A replay learns from its capture which chats it plays.
            self.state.info = dataclasses.replace(info, interaction_ids=tuple(chats.chats))
        rows = self._rows(events, chats)
        if rows:
            self._show(rows)
        elif events:
            self._redraw()

    def _show(self, rows: list[Text]) -> None:
        self.console.print(Group(*rows))  # under a live footer, rich redraws the footer below them

    def _rows(self, events: list[Event], chats: Router) -> list[Text]:
        rows: list[Text] = []
        for event in events:
            iid = event.interaction_id
            if event.kind == CHAT_REMOVED:
                self._first_seen.pop(iid, None)
            else:
                self._first_seen.setdefault(iid, event.at)
            if self._restated(event):
                continue
            label = self._labels(event, chats)
            mark = tag(label, iid) if label is not None else None
            if event.line is not None:
                rows.append(line_text(event.line, self.clock, self._screen, mark))
                continue
            notice = plain_line(event, clock=self.clock)
            if notice is not None:
                rows.append(Text.assemble(mark or "", (notice, "dim")))
        return rows

    def _redraw(self) -> None:
        """The footer changed: shown at the end here; the live view redraws it now."""

    def status(self, text: str, *, trouble: bool) -> None:
        if self.state is not None:
            self.state.connection = text
            self.state.trouble = trouble

    def notice(self, text: str) -> None:
        self.console.print(Text(f"icwschat: {inert(text)}", style="bold yellow"))

    def idle(self) -> None:
        pass

    def _single(self) -> ChatCache | None:
        return next((chat.cache for chat in self.chats), None)

    def _ended(self) -> bool:
        if self.several:
            return self.chats.ended
        cache = self._single()
        return cache is not None and cache.ended

    def close(self) -> None:
        if self.state is not None:
            # Every runner (Watcher.run, replay) closes its sink in a ``finally``: the exception in flight
            # there, if any, is what ended the watch, with no change to the Sink protocol.
            self.state.ending = ending(self._ended(), sys.exc_info()[1])
        self._finish()

    def _finish(self) -> None:
        if any(chat.cache.members or chat.cache.transcript or chat.cache.ended for chat in self.chats):
            self.console.print(Footer(self))

    def footer(self, width: int, height: int) -> list[RenderableType]:
        """The footer's rows, at most a third of ``height``: a rule, the header, the members of the one chat
        or the board of several, and the status line."""
        state = self.state
        if state is None:
            return []
        budget = max(FOOTER_MIN, height // FOOTER_SHARE)
        ended = self._ended()
        cache = self._single()
        over = ("all ended" if self.several else "chat ended") if ended else None
        top = [Rule(style="dim"), *header(state, width, over).wrap(self.console, width)]
        status = self._status(cache, ended)
        room = budget - len(top) - 1
        middle: Sequence[RenderableType]
        if self.several:
            middle = board(self.chats, state, self._first_seen, width, room)
        elif cache is None:
            middle = [Text(MEMBERS, style="bold").append("none yet", style="dim")]
        else:
            middle = member_rows(cache, width, typing=state.ending is None, limit=max(1, room))
        return [*top, *middle, status]

    def _status(self, cache: ChatCache | None, ended: bool) -> Text:
        state = self.state
        assert state is not None
        if ended:
            return Text("every chat has ended" if self.several else "the chat has ended", style="bold red")
        if state.ending is not None:
            return Text(state.ending, style="bold red")
        if state.trouble:
            return Text(state.connection, style="bold yellow")
        if cache is None or self.several:
            return Text("")
        return typing_status(cache.members.values())


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


FRAME_INTERVAL = 0.1
"""Seconds between two draws of the live view at most: ten frames a second, however busy the queue."""


class LiveSink(FrameSink):
    """The live view: lines printed into the scrollback as they arrive, above a footer that rich redraws in
    place (``Live`` on the normal screen, rich's documented pattern); on exit the footer's last state stays.
    ``keys``: the terminal the user types at (standard input), kept quiet while the view runs."""

    def __init__(self, console: Console, keys: IO[str], clock: Clock = LOCAL) -> None:
        super().__init__(console, clock)
        self.live: Live | None = None
        self._keys = keys
        self._quiet: QuietKeys | None = None
        self._looks = self._look()
        self._pending: list[Text] = []
        self._dirty = False
        self._drawn_at = 0.0

    def started(self, info: WatchInfo) -> None:
        super().started(info)
        self.live = Live(
            Footer(self),
            console=self.console,
            auto_refresh=False,
            screen=False,
            transient=False,
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
        if not events:
            self.idle()  # empty polls keep a watch from ever being idle

    def status(self, text: str, *, trouble: bool) -> None:
        super().status(text, trouble=trouble)
        self._redraw()

    def _look(self) -> tuple[object, ...]:
        """What changes the footer with no event: the terminal's size, and the minute (the board's ages)."""
        minute = self.clock.now().replace(second=0, microsecond=0) if self.several else None
        return (self.console.size, minute)

    def idle(self) -> None:
        if self._look() != self._looks:
            self._dirty = True
        self._draw()

    def _show(self, rows: list[Text]) -> None:
        self._pending.extend(rows)
        self._redraw()

    def notice(self, text: str) -> None:
        self._draw()  # after the lines that came before it
        super().notice(text)

    def _redraw(self) -> None:
        """Draw now, or within :data:`FRAME_INTERVAL`: every print under a live footer redraws the footer
        (with a board of hundreds of chats, dearer than the line), so a busy queue's lines are printed a
        frame's worth at a time; the caller's idle tick draws what is left."""
        self._dirty = True
        if time.monotonic() - self._drawn_at >= FRAME_INTERVAL:
            self._draw()

    def _draw(self) -> None:
        if self.live is None or not self._dirty:
            return
        self._dirty = False
        self._drawn_at = time.monotonic()
        self._looks = self._look()
        rows, self._pending = self._pending, []
        if rows:
            self.console.print(Group(*rows))
        else:
            self.live.refresh()

    def _finish(self) -> None:
        if self.live is None:
            return
        self._draw()
        try:
            self.live.stop()  # draws the footer a last time, with how the watch ended
        finally:
            self.live = None
            if self._quiet is not None:
                self._quiet.restore()


def print_transcript(console: Console, info: WatchInfo, chats: Router, clock: Clock = LOCAL) -> None:
    """``transcript`` on a terminal: each chat's members and every line, not cut to the screen."""
    screen = ConsoleScreen(console)
    for chat in chats:
        state = ViewState(
            info=dataclasses.replace(info, interaction_ids=(chat.interaction_id,), queue=None),
            connection="snapshot",
            clock=clock,
        )
        cache = chat.cache
        parts: Iterable[RenderableType] = (
            header(state, console.width, "chat ended" if cache.ended else None),
            *member_rows(cache, console.width),
            # rich draws a rule in ASCII for a terminal that lacks "─" only when the rule has a title
            Rule(style="dim", characters="─" if _takes_utf8(console) else "-"),
            *(line_text(line, clock, screen) for line in cache.transcript),
        )
        for part in parts:
            console.print(part)
