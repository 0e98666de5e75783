"""The live view as a terminal would show it, from a recording console."""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest
from builders import IID, contents_msg, line, member, members_msg, routed
from rich.console import Console

from icwschat.cache import ChatCache
from icwschat.errors import ServerUnavailable, Terminated
from icwschat.render import ViewState, build_view, print_transcript
from icwschat.sinks import WatchInfo

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)
INFO = WatchInfo((IID,), "http://127.0.0.1:8018", "agent.one", "sse")
HOSTILE = "\x1b]0;pwned\x07\x1b[2J[red]markup[/red] \u202eevil"


def console(width: int = 80, height: int = 24) -> Console:
    return Console(
        file=io.StringIO(), width=width, height=height, record=True, color_system=None, legacy_windows=False
    )


def chat(*texts: str, stamp: str = "20201029T082018Z") -> ChatCache:
    cache = ChatCache(IID)
    cache.apply(
        members_msg(
            delta=False,
            added=[
                member("sys", "IC System", 1),
                member("agent", "Agent One", 3),
                member("jane", "Jane", 4, typing=True),
            ],
        ),
        AT,
    )
    cache.apply(contents_msg(*(line("jane", t, stamp) for t in texts), delta=False), AT)
    return cache


def screen(cache: ChatCache, state: ViewState | None = None, width: int = 80, height: int = 24) -> list[str]:
    out = console(width, height)
    out.print(build_view(state or ViewState(info=INFO, connection="connected"), cache, out))
    return out.export_text().splitlines()


def test_view_shows_header_members_typing_and_transcript() -> None:
    rows = screen(chat("Hi there"))
    assert rows[0] == " icwschat  interaction 1001 · connected · sse · agent.one @ 127.0.0.1:8018"
    assert " system  IC System   agent  Agent One   customer  Jane ✎" in rows[1]
    assert "2020-10-29 08:20:18 jane: Hi there" in rows
    assert rows[-1] == "Jane is typing…"
    assert len(rows) == 23


def test_hostile_text_is_shown_inert() -> None:
    text = "\n".join(screen(chat(HOSTILE)))
    assert "\x1b" not in text and "\x07" not in text
    assert "␛]0;pwned␇␛[2J[red]markup[/red] <U+202E>evil" in text


def test_long_lines_wrap_and_multiline_text_keeps_its_breaks() -> None:
    rows = screen(chat("word " * 40, "first\nsecond"))
    assert sum(1 for r in rows if r.startswith("word") or r.strip().startswith("word")) >= 2
    second = rows.index(next(r for r in rows if r.endswith("jane: first")))
    assert rows[second + 1].strip() == "second"


def test_only_the_newest_lines_that_fit_are_shown() -> None:
    rows = screen(chat(*(f"line {n}" for n in range(5000))))
    assert len(rows) == 23
    assert rows[-3].endswith("line 4999")
    assert not any(r.endswith("line 0") for r in rows)


def test_fits_a_narrow_terminal() -> None:
    rows = screen(chat("x" * 200), width=40, height=12)
    assert len(rows) == 11
    assert all(len(r) <= 40 for r in rows)


def test_reconnecting_replaces_the_status_line() -> None:
    state = ViewState(info=INFO, connection="reconnecting (attempt 2, next in 1.5 s)", trouble=True)
    rows = screen(chat("hi"), state)
    assert rows[-1] == "reconnecting (attempt 2, next in 1.5 s)"
    assert rows[0].startswith(" icwschat  interaction 1001 · reconnecting (attempt 2, next in 1.5 s)")


def test_hostile_member_names_are_inert_in_members_and_transcript() -> None:
    cache = ChatCache(IID)
    evil = member("evil", "[bold]Boss[/bold]\x1b]52;c;cm0gLXJm\x07\u202eX\nY", 4)
    cache.apply(members_msg(delta=False, added=[evil]), AT)
    hostile_line = line("evil", "hi")
    hostile_line["chatMember"]["displayName"] = evil["displayName"]
    cache.apply(contents_msg(hostile_line, delta=False), AT)
    text = "\n".join(screen(cache))
    assert "\x1b" not in text and "\x07" not in text
    assert "[bold]Boss[/bold]␛]52;c;cm0gLXJm␇<U+202E>X␊Y" in text


def test_no_color_leaves_no_colour_codes_on_a_terminal() -> None:
    from icwschat.render import make_console

    for no_color, coloured in ((True, False), (False, True)):
        out = io.StringIO()
        terminal = make_console(out, no_color=no_color, force_terminal=True)
        terminal.print(
            build_view(ViewState(info=INFO, connection="connected"), chat("hi"), terminal, rows=10)
        )
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
    ("zone", "stamp", "shown"),
    [
        ("UTC-14", "99991231T235959Z", "9999-12-31 23:59:59Z"),
        ("UTC+12", "00010101T000000Z", "0001-01-01 00:00:00Z"),
        ("UTC+12", "99991231T235959Z", "9999-12-31 11:59:59"),
    ],
)
def test_lines_stamped_at_the_ends_of_the_calendar_are_shown(
    local_zone: Callable[[str], None], zone: str, stamp: str, shown: str
) -> None:
    local_zone(zone)
    cache = chat("edge", stamp=stamp)
    assert f"{shown} jane: edge" in screen(cache)
    out = console()
    print_transcript(out, INFO, routed(cache))
    assert f"{shown} jane: edge" in out.export_text().splitlines()


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
    from icwschat.sinks import PlainSink

    out = io.BytesIO()
    sink = PlainSink(out, io.StringIO(), encoding="latin-1")
    cache = ChatCache(IID)
    sink.update(
        cache.apply(contents_msg(line("jane", "café \x1b[2J ✓"), delta=False), AT).events, routed(cache)
    )
    assert out.getvalue().decode("latin-1").endswith(" jane: café \\u241b[2J \\u2713\n")


def final_frame(cache: ChatCache, error: BaseException | None) -> list[str]:
    """The frame a sink leaves when closed as a watch closes it: in a ``finally``, ``error`` in flight."""
    from icwschat.render import FrameSink

    out = console()
    sink = FrameSink(out)
    sink.started(INFO)
    sink.status("connected", trouble=False)
    sink.update([], routed(cache))
    with pytest.raises(type(error)) if error is not None else contextlib.nullcontext():
        try:
            if error is not None:
                raise error
        finally:
            sink.close()
    return out.export_text().splitlines()


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (KeyboardInterrupt(), "stopped"),
        (Terminated(), "stopped"),
        (ServerUnavailable("gone"), "gave up"),
    ],
)
def test_the_final_frame_says_how_the_watch_ended_and_shows_nobody_typing(
    error: BaseException | None, said: str
) -> None:
    rows = final_frame(chat("hi"), error)
    assert f" · {said} · " in rows[0]
    assert "connected" not in rows[0]
    assert rows[-1] == said
    assert not any("typing" in row or "✎" in row for row in rows)


def test_a_run_that_finished_on_its_own_keeps_its_last_status() -> None:
    """A replay that reached the end of its capture was not stopped: its frame keeps what it last said."""
    rows = final_frame(chat("hi"), None)
    assert "stopped" not in rows[0] and "gave up" not in rows[0]


def test_the_final_frame_of_an_ended_chat_says_so() -> None:
    cache = chat("hi")
    cache.ended = True
    rows = final_frame(cache, None)
    assert " · chat ended · " in rows[0]
    assert rows[-1] == "the chat has ended"
    assert not any("✎" in row for row in rows)


@pytest.mark.parametrize("width", [40, 52, 80])
def test_the_member_row_wraps_between_members_never_inside_a_name(width: int) -> None:
    cache = ChatCache(IID)
    names = ["Sue (supervisor)", "Agent One Two", "Jane Q. Customer", "Bob"]
    added = [member(f"u{n}", name, 3 if n % 2 else 4, typing=n == 2) for n, name in enumerate(names)]
    cache.apply(members_msg(delta=False, added=added), AT)
    rows = screen(cache, width=width)
    top = rows[: rows.index(next(r for r in rows if r.startswith("─")))]
    assert all(len(row) <= width for row in top)
    for n, name in enumerate(names):
        shown = f"{'agent' if n % 2 else 'customer'}  {name}{' ✎' if n == 2 else ''}"
        assert sum(shown in row for row in top) == 1, (shown, top)


def test_a_member_wider_than_the_terminal_is_cut_not_broken() -> None:
    cache = ChatCache(IID)
    cache.apply(members_msg(delta=False, added=[member("long", "x" * 60), member("bob", "Bob")]), AT)
    out = console(40)
    print_transcript(out, INFO, routed(cache))
    rows = out.export_text().splitlines()
    first = next(n for n, row in enumerate(rows) if row.startswith("members:"))
    assert rows[first].startswith("members:  customer  xxx") and rows[first].endswith("…")
    assert len(rows[first]) == 40
    assert rows[first + 1] == "          customer  Bob"


def header_rows(width: int, state: ViewState | None = None) -> list[str]:
    rows = screen(chat("hi"), state, width=width)
    return rows[: next(n for n, row in enumerate(rows) if row.startswith("members:"))]


@pytest.mark.parametrize(
    ("width", "shown"),
    [
        (300, " icwschat  interaction 1001 · connected · sse · agent.one @ http://127.0.0.1:8018"),
        (80, " icwschat  interaction 1001 · connected · sse · agent.one @ 127.0.0.1:8018"),
        (40, " icwschat  interaction 1001 · connected"),
    ],
)
def test_the_header_is_cut_by_priority(width: int, shown: str) -> None:
    assert header_rows(width) == [shown]


def test_the_interaction_and_its_state_are_always_in_the_header() -> None:
    trouble = "reconnecting (attempt 2, next in 1.5 s)"
    for width in range(40, 301):
        for state in (ViewState(info=INFO, connection="connected"), ViewState(info=INFO, connection=trouble)):
            rows = header_rows(width, state)
            assert all(len(row) <= width for row in rows)
            assert f"interaction 1001 · {state.connection}" in " ".join(row.strip() for row in rows)
            assert "…" not in "".join(rows)
