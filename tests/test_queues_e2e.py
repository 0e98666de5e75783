"""Many chats end to end: `chats`, `watch ID ...`, `watch --queue`, `transcript --queue`, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest import PASSWORD, ROOT, cli_env, icwschat, need_jq, shell, spawn
from expected import expected_events, project

from icwschat.errors import ExitCode
from icwschat.simulator import QueueId, SimulatorServer

USER_QUEUE = "user:agent.one"
SUPPORT = QueueId(2, "Support")  # queueType 2: a workgroup


def events_of(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def per_chat(events: list[dict[str, Any]], iid: str) -> list[dict[str, Any]]:
    return [event for event in events if event["interactionId"] == iid]


def lines_of(events: list[dict[str, Any]], iid: str) -> list[str]:
    return [e["text"] for e in per_chat(events, iid) if e["event"] == "message"]


def nothing_left(sim: SimulatorServer) -> bool:
    """No session holds a chat subscription, interaction watch or queue subscription any more."""
    return all(
        not session.chats and not session.watches and not session.queue_subscriptions
        for session in list(sim.simulator.sessions.values())
    )


def read_until(proc: subprocess.Popen[str], done: Any, limit: float = 30) -> list[dict[str, Any]]:
    """Events read from a running watch until ``done(events)`` holds."""
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + limit
    while not done(events):
        assert time.monotonic() < deadline, (
            f"gave up waiting; got {[(e['event'], e['interactionId'], e.get('text')) for e in events]}"
        )
        line = proc.stdout.readline()
        assert line, f"watch ended early: {proc.communicate()[1]}"
        events.append(json.loads(line))
    return events


def test_watch_several_chats_gives_each_its_script_and_ends_with_the_last(logged_in: SimulatorServer) -> None:
    result = icwschat("watch", "1001", "1002", "--json", "--interval", "0.1")
    assert result.code == 0, result.err
    events = result.events()
    for iid in ("1001", "1002"):
        assert project(per_chat(events, iid)) == expected_events(logged_in.simulator.scenarios[iid])
    assert nothing_left(logged_in)


def test_watch_needs_ids_or_a_queue_not_both(logged_in: SimulatorServer) -> None:
    for args in ((), ("1001", "--queue", USER_QUEUE), ("--queue", "Support")):
        result = icwschat("watch", *args)
        assert result.code == ExitCode.USAGE, args
        assert "Traceback" not in result.err


def test_chats_lists_the_users_queue_and_json_feeds_jq(logged_in: SimulatorServer) -> None:
    table = icwschat("chats")
    assert table.code == 0, table.err
    rows = table.out.splitlines()
    assert rows[0].split() == ["ID", "STATE", "CUSTOMER", "AGENT", "WORKGROUP", "AGE"]
    assert [row.split()[0] for row in rows[1:]] == ["1001", "1002"]  # 1003 is a call
    listed = icwschat("chats", USER_QUEUE, "--all", "--json")
    assert {e["interactionId"] for e in listed.events()} == {"1001", "1002", "1003"}
    assert all(e["queue"] == USER_QUEUE and "Eic_State" in e["attributes"] for e in listed.events())
    assert nothing_left(logged_in)
    need_jq()
    piped = shell("{cli} chats --json | jq -r .interactionId")
    assert piped.stdout.split() == ["1001", "1002"]


def test_an_unknown_queue_exits_4(logged_in: SimulatorServer) -> None:
    for command in ("chats", "watch --queue", "transcript --queue"):
        result = icwschat(*command.split(), "workgroup:Nowhere")
        assert result.code == ExitCode.UNAVAILABLE_INTERACTION, result.err
        assert "workgroup:Nowhere" in result.err
    assert nothing_left(logged_in)


def test_transcript_of_a_queue_is_every_chats_snapshot(logged_in: SimulatorServer) -> None:
    result = icwschat("transcript", "--queue", USER_QUEUE, "--json")
    assert result.code == 0, result.err
    events = result.events()
    assert [e["interactionId"] for e in events if e["event"] == "chat_added"] == ["1001", "1002"]
    assert lines_of(events, "1001") and lines_of(events, "1002")
    assert not per_chat(events, "1003")  # a call: not tried, not shown
    assert nothing_left(logged_in)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_removes_the_queue_and_every_chat_subscription(
    slow_sim: SimulatorServer, sig: int, code: int
) -> None:
    proc = spawn("watch", "--queue", USER_QUEUE, "--json")
    read_until(
        proc,
        lambda events: {"1001", "1002"} <= {e["interactionId"] for e in events if e["event"] == "message"},
    )
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert nothing_left(slow_sim)


def test_a_closed_pipe_removes_every_subscription(slow_sim: SimulatorServer) -> None:
    proc = shell(f"{{cli}} watch --queue {USER_QUEUE} --json | head -n 3")
    assert proc.returncode == 0 and proc.stdout.count("\n") == 3
    assert proc.stderr == ""
    assert nothing_left(slow_sim)


def test_lines_are_shown_once_across_a_new_login(slow_sim: SimulatorServer) -> None:
    proc = spawn("watch", "--queue", USER_QUEUE, "--json", env=cli_env(ICWS_PASSWORD=PASSWORD))
    events = read_until(proc, lambda events: any(e["event"] == "message" for e in events))
    slow_sim.simulator.expire_sessions()
    events += read_until(proc, lambda events: any(e["event"] == "resynced" for e in events), limit=60)
    events += read_until(proc, lambda events: any(e["event"] == "chat_ended" for e in events), limit=60)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    for iid in ("1001", "1002"):
        said = [(e["text"], e["timestamp"]) for e in per_chat(events, iid) if e["event"] == "message"]
        assert len(said) == len(set(said)) or iid == "1001"  # 1001 says "ok" twice on purpose
    assert lines_of(events, "1001").count("ok") <= 2
    assert [e["interactionId"] for e in events if e["event"] == "chat_added"] == ["1001", "1002"]


def test_the_shipping_example_writes_one_record_per_event_and_cleans_up(logged_in: SimulatorServer) -> None:
    need_jq()
    bin_dir = os.path.dirname(sys.executable)
    proc = subprocess.Popen(
        ["sh", str(ROOT / "examples" / "ship-queue.sh"), USER_QUEUE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"),
        cwd=ROOT,
        start_new_session=True,  # so Ctrl-C can be sent to the whole pipeline, as a terminal does
    )
    records = read_until(proc, lambda records: sum(r["event"] == "message" for r in records) >= 3)
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=20)
    added = [r for r in records if r["event"] == "chat_added"]
    assert [(r["chat"], r["queue"], r["state"]) for r in added] == [
        ("1001", USER_QUEUE, "C"),
        ("1002", USER_QUEUE, "C"),
    ]
    said = next(r for r in records if r["event"] == "message")
    assert set(said) >= {"@timestamp", "source", "queue", "chat", "who", "role", "text", "said_at"}
    assert nothing_left(logged_in)


def test_chats_entering_and_leaving_a_queue_are_followed_once_each(slow_sim: SimulatorServer) -> None:
    sim = slow_sim.simulator
    quiet = SUPPORT
    for iid in sim.queue_contents(quiet):  # the Support cycle's own chats: this test brings its own
        sim.dequeue(iid, quiet)
    proc = spawn("watch", "--queue", "workgroup:Support", "--json")
    wait_for_queue_subscriber(slow_sim, proc)
    iid = sim.add_interaction(quiet, remote_name="Casey")
    sim.say(iid, "customer", "first")
    events = read_until(proc, lambda events: "first" in lines_of(events, iid))
    sim.pick_up(iid)
    events += read_until(proc, lambda events: any(e["event"] == "chat_changed" for e in events))
    sim.dequeue(iid, quiet)
    events += read_until(proc, lambda events: any(e["event"] == "chat_removed" for e in events))
    sim.say(iid, "customer", "while away")
    sim.enqueue(iid, quiet)
    sim.say(iid, "customer", "back")
    events += read_until(proc, lambda events: "back" in lines_of(events, iid))
    sim.end_chat(iid)
    events += read_until(proc, lambda events: any(e["event"] == "chat_ended" for e in events))
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    mine = per_chat(events, iid)
    added = [e for e in mine if e["event"] == "chat_added"]
    assert [e["history"] for e in added] == [False, False]
    assert added[0]["queue"] == "workgroup:Support" and added[0]["attributes"]["Eic_RemoteName"] == "Casey"
    changed = next(e for e in mine if e["event"] == "chat_changed")
    assert changed["attributes"].get("Eic_UserName")
    said = [text for text in lines_of(events, iid) if text in ("first", "while away", "back")]
    assert said == ["first", "while away", "back"]  # the line said while away comes with the return
    assert mine[-1]["event"] == "chat_ended"
    assert nothing_left(slow_sim)


def wait_for_queue_subscriber(sim: SimulatorServer, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 15
    while not any(session.queue_subscriptions for session in list(sim.simulator.sessions.values())):
        assert time.monotonic() < deadline and proc.poll() is None, "watch never subscribed to the queue"
        time.sleep(0.02)


def test_interactions_of_unsaid_kind_are_tried_and_a_refused_one_skipped(logged_in: SimulatorServer) -> None:
    logged_in.simulator.set_faults({"omitObjectType": True})
    result = icwschat("transcript", "--queue", USER_QUEUE, "--json", "--debug")
    assert result.code == 0, result.err
    assert [e["interactionId"] for e in result.events() if e["event"] == "chat_added"] == ["1001", "1002"]
    assert "interaction 1003 is skipped, its chat subscription refused" in result.err
    assert logged_in.simulator.faults.injected["omitObjectType"] >= 1
    assert nothing_left(logged_in)


def test_a_queue_result_limit_is_one_warning(logged_in: SimulatorServer) -> None:
    logged_in.simulator.set_faults({"queueResultLimit": 1})
    result = icwschat("transcript", "--queue", USER_QUEUE, "--json")
    assert result.code == 0, result.err
    assert result.err.count("queueResultLimitExceeded") == 1
    assert [e["interactionId"] for e in result.events() if e["event"] == "chat_added"] == ["1001"]
    assert logged_in.simulator.faults.injected["queueResultLimit"] >= 1


def test_after_kill_9_a_new_watcher_repeats_no_line(slow_sim: SimulatorServer) -> None:
    first = spawn("watch", "--queue", USER_QUEUE, "--json")
    read_until(first, lambda events: len(lines_of(events, "1001")) >= 3)
    first.kill()  # no clean-up: its subscriptions stay, and messages queue for the session meanwhile
    first.communicate(timeout=20)
    time.sleep(1.0)
    second = spawn("watch", "--queue", USER_QUEUE, "--json")
    events = read_until(second, lambda events: any(e["event"] == "chat_ended" for e in events), limit=60)
    second.send_signal(signal.SIGINT)
    second.communicate(timeout=20)
    for iid in ("1001", "1002"):
        # 1001 says "ok" twice within a second, on purpose: the two are two lines.
        said = [(e["text"], e["timestamp"]) for e in per_chat(events, iid) if e["event"] == "message"]
        assert len([line for line in said if line[0] != "ok"]) == len(
            {line for line in said if line[0] != "ok"}
        )
    assert lines_of(events, "1001").count("ok") <= 2
    assert nothing_left(slow_sim)


def test_a_queued_chat_out_of_reach_ends_instead_of_stalling_a_transcript(logged_in: SimulatorServer) -> None:
    logged_in.simulator.enqueue("1004", QueueId(1, "agent.one"))  # a chat the user has no rights to: 403
    result = icwschat("transcript", "--queue", USER_QUEUE, "--json", "--timeout", "20")
    assert result.code == 0, result.err
    ended = [e for e in result.events() if e["event"] == "chat_ended"]
    assert [(e["interactionId"], e["reason"]) for e in ended] == [("1004", "lost_rights")]
    assert lines_of(result.events(), "1001")
    assert nothing_left(logged_in)


def subscribed_to_the_users_queue(sim: SimulatorServer) -> subprocess.Popen[str]:
    proc = spawn("watch", "--queue", USER_QUEUE, "--json")
    read_until(
        proc,
        lambda events: {"1001", "1002"} <= {e["interactionId"] for e in events if e["event"] == "message"},
    )
    return proc


def test_a_subscribe_that_hangs_at_exit_is_named_and_the_rest_removed(slow_sim: SimulatorServer) -> None:
    proc = subscribed_to_the_users_queue(slow_sim)
    slow_sim.simulator.set_faults({"subscribeDelay": 30})
    late = slow_sim.simulator.add_interaction(QueueId(1, "agent.one"))
    deadline = time.monotonic() + 15
    while slow_sim.simulator.faults.injected["subscribeDelay"] == 0:
        assert time.monotonic() < deadline, "the late chat was never subscribed"
        time.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 10
    assert f"the chat subscription for interaction {late} may be left on the server" in err
    sessions = list(slow_sim.simulator.sessions.values())
    assert all(not s.queue_subscriptions and not ({"1001", "1002"} & s.chats) for s in sessions)


def test_a_second_ctrl_c_waits_for_the_clean_up(slow_sim: SimulatorServer) -> None:
    proc = subscribed_to_the_users_queue(slow_sim)
    slow_sim.simulator.set_faults({"delay": 1.0})  # every reply a second late: the clean-up takes a while
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    slow_sim.simulator.set_faults({"delay": 0})
    assert nothing_left(slow_sim)


def test_an_empty_queue_says_so(logged_in: SimulatorServer) -> None:
    mine = QueueId(1, "agent.one")
    for iid in logged_in.simulator.queue_contents(mine):
        logged_in.simulator.dequeue(iid, mine)
    for command in ("chats", "transcript --queue"):
        result = icwschat(*command.split(), USER_QUEUE)
        assert (result.code, result.out) == (0, ""), result.err
        assert f"no chats in queue {USER_QUEUE}" in result.err
