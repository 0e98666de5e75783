"""The view as a terminal shows it: lines printed into the scrollback, under a live footer; in-process,
through a recording console or a pyte terminal fed what rich writes."""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pyte
import pytest
from builders import IID, contents_msg, line, member, members_msg, routed
from rich.console import Console

from icwschat.cache import ChatCache
from icwschat.errors import ServerUnavailable, Terminated
from icwschat.events import Event
from icwschat.render import FrameSink, LiveSink, ViewState, header, member_rows, print_transcript, tag
from icwschat.router import Queue, Router
from icwschat.sinks import Clock, ColourPlainSink, PlainSink, WatchInfo
from icwschat.updates import parse_messages

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)
INFO = WatchInfo((IID,), "http://127.0.0.1:8018", "agent.one", "sse")
HOSTILE = "\x1b]0;pwned\x07\x1b[2J[red]markup[/red] \u202eevil"
PEOPLE = [
    member("sys", "IC System", 1),
    member("agent", "Agent One", 3),
    member("jane", "Jane", 4, typing=True),
]


def console(width: int = 80, height: int = 24) -> Console:
    return Console(
        file=io.StringIO(), width=width, height=height, record=True, color_system=None, legacy_windows=False
    )


class Chats:
    """A router the test feeds ICWS messages, as the pipeline does."""

    def __init__(self, ids: tuple[str, ...] = (IID,), queue: Queue | None = None) -> None:
        self.router = Router(ids, queue=queue)
        self.events: list[Event] = []
        """Every event so far."""

    def apply(self, *messages: dict[str, Any], at: datetime = AT) -> list[Event]:
        updates, problems = parse_messages(list(messages))
        events = self.router.apply_updates(updates, at, problems).events
        self.events += events
        return events


def chat(*texts: str, stamp: str = "20201029T082018Z") -> Chats:
    chats = Chats()
    chats.apply(members_msg(delta=False, added=PEOPLE))
    chats.apply(contents_msg(*(line("jane", t, stamp) for t in texts), delta=False))
    return chats


def shown(chats: Chats, width: int = 80, height: int = 24) -> list[str]:
    """What ``replay`` on a terminal leaves of every event so far: every line, then the footer."""
    out = console(width, height)
    sink = FrameSink(out)
    sink.started(INFO)
    sink.status("connected", trouble=False)
    sink.update(chats.events, chats.router)
    sink.close()
    return out.export_text().splitlines()


def footer(chats: Chats, state: ViewState | None = None, width: int = 80, height: int = 24) -> list[str]:
    """The footer alone, as the view draws it for ``chats``."""
    out = console(width, height)
    sink = FrameSink(out)
    sink.started(INFO)
    if state is not None:
        sink.state = state
    sink.chats = chats.router
    for part in sink.footer(width, height):
        out.print(part)
    return out.export_text().splitlines()


def test_every_line_is_printed_then_the_footer() -> None:
    chats = Chats()
    chats.apply(members_msg(delta=False, added=PEOPLE))
    chats.apply(contents_msg(line("jane", "Hi there"), delta=False))
    rows = shown(chats)
    assert rows[:4] == [
        "2026-01-01 00:00:00 * IC System (system) is here",
        "2026-01-01 00:00:00 * Agent One (agent) is here",
        "2026-01-01 00:00:00 * Jane (customer) is here",
        "2020-10-29 08:20:18 jane: Hi there",
    ]
    assert rows[4] == "─" * 80
    assert rows[5] == " icwschat  interaction 1001 · connected · sse · agent.one @ 127.0.0.1:8018"
    assert rows[6] == "members:  system  IC System   agent  Agent One   customer  Jane ✎"
    assert rows[7] == "Jane is typing…"
    assert len(rows) == 8


def test_hostile_text_is_shown_inert() -> None:
    chats = Chats()
    chats.apply(members_msg(delta=False, added=PEOPLE), contents_msg(line("jane", HOSTILE), delta=False))
    text = "\n".join(shown(chats))
    assert "\x1b" not in text and "\x07" not in text
    assert "␛]0;pwned␇␛[2J[red]markup[/red] <U+202E>evil" in text


def said_rows(rows: list[str], first: str) -> list[str]:
    """The rows of the line that begins with ``first``, down to the next line or the footer."""
    start = next(n for n, row in enumerate(rows) if first in row)
    end = next((n for n in range(start + 1, len(rows)) if re.match("[0-9─]", rows[n])), len(rows))
    return [row.rstrip() for row in rows[start:end]]


@pytest.mark.parametrize("width", [40, 80, 300])
def test_wrapped_and_explicit_breaks_continue_under_the_text(width: int) -> None:
    chats = Chats()
    text = "word " * 100 + "\nsecond\nthird"
    events = chats.apply(contents_msg(line("jane", text, stamp="20261129T082018Z"), delta=False))
    clock = Clock(now=lambda: datetime(2026, 11, 29, 9, tzinfo=timezone.utc))
    out = console(width)
    sink = FrameSink(out, clock)
    sink.started(INFO)
    sink.update(events, chats.router)
    rows = said_rows(out.export_text().splitlines(), "jane: word")
    indent = len("08:20:18 jane: ")
    assert rows[0].startswith("08:20:18 jane: word word")
    assert all(len(row) <= width for row in rows)
    assert all(row.startswith(" " * indent) and row[indent] != " " for row in rows[1:])
    assert [row.strip() for row in rows[-2:]] == ["second", "third"]
    assert " ".join(row[indent:] for row in rows).split() == text.split()


def test_on_a_terminal_too_narrow_for_its_prefix_the_text_goes_below_it() -> None:
    chats = Chats()
    long_name = member("jane", "Jane Quentin Customer-Smith", 4)
    events = chats.apply(members_msg(delta=False, added=[long_name]))
    said = line("jane", "first words of a line long enough to wrap\nnext")
    said["chatMember"]["displayName"] = long_name["displayName"]
    events += chats.apply(contents_msg(said, delta=False))
    rows = said_rows(shown(chats, width=40), "08:20:18 Jane Quentin")
    assert rows[0] == "2020-10-29 08:20:18 Jane Quentin"
    assert rows[1] == "Customer-Smith:"
    assert rows[2:] == ["    first words of a line long enough to", "    wrap", "    next"]


def test_the_same_layout_in_the_plain_log_on_a_terminal_and_in_a_pipe() -> None:
    from icwschat.render import ConsoleScreen

    chats = Chats()
    events = chats.apply(contents_msg(line("jane", "word " * 12 + "\nnext"), delta=False))
    on_terminal, in_pipe = io.BytesIO(), io.BytesIO()
    PlainSink(on_terminal, io.StringIO(), screen=ConsoleScreen(console(50))).update(events, chats.router)
    PlainSink(in_pipe, io.StringIO()).update(events, chats.router)
    assert on_terminal.getvalue().decode().splitlines() == [
        "2020-10-29 08:20:18 jane: word word word word word",
        "                          word word word word word",
        "                          word word",
        "                          next",
    ]
    assert in_pipe.getvalue().decode().splitlines() == [
        "2020-10-29 08:20:18 jane: " + "word " * 12,
        "                          next",
    ]
    view = shown(chats, width=50)
    assert said_rows(view, "jane: word") == on_terminal.getvalue().decode().splitlines()


def test_a_narrow_terminal_fits_every_row() -> None:
    rows = shown(chat("x" * 200), width=40, height=12)
    assert all(len(r) <= 40 for r in rows)
    assert sum("x" * 10 in r for r in rows) >= 6


def test_reconnecting_replaces_the_status_line() -> None:
    trouble = "reconnecting (attempt 2, next in 1.5 s)"
    rows = footer(chat("hi"), ViewState(info=INFO, connection=trouble, trouble=True))
    assert rows[-1] == trouble
    assert rows[1].startswith(f" icwschat  interaction 1001 · {trouble}")


def test_hostile_member_names_are_inert_in_members_and_lines() -> None:
    chats = Chats()
    evil = member("evil", "[bold]Boss[/bold]\x1b]52;c;cm0gLXJm\x07\u202eX\nY", 4)
    hostile_line = line("evil", "hi")
    hostile_line["chatMember"]["displayName"] = evil["displayName"]
    chats.apply(members_msg(delta=False, added=[evil]), contents_msg(hostile_line, delta=False))
    rows = shown(chats)
    text = "\n".join(rows)
    assert "\x1b" not in text and "\x07" not in text
    assert (
        sum("[bold]Boss[/bold]␛]52;c;cm0gLXJm␇<U+202E>X␊Y" in row for row in rows) == 3
    )  # join, line, member


def test_no_color_leaves_no_colour_codes_on_a_terminal() -> None:
    from icwschat.render import make_console

    for no_color, coloured in ((True, False), (False, True)):
        out = io.StringIO()
        terminal = make_console(out, no_color=no_color, force_terminal=True)
        sink = FrameSink(terminal)
        sink.started(INFO)
        chats = Chats()
        sink.update(
            chats.apply(members_msg(delta=False, added=PEOPLE), contents_msg(line("jane", "hi"))),
            chats.router,
        )
        sink.close()
        params = {
            int(p) for sgr in re.findall(r"\x1b\[([0-9;]*)m", out.getvalue()) for p in sgr.split(";") if p
        }
        colours = {p for p in params if 30 <= p <= 49 or 90 <= p <= 107}
        assert bool(colours) is coloured


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Switch this process's local time zone (a POSIX TZ string); UTC again afterwards."""

    def use(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield use
    use("UTC")


@pytest.mark.parametrize(
    ("zone", "stamp", "shown_as"),
    [
        ("UTC-14", "99991231T235959Z", "9999-12-31 23:59:59Z"),
        ("UTC+12", "00010101T000000Z", "0001-01-01 00:00:00Z"),
        ("UTC+12", "99991231T235959Z", "9999-12-31 11:59:59"),
    ],
)
def test_lines_stamped_at_the_ends_of_the_calendar_are_shown(
    local_zone: Callable[[str], None], zone: str, stamp: str, shown_as: str
) -> None:
    local_zone(zone)
    chats = Chats()
    chats.apply(
        members_msg(delta=False, added=PEOPLE), contents_msg(line("jane", "edge", stamp), delta=False)
    )
    assert f"{shown_as} jane: edge" in shown(chats)
    out = console()
    print_transcript(out, INFO, chats.router)
    assert f"{shown_as} jane: edge" in out.export_text().splitlines()


@pytest.mark.parametrize(
    ("term", "encoding", "drawn"),
    [
        ("xterm-256color", "utf-8", True),
        ("xterm-256color", "UTF8", True),
        ("dumb", "utf-8", False),
        ("xterm-256color", "ascii", False),
        ("xterm-256color", "latin-1", False),
    ],
)
def test_the_view_is_drawn_only_on_terminals_that_move_the_cursor_and_take_utf8(
    term: str, encoding: str, drawn: bool
) -> None:
    from icwschat.render import draws_views

    file = io.TextIOWrapper(io.BytesIO(), encoding=encoding)
    terminal = Console(file=file, force_terminal=True, _environ={"TERM": term})
    assert draws_views(terminal) is drawn


def test_the_plain_log_writes_what_a_terminal_encoding_lacks_as_escapes() -> None:
    out = io.BytesIO()
    sink = PlainSink(out, io.StringIO(), encoding="latin-1")
    cache = ChatCache(IID)
    sink.update(
        cache.apply(contents_msg(line("jane", "café \x1b[2J ✓"), delta=False), AT).events, routed(cache)
    )
    assert out.getvalue().decode("latin-1").endswith(" jane: café \\u241b[2J \\u2713\n")


def final_footer(chats: Chats, error: BaseException | None) -> list[str]:
    """The footer a sink leaves when closed as a watch closes it: in a ``finally``, ``error`` in flight."""
    out = console()
    sink = FrameSink(out)
    sink.started(INFO)
    sink.status("connected", trouble=False)
    sink.update([], chats.router)
    with pytest.raises(type(error)) if error is not None else contextlib.nullcontext():
        try:
            if error is not None:
                raise error
        finally:
            sink.close()
    rows = out.export_text().splitlines()
    return rows[next(n for n, row in enumerate(rows) if row.startswith("─")) :]


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (KeyboardInterrupt(), "stopped"),
        (Terminated(), "stopped"),
        (ServerUnavailable("gone"), "gave up"),
    ],
)
def test_the_last_footer_says_how_the_watch_ended_and_shows_nobody_typing(
    error: BaseException | None, said: str
) -> None:
    rows = final_footer(chat("hi"), error)
    assert f" · {said} · " in rows[1]
    assert "connected" not in rows[1]
    assert rows[-1] == said
    assert not any("typing" in row or "✎" in row for row in rows)


def test_a_run_that_finished_on_its_own_keeps_its_last_status() -> None:
    """A replay that reached the end of its capture was not stopped: its footer keeps what it last said."""
    rows = final_footer(chat("hi"), None)
    assert "stopped" not in rows[1] and "gave up" not in rows[1]


def test_the_last_footer_of_an_ended_chat_says_so() -> None:
    chats = chat("hi")
    chats.router.chats[IID].cache.ended = True
    rows = final_footer(chats, None)
    assert " · chat ended · " in rows[1]
    assert rows[-1] == "the chat has ended"
    assert not any("✎" in row for row in rows)


def named(*names: str) -> Chats:
    chats = Chats()
    added = [member(f"u{n}", name, 3 if n % 2 else 4, typing=n == 2) for n, name in enumerate(names)]
    chats.apply(members_msg(delta=False, added=added))
    return chats


@pytest.mark.parametrize("width", [40, 52, 80])
def test_the_member_row_wraps_between_members_never_inside_a_name(width: int) -> None:
    names = ["Sue (supervisor)", "Agent One Two", "Jane Q. Customer", "Bob"]
    top = [row for row in footer(named(*names), width=width) if row.startswith(("members:", " "))]
    assert all(len(row) <= width for row in top)
    for n, name in enumerate(names):
        shown_as = f"{'agent' if n % 2 else 'customer'}  {name}{' ✎' if n == 2 else ''}"
        assert sum(shown_as in row for row in top) == 1, (shown_as, top)


def test_a_member_wider_than_the_terminal_is_cut_not_broken() -> None:
    chats = Chats()
    chats.apply(members_msg(delta=False, added=[member("long", "x" * 60), member("bob", "Bob")]))
    out = console(40)
    print_transcript(out, INFO, chats.router)
    rows = out.export_text().splitlines()
    first = next(n for n, row in enumerate(rows) if row.startswith("members:"))
    assert rows[first].startswith("members:  customer  xxx") and rows[first].endswith("…")
    assert len(rows[first]) == 40
    assert rows[first + 1] == "          customer  Bob"


def test_members_that_would_fill_the_screen_are_cut_with_a_count() -> None:
    chats = named(*(f"Member {n:02d}" for n in range(60)))
    rows = footer(chats, width=80, height=24)
    assert len(rows) <= 24 // 3
    assert rows[-2].endswith(" more")
    shown_names = sum(row.count("Member ") for row in rows[:-1])  # not the typing status
    assert shown_names + int(rows[-2].rsplit("+", 1)[1].split()[0]) == 60


def header_rows(width: int, state: ViewState | None = None) -> list[str]:
    rows = footer(chat("hi"), state or ViewState(info=INFO, connection="connected"), width=width)
    return rows[1 : next(n for n, row in enumerate(rows) if row.startswith("members:"))]


@pytest.mark.parametrize(
    ("width", "shown_as"),
    [
        (300, " icwschat  interaction 1001 · connected · sse · agent.one @ http://127.0.0.1:8018"),
        (80, " icwschat  interaction 1001 · connected · sse · agent.one @ 127.0.0.1:8018"),
        (40, " icwschat  interaction 1001 · connected"),
    ],
)
def test_the_header_is_cut_by_priority(width: int, shown_as: str) -> None:
    assert header_rows(width) == [shown_as]


def test_the_interaction_and_its_state_are_always_in_the_header() -> None:
    trouble = "reconnecting (attempt 2, next in 1.5 s)"
    for width in range(40, 301):
        for state in (ViewState(info=INFO, connection="connected"), ViewState(info=INFO, connection=trouble)):
            text = header(state, width)
            rows = text.wrap(console(width), width)
            assert all(row.cell_len <= width for row in rows)
            assert f"interaction 1001 · {state.connection}" in " ".join(row.plain.strip() for row in rows)
            assert "…" not in text.plain


# ---- the live view in a terminal emulator --------------------------------------------------------------


class Emulated:
    """A LiveSink writing to a pyte terminal with a scrollback (what a terminal keeps above its screen)."""

    def __init__(self, width: int = 80, height: int = 24, info: WatchInfo = INFO, now: datetime = AT) -> None:
        self.out = io.StringIO()
        self.console = Console(
            file=self.out,
            width=width,
            height=height,
            force_terminal=True,
            color_system=None,
            legacy_windows=False,
        )
        self.screen = pyte.HistoryScreen(width, height, history=100_000)
        self.stream = pyte.Stream(self.screen)
        self.sink = LiveSink(self.console, io.StringIO(), Clock(now=lambda: now))
        self.sink.started(info)
        self.sink.status("connected", trouble=False)

    def update(self, events: list[Event], router: Router) -> None:
        self.sink.update(events, router)

    def resize(self, width: int, height: int) -> None:
        self._drain()
        self.console.width = width
        self.console.height = height
        self.screen.resize(height, width)

    def _drain(self) -> None:
        self.sink.idle()  # as the watcher's tick does when nothing arrives: what waits for a frame is drawn
        written = self.out.getvalue()
        self.out.seek(0)
        self.out.truncate()
        self.stream.feed(written.replace("\n", "\r\n"))  # the terminal's output processing (ONLCR)

    @property
    def display(self) -> list[str]:
        self._drain()
        return [row.rstrip() for row in self.screen.display]

    @property
    def scrollback(self) -> list[str]:
        """Every row that scrolled off the top, then the screen."""
        self._drain()
        width = self.screen.columns
        above = ["".join(row[x].data for x in range(width)).rstrip() for row in self.screen.history.top]
        return above + self.display


def test_the_live_footer_stays_at_the_bottom_under_the_lines() -> None:
    terminal = Emulated()
    chats = Chats()
    terminal.update(chats.apply(members_msg(delta=False, added=PEOPLE)), chats.router)
    terminal.update(chats.apply(contents_msg(line("jane", "Hi there"), delta=False)), chats.router)
    rows = [row for row in terminal.display if row]
    assert rows[-5:] == [
        "2020-10-29 08:20:18 jane: Hi there",
        "─" * 80,
        " icwschat  interaction 1001 · connected · sse · agent.one @ 127.0.0.1:8018",
        "members:  system  IC System   agent  Agent One   customer  Jane ✎",
        "Jane is typing…",
    ]
    terminal.update(chats.apply(members_msg(changed=[member("jane", "Jane", 4, typing=False)])), chats.router)
    assert terminal.display.count("Jane is typing…") == 0
    assert sum(row.startswith(" icwschat") for row in terminal.scrollback) == 1  # redrawn in place


def test_every_line_stays_in_the_scrollback_after_a_long_message() -> None:
    terminal = Emulated()
    chats = Chats()
    terminal.update(chats.apply(members_msg(delta=False, added=PEOPLE)), chats.router)
    before = [f"line {n}" for n in range(30)]
    for text in before:
        terminal.update(chats.apply(contents_msg(line("jane", text))), chats.router)
    terminal.update(chats.apply(contents_msg(line("agent", "y" * 5000))), chats.router)
    terminal.update(chats.apply(contents_msg(line("jane", "after"))), chats.router)
    terminal.sink.close()
    rows = terminal.scrollback
    said = [row.split("jane: ", 1)[1] for row in rows if "jane: " in row]
    assert said == [*before, "after"]
    assert sum(map(len, re.findall("y{10,}", "".join(rows)))) == 5000
    assert sum(row.startswith(" icwschat") for row in rows) == 1


def test_a_resized_terminal_gets_the_footer_at_its_new_width() -> None:
    terminal = Emulated(100, 30)
    chats = named("Sue (supervisor)", "Agent One Two", "Jane Q. Customer", "Bob")
    terminal.update(chats.apply(contents_msg(line("u1", "hello"))), chats.router)
    assert (
        " icwschat  interaction 1001 · connected · sse · agent.one @ http://127.0.0.1:8018"
        in terminal.display
    )
    terminal.resize(40, 30)
    terminal.sink.idle()
    rows = terminal.display
    assert " icwschat  interaction 1001 · connected" in rows
    assert all(len(row) <= 40 for row in rows)
    assert sum(row.startswith("members:") for row in rows) == 1


# ---- several chats: labels and the board -------------------------------------------------------------


SUPPORT = Queue("workgroup", "Support")
QUEUE_INFO = WatchInfo((), "http://127.0.0.1:8018", "agent.one", "sse", queue=SUPPORT.label)
NOW = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)


def queue_msg(
    *added: tuple[str, dict[str, str]], delta: bool = False, removed: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "__type": "urn:inin.com:queues:queueContentsMessage",
        "subscriptionId": SUPPORT.subscription_id,
        "isDelta": delta,
        "interactionsAdded": [{"interactionId": iid, "attributes": attributes} for iid, attributes in added],
        "interactionsRemoved": list(removed),
    }


def chat_attributes(n: int, state: str = "C") -> dict[str, str]:
    return {
        "Eic_ObjectType": "Chat",
        "Eic_State": state,
        "Eic_RemoteName": f"Customer {n}",
        "Eic_UserName": "",
        "Eic_InitiationTime": "20261129T093000Z",
    }


def queue_of(count: int) -> tuple[Chats, list[Event]]:
    chats = Chats((), queue=SUPPORT)
    events = chats.apply(queue_msg(*((f"10000{n:04d}", chat_attributes(n)) for n in range(count))), at=NOW)
    return chats, events


def test_each_chat_of_several_is_labelled_in_its_colour_and_the_board_shows_them() -> None:
    chats, events = queue_of(3)
    first = "100000000"
    people = [
        member("agent", "Agent One", 3, iid=first),
        member("jane", "Jane Doe", 4, typing=True, iid=first),
    ]
    events += chats.apply(
        members_msg(delta=False, added=people, iid=first),
        contents_msg(line("jane", "Hi", "20261129T095900Z", iid=first), delta=False, iid=first),
        at=NOW,
    )
    terminal = Emulated(100, 30, info=QUEUE_INFO, now=NOW + timedelta(minutes=5))
    terminal.update(events, chats.router)
    rows = terminal.display
    assert "[0000] 10:00:00 * chat 100000000 is here (workgroup:Support): Customer 0" in rows
    assert "[0000] 09:59:00 jane: Hi" in rows
    heading = next(
        n
        for n, row in enumerate(rows)
        if row.split() == ["chat", "state", "customer", "agent", "typing", "age", "last"]
    )
    board = [row.split() for row in rows[heading + 1 : heading + 4]]
    assert board[0] == ["0000", "connected", "Jane", "Doe", "Agent", "One", "Jane", "Doe", "35m", "10:00:00"]
    assert board[1] == ["0001", "connected", "Customer", "1", "35m"]  # nothing said there yet
    out = io.StringIO()
    colour = Console(file=out, width=100, force_terminal=True, color_system="standard")
    colour.print(tag("0000", first))
    assert "\x1b[1;" in out.getvalue()


def test_the_board_is_cut_to_a_third_of_the_screen_with_a_count() -> None:
    chats, events = queue_of(50)
    terminal = Emulated(80, 24, info=QUEUE_INFO, now=NOW)
    terminal.update(events, chats.router)
    rows = terminal.display
    start = next(n for n, row in enumerate(rows) if row.startswith("─"))
    footer_rows = rows[start:]
    assert len(footer_rows) <= 24 // 3
    more = next(row for row in footer_rows if row.endswith("more"))
    listed = sum(row.startswith("0") for row in footer_rows)
    assert listed + int(more.split("+")[1].split()[0]) == 50
    assert all(len(row) <= 80 for row in rows)


def test_a_chat_leaving_the_queue_is_said_and_leaves_the_board() -> None:
    chats, events = queue_of(2)
    terminal = Emulated(100, 30, info=QUEUE_INFO, now=NOW)
    terminal.update(events, chats.router)
    terminal.update(chats.apply(queue_msg(delta=True, removed=("100000001",)), at=NOW), chats.router)
    rows = terminal.display
    assert "[0001] 10:00:00 * chat 100000001 removed (workgroup:Support)" in rows
    assert not any(row.startswith("0001 ") for row in rows)


def test_the_plain_log_of_several_chats_marks_each_line_with_its_chat() -> None:
    chats, events = queue_of(2)
    second = "100000001"
    events += chats.apply(
        contents_msg(line("jane", "Hi", "20261129T095900Z", iid=second), delta=False, iid=second), at=NOW
    )
    plain, coloured = io.BytesIO(), io.BytesIO()
    sinks = [
        PlainSink(plain, io.StringIO(), clock=Clock(now=lambda: NOW)),
        ColourPlainSink(coloured, io.StringIO(), clock=Clock(now=lambda: NOW)),
    ]
    for sink in sinks:
        sink.started(QUEUE_INFO)
        sink.update(events, chats.router)
    removed = chats.apply(queue_msg(delta=True, removed=("100000000",)), at=NOW)
    for sink in sinks:
        sink.update(removed, chats.router)
    assert plain.getvalue().decode().splitlines() == [
        "[0000] 10:00:00 * chat 100000000 is here (workgroup:Support): Customer 0",
        "[0001] 10:00:00 * chat 100000001 is here (workgroup:Support): Customer 1",
        "[0001] 09:59:00 jane: Hi",
        "[0000] 10:00:00 * chat 100000000 removed (workgroup:Support)",
    ]
    assert re.sub("\x1b\\[[0-9;]*m", "", coloured.getvalue().decode()) == plain.getvalue().decode()


def test_one_chat_has_no_label() -> None:
    chats = Chats()
    chats.apply(contents_msg(line("jane", "Hi"), delta=False))
    assert shown(chats)[0] == "2020-10-29 08:20:18 jane: Hi"


def test_a_badge_colours_its_word_not_the_name_beside_it() -> None:
    out = io.StringIO()
    terminal = Console(file=out, width=80, force_terminal=True, color_system="standard", legacy_windows=False)
    terminal.print(*member_rows(named("Sue").router.chats[IID].cache, 80))
    badge_end = out.getvalue().index(" customer ") + len(" customer ")
    assert out.getvalue()[badge_end:].startswith("\x1b[0m")  # the badge's background ends with its word


def test_a_notice_is_printed_above_the_view_inert() -> None:
    from icwschat.render import FrameSink

    out = console()
    sink = FrameSink(out)
    sink.started(INFO)
    sink.notice("the server lists only part of queue x \x1b[2J\x1b]0;pwned\x07")
    shown = out.export_text()
    assert "icwschat: the server lists only part of queue x" in shown
    assert "\x1b" not in shown and "\x07" not in shown


def test_the_plain_log_on_a_dumb_terminal_wraps_at_its_real_width(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from icwschat.render import ConsoleScreen

    class Terminal(io.StringIO):
        def fileno(self) -> int:
            return 99

    dumb = Console(file=Terminal(), force_terminal=True, _environ={"TERM": "dumb"})
    assert dumb.is_dumb_terminal and dumb.width == 80
    monkeypatch.setattr(os, "get_terminal_size", lambda fd: os.terminal_size((132, 40)))
    assert ConsoleScreen(dumb).width() == 132
