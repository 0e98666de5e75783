"""Outputs of a watch that are not the live view: NDJSON events, raw ICWS messages and plain lines.

All of them write to a binary stream, flush after every line, and never emit colour or ANSI codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any, Protocol

from . import events as ev
from .cache import ChatCache
from .events import Event
from .jsonio import dumps_lines
from .models import Member
from .textsafe import inert, inert_json


@dataclass(frozen=True, slots=True)
class WatchInfo:
    """What the header of a watch shows."""

    interaction_id: str
    server: str
    user: str
    transport: str


class Sink(Protocol):
    """Where a watch's results go; the watcher calls these in order from one thread."""

    def started(self, info: WatchInfo) -> None: ...

    def raw(self, messages: list[Any]) -> None: ...

    def update(self, events: list[Event], cache: ChatCache) -> None: ...

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

    def update(self, events: list[Event], cache: ChatCache) -> None:
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

    def update(self, events: list[Event], cache: ChatCache) -> None:
        if events:
            self.write_json([event.to_json() for event in events])


class RawSink(JSONLinesSink):
    """``--raw``: every ICWS message exactly as received, one compact JSON object per line."""

    def raw(self, messages: list[Any]) -> None:
        if messages:
            self.write_json(messages)


def clock(moment: datetime) -> str:
    """The time of day in the local zone; in UTC, marked ``Z``, when the local date is out of ``datetime``'s
    range (a server may stamp lines 0001-01-01 or 9999-12-31, and one step east or west falls off)."""
    try:
        return moment.astimezone().strftime("%H:%M:%S")
    except (OverflowError, OSError):  # OSError: the C library's localtime() refused the date
        return moment.astimezone(timezone.utc).strftime("%H:%M:%SZ")


def _who(member: Member) -> str:
    return inert(member.display_name, multiline=False)


def plain_line(event: Event) -> str | None:
    """One event as a line of plain text, or None for events too noisy for a log (typing)."""
    when = clock(event.at)
    if event.line is not None:
        line = event.line
        prefix = f"{clock(line.timestamp)} {_who(line.member)}: "
        text = inert(line.text)
        if line.message_type == "file":
            text = f"[file] {text}"
        return prefix + text.replace("\n", "\n" + " " * len(prefix))
    member = event.member
    if event.kind == ev.MEMBER_JOINED and member:
        verb = "is here" if event.history else "joined"
        return f"{when} * {_who(member)} ({member.type.label}) {verb}"
    if event.kind == ev.MEMBER_LEFT and member:
        return f"{when} * {_who(member)} left"
    if event.kind == ev.MEMBER_CHANGED and member and event.previous:
        if member.display_name != event.previous.display_name:
            return f"{when} * {_who(event.previous)} is now known as {_who(member)}"
        return f"{when} * {_who(member)} is now {member.type.label}"
    if event.kind == ev.RESYNCED:
        return f"{when} * reconnected; transcript checked, nothing lost or repeated"
    if event.kind == ev.CHAT_ENDED:
        return f"{when} * the chat has ended"
    return None


class PlainSink(LineSink):
    """Watching into a pipe or file without ``--json``: a readable log, one line per thing said or done.

    In UTF-8, or in ``encoding`` (a terminal's that is not UTF-8), where what it lacks is written as
    ``\\xNN``/``\\uXXXX``."""

    def __init__(self, out: IO[bytes], err: IO[str], *, encoding: str = "utf-8") -> None:
        super().__init__(out, err)
        self.encoding = encoding

    def update(self, events: list[Event], cache: ChatCache) -> None:
        lines = [text for text in map(plain_line, events) if text is not None]
        if lines:
            self.write(
                "".join(f"{text}\n" for text in lines).encode(self.encoding, errors="backslashreplace")
            )
