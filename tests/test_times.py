"""Times in text output: local with the date for lines not from today, UTC with --utc; joins said once."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from builders import IID, contents_msg, line, member, members_msg, routed
from conftest import cli_env, icwschat
from rich.console import Console

from icwschat.cache import ChatCache
from icwschat.render import FrameSink, print_transcript
from icwschat.sinks import Clock, PlainSink, WatchInfo

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)
INFO = WatchInfo((IID,), "http://127.0.0.1:8018", "agent.one", "sse")
TODAY = "20261129T082018Z"
OLDER = "20261127T082018Z"
LATE = "20261128T233000Z"
"""Yesterday in UTC, but today two hours east of it."""


@pytest.fixture
def east(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local zone two hours east of UTC (POSIX spelling, no time zone database needed)."""
    monkeypatch.setenv("TZ", "UTC-2")
    time.tzset()
    yield
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def at(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


@pytest.mark.usefixtures("east")
@pytest.mark.parametrize(
    ("utc", "stamp", "shown"),
    [
        (False, TODAY, "10:20:18"),
        (False, OLDER, "2026-11-27 10:20:18"),
        (False, LATE, "01:30:00"),
        (True, TODAY, "08:20:18Z"),
        (True, OLDER, "2026-11-27 08:20:18Z"),
        (True, LATE, "2026-11-28 23:30:00Z"),
    ],
)
def test_the_clock_shows_the_date_only_for_other_days_in_its_zone(utc: bool, stamp: str, shown: str) -> None:
    assert Clock(utc=utc, now=lambda: NOW)(at(stamp)) == shown


@pytest.mark.usefixtures("east")
@pytest.mark.parametrize(
    ("utc", "shown"),
    [
        (False, ["2026-11-27 10:20:18 jane: old", "10:20:18 jane: new"]),
        (True, ["2026-11-27 08:20:18Z jane: old", "08:20:18Z jane: new"]),
    ],
)
def test_the_plain_log_the_view_and_the_transcript_show_local_or_utc_times(
    utc: bool, shown: list[str]
) -> None:
    clock = Clock(utc=utc, now=lambda: NOW)
    cache = ChatCache(IID)
    events = cache.apply(members_msg(delta=False, added=[member("jane", "Jane")]), NOW).events
    events += cache.apply(
        contents_msg(line("jane", "old", OLDER), line("jane", "new", TODAY), delta=False), NOW
    ).events

    out = io.BytesIO()
    PlainSink(out, io.StringIO(), clock=clock).update(events, routed(cache))
    assert [text for text in out.getvalue().decode().splitlines() if "jane: " in text] == shown

    view = Console(file=io.StringIO(), width=80, height=24, record=True, color_system=None)
    sink = FrameSink(view, clock)
    sink.started(INFO)
    sink.update(events, routed(cache))
    rows = view.export_text().splitlines()
    assert [row for row in rows if "jane: " in row] == shown

    printed = Console(file=io.StringIO(), width=80, record=True, color_system=None)
    print_transcript(printed, INFO, routed(cache), clock)
    rows = printed.export_text().splitlines()
    assert [row for row in rows if "jane: " in row] == shown


def test_utc_reaches_the_output_from_the_command_line_and_json_stays_utc(tmp_path: Path) -> None:
    import json

    capture = tmp_path / "chat.ndjson"
    messages = [
        members_msg(delta=False, added=[member("jane", "Jane")]),
        contents_msg(line("jane", "hello", OLDER), delta=False),
    ]
    capture.write_text("".join(json.dumps(message) + "\n" for message in messages), encoding="utf-8")
    env = cli_env(TZ="UTC-2")
    local = icwschat("replay", str(capture), env=env)
    utc = icwschat("replay", str(capture), "--utc", env=env)
    as_json = icwschat("replay", str(capture), "--json", "--utc", env=env)
    assert (local.code, utc.code, as_json.code) == (0, 0, 0), local.err + utc.err + as_json.err
    assert "2026-11-27 10:20:18 jane: hello" in local.out.splitlines()
    assert "2026-11-27 08:20:18Z jane: hello" in utc.out.splitlines()
    assert [e["timestamp"] for e in as_json.events() if e["event"] == "message"] == ["2026-11-27T08:20:18Z"]


def announce(cache: ChatCache, sink: PlainSink, *messages: dict[str, object]) -> None:
    for message in messages:
        sink.update(cache.apply(message, NOW).events, routed(cache))


def test_a_join_and_a_leave_the_server_also_announces_are_logged_once_with_the_view_labels() -> None:
    out = io.BytesIO()
    sink = PlainSink(out, io.StringIO(), clock=Clock(now=lambda: NOW))
    cache = ChatCache(IID)
    announce(
        cache,
        sink,
        members_msg(delta=False, added=[member("sys", "IC System", 1), member("jane", "Jane", 4)]),
        members_msg(added=[member("sue", "Sue (supervisor)", 3)]),
        contents_msg(line("sys", "Sue (supervisor) has joined the conversation.", TODAY, kind=1)),
        contents_msg(line("sys", "Please hold.", TODAY, kind=1)),
        members_msg(removed=[member("sue", "Sue (supervisor)", 3)]),
        contents_msg(line("sys", "Sue (supervisor) has left the conversation.", TODAY, kind=1)),
        members_msg(added=[member("bob", "Bob", 3)]),
    )
    log = out.getvalue().decode().splitlines()
    # A member event carries no server time (ICWS sends none): it shows when it was seen.
    assert log == [
        "10:00:00 * IC System (system) is here",
        "10:00:00 * Jane (customer) is here",
        "10:00:00 * Sue (supervisor) (agent) joined",
        "08:20:18 sys: Please hold.",
        "10:00:00 * Sue (supervisor) left",
        "10:00:00 * Bob (agent) joined",
    ]


def test_the_demo_logs_each_join_once() -> None:
    result = icwschat("demo", "--speed", "20", "-o", "plain")
    assert result.code == 0, result.err
    sue = [text for text in result.out.splitlines() if "Sue (supervisor)" in text and "joined" in text]
    assert len(sue) == 1 and sue[0].endswith("* Sue (supervisor) (agent) joined"), result.out
    assert "* Jane (customer) is here" in result.out
