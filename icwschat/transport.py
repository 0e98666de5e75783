"""Reading the session's message queue: short polling or server-sent events, behind one interface.

A transport yields batches of ICWS messages in server order; the rest of the pipeline cannot tell which one
ran. Transient trouble leaves as :class:`ServerUnavailable`, a dead session as :class:`SessionGone`.
"""

from __future__ import annotations

import codecs
import contextlib
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .client import Connection
from .errors import ProtocolError, ServerUnavailable
from .jsonio import loads

SSE_MIN_MESSAGING_VERSION = 2
SSE_READ_TIMEOUT = 90.0
"""Seconds of silence (not even a keep-alive comment) after which an event stream counts as dead."""
MAX_EVENT_BYTES = 16 * 1024 * 1024
SSE_PROVEN_AFTER = 60.0
"""Seconds an event stream must stay open, and in step, before its keep-alives count as the server working.

Sooner, a server that opens streams and closes them at once (or sends a line that never ends) would never be
given up on; never, and a quiet chat behind a proxy that cuts long requests would be.
"""
RETRY_CAP = 60.0
"""Longest wait, in seconds, that a stream's ``retry:`` field may ask for before the stream is reopened."""
_RETRY_DIGITS = 9
_LONGEST_RETRY_MS = 1_000_000_000
_EOL = re.compile(r"\r\n|\r|\n")


class Transport(Protocol):
    """What the watch loop reads from; it cannot tell short polling from server-sent events."""

    name: str

    def batches(self) -> Iterator[list[Any] | None]:
        """ICWS messages as they arrive, a batch at a time.

        A list, even an empty one, shows the server working: a poll reply, an event, or a stream that has
        stayed up in step for a while. ``None`` only says that a stream has opened, which a broken server can
        do again and again without ever delivering.
        """
        ...


class PollTransport:
    """Short polling: one request at a time, the next ``interval`` seconds after the previous reply."""

    name = "poll"

    def __init__(self, connection: Connection, interval: float, stop: threading.Event) -> None:
        self.connection = connection
        self.interval = interval
        self.stop = stop

    def batches(self) -> Iterator[list[Any]]:
        while not self.stop.is_set():
            batch = self.connection.poll_messages()
            replied = time.monotonic()
            yield batch
            self.stop.wait(max(0.0, replied + self.interval - time.monotonic()))


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Incremental parser for ``text/event-stream`` as the HTML standard defines it.

    Fed raw byte chunks split anywhere (inside a UTF-8 sequence, between ``\\r`` and ``\\n``); keeps only the
    unfinished line and event in memory. Each chunk's text is scanned once, so a line that never ends costs
    time in proportion to its length, and it is refused once the event it belongs to passes
    :data:`MAX_EVENT_BYTES` (counted in characters, which never outnumber the bytes).
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pieces: list[str] = []
        """The unfinished line, as it arrived: joined once, when it ends."""
        self._pending = 0
        self._data: list[str] = []
        self._size = 0
        self._event = ""
        self._last_id: str | None = None
        self._started = False
        self._after_cr = False
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            text = text.removeprefix("\ufeff")
            self._started = True
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the second half of a \r\n split across chunks
        if text:
            self._after_cr = text.endswith("\r")
        events: list[SSEEvent] = []
        position = 0
        for match in _EOL.finditer(text):
            self._pieces.append(text[position : match.start()])
            line = "".join(self._pieces)
            self._pieces, self._pending = [], 0
            event = self._line(line)
            if event is not None:
                events.append(event)
            position = match.end()
        if position < len(text):
            self._pieces.append(text[position:])
            self._pending += len(text) - position
            self._check_size()
        return events

    @property
    def between_events(self) -> bool:
        """No line or event is half received: the stream is in step, not in the middle of a huge line."""
        return not self._pieces and not self._data

    def _check_size(self) -> None:
        if self._pending + self._size > MAX_EVENT_BYTES:
            raise ProtocolError(
                f"the event stream sent an event larger than {MAX_EVENT_BYTES // 2**20} MiB",
                hint="use --transport poll",
            )

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
            self._size += len(value) + 1
            self._check_size()
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = _milliseconds(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event, self._size = [], "", 0
        if not data:
            return None
        return SSEEvent(data="\n".join(data), event=event or "message", id=self._last_id)


def _milliseconds(digits: str) -> int:
    """The ``retry`` field's value, with at most nine significant digits: Python refuses to convert very
    long digit strings, and a wait of eleven days is as good as forever."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= _RETRY_DIGITS else _LONGEST_RETRY_MS


class SSETransport:
    """Server-sent events: each event's data is one ICWS message; comments keep the stream alive."""

    name = "sse"

    def __init__(
        self, connection: Connection, stop: threading.Event, *, proven_after: float = SSE_PROVEN_AFTER
    ) -> None:
        self.connection = connection
        self.stop = stop
        self.proven_after = proven_after

    def batches(self) -> Iterator[list[Any] | None]:
        parser = SSEParser()
        with contextlib.closing(self.connection.open_event_stream(SSE_READ_TIMEOUT)) as chunks:
            proven_at: float | None = time.monotonic() + self.proven_after
            yield None  # the stream is open: the caller may show it as connected
            try:
                for chunk in chunks:
                    if self.stop.is_set():
                        return
                    yield from _messages(parser.feed(chunk))
                    if proven_at is not None and time.monotonic() >= proven_at and parser.between_events:
                        proven_at = None
                        yield []  # as good as an empty poll reply: a quiet chat is not a failing server
            except ServerUnavailable as error:
                error.retry_after = _reconnection_delay(parser, error.retry_after)
                raise
        if not self.stop.is_set():
            closed = ServerUnavailable("the server closed the event stream")
            closed.retry_after = _reconnection_delay(parser, None)
            raise closed


def _messages(events: list[SSEEvent]) -> Iterator[list[Any]]:
    for event in events:
        if event.event != "message":
            continue
        try:
            message = loads(event.data)
        except ValueError:
            raise ProtocolError(f"an event's data is not JSON: {event.data[:80]!r}") from None
        yield [message]


def _reconnection_delay(parser: SSEParser, asked: float | None) -> float | None:
    """The wait the stream's ``retry:`` field asks for before reopening it (as EventSource does), capped."""
    if parser.retry_ms is None:
        return asked
    return max(asked or 0.0, min(parser.retry_ms / 1000, RETRY_CAP))


def transport_name(name: str, connection: Connection) -> str:
    """``sse`` or ``poll``: what ``name`` (``auto`` takes SSE when the server's ``messaging`` feature is at
    least 2) comes to on ``connection``'s server."""
    if name == "auto":
        return "sse" if connection.session.feature("messaging") >= SSE_MIN_MESSAGING_VERSION else "poll"
    return name


def choose(
    name: str,
    connection: Connection,
    interval: float,
    stop: threading.Event,
    *,
    give_up_after: float = math.inf,
) -> Transport:
    """The transport :func:`transport_name` names.

    An event stream that stays up for the whole ``give_up_after`` window (or :data:`SSE_PROVEN_AFTER`, if
    sooner) shows that the server is not failing.
    """
    if transport_name(name, connection) == "sse":
        return SSETransport(connection, stop, proven_after=min(SSE_PROVEN_AFTER, give_up_after))
    return PollTransport(connection, interval, stop)
