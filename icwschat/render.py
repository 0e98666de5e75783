"""The live view: a rich rendering of the cache that fits the terminal, whatever the transcript's length.

Only the lines that fit are built, from the newest upwards, so a frame costs the same at 100 or 100,000
lines. Every piece of server text passes through :func:`icwschat.textsafe.inert` and is placed in ``Text``
objects, never parsed as markup.
"""

from __future__ import annotations

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
from .sinks import WatchInfo, clock
from .textsafe import inert

PALETTE = ("cyan", "green", "magenta", "yellow", "blue", "bright_cyan", "bright_green", "bright_magenta")
BADGES = {
    MemberType.SYSTEM: ("system", "dim"),
    MemberType.CURRENT_USER: ("you", "bold white on blue"),
    MemberType.INTERNAL: ("agent", "bold white on dark_green"),
    MemberType.EXTERNAL: ("customer", "bold black on yellow"),
    MemberType.NONE: ("?", "dim"),
}


def make_console(file: IO[str], *, no_color: bool, force_terminal: bool | None = None) -> Console:
    return Console(file=file, no_color=no_color, force_terminal=force_terminal, highlight=False, emoji=False)


def member_style(member: Member) -> str:
    if member.type is MemberType.SYSTEM:
        return "dim italic"
    return "bold " + PALETTE[zlib.crc32(member.user_id.encode()) % len(PALETTE)]


def name_text(member: Member) -> Text:
    return Text(inert(member.display_name, multiline=False), style=member_style(member))


def badge(member: Member) -> Text:
    label, style = BADGES[member.type]
    return Text(f" {label} ", style=style)


def line_text(line: ChatLine) -> Text:
    """``HH:MM:SS Name: text`` with continuation lines indented under the text."""
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


def header(state: ViewState, cache: ChatCache) -> Text:
    """One line, most important first, cut with an ellipsis when the terminal is narrow."""
    info = state.info
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(" icwschat ", style="bold white on dark_blue")
    text.append(f" interaction {inert(info.interaction_id, multiline=False)} · ", style="bold")
    if cache.ended:
        text.append("chat ended", style="bold red")
    else:
        text.append(state.connection, style="bold yellow" if state.trouble else "green")
    source = inert(info.server, multiline=False)
    if info.user:
        source = f"{inert(info.user, multiline=False)} @ {source}"
    text.append(f" · {info.transport} · {source}")
    return text


def members_text(cache: ChatCache) -> Text:
    text = Text("members: ", style="bold")
    if not cache.members:
        text.append("none yet", style="dim")
    for index, member in enumerate(cache.members.values()):
        if index:
            text.append("  ")
        text.append_text(badge(member))
        text.append(" ")
        text.append_text(name_text(member))
        if member.is_typing:
            text.append(" ✎", style="bold")
    return text


def transcript_tail(lines: list[ChatLine], console: Console, width: int, height: int) -> list[Text]:
    """The last ``height`` screen rows of the transcript, wrapped to ``width``; built newest first."""
    rows: list[Text] = []
    for line in reversed(lines):
        if len(rows) >= height:
            break
        wrapped = list(line_text(line).wrap(console, width))
        rows.extend(reversed(wrapped))
    return list(reversed(rows[:height]))


def build_view(
    state: ViewState, cache: ChatCache, console: Console, *, rows: int | None = None
) -> RenderableType:
    """One frame, exactly ``rows`` high (default: the terminal's height less one)."""
    width = console.width
    height = rows if rows is not None else max(6, console.height - 1)
    top = [*header(state, cache).wrap(console, width), *members_text(cache).wrap(console, width)]
    status = typing_status(cache)
    if cache.ended:
        status = Text("the chat has ended", style="bold red")
    elif state.trouble:
        status = Text(state.connection, style="bold yellow")
    fixed = len(top) + 3
    space = max(1, height - fixed)
    tail = transcript_tail(cache.transcript, console, width, space)
    if not cache.transcript:
        tail = [Text("no messages yet", style="dim")]
    padding = [Text("")] * (space - len(tail))
    body: list[RenderableType] = [*top, Rule(style="dim"), *tail, *padding, Rule(style="dim"), status]
    return Group(*body)


class FrameSink:
    """The final frame of the view, printed on close: ``replay`` on a terminal; the live view extends it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.cache: ChatCache | None = None
        self.state: ViewState | None = None

    def _frame(self) -> RenderableType:
        if self.state is None or self.cache is None:
            return Text("")
        return build_view(self.state, self.cache, self.console)

    def started(self, info: WatchInfo) -> None:
        self.state = ViewState(info=info)
        self.cache = ChatCache(info.interaction_id)

    def raw(self, messages: list[Any]) -> None:
        pass

    def update(self, events: list[Event], cache: ChatCache) -> None:
        self.cache = cache

    def status(self, text: str, *, trouble: bool) -> None:
        if self.state is not None:
            self.state.connection = text
            self.state.trouble = trouble

    def idle(self) -> None:
        pass

    def close(self) -> None:
        cache = self.cache
        if cache is not None and (cache.members or cache.transcript or cache.ended):
            self.console.print(self._frame())


class LiveSink(FrameSink):
    """The live view on a terminal: an alternate screen while watching, the final frame left on exit."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.live: Live | None = None
        self._size = console.size

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
        self.live.start(refresh=True)

    def update(self, events: list[Event], cache: ChatCache) -> None:
        super().update(events, cache)
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
        self.live.stop()
        self.live = None
        super().close()


def print_transcript(console: Console, info: WatchInfo, cache: ChatCache) -> None:
    """``transcript`` on a terminal: the members and every line, not cut to the screen."""
    state = ViewState(info=info, connection="snapshot")
    parts: Iterable[RenderableType] = (
        header(state, cache),
        members_text(cache),
        Rule(style="dim"),
        *(line_text(line) for line in cache.transcript),
    )
    for part in parts:
        console.print(part)
