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
from typing import IO, TYPE_CHECKING, Any, Protocol

from . import events as ev
from .events import Event
from .jsonio import dumps_lines
from .models import ChatLine, Member, MemberType
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
            self.err.write(f"icwschat: {text}\n")
            self.err.flush()
        self._last_status = text

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


def _who(member: Member) -> str:
    return inert(member.display_name, multiline=False)


_SGR_COLOURS = (36, 32, 35, 33, 34, 96, 92, 95)
"""ANSI foreground colours for names, picked by user id as the live view picks its palette."""


def _painted(member: Member) -> str:
    """The name in bold and its colour (dim for the system); SGR codes wrap text already made inert."""
    if member.type is MemberType.SYSTEM:
        return f"\x1b[2m{_who(member)}\x1b[0m"
    colour = _SGR_COLOURS[zlib.crc32(member.user_id.encode()) % len(_SGR_COLOURS)]
    return f"\x1b[1;{colour}m{_who(member)}\x1b[0m"


def plain_line(event: Event, who: Callable[[Member], str] = _who, clock: Clock = LOCAL) -> str | None:
    """One event as a line of plain text, or None for events too noisy for a log (typing); ``who`` writes
    a member's name.

    A line shows the server's timestamp; the other events show when they were seen (``at``): ICWS member
    messages carry no time of their own (a ``FullChatMember`` has none), so a join or leave has only that."""
    when = clock(event.at)
    if event.line is not None:
        line = event.line
        stamp = clock(line.timestamp)
        prefix = f"{stamp} {who(line.member)}: "
        text = inert(line.text)
        if line.message_type == "file":
            text = f"[file] {text}"
        # The indent matches what is seen, not the SGR codes around the name.
        indent = " " * (len(stamp) + len(_who(line.member)) + 3)
        return prefix + text.replace("\n", "\n" + indent)
    member = event.member
    if event.kind == ev.MEMBER_JOINED and member:
        verb = "is here" if event.history else "joined"
        return f"{when} * {who(member)} ({ROLES[member.type]}) {verb}"
    if event.kind == ev.MEMBER_LEFT and member:
        return f"{when} * {who(member)} left"
    if event.kind == ev.MEMBER_CHANGED and member and event.previous:
        if member.display_name != event.previous.display_name:
            return f"{when} * {who(event.previous)} is now known as {who(member)}"
        return f"{when} * {who(member)} is now {ROLES[member.type]}"
    if event.kind == ev.RESYNCED:
        return f"{when} * reconnected; transcript checked, nothing lost or repeated"
    if event.kind == ev.CHAT_ENDED:
        return f"{when} * the chat has ended"
    return None


class PlainSink(LineSink):
    """Watching into a pipe or file without ``--json``: a readable log, one line per thing said or done.

    In UTF-8, or in ``encoding`` (a terminal's that is not UTF-8), where what it lacks is written as
    ``\\xNN``/``\\uXXXX``."""

    def __init__(
        self, out: IO[bytes], err: IO[str], *, encoding: str = "utf-8", clock: Clock = LOCAL
    ) -> None:
        super().__init__(out, err)
        self.encoding = encoding
        self.clock = clock
        self._announced: deque[str] = deque(maxlen=8)
        """Names of members whose live join or leave this log wrote, until a system line tells of it."""

    def name(self, member: Member) -> str:
        return _who(member)

    def _restated(self, event: Event) -> bool:
        """Whether the event is a system line telling of a join or leave the log has just written.

        Servers announce members in the transcript too (the live view shows only that line). The member
        event comes first and the log never holds a line back, so the system line after it is left out."""
        if event.kind in (ev.MEMBER_JOINED, ev.MEMBER_LEFT) and event.member and not event.history:
            self._announced.append(event.member.display_name)
            return False
        line = event.line
        if line is None or line.member.type is not MemberType.SYSTEM:
            return False
        name = next((name for name in self._announced if line.text.startswith(name + " ")), None)
        if name is None:
            return False
        self._announced.remove(name)
        return True

    def update(self, events: list[Event], chats: Router) -> None:
        lines = [
            text
            for text in (
                plain_line(event, self.name, self.clock) for event in events if not self._restated(event)
            )
            if text is not None
        ]
        if lines:
            self.write(
                "".join(f"{text}\n" for text in lines).encode(self.encoding, errors="backslashreplace")
            )


class ColourPlainSink(PlainSink):
    """The plain log with names in bold and colour (``--color always``, or ``auto`` on a terminal)."""

    def name(self, member: Member) -> str:
        return _painted(member)


class Windowed:
    """A sink that sees only the history lines inside ``window`` (``--tail``, ``--since``): in the events,
    and in the transcript of the cache it is shown (views draw from the cache)."""

    def __init__(self, sink: Sink, window: Window) -> None:
        self.sink = sink
        self.window = window
        self.lines: dict[str, list[ChatLine]] = {}
        """Each chat's lines shown, by the id the chat had when they were."""
        self.view: Router | None = None
        """The chats as last shown to the sink: the real ones' state, with only the lines shown."""

    def started(self, info: WatchInfo) -> None:
        self.sink.started(info)

    def raw(self, messages: list[Any]) -> None:
        self.sink.raw(messages)

    def update(self, events: list[Event], chats: Router) -> None:
        shown = self.window.filter(events)
        # Each event with a line was a line appended to a transcript: the shown ones are its windowed copy.
        for event in shown:
            if event.kind == ev.MESSAGE and event.line is not None:
                self.lines.setdefault(event.interaction_id, []).append(event.line)
        view = copy.copy(chats)  # shallow, so it costs the same at any transcript length
        view.chats = {iid: self._windowed(chat) for iid, chat in chats.chats.items()}
        self.view = view
        self.sink.update(shown, view)

    def _windowed(self, chat: Chat) -> Chat:
        cache = copy.copy(chat.cache)
        cache.transcript = self.lines.setdefault(chat.interaction_id, [])
        return dataclasses.replace(chat, cache=cache)

    def status(self, text: str, *, trouble: bool) -> None:
        self.sink.status(text, trouble=trouble)

    def idle(self) -> None:
        self.sink.idle()

    def close(self) -> None:
        self.sink.close()


# ---- the formats of -o/--output ----------------------------------------------------------------------


def _plain(env: Environment, live: bool, encoding: str = "utf-8") -> Sink:
    sink = ColourPlainSink if env.use_color else PlainSink
    return sink(env.stdout_bytes, env.stderr, encoding=encoding, clock=Clock(utc=env.utc))


def _view(env: Environment, live: bool) -> Sink:
    """The live view (``live``) or its final frame; the plain log where there is no terminal to draw on,
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
