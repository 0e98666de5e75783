"""Server-sent events from servers that frame, pace or size their streams in ways the simulator never does:
events arrive as they are sent, parsing stays linear and bounded, and a stream that delivers nothing is given
up on like any other failure."""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import PASSWORD, USER, cli_env, icwschat, spawn
from hostile import HostileServer, Request, login_reply, reply

from icwschat import transport
from icwschat.client import HTTP, Connection
from icwschat.errors import ProtocolError, ServerUnavailable
from icwschat.session import Session
from icwschat.transport import MAX_EVENT_BYTES, RETRY_CAP, SSEParser, SSETransport

HOLD_SECONDS = 30.0
"""How long a server keeps a stream open after its event: far longer than any bound a test asserts."""
MESSAGE = {"__type": "urn:inin.com:messaging:message", "isDelta": True}
EVENT = b"data: " + json.dumps(MESSAGE).encode() + b"\n\n"
STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"

Stream = Callable[[socket.socket], None]


def icws(stream: Stream) -> Callable[[Request, socket.socket], None]:
    """A server that logs in and subscribes like ICWS and answers the event stream request with ``stream``."""

    def handle(request: Request, conn: socket.socket) -> None:
        if request.method == "POST" and request.path.startswith("/icws/connection"):
            login_reply(conn, features={"messaging": 2})
        elif request.method == "GET" and request.path.endswith("/messaging/messages"):
            stream(conn)
            # Not close(): the server's reader still holds the socket open, so no FIN would be sent.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        else:
            reply(conn, 200, {})

    return handle


def close_delimited(*parts: bytes, hold: threading.Event | None = None) -> Stream:
    """No Content-Length, no chunked encoding: the body ends when the connection does."""

    def stream(conn: socket.socket) -> None:
        conn.sendall(STREAM_HEAD + b"Connection: close\r\n\r\n")
        for part in parts:
            conn.sendall(part)
        if hold is not None:
            hold.wait(HOLD_SECONDS)

    return stream


def chunked(*parts: bytes, hold: threading.Event) -> Stream:
    def stream(conn: socket.socket) -> None:
        conn.sendall(STREAM_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        for part in parts:
            conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        hold.wait(HOLD_SECONDS)

    return stream


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of a test, so that servers holding a stream open let go of it."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def http() -> Iterator[HTTP]:
    client = HTTP()
    yield client
    client.close()


def connect(http: HTTP, server: HostileServer) -> Connection:
    session = Session(
        server=server.url,
        session_id="1001",
        csrf_token="csrf-token",
        cookie="icws_1001=cookie-value",
        user=USER,
        features={"messaging": 2},
    )
    return Connection(http, session)


def first_event_after(http: HTTP, server: HostileServer) -> tuple[list[Any] | None, float]:
    """The first thing an SSE transport delivers after the stream opened, and how long it took to come."""
    batches = SSETransport(connect(http, server), threading.Event()).batches()
    try:
        assert not next(batches)  # the stream is open, nothing delivered yet
        started = time.monotonic()
        batch = next(batches)
        return batch, time.monotonic() - started
    finally:
        batches.close()


@pytest.mark.parametrize("framing", [close_delimited, chunked])
def test_an_event_is_delivered_as_it_arrives_whatever_the_framing(
    framing: Callable[..., Stream], release: threading.Event, http: HTTP
) -> None:
    with HostileServer(icws(framing(EVENT, hold=release))) as server:
        batch, waited = first_event_after(http, server)
    assert batch == [MESSAGE]
    # Generous: it takes milliseconds; before, a close-delimited body was read to its end first.
    assert waited < HOLD_SECONDS / 3


def test_the_stream_is_asked_uncompressed_and_a_compressed_one_is_refused(http: HTTP) -> None:
    def gzipped(conn: socket.socket) -> None:
        body = gzip.compress(EVENT * 1000)
        conn.sendall(STREAM_HEAD + b"Content-Encoding: gzip\r\nConnection: close\r\n\r\n" + body)

    with HostileServer(icws(gzipped)) as server, pytest.raises(ProtocolError, match="compressed"):
        connect(http, server).open_event_stream(5.0)
    assert server.requests[0].headers["accept-encoding"] == "identity"


def test_a_silent_stream_is_a_transient_failure_that_says_so(http: HTTP, release: threading.Event) -> None:
    with HostileServer(icws(close_delimited(hold=release))) as server:
        chunks = connect(http, server).open_event_stream(0.5)
        with pytest.raises(ServerUnavailable, match=r"sent nothing, not even a keep-alive, for 0\.5 s"):
            next(chunks)


def test_a_normal_close_waits_for_the_retry_the_stream_asked_for_capped(http: HTTP) -> None:
    with HostileServer(icws(close_delimited(b"retry: 3600000\n\n", EVENT))) as server:
        batches = SSETransport(connect(http, server), threading.Event()).batches()
        assert not next(batches)
        assert next(batches) == [MESSAGE]
        with pytest.raises(ServerUnavailable, match="closed the event stream") as closed:
            next(batches)
    assert closed.value.retry_after == RETRY_CAP


# ---- the watch: a stream that delivers nothing does not count as a recovery ---------------------------


def log_in(server: HostileServer) -> None:
    env = cli_env(ICWS_PASSWORD=PASSWORD)
    assert icwschat("login", "--server", server.url, "--user", USER, env=env).code == 0


def watch_until_reopened(
    server: HostileServer, opened: list[Any], give_up_after: str
) -> tuple[int | None, str]:
    """Watch until the stream has been opened three times (or the watch ends, or 30 s pass); the watch's exit
    status by then (None: still running) and its stderr."""
    log_in(server)
    proc = spawn("watch", "1001", "--json", "--transport", "sse", "--give-up-after", give_up_after)
    try:
        deadline = time.monotonic() + 30
        while len(opened) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        status = proc.poll()
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    return status, err


def never_ending_line(conn: socket.socket) -> None:
    conn.sendall(STREAM_HEAD + b"Connection: close\r\n\r\ndata: ")
    piece = b"x" * 65536
    for _ in range(MAX_EVENT_BYTES // len(piece) + 16):
        conn.sendall(piece)


@pytest.mark.parametrize(
    "stream",
    [close_delimited(b": hello\n\n"), never_ending_line],
    ids=["closed-at-once", "never-ending-line"],
)
def test_streams_that_deliver_no_event_are_given_up_on(stream: Stream) -> None:
    with HostileServer(icws(stream)) as server:
        log_in(server)
        started = time.monotonic()
        result = icwschat("watch", "1001", "--json", "--transport", "sse", "--give-up-after", "2", timeout=40)
        took = time.monotonic() - started
    assert result.code == 5, result.err
    assert "gave up after 2 s of failures" in result.err
    assert took < 2 + 20  # the deadline plus slack for a loaded machine; before, it never ended


def test_the_stream_is_reopened_no_sooner_than_its_retry_field_asks() -> None:
    opened: list[float] = []

    def stream(conn: socket.socket) -> None:
        opened.append(time.monotonic())
        conn.sendall(STREAM_HEAD + b"Connection: close\r\n\r\nretry: 1500\n\n" + EVENT)

    with HostileServer(icws(stream)) as server:
        watch_until_reopened(server, opened, give_up_after="60")
    assert len(opened) >= 3
    # The backoff alone would wait at most 1 s after the first close (an event came: attempt 1).
    assert all(later - earlier >= 1.5 for earlier, later in itertools.pairwise(opened))


@pytest.mark.parametrize(
    ("sent", "proven"),
    [(b": ping\n\n", True), (b"data: " + b"x" * 65536, False)],
    ids=["in-step", "mid-line"],
)
def test_a_stream_that_stays_up_in_step_counts_as_a_reply(http: HTTP, sent: bytes, proven: bool) -> None:
    with HostileServer(icws(close_delimited(sent))) as server:
        stream = SSETransport(connect(http, server), threading.Event(), proven_after=0.0)
        delivered: list[list[Any] | None] = []
        with pytest.raises(ServerUnavailable, match="closed the event stream"):
            delivered.extend(stream.batches())
    assert delivered == ([None, []] if proven else [None])


def test_a_quiet_chat_whose_streams_are_cut_is_not_given_up_on() -> None:
    """A stream that stays up in step for the whole give-up window shows the server is not failing, even
    with nothing to deliver: a proxy cutting long requests must not end a watch on a quiet chat."""
    opened: list[int] = []

    def stream(conn: socket.socket) -> None:
        opened.append(len(opened) + 1)
        conn.sendall(STREAM_HEAD + b"Connection: close\r\n\r\n")
        if len(opened) == 1:
            conn.sendall(EVENT)  # then cut: the failure clock starts
            return
        for _ in range(16):  # 4 s of keep-alives, twice the give-up window, then cut again
            conn.sendall(b": ping\n\n")
            time.sleep(0.25)

    with HostileServer(icws(stream)) as server:
        status, err = watch_until_reopened(server, opened, give_up_after="2")
    assert len(opened) >= 3 and status is None, err


# ---- the parser: linear, bounded ----------------------------------------------------------------------


EOL = transport._EOL


class CountingEOL:
    """Stands in for the parser's line-end pattern and counts the characters it is asked to scan."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.scanned = 0

    def search(self, text: str, pos: int = 0) -> re.Match[str] | None:
        match = self.pattern.search(text, pos)
        self.scanned += (match.end() if match else len(text)) - pos
        return match

    def finditer(self, text: str, pos: int = 0) -> Iterator[re.Match[str]]:
        self.scanned += len(text) - pos
        return self.pattern.finditer(text, pos)


def scanned_for_unfinished_line(monkeypatch: pytest.MonkeyPatch, chunks: int) -> int:
    counter = CountingEOL(EOL)
    monkeypatch.setattr(transport, "_EOL", counter)
    parser = SSEParser()
    parser.feed(b"data: ")
    for _ in range(chunks):
        assert parser.feed(b"x" * 1000) == []
    return counter.scanned


def test_a_line_that_never_ends_costs_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    small = scanned_for_unfinished_line(monkeypatch, 200)
    large = scanned_for_unfinished_line(monkeypatch, 800)
    assert large <= 5 * small  # four times the input: linear gives 4, rescanning the buffer gives 16
    assert large <= 2 * 800 * 1000


def test_an_unfinished_line_over_the_cap_is_a_protocol_error() -> None:
    parser = SSEParser()
    piece = b"x" * (1024 * 1024)
    with pytest.raises(ProtocolError, match="larger than"):
        for _ in range(MAX_EVENT_BYTES // len(piece) + 2):
            parser.feed(piece)


def test_an_event_of_many_lines_over_the_cap_is_a_protocol_error() -> None:
    parser = SSEParser()
    line = b"data: " + b"x" * (1024 * 1024) + b"\n"
    with pytest.raises(ProtocolError, match="larger than"):
        parser.feed(line * (MAX_EVENT_BYTES // len(line) + 2))


def test_an_absurd_retry_field_is_bounded_not_a_crash() -> None:
    parser = SSEParser()
    parser.feed(b"retry: " + b"9" * 5000 + b"\n\nretry: \xd9\xa3\n\n")
    assert parser.retry_ms is not None and parser.retry_ms >= 3_600_000  # longer than any wait allowed


def test_an_event_nested_past_any_parser_is_not_json() -> None:
    """A RecursionError from the parser would end the watch with exit 1; it must be a ProtocolError, which
    the watch answers with a fresh subscription."""
    deep = b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n"

    class Stream:
        def open_event_stream(self, read_timeout: float) -> Iterator[bytes]:
            yield deep

    batches = SSETransport(Stream(), threading.Event()).batches()  # type: ignore[arg-type]
    assert next(batches) is None
    with pytest.raises(ProtocolError, match="not JSON"):
        next(batches)
