"""`watch`, `transcript` and `unsubscribe` end to end: the real CLI against the simulator over HTTP."""

from __future__ import annotations

import signal

import pytest
from conftest import Result, icwschat, shell, spawn, wait_for_subscriber
from expected import expected_events, project

from icwschat.simulator import SimulatorServer


def scenario(sim: SimulatorServer, iid: str = "1001"):  # type: ignore[no-untyped-def]
    return sim.simulator.scenarios[iid]


@pytest.mark.parametrize("transport", ["poll", "sse"])
def test_json_stream_equals_the_script(logged_in: SimulatorServer, transport: str) -> None:
    result = icwschat("watch", "1001", "--json", "--transport", transport, "--interval", "0.1")
    assert result.code == 0, result.err
    events = result.events()
    assert project(events) == expected_events(scenario(logged_in))
    assert all(e["interactionId"] == "1001" and e["at"].endswith("Z") for e in events)
    history = [e for e in events if e["event"] == "message" and e["history"]]
    assert len(history) == len(scenario(logged_in).history)
    assert [e["text"] for e in events if e["event"] == "message"].count("ok") == 2
    rename = next(e for e in events if e["event"] == "member_changed")
    assert (rename["previous"]["displayName"], rename["member"]["displayName"]) == ("Jane", "Jane Doe")
    joined = {
        e["member"]["displayName"]: e["member"]["type"] for e in events if e["event"] == "member_joined"
    }
    assert joined == {
        "IC System": "system",
        "Agent One": "current_user",  # the logged-in user (agent.one)
        "Jane": "external",
        "Sue (supervisor)": "internal",
    }
    file_line = next(e for e in events if e.get("messageType") == "file")
    assert file_line["text"] == "receipt.pdf"
    assert logged_in.simulator.subscribers("1001") == []


def test_json_keeps_hostile_text_exact(logged_in: SimulatorServer) -> None:
    result = icwschat("watch", "1001", "--json", "--interval", "0.1")
    texts = [e["text"] for e in result.events() if e["event"] == "message"]
    hostile = next(step.text for step in scenario(logged_in).script if "\x1b" in step.text)
    assert hostile in texts
    assert "\x1b" not in result.out  # escaped as \u001b inside the JSON string, never raw


def test_plain_log_into_a_pipe_has_no_escape_sequences(logged_in: SimulatorServer) -> None:
    result = icwschat("watch", "1001", "--interval", "0.1")
    assert result.code == 0
    assert "\x1b" not in result.out and "\x07" not in result.out
    assert "Jane: Hi, I need help with order 4711." in result.out
    assert "Jane is now known as Jane Doe" in result.out
    assert "␛]0;pwned␇" in result.out
    assert "the chat has ended" in result.out


def test_raw_writes_icws_messages_as_received(logged_in: SimulatorServer) -> None:
    import json

    result = icwschat("watch", "1002", "--raw", "--interval", "0.1")
    messages = [json.loads(line) for line in result.out.splitlines()]
    assert messages[0]["__type"].endswith("chatMembersMessage") and messages[0]["isDelta"] is False
    assert any(m["__type"].endswith("interactionChangedMessage") for m in messages)


@pytest.mark.parametrize(
    ("iid", "words"),
    [("1003", "not a chat"), ("1004", "no rights"), ("9999", "does not exist")],
)
def test_unusable_interactions_exit_4(logged_in: SimulatorServer, iid: str, words: str) -> None:
    result = icwschat("watch", iid, "--json")
    assert result.code == 4
    assert f"interaction {iid}" in result.err
    assert result.out == ""


def test_watch_without_login_exits_3(sim: SimulatorServer) -> None:
    result = icwschat("watch", "1001")
    assert result.code == 3
    assert "not logged in; run icwschat login" in result.err


def test_bad_interaction_id_is_a_usage_error(logged_in: SimulatorServer) -> None:
    result = icwschat("watch", "../connection")
    assert result.code == 2
    assert "is not an interaction id" in result.err


def test_json_and_raw_together_is_a_usage_error(logged_in: SimulatorServer) -> None:
    assert icwschat("watch", "1001", "--json", "--raw").code == 2


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_removes_the_subscription(slow_sim: SimulatorServer, sig: int, code: int) -> None:
    proc = spawn("watch", "1001", "--json")
    assert proc.stdout is not None
    # Signal only once the snapshot is out, so the test checks the exit path and not a start-up race.
    first = proc.stdout.readline()
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=20)
    out = first + rest
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert slow_sim.simulator.subscribers("1001") == []
    assert '"member_joined"' in out


def test_keep_subscription_leaves_it_in_place(slow_sim: SimulatorServer) -> None:
    proc = spawn("watch", "1001", "--json", "--keep-subscription")
    wait_for_subscriber(slow_sim, "1001", proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert len(slow_sim.simulator.subscribers("1001")) == 1
    gone = icwschat("unsubscribe", "1001")
    assert (gone.code, gone.out.strip()) == (0, "Removed the chat subscription for interaction 1001.")
    assert slow_sim.simulator.subscribers("1001") == []
    again = icwschat("unsubscribe", "1001")
    assert again.code == 0
    assert "no chat subscription for interaction 1001; nothing to remove" in again.out


def test_closed_pipe_ends_quietly_and_unsubscribes(slow_sim: SimulatorServer) -> None:
    proc = shell("{cli} watch 1001 --json | head -n 1", timeout=30)
    assert proc.returncode == 0
    assert proc.stdout.count("\n") == 1 and '"member_joined"' in proc.stdout
    assert proc.stderr == ""
    assert slow_sim.simulator.subscribers("1001") == []


def test_transcript_json_is_the_snapshot(slow_sim: SimulatorServer) -> None:
    result = icwschat("transcript", "1001", "--json")
    assert result.code == 0, result.err
    events = result.events()
    assert [e["event"] for e in events] == ["member_joined"] * 3 + ["message"] * 4
    assert all(e["history"] for e in events)
    assert slow_sim.simulator.subscribers("1001") == []


def test_transcript_plain(slow_sim: SimulatorServer) -> None:
    result = icwschat("transcript", "1002")
    assert result.code == 0
    assert result.out.splitlines()[-1].endswith("HelpBot: Welcome! How can I help?")


def test_demo_plays_a_chat_to_its_end_without_a_stored_session(isolated) -> None:  # type: ignore[no-untyped-def]
    result = icwschat("demo", "--speed", "20", "--json")
    assert result.code == 0, result.err
    assert result.events()[-1]["event"] == "chat_ended"
    assert not (isolated / "session.json").exists()


def test_unsubscribe_when_nothing_was_subscribed_says_so(logged_in: SimulatorServer) -> None:
    result: Result = icwschat("unsubscribe", "1002")
    assert result.code == 0
    assert result.out.strip() == "There was no chat subscription for interaction 1002; nothing to remove."


def test_unsubscribe_an_unknown_interaction_says_so(logged_in: SimulatorServer) -> None:
    result = icwschat("unsubscribe", "9999")
    assert result.code == 0
    assert "no chat subscription for interaction 9999" in result.out


def test_a_closed_event_stream_leaves_the_next_watch_its_messages(slow_sim: SimulatorServer) -> None:
    """The server must not hand the queue to a stream its client has left (the simulator once did)."""
    first = spawn("watch", "1001", "--json", "--transport", "sse")
    assert first.stdout is not None
    assert '"member_joined"' in first.stdout.readline()
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=20)
    after = icwschat("transcript", "1002", "--json", "--timeout", "5")
    assert after.code == 0, after.err
    assert any(e["event"] == "message" for e in after.events())


def test_transcript_gives_up_when_no_snapshot_comes(slow_sim: SimulatorServer) -> None:
    slow_sim.simulator.faults.withhold_snapshots = True
    result = icwschat("transcript", "1002", "--json", "--timeout", "1", timeout=20)
    assert result.code == 5
    assert "no snapshot of interaction 1002 arrived within 1 s" in result.err
    assert slow_sim.simulator.subscribers("1002") == []
