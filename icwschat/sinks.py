"""Outputs of a watch that are not the live view: NDJSON events, raw ICWS messages and plain lines.

All of them write to a binary stream and flush after every line; only the plain log may be coloured, and
only when asked (:class:`ColourPlainSink`). :data:`OUTPUTS` is the one table of ``-o/--output`` formats.
"""

from __future__ import annotations

import copy
import dataclasses
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol

from . import events as ev
from .events import Event
from .jsonio import dumps_lines
from .models import DISCONNECTED_STATES, STATE_WORDS, ChatLine, Member, MemberType
from .router import Chat, Router
from .textsafe import inert, inert_json
from .window import Window

if TYPE_CHECKING:
    from .environment import Environment


@dataclass(frozen=True, slots=True)
class WatchInfo:
    """What the header of a watch shows."""

    interaction_ids: tuple[str, ...]
    server: str
    user: str
    transport: str
    queue: str | None = None
    """The queue followed (``watch --queue``), as the user named it."""

    @property
    def subject(self) -> str:
        """What is followed, in a few words: ``interaction 1001``, ``2 chats``, ``queue user:jdoe``."""
        if self.queue is not None:
            return f"queue {self.queue}"
        if len(self.interaction_ids) == 1:
            return f"interaction {self.interaction_ids[0]}"
        return f"{len(self.interaction_ids)} chats"


class Sink(Protocol):
    """Where a watch's results go; the watcher calls these in order from one thread."""

    def started(self, info: WatchInfo) -> None: ...

    def raw(self, messages: list[Any]) -> None: ...

    def update(self, events: list[Event], chats: Router) -> None: ...

    def status(self, text: str, *, trouble: bool) -> None: ...

    def notice(self, text: str) -> None:
        """A warning for the user while the watch runs (on a terminal view, printed above its footer,
        which would otherwise draw over it)."""

    def idle(self) -> None: ...

    def close(self) -> None: ...


class LineSink:
    """Binary output flushed per line, notices on stderr; by itself it writes no results at all."""

    def __init__(self, out: IO[bytes], err: IO[str]) -> None:
        self.out = out
        self.err = err
        self._last_status = ""

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.out.flush()

    def started(self, info: WatchInfo) -> None:
        pass

    def raw(self, messages: list[Any]) -> None:
        pass

    def update(self, events: list[Event], chats: Router) -> None:
        pass

    def status(self, text: str, *, trouble: bool) -> None:
        if text != self._last_status and (trouble or self._last_status):
            self.notice(text)
        self._last_status = text

    def notice(self, text: str) -> None:
        self.err.write(f"icwschat: {inert(text)}\n")
        self.err.flush()

    def idle(self) -> None:
        pass

    def close(self) -> None:
        pass


def _inert_lines(values: list[Any]) -> bytes:
    return inert_json(dumps_lines(values))


class JSONLinesSink(LineSink):
    """JSON values a line each. On a terminal (``terminal``) every character a terminal would act on is
    written as a ``\\uXXXX`` escape: the decoded text stays exact, and a pipe keeps the fast path."""

    def __init__(self, out: IO[bytes], err: IO[str], *, terminal: bool = False) -> None:
        super().__init__(out, err)
        self._lines = _inert_lines if terminal else dumps_lines

    def write_json(self, values: list[Any]) -> None:
        self.write(self._lines(values))


class JSONSink(JSONLinesSink):
    """``--json``: the contract's events as NDJSON."""

    def update(self, events: list[Event], chats: Router) -> None:
        if events:
            self.write_json([event.to_json() for event in events])


class RawSink(JSONLinesSink):
    """``--raw``: every ICWS message exactly as received, one compact JSON object per line."""

    def raw(self, messages: list[Any]) -> None:
        if messages:
            self.write_json(messages)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class Clock:
    """How text output shows a moment: in the local zone, or in UTC marked ``Z`` (``utc``, ``--utc``);
    the time of day alone for today's moments, the date before it for others. ``now`` says when today is."""

    utc: bool = False
    now: Callable[[], datetime] = _now

    def _zoned(self, moment: datetime) -> tuple[datetime, str]:
        if not self.utc:
            try:
                return moment.astimezone(), ""
            # A server may stamp lines 0001-01-01 or 9999-12-31, and one step east or west falls off the
            # calendar (OSError: the C library's localtime() refused the date): those show in UTC.
            except (OverflowError, OSError):
                pass
        return moment.astimezone(timezone.utc), "Z"

    def __call__(self, moment: datetime) -> str:
        shown, mark = self._zoned(moment)
        time = shown.strftime("%H:%M:%S") + mark
        if shown.date() == self._zoned(self.now())[0].date():
            return time
        return f"{shown.date().isoformat()} {time}"  # isoformat: strftime's %Y writes year 1 as "1"


LOCAL = Clock()
"""The default: local time."""

ROLES = {
    MemberType.SYSTEM: "system",
    MemberType.CURRENT_USER: "you",
    MemberType.INTERNAL: "agent",
    MemberType.EXTERNAL: "customer",
    MemberType.NONE: "?",
}
"""What the live view and the plain log call each member type (JSON keeps the contract's names)."""


def state_word(letter: str) -> str:
    return STATE_WORDS.get(letter) or inert(letter, multiline=False)


def chat_state(chat: Chat) -> str:
    """A chat's state in a word: ``ended`` once it has, else its queue's ``Eic_State``; ``open`` for a chat
    followed by id, of which no queue says more."""
    if chat.cache.ended:
        return "ended"
    letter = chat.attributes.get("Eic_State")
    return state_word(letter) if letter else "open"


def _who(member: Member) -> str:
    return inert(member.display_name, multiline=False)


_SGR_COLOURS = (36, 32, 35, 33, 34, 96, 92, 95)
"""ANSI foreground colours for names and chat labels, picked by id as the live view picks its palette."""


def colour_index(key: str) -> int:
    """The palette entry of a member (by user id) or a chat (by interaction id): stable across runs."""
    return zlib.crc32(key.encode()) % len(_SGR_COLOURS)


def _painted(member: Member) -> str:
    """The name in bold and its colour (dim for the system); SGR codes wrap text already made inert."""
    if member.type is MemberType.SYSTEM:
        return f"\x1b[2m{_who(member)}\x1b[0m"
    return f"\x1b[1;{_SGR_COLOURS[colour_index(member.user_id)]}m{_who(member)}\x1b[0m"


def _tag(label: str, interaction_id: str) -> str:
    return f"[{label}] "


def _painted_tag(label: str, interaction_id: str) -> str:
    return f"\x1b[1;{_SGR_COLOURS[colour_index(interaction_id)]}m[{label}]\x1b[0m "


# ---- one line layout for the plain log, the live view and transcript ----------------------------------

MIN_TEXT = 20
"""Columns a line's text needs beside its time and name; with fewer, it goes on the rows below."""
NARROW_INDENT = 4


class Screen(Protocol):
    """The terminal a layout is for: its width, and how it measures and wraps text (:mod:`icwschat.render`
    knows; a pipe has no screen and no width)."""

    def width(self) -> int: ...

    def cells(self, text: str) -> int: ...

    def wrap(self, text: str, width: int) -> list[str]: ...


class Hung(NamedTuple):
    """A line's text laid out after its prefix (time, name): ``rows`` start ``indent`` columns in, the first
    beside the prefix (``beside``) or, on a screen too narrow for that, on the row below it."""

    beside: bool
    indent: int
    rows: list[str]


def hang(prefix: int, text: str, screen: Screen | None = None) -> Hung:
    """The layout of ``text`` after a prefix ``prefix`` columns wide: wrapped and explicit breaks alike
    continue under the text's first character. Without a screen (a pipe) only explicit breaks break."""
    if screen is None:
        return Hung(True, prefix, text.split("\n"))
    width = screen.width()
    if width - prefix >= MIN_TEXT:
        return Hung(True, prefix, screen.wrap(text, width - prefix))
    return Hung(False, NARROW_INDENT, screen.wrap(text, max(1, width - NARROW_INDENT)))


def hung_text(prefix: str, hung: Hung) -> str:
    pad = "\n" + " " * hung.indent
    rows = hung.rows
    if hung.beside:
        return prefix + rows[0] + "".join(pad + row for row in rows[1:])
    return prefix.rstrip() + "".join(pad + row for row in rows)


def said(line: ChatLine) -> str:
    """What a line says, inert, with a mark for a file."""
    text = inert(line.text)
    return f"[file] {text}" if line.message_type == "file" else text


def plain_line(
    event: Event,
    who: Callable[[Member], str] = _who,
    clock: Clock = LOCAL,
    *,
    label: str | None = None,
    tag: Callable[[str, str], str] = _tag,
    screen: Screen | None = None,
) -> str | None:
    """One event as a line of plain text, or None for events too noisy for a log (typing); ``who`` writes
    a member's name, ``tag`` the chat's ``label`` (given when a watch follows several chats).

    A line shows the server's timestamp; the other events show when they were seen (``at``): ICWS member
    messages carry no time of their own (a ``FullChatMember`` has none), so a join or leave has only that."""
    mark = tag(label, event.interaction_id) if label is not None else ""
    if event.line is not None:
        line = event.line
        stamp = clock(line.timestamp)
        # The indent matches what is seen, not the SGR codes around the label and name.
        width = screen.cells if screen is not None else len
        indent = width(_tag(label, "") if label is not None else "") + width(stamp)
        indent += width(_who(line.member)) + 3
        return hung_text(f"{mark}{stamp} {who(line.member)}: ", hang(indent, said(line), screen))
    text = notice(event, who)
    return None if text is None else f"{mark}{clock(event.at)} * {text}"


def notice(event: Event, who: Callable[[Member], str] = _who) -> str | None:
    """What an event other than a line says, for a log (None: nothing worth a line, such as typing)."""
    member = event.member
    kind = event.kind
    if kind == ev.MEMBER_JOINED and member:
        verb = "is here" if event.history else "joined"
        return f"{who(member)} ({ROLES[member.type]}) {verb}"
    if kind == ev.MEMBER_LEFT and member:
        return f"{who(member)} left"
    if kind == ev.MEMBER_CHANGED and member and event.previous:
        if member.display_name != event.previous.display_name:
            return f"{who(event.previous)} is now known as {who(member)}"
        return f"{who(member)} is now {ROLES[member.type]}"
    if kind == ev.RESYNCED:
        return "reconnected; transcript checked, nothing lost or repeated"
    if kind == ev.CHAT_ENDED:
        return "the chat has ended"
    if kind in (ev.CHAT_ADDED, ev.CHAT_CHANGED, ev.CHAT_REMOVED):
        return _chat_notice(event)
    return None


def _chat_notice(event: Event) -> str | None:
    chat = f"chat {inert(event.interaction_id, multiline=False)}"
    where = f" ({inert(event.queue, multiline=False)})" if event.queue else ""
    attributes = event.attributes or {}
    if event.kind == ev.CHAT_REMOVED:
        return f"{chat} removed{where}"
    if event.kind == ev.CHAT_ADDED:
        customer = attributes.get("Eic_RemoteName")
        whose = f": {inert(customer, multiline=False)}" if customer else ""
        return f"{chat} {'is here' if event.history else 'added'}{where}{whose}"
    news = []
    state = attributes.get("Eic_State")
    if state and state not in DISCONNECTED_STATES:  # an end has a line of its own: chat_ended
        news.append(state_word(state))
    agent = attributes.get("Eic_UserName")
    if agent:
        news.append(f"agent {inert(agent, multiline=False)}")
    return f"{chat}: {', '.join(news)}" if news else None


class Restated:
    """Whether an event is a system line telling of a join or leave the log has just written.

    Servers announce members in the transcript too. The member event comes first and a log never holds a
    line back, so the system line after it is left out (a guess from its wording: it starts with the name)."""

    def __init__(self) -> None:
        self._announced: deque[tuple[str, str]] = deque(maxlen=8)
        """Chat and name of members whose live join or leave was written, until a system line tells of it."""

    def __call__(self, event: Event) -> bool:
        if event.kind in (ev.MEMBER_JOINED, ev.MEMBER_LEFT) and event.member and not event.history:
            self._announced.append((event.interaction_id, event.member.display_name))
            return False
        line = event.line
        if line is None or line.member.type is not MemberType.SYSTEM:
            return False
        told = next(
            (
                (iid, name)
                for iid, name in self._announced
                if iid == event.interaction_id and line.text.startswith(name + " ")
            ),
            None,
        )
        if told is None:
            return False
        self._announced.remove(told)
        return True


class Labels:
    """The label that marks a chat's lines once a watch follows several chats (a queue, several ids, a
    capture of several); with one chat, none. Once shown, labels stay for the rest of the run."""

    def __init__(self) -> None:
        self.several = False
        self._known: dict[str, str] = {}
        """Labels of the chats lines were shown for, so a chat's last event (it left) still has its own."""

    def started(self, info: WatchInfo) -> None:
        self.several = info.queue is not None or len(info.interaction_ids) > 1

    def __call__(self, event: Event, chats: Router) -> str | None:
        iid = event.interaction_id
        chat = chats.chats.get(iid)
        if chat is not None:
            self._known[iid] = chat.label
        self.several = self.several or len(chats.chats) > 1
        if not self.several:
            return None
        if event.kind == ev.CHAT_REMOVED:
            return self._known.pop(iid, iid)
        return self._known.get(iid, iid)


class PlainSink(LineSink):
    """Watching into a pipe or file without ``--json``: a readable log, one line per thing said or done.

    In UTF-8, or in ``encoding`` (a terminal's that is not UTF-8), where what it lacks is written as
    ``\\xNN``/``\\uXXXX``. On a terminal (``screen``) long lines wrap under their text."""

    def __init__(
        self,
        out: IO[bytes],
        err: IO[str],
        *,
        encoding: str = "utf-8",
        clock: Clock = LOCAL,
        screen: Screen | None = None,
    ) -> None:
        super().__init__(out, err)
        self.encoding = encoding
        self.clock = clock
        self.screen = screen
        self._restated = Restated()
        self._labels = Labels()

    def name(self, member: Member) -> str:
        return _who(member)

    def tag(self, label: str, interaction_id: str) -> str:
        return _tag(label, interaction_id)

    def started(self, info: WatchInfo) -> None:
        self._labels.started(info)

    def update(self, events: list[Event], chats: Router) -> None:
        lines = []
        for event in events:
            if self._restated(event):
                continue
            label = self._labels(event, chats)
            text = plain_line(event, self.name, self.clock, label=label, tag=self.tag, screen=self.screen)
            if text is not None:
                lines.append(text)
        if lines:
            self.write(
                "".join(f"{text}\n" for text in lines).encode(self.encoding, errors="backslashreplace")
            )


class ColourPlainSink(PlainSink):
    """The plain log with names and chat labels in bold and colour (``--color always``, or ``auto`` on a
    terminal)."""

    def name(self, member: Member) -> str:
        return _painted(member)

    def tag(self, label: str, interaction_id: str) -> str:
        return _painted_tag(label, interaction_id)


class Windowed:
    """A sink that sees only the history lines inside ``window`` (``--tail``, ``--since``). Views draw
    lines from events, so the events are all it filters; ``transcript`` prints whole transcripts, and asks
    for the lines shown to be kept (``keeps_lines``) and given back in :meth:`view`."""

    def __init__(self, sink: Sink, window: Window, *, keeps_lines: bool = False) -> None:
        self.sink = sink
        self.window = window
        self.lines: dict[str, list[ChatLine]] | None = {} if keeps_lines else None
        """Each chat's lines shown, by the id the chat had when they were."""
        self._chats: Router | None = None

    def started(self, info: WatchInfo) -> None:
        self.sink.started(info)

    def raw(self, messages: list[Any]) -> None:
        self.sink.raw(messages)

    def update(self, events: list[Event], chats: Router) -> None:
        shown = self.window.filter(events)
        if self.lines is not None:
            # Each event with a line was a line added to a transcript: the shown ones are its windowed copy.
            for event in shown:
                if event.kind == ev.MESSAGE and event.line is not None:
                    self.lines.setdefault(event.interaction_id, []).append(event.line)
        self._chats = chats
        self.sink.update(shown, chats)

    def view(self) -> Router | None:
        """The chats as last shown, each with only the lines shown (``keeps_lines``); None before any."""
        if self._chats is None or self.lines is None:
            return self._chats
        view = copy.copy(self._chats)  # shallow, so it costs the same at any transcript length
        view.chats = {iid: self._windowed(chat) for iid, chat in self._chats.chats.items()}
        return view

    def _windowed(self, chat: Chat) -> Chat:
        assert self.lines is not None
        cache = copy.copy(chat.cache)
        cache.transcript = self.lines.setdefault(chat.interaction_id, [])
        return dataclasses.replace(chat, cache=cache)

    def status(self, text: str, *, trouble: bool) -> None:
        self.sink.status(text, trouble=trouble)

    def notice(self, text: str) -> None:
        self.sink.notice(text)

    def idle(self) -> None:
        self.sink.idle()

    def close(self) -> None:
        self.sink.close()


# ---- the formats of -o/--output ----------------------------------------------------------------------


def _plain(env: Environment, live: bool, encoding: str = "utf-8") -> Sink:
    sink = ColourPlainSink if env.use_color else PlainSink
    screen: Screen | None = None
    if env.stdout_isatty:
        from .render import terminal_screen

        screen = terminal_screen(env.stdout)
    return sink(env.stdout_bytes, env.stderr, encoding=encoding, clock=Clock(utc=env.utc), screen=screen)


def _view(env: Environment, live: bool) -> Sink:
    """The live view (``live``: lines under a live footer) or the lines with the footer printed once at the
    end; the plain log where there is no terminal to draw on,
    or one that cannot move the cursor (``TERM=dumb``) or take UTF-8, in that terminal's encoding."""
    if not env.stdout_isatty:
        return _plain(env, live)
    from .render import FrameSink, LiveSink, draws_views, make_console

    console = make_console(env.stdout, no_color=not env.use_color)
    if not draws_views(console):
        return _plain(env, live, console.encoding)
    clock = Clock(utc=env.utc)
    return LiveSink(console, env.stdin, clock) if live else FrameSink(console, clock)


def _json(env: Environment, live: bool) -> Sink:
    return JSONSink(env.stdout_bytes, env.stderr, terminal=env.stdout_isatty)


def _raw(env: Environment, live: bool) -> Sink:
    return RawSink(env.stdout_bytes, env.stderr, terminal=env.stdout_isatty)


OUTPUTS: dict[str, Callable[[Environment, bool], Sink]] = {
    "live": _view,
    "plain": _plain,
    "json": _json,
    "raw": _raw,
}
"""``-o/--output``: each format's name and how to build its sink from the Environment and whether the view
is to be live (``watch``, ``demo``) or only its final frame (``transcript``, ``replay``)."""
