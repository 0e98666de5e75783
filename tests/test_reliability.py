"""Faults a long watch must survive, each turned on by a simulator knob: nothing lost, nothing repeated."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import PASSWORD, cli_env, icwschat, logged_in_sim, spawn, start_sim, wait_for_subscriber
from expected import expected_events, project

from icwschat.simulator import SimulatorServer


@pytest.fixture
def paced() -> Iterator[SimulatorServer]:
    """Chat 1001 takes about 3 s: time to inject a fault mid-chat."""
    with logged_in_sim(speed=5.0) as server:
        yield server


def watch_with_fault(
    sim: SimulatorServer, fault: Callable[[], None], *args: str, password: bool = True
) -> tuple[int, list[dict[str, object]], str]:
    env = cli_env(ICWS_PASSWORD=PASSWORD) if password else cli_env()
    proc = spawn("watch", "1001", "--json", "--interval", "0.1", *args, env=env)
    wait_for_subscriber(sim, "1001", proc)
    time.sleep(1.0)  # a few script steps in
    fault()
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    return proc.returncode, [json.loads(line) for line in out.splitlines()], err


def assert_every_line_once(sim: SimulatorServer, events: list[dict[str, object]]) -> None:
    """Every chat line exactly once, in server order, and the end seen.

    Member and typing events are compared only where no resync happened: a snapshot tells the members'
    state, not the order in which a typing flag flipped around a line said during the outage.
    """
    expected = expected_events(sim.simulator.scenarios["1001"])
    lines = [e for e in project(events) if e[0] == "message"]  # type: ignore[arg-type]
    assert lines == [e for e in expected if e[0] == "message"]
    if not any(e["event"] == "resynced" for e in events):
        assert project(events) == expected  # type: ignore[arg-type]
    assert events[-1]["event"] == "chat_ended"


@pytest.mark.parametrize("transport", ["poll", "sse"])
def test_expired_session_is_renewed_and_resynced(paced: SimulatorServer, transport: str) -> None:
    code, events, err = watch_with_fault(paced, paced.simulator.expire_sessions, "--transport", transport)
    assert code == 0, err
    assert [e["event"] for e in events].count("resynced") == 1
    assert_every_line_once(paced, events)
    assert paced.simulator.logins == 2
    assert paced.simulator.faults.injected == {"expireSessions": 1}


def test_connection_down_message_is_a_lost_session(paced: SimulatorServer) -> None:
    def drop() -> None:
        paced.simulator.drop_session(next(iter(paced.simulator.sessions)))

    code, events, err = watch_with_fault(paced, drop)
    assert code == 0, err
    assert [e["event"] for e in events].count("resynced") == 1
    assert_every_line_once(paced, events)
    assert paced.simulator.faults.injected == {"dropSessions": 1}


def test_expired_session_without_a_password_exits_3(paced: SimulatorServer) -> None:
    code, _events, err = watch_with_fault(paced, paced.simulator.expire_sessions, password=False)
    assert code == 3
    assert "session expired; run icwschat login" in err
    assert paced.simulator.faults.injected == {"expireSessions": 1}


@pytest.mark.parametrize("transport", ["poll", "sse"])
def test_a_reply_cut_after_the_server_dequeued_it_loses_nothing(
    paced: SimulatorServer, transport: str
) -> None:
    """Messages in a malformed reply are gone from the server's queue; a fresh snapshot brings them back."""

    def cut() -> None:
        if transport == "poll":
            paced.simulator.faults.poll_failures.append("truncated-dequeued")
        else:
            paced.simulator.faults.corrupt_events = 1

    code, events, err = watch_with_fault(paced, cut, "--transport", transport)
    assert code == 0, err
    assert [e["event"] for e in events].count("resynced") == 1
    assert_every_line_once(paced, events)
    knob = "pollFailures" if transport == "poll" else "corruptEvents"
    assert paced.simulator.faults.injected == {knob: 1}


def test_bursts_of_500_truncated_json_and_503_are_retried(paced: SimulatorServer) -> None:
    def burst() -> None:
        paced.simulator.faults.poll_failures.extend(["500", "truncated", "503", "500"])

    code, events, err = watch_with_fault(paced, burst, "--transport", "poll")
    assert code == 0, err
    assert "reconnecting (attempt 1" in err
    assert_every_line_once(paced, events)
    assert paced.simulator.faults.injected == {"pollFailures": 4}


def test_429_is_waited_out_as_the_server_asks(paced: SimulatorServer) -> None:
    """429 is "busy": wait Retry-After (1 s here), go on; never exit 1 ("a bug") or 3 ("bad credentials")."""

    def busy() -> None:
        paced.simulator.faults.poll_failures.extend(["429", "429"])

    code, events, err = watch_with_fault(paced, busy, "--transport", "poll")
    assert code == 0, err
    assert "reconnecting (attempt 1, next in 1.0 s)" in err
    assert_every_line_once(paced, events)
    assert paced.simulator.faults.injected == {"pollFailures": 2}


def test_dropped_event_streams_are_reopened(paced: SimulatorServer) -> None:
    def flaky() -> None:
        paced.simulator.faults.drop_streams_after = 2

    code, events, err = watch_with_fault(paced, flaky, "--transport", "sse")
    assert code == 0, err
    assert_every_line_once(paced, events)
    # At least one stream was cut and the one reopened after it was cut too.
    assert paced.simulator.faults.injected["dropStreamsAfter"] >= 2


def test_slow_replies_lose_nothing(paced: SimulatorServer) -> None:
    def slow() -> None:
        paced.simulator.faults.delay = 0.3

    code, events, err = watch_with_fault(paced, slow, "--transport", "poll")
    assert code == 0, err
    assert_every_line_once(paced, events)
    # Replies slower than --interval 0.1 must not make polls pile up: the next waits for the last.
    assert paced.simulator.polls > 5
    assert paced.simulator.most_polls_in_flight == 1
    assert paced.simulator.faults.injected["delay"] > 5


def test_a_dead_server_is_given_up_on_with_exit_5(paced: SimulatorServer) -> None:
    code, _events, err = watch_with_fault(paced, paced.stop, "--give-up-after", "1")
    assert code == 5
    assert "gave up after 1 s of failures" in err


def test_a_restarted_server_is_picked_up_without_restarting_the_tool(paced: SimulatorServer) -> None:
    replacement: list[SimulatorServer] = []

    def restart() -> None:
        port = paced.port
        paced.stop()
        time.sleep(1.0)
        replacement.append(start_sim(speed=5.0, port=port))

    try:
        code, events, err = watch_with_fault(paced, restart, "--transport", "poll")
    finally:
        for server in replacement:
            server.stop()
    assert code == 0, err
    kinds = [e["event"] for e in events]
    assert "resynced" in kinds and kinds[-1] == "chat_ended"
    history = [e["text"] for e in events if e["event"] == "message" and e["history"]]
    assert len(history) == len(set(history)) == 4


def test_deallocated_interaction_ends_the_watch(paced: SimulatorServer) -> None:
    code, events, _err = watch_with_fault(paced, lambda: paced.simulator.deallocate("1001"))
    assert code == 0
    assert events[-1]["event"] == "chat_ended" and events[-1]["reason"] == "deallocated"
    assert paced.simulator.faults.injected == {"deallocate": 1}


def test_a_second_watcher_on_the_same_session_is_refused(slow_sim: SimulatorServer) -> None:
    first = spawn("watch", "1001", "--json", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_subscriber(slow_sim, "1001", first)
        second = icwschat("watch", "1002", "--json")
        assert second.code == 2
        assert f"another icwschat process (pid {first.pid})" in second.err
        assert "ICWSCHAT_HOME" in second.err
    finally:
        first.terminate()
        first.wait(timeout=20)
