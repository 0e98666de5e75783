"""-o/--output, --color, --tail and --since: the parser and the window as units, then each end to end."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icwschat.cache import ChatCache
from icwschat.events import Event
from icwschat.simulator import SimulatorServer
from icwschat.updates import parse_messages
from icwschat.window import Window, parse_since
from tests.builders import contents_msg, line, member, members_msg, routed
from tests.conftest import cli_env, icwschat

NOW = datetime(2026, 11, 29, 15, 0, tzinfo=timezone.utc)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
ANSI = re.compile("\x1b\\[[0-9;]*m")
COMMANDS = [("transcript", "1001"), ("watch", "1001"), ("replay", "-"), ("demo",)]


# ---- the parser of DURATION|TIME -------------------------------------------------------------------


@given(st.integers(0, 10**5), st.sampled_from(sorted(UNITS)))
def test_a_duration_counts_back_from_now(count: int, unit: str) -> None:
    assert parse_since(f"{count}{unit}", NOW) == NOW - timedelta(seconds=count * UNITS[unit])


OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS))
def test_an_iso_time_with_a_zone_is_that_instant(moment: datetime) -> None:
    assert parse_since(moment.isoformat(), NOW) == moment


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(3000, 1, 1)))
def test_an_iso_time_without_a_zone_is_local(moment: datetime) -> None:
    parsed = parse_since(moment.isoformat(), NOW)
    assert parsed.tzinfo is not None
    assert parsed == moment.astimezone()


def test_a_duration_beyond_the_calendar_means_all_history() -> None:
    assert parse_since("999999999w", NOW) <= datetime(1, 1, 2, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text", ["", "10", "m", "-5m", "10 minutes", "10m5s", "yesterday", "1.5h", "2026-13-01"]
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_since(text, NOW)


# ---- the window ------------------------------------------------------------------------------------


HISTORY = [line("jane", f"h{minute}", f"20261129T14{minute:02d}00Z") for minute in range(4)]


def snapshot_then_live(iid: str = "1001") -> list[Event]:
    """A first snapshot of one member and four lines a minute apart from 14:00, then one live line."""
    cache = ChatCache(iid)
    history = [{**said, "chatMember": {**said["chatMember"], "interactionId": iid}} for said in HISTORY]
    first = cache.apply_all(
        [
            members_msg(delta=False, added=[member("jane", iid=iid)], iid=iid),
            contents_msg(*history, delta=False, iid=iid),
        ],
        NOW,
    )
    live = cache.apply(contents_msg(line("jane", "live", "20261129T100000Z", iid=iid), iid=iid), NOW)
    return first.events + live.events


def texts(events: list[Event]) -> list[str]:
    return [event.line.text for event in events if event.line is not None]


def test_tail_keeps_the_last_history_lines_and_every_live_line() -> None:
    events = snapshot_then_live()
    assert texts(Window(tail=2).filter(events)) == ["h2", "h3", "live"]
    assert texts(Window(tail=0).filter(events)) == ["live"]
    assert texts(Window(tail=10).filter(events)) == ["h0", "h1", "h2", "h3", "live"]


def test_members_pass_the_window() -> None:
    events = snapshot_then_live()
    assert [e.kind for e in Window(tail=0).filter(events)] == ["member_joined", "message"]


def test_since_leaves_out_older_history_but_not_older_live_lines() -> None:
    events = snapshot_then_live()
    since = datetime(2026, 11, 29, 14, 2, tzinfo=timezone.utc)
    assert texts(Window(since=since).filter(events)) == ["h2", "h3", "live"]
    assert texts(Window(tail=1, since=since).filter(events)) == ["h3", "live"]


def test_each_chat_has_its_own_tail() -> None:
    events = snapshot_then_live("1001") + snapshot_then_live("1002")
    assert texts(Window(tail=1).filter(events)) == ["h3", "live", "h3", "live"]


def test_no_window_passes_the_batch_itself() -> None:
    events = snapshot_then_live()
    assert Window().filter(events) is events


# ---- end to end ------------------------------------------------------------------------------------


def without_at(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events without the time they were received, which differs from run to run."""
    return [{key: value for key, value in event.items() if key != "at"} for event in events]


def settled(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events as two snapshots of one chat taken a moment apart agree on them: without the time received
    and without who is typing (the chat goes on between the two)."""
    events = without_at(events)
    for event in events:
        if "member" in event:
            event["member"] = {k: v for k, v in event["member"].items() if k != "isTyping"}
    return events


def test_transcript_json_tail_gives_the_last_history_lines(slow_sim: SimulatorServer) -> None:
    everything = icwschat("transcript", "1001", "--json")
    tail = icwschat("transcript", "1001", "--json", "--tail", "2")
    assert tail.code == 0, tail.err
    messages = [e for e in settled(everything.events()) if e["event"] == "message"]
    assert len(messages) > 2
    assert [e for e in settled(tail.events()) if e["event"] == "message"] == messages[-2:]


def test_since_in_the_future_leaves_no_history(slow_sim: SimulatorServer) -> None:
    for since in ("2999-01-01T00:00:00Z", "2999-01-01T00:00"):
        result = icwschat("transcript", "1001", "-o", "json", "--since", since)
        assert result.code == 0, result.err
        assert [e["event"] for e in result.events()] == ["member_joined"] * 3


def test_since_a_day_ago_keeps_what_the_simulator_just_said(slow_sim: SimulatorServer) -> None:
    result = icwschat("transcript", "1001", "--json", "--since", "1d")
    assert result.code == 0, result.err
    assert sum(e["event"] == "message" for e in result.events()) == 4


def test_the_window_applies_to_replay_too(tmp_path, slow_sim: SimulatorServer) -> None:  # type: ignore[no-untyped-def]
    capture = icwschat("transcript", "1001", "--raw")
    assert capture.code == 0, capture.err
    result = icwschat("replay", "-", "--tail", "1", input=capture.out)
    assert result.code == 0, result.err
    said = [text for text in result.out.splitlines() if ": " in text and " * " not in text]
    assert len(said) == 1


def test_output_json_is_the_same_as_json(slow_sim: SimulatorServer) -> None:
    short = icwschat("transcript", "1001", "--json")
    long = icwschat("transcript", "1001", "-o", "json")
    assert long.code == 0, long.err
    assert settled(long.events()) == settled(short.events())
    assert len(long.events()) == 7


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "choice",
    [("--json", "--raw"), ("-o", "plain", "--json"), ("--output", "json", "--raw"), ("-o", "live", "--json")],
)
def test_conflicting_outputs_are_a_usage_error(command: tuple[str, ...], choice: tuple[str, ...]) -> None:
    if command[0] == "replay" and "--raw" in choice:
        choice = ("-o", "plain", "--json")  # replay has no --raw: a capture is raw already
    result = icwschat(*command, *choice, input="")
    assert result.code == 2, result.err
    assert "ask for different outputs" in result.err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("option", "message"),
    [(("--tail", "-1"), "-1"), (("--since", "soon"), "'soon' is not a duration"), (("-o", "fancy"), "fancy")],
)
def test_bad_window_and_output_values_are_a_usage_error(
    command: tuple[str, ...], option: tuple[str, ...], message: str
) -> None:
    result = icwschat(*command, *option, input="")
    assert result.code == 2, result.err
    assert message in result.err


def test_the_window_and_raw_output_are_a_usage_error() -> None:
    result = icwschat("watch", "1001", "--raw", "--tail", "3")
    assert result.code == 2
    assert "raw output copies every message" in result.err


def plain_transcript(*options: str, **env: str) -> str:
    environment = cli_env(**env)
    environment.pop("FORCE_COLOR", None)
    environment.update(env)
    result = icwschat("transcript", "1001", *options, env=environment)
    assert result.code == 0, result.err
    return result.out


def test_color_always_colours_the_plain_log_in_a_pipe(slow_sim: SimulatorServer) -> None:
    coloured = plain_transcript("--color", "always")
    assert ANSI.search(coloured)
    assert ANSI.sub("", coloured).splitlines()[-1] == plain_transcript().splitlines()[-1]
    assert ANSI.search(plain_transcript(FORCE_COLOR="1"))


def test_no_color_or_never_or_a_pipe_carry_no_ansi(slow_sim: SimulatorServer) -> None:
    for out in (
        plain_transcript(),
        plain_transcript("--color", "never", FORCE_COLOR="1"),
        plain_transcript(NO_COLOR="1", FORCE_COLOR="1"),
        plain_transcript("--color", "auto", FORCE_COLOR="1"),
    ):
        assert "\x1b" not in out
        assert "Welcome" in out or ": " in out
    assert ANSI.search(plain_transcript("--color", "always", NO_COLOR="1"))  # the option wins


def test_live_without_a_terminal_is_the_plain_log(slow_sim: SimulatorServer) -> None:
    def said(out: str) -> list[str]:
        """The chat's four lines of history: a join's time is when it was seen, which differs from run to
        run, and the chat goes on between the three transcripts, which may catch later lines too."""
        return [text for text in out.splitlines() if " * " not in text][:4]

    live = said(plain_transcript("-o", "live"))
    assert live == said(plain_transcript("-o", "plain")) == said(plain_transcript())
    assert len(live) == 4


def test_the_view_draws_only_the_windowed_lines() -> None:
    import io

    from icwschat.render import FrameSink, make_console
    from icwschat.sinks import WatchInfo, Windowed

    out = io.StringIO()
    sink = Windowed(FrameSink(make_console(out, no_color=True, force_terminal=True)), Window(tail=1))
    sink.started(WatchInfo(("1001",), "server", "user", "replay"))
    cache = ChatCache("1001")
    for batch in ([members_msg(delta=False, added=[member("jane")])], [contents_msg(*HISTORY, delta=False)]):
        sink.update(cache.apply_all(batch, NOW).events, routed(cache))
    sink.close()
    assert "h3" in out.getvalue()
    assert "h2" not in out.getvalue()
    assert len(cache.transcript) == 4  # the cache itself keeps everything


def test_a_coloured_plain_log_keeps_server_text_inert() -> None:
    import io

    from icwschat.sinks import ColourPlainSink

    out = io.BytesIO()
    cache = ChatCache("1001")
    hostile = "\x1b[31mevil\x1b]0;title\x07"
    batch = [
        members_msg(delta=False, added=[member("x", hostile)]),
        contents_msg(line("x", hostile), delta=False),
    ]
    ColourPlainSink(out, io.StringIO()).update(cache.apply_all(batch, NOW).events, routed(cache))
    written = out.getvalue().decode()
    assert ANSI.search(written)
    assert "\x1b[31m" not in written and "\x1b]" not in written and "\x07" not in written


def test_a_window_keeps_no_lines_unless_a_transcript_asks() -> None:
    import io

    from icwschat.router import Router
    from icwschat.sinks import JSONSink, Windowed

    watching = Windowed(JSONSink(io.BytesIO(), io.StringIO()), Window(tail=1))
    router = Router(["1001"])
    for batch in ([members_msg(delta=False, added=[member("jane")])], [contents_msg(*HISTORY, delta=False)]):
        updates, problems = parse_messages(batch)
        watching.update(router.apply_updates(updates, NOW, problems).events, router)
    assert watching.lines is None  # a queue of chats going on for days would otherwise grow without bound
    assert watching.view() is router
