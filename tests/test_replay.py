"""`replay`: a capture from `watch --raw` played offline through the same pipeline, as a user runs it."""

from __future__ import annotations

import gc
import io
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from builders import contents_msg, line, member, members_msg
from conftest import cli_env, icwschat, spawn
from expected import expected_events, project
from hypothesis import given, settings
from hypothesis import strategies as st
from test_live_terminal import run_in_terminal

from bench.capture import messages
from icwschat import jsonio
from icwschat import replay as replay_module
from icwschat.errors import InteractionUnavailable
from icwschat.replay import ReplayReport, parse_capture, replay
from icwschat.simulator import SimulatorServer
from icwschat.sinks import JSONSink
from icwschat.updates import parse_messages


@pytest.fixture
def capture(logged_in: SimulatorServer, tmp_path: Path) -> Path:
    """A real capture: `watch --raw` of chat 1001 against the simulator."""
    result = icwschat("watch", "1001", "--raw", "--interval", "0.1")
    assert result.code == 0, result.err
    path = tmp_path / "1001.ndjson"
    path.write_text(result.out, encoding="utf-8")
    return path


def test_replay_json_gives_the_events_watch_json_gives(logged_in: SimulatorServer, capture: Path) -> None:
    result = icwschat("replay", str(capture), "--json")
    assert result.code == 0, result.err
    assert result.err == ""
    assert project(result.events()) == expected_events(logged_in.simulator.scenarios["1001"])


def test_replay_reads_standard_input(logged_in: SimulatorServer, capture: Path) -> None:
    result = icwschat("replay", "-", "--json", input=capture.read_text(encoding="utf-8"))
    assert result.code == 0, result.err
    assert project(result.events()) == expected_events(logged_in.simulator.scenarios["1001"])


def test_replay_into_a_pipe_writes_the_plain_log(capture: Path) -> None:
    result = icwschat("replay", str(capture))
    assert result.code == 0
    assert "Jane: Hi, I need help with order 4711." in result.out
    assert "␛]0;pwned␇" in result.out
    assert "\x1b" not in result.out


def test_replay_on_a_terminal_prints_the_final_frame(capture: Path) -> None:
    screen, code = run_in_terminal(["replay", str(capture)], until="the chat has ended")
    text = "\n".join(screen.display)
    assert code == 0
    assert "interaction 1001" in text and "replay" in text and capture.name in text
    assert "Jane Doe: ok" in text and "Thank you, bye!" in text
    assert "␛]0;pwned␇" in text and screen.title == ""


def test_a_capture_cut_short_is_replayed_up_to_the_cut(capture: Path) -> None:
    lines = capture.read_text(encoding="utf-8").splitlines(keepends=True)
    cut = capture.with_name("cut.ndjson")
    cut.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2], encoding="utf-8")
    whole = icwschat("replay", str(capture), "--json").events()
    result = icwschat("replay", str(cut), "--json")
    assert result.code == 0
    assert "skipped 1 line that held no JSON (first: line 6)" in result.err
    assert 0 < len(result.events()) < len(whole)
    assert [e["event"] for e in result.events()] == [e["event"] for e in whole[: len(result.events())]]


def test_a_capture_of_several_chats_plays_all_unless_interaction_picks_one(
    logged_in: SimulatorServer, capture: Path
) -> None:
    other = icwschat("watch", "1002", "--raw", "--interval", "0.1").out
    both = capture.with_name("both.ndjson")
    both.write_text(capture.read_text(encoding="utf-8") + other, encoding="utf-8")
    every = icwschat("replay", str(both), "--json").events()
    chosen = icwschat("replay", str(both), "--json", "--interaction", "1002")
    for iid in ("1001", "1002"):
        played = [event for event in every if event["interactionId"] == iid]
        assert project(played) == expected_events(logged_in.simulator.scenarios[iid])
    assert project(chosen.events()) == expected_events(logged_in.simulator.scenarios["1002"])


@pytest.mark.parametrize(
    ("content", "args", "code", "words"),
    [
        (None, [], 2, "cannot read"),
        ("", [], 2, "holds no ICWS chat messages"),
        ('{"__type": "urn:inin.com:connection:connectionStateChangeMessage"}\n', [], 2, "holds no ICWS"),
        (None, ["--interaction", "1002"], 4, "interaction 1002 does not appear in"),
        (None, ["--interaction", "../x"], 2, "is not an interaction id"),
    ],
)
def test_unusable_captures_are_explained(
    capture: Path, content: str | None, args: list[str], code: int, words: str
) -> None:
    path = capture
    if content is not None:
        path = capture.with_name("other.ndjson")
        path.write_text(content, encoding="utf-8")
    elif words == "cannot read":
        path = capture.with_name("missing.ndjson")
    result = icwschat("replay", str(path), "--json", *args)
    assert result.code == code
    assert words in result.err
    assert result.out == ""


def test_replay_keeps_text_exact_in_json(capture: Path) -> None:
    texts = [
        e["text"] for e in icwschat("replay", str(capture), "--json").events() if e["event"] == "message"
    ]
    raw = [json.loads(line) for line in capture.read_text(encoding="utf-8").splitlines()]
    sent = [
        line["text"]
        for message in raw
        if message["__type"].endswith("chatContentsMessage")
        for line in message["messagesAdded"]
    ]
    assert texts == sent


EDGES = ("00010101T000000Z", "99991231T235959Z")
"""The first and last second a ``datetime`` holds: a step east or west of UTC is out of its range."""


def odd_capture(path: Path) -> Path:
    """Lines stamped at both ends of the calendar, with two lines nested too deep between: one for any JSON
    parser, one that orjson reads but nothing else in Python can report or write."""
    members = members_msg(delta=False, added=[member("jane", "Jane")])
    contents = contents_msg(*(line("jane", f"sent {stamp}", stamp) for stamp in EDGES), delta=False)
    deep = "[" * 100_000 + "]" * 100_000
    deep_chat = f'{{"interactionId": "1001", "messagesAdded": {"[" * 1_020}{"]" * 1_020}}}'
    lines = [json.dumps(members), deep, deep_chat, json.dumps(contents)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        (
            "UTC",
            [
                "0001-01-01 00:00:00 jane: sent 00010101T000000Z",
                "9999-12-31 23:59:59 jane: sent 99991231T235959Z",
            ],
        ),
        # POSIX spelling, no time zone database needed: UTC-14 is 14 hours east of UTC, UTC+12 12 hours west.
        (
            "UTC-14",
            [
                "0001-01-01 14:00:00 jane: sent 00010101T000000Z",
                "9999-12-31 23:59:59Z jane: sent 99991231T235959Z",
            ],
        ),
        (
            "UTC+12",
            [
                "0001-01-01 00:00:00Z jane: sent 00010101T000000Z",
                "9999-12-31 11:59:59 jane: sent 99991231T235959Z",
            ],
        ),
    ],
)
def test_odd_lines_in_a_capture_are_skipped_or_shown_into_a_pipe(
    tmp_path: Path, zone: str, shown: list[str]
) -> None:
    result = icwschat("replay", str(odd_capture(tmp_path / "odd.ndjson")), env=cli_env(TZ=zone))
    assert result.code == 0, result.err
    assert [text for text in result.out.splitlines() if "jane: " in text] == shown
    assert "skipped 2 lines that held no JSON (first: line 2)" in result.err


@pytest.mark.parametrize("zone", ["UTC-14", "UTC+12"])
def test_odd_lines_in_a_capture_are_skipped_or_kept_exact_in_json(tmp_path: Path, zone: str) -> None:
    result = icwschat("replay", str(odd_capture(tmp_path / "odd.ndjson")), "--json", env=cli_env(TZ=zone))
    assert result.code == 0, result.err
    stamps = [(e["text"], e["timestamp"]) for e in result.events() if e["event"] == "message"]
    assert stamps == [
        ("sent 00010101T000000Z", "0001-01-01T00:00:00Z"),
        ("sent 99991231T235959Z", "9999-12-31T23:59:59Z"),
    ]
    assert "skipped 2 lines that held no JSON (first: line 2)" in result.err


def test_replay_from_a_terminal_says_to_pipe_a_capture_in() -> None:
    screen, code = run_in_terminal(["replay", "-"], until="pipe one in")
    text = "\n".join(screen.display)
    assert code == 2
    assert "standard input, which is a terminal" in text and "pipe one in" in text
    assert "Traceback" not in text


def generated_capture(path: Path, count: int, *, end_at: int | None = None) -> Path:
    """A seeded capture of chat 1001 spread over several batches, with what a real one may hold besides:
    a line cut short, blank lines, another chat's messages, a member that cannot be read and, at
    ``end_at``, the chat's end with more traffic behind it."""
    lines = [json.dumps(message, ensure_ascii=False) for message in messages(count)]
    other = json.loads(lines[5].replace('"1001"', '"1002"'))
    lines[700:700] = ['{"__type": "urn:inin', "", json.dumps(other)]
    bad_member = json.loads(lines[900])
    bad_member.setdefault("membersChanged", []).append({"userId": 7})
    lines[900] = json.dumps(bad_member)
    if end_at is not None:
        ended = {"__type": INTERACTION_DEALLOCATED, "interactionID": "1001"}
        lines.insert(end_at, json.dumps(ended))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


INTERACTION_DEALLOCATED = "urn:inin.com:interactions:interactionDeallocatedMessage"


def replayed(path: Path, *, parallel: bool) -> tuple[list[dict[str, Any]], ReplayReport]:
    out = io.BytesIO()
    with path.open("rb") as capture:
        report = replay(capture, path.name, JSONSink(out, io.StringIO()), "1001", parallel=parallel)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    for event in events:
        del event["at"]  # the moment of the replay, which differs from run to run
    return events, report


@pytest.mark.parametrize("end_at", [None, 1200])
def test_parsing_in_a_second_process_changes_nothing(tmp_path: Path, end_at: int | None) -> None:
    capture = generated_capture(tmp_path / "capture.ndjson", 2000, end_at=end_at)
    here, here_report = replayed(capture, parallel=False)
    there, there_report = replayed(capture, parallel=True)
    assert there == here
    assert there_report == here_report
    assert here_report.bad_lines == [701]
    kinds = [event["event"] for event in here]
    assert kinds.count("message") > 500
    assert (kinds[-1] == "chat_ended") == (end_at is not None)
    # 2000 generated and one of chat 1002; the cut line and the blank one are no message.
    assert here_report.messages == 2001 if end_at is None else here_report.messages < 2001
    assert multiprocessing.active_children() == []


def test_a_replay_that_ends_early_ends_its_parser(tmp_path: Path) -> None:
    # The parser is far ahead, blocked on a full pipe, when the chat ends in the first batch.
    capture = generated_capture(tmp_path / "capture.ndjson", 20_000, end_at=100)
    events, report = replayed(capture, parallel=True)
    assert events[-1]["event"] == "chat_ended"
    assert report.messages <= 512
    assert multiprocessing.active_children() == []


POOL = [
    members_msg(changed=[member("jane", typing=True)]),
    members_msg(changed=[member("jane", typing=False)]),
    members_msg(changed=[member("bob", typing=True), {"userId": 7}]),  # a problem every time
    members_msg(delta=False, added=[member("jane"), member("bob")]),
    members_msg(changed=[member("jane", typing=True)], iid="1002"),
    contents_msg(line("jane", "hi")),
    {"__type": "urn:inin.com:interactions.chat:chatMembersMessage", "isDelta": "no"},  # skipped
    {"__type": "urn:inin.com:something:unknown"},
]
POOL_LINES = [json.dumps(message).encode() + b"\n" for message in POOL] + [b"\n", b'{"cut short']


@settings(max_examples=300)
@given(st.lists(st.sampled_from(POOL_LINES), max_size=40), st.integers(1, 8), st.integers(1, 4))
def test_lines_read_again_parse_as_they_did_the_first_time(lines: list[bytes], batch: int, kept: int) -> None:
    readable = [
        (number, jsonio.loads(line)) for number, line in enumerate(lines, 1) if line.startswith(b'{"_')
    ]
    updates, problems = parse_messages([message for _, message in readable])
    with (
        mock.patch.object(replay_module, "BATCH", batch),
        mock.patch.object(replay_module, "REPEATS_KEPT", kept),
    ):
        batches = list(parse_capture(lines))
    assert [u for b in batches for u in b.updates] == updates
    assert [p for b in batches for p in b.problems] == problems
    assert sum(b.messages for b in batches) == len(readable)
    assert [n for b in batches for n in b.bad_lines] == [
        n for n, line in enumerate(lines, 1) if line == POOL_LINES[-1]
    ]


def test_a_member_change_seen_before_is_not_read_again() -> None:
    read: list[int] = []

    def loads_all(documents: list[bytes]) -> list[Any]:
        read.append(len(documents))
        return jsonio.loads_all(documents)

    typing = [POOL_LINES[0], POOL_LINES[1]] * 100
    with (
        mock.patch.object(replay_module, "loads_all", loads_all),
        mock.patch.object(replay_module, "BATCH", 8),
    ):
        batches = list(parse_capture([POOL_LINES[5], *typing]))
    assert len([u for b in batches for u in b.updates]) == 201
    assert sum(read) == 8  # the first batch: after it, every member change is one seen before
    read.clear()
    long = (
        json.dumps(members_msg(changed=[member("jane", "J" * replay_module.REPEAT_LENGTH)])).encode() + b"\n"
    )
    with (
        mock.patch.object(replay_module, "loads_all", loads_all),
        mock.patch.object(replay_module, "BATCH", 8),
    ):
        assert sum(len(b.updates) for b in parse_capture([long] * 40)) == 40
    assert sum(read) == 40  # too long to be kept


def collector(on: bool) -> None:
    if on:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.parametrize("collecting", [True, False])
def test_a_replay_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path, collecting: bool) -> None:
    capture = generated_capture(tmp_path / "capture.ndjson", 2000)
    other = tmp_path / "other.ndjson"
    other.write_text(json.dumps(contents_msg(line("jane", "hi", iid="1002"), iid="1002")) + "\n")
    was = gc.isenabled()
    try:
        collector(collecting)
        replayed(capture, parallel=False)
        assert gc.isenabled() == collecting
        with pytest.raises(InteractionUnavailable):  # and when it fails
            replayed(other, parallel=False)
        assert gc.isenabled() == collecting
    finally:
        collector(was)


class Directory:
    """A capture whose descriptor is a directory's: the parsing process fails to read it."""

    def __init__(self, path: Path) -> None:
        self.descriptor = os.open(path, os.O_RDONLY)

    def fileno(self) -> int:
        return self.descriptor


def test_an_error_in_the_parsing_process_is_raised_in_the_replay(tmp_path: Path) -> None:
    capture = Directory(tmp_path)
    try:
        with pytest.raises(IsADirectoryError):
            replay(capture, "a directory", JSONSink(io.BytesIO(), io.StringIO()), parallel=True)  # type: ignore[arg-type]
    finally:
        os.close(capture.descriptor)
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("how", ["interrupt", "terminate", "closed pipe"])
def test_a_stopped_replay_leaves_no_process_behind(tmp_path: Path, how: str) -> None:
    capture = generated_capture(tmp_path / "capture.ndjson", 20_000)
    with spawn("replay", str(capture), "--json", start_new_session=True) as replay_run:
        assert replay_run.stdout is not None and replay_run.stderr is not None
        replay_run.stdout.readline()  # started; it soon blocks on the full pipe, its parser well ahead
        time.sleep(0.3)
        if how == "interrupt":
            os.killpg(replay_run.pid, signal.SIGINT)  # Ctrl-C: the whole process group
        elif how == "terminate":
            replay_run.terminate()  # kill PID, or a service manager: the replay alone
        else:
            replay_run.stdout.close()
        code = replay_run.wait(timeout=30)
        assert "Traceback" not in replay_run.stderr.read()
    assert code == {"interrupt": 130, "terminate": 143, "closed pipe": 0}[how]
    deadline = time.monotonic() + 10
    while group_alive(replay_run.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not group_alive(replay_run.pid)


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
