"""`watch` against servers that misbehave after a good login: no login storms, a bounded exit, nothing left
behind, and restarts that repeat nothing.

Each server here is a :class:`tests.hostile.HostileServer` whose handler answers like ICWS until the test
says otherwise; logins are counted by the server, so "a handful per minute" is asserted, not assumed.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from builders import contents_msg, line, member, members_msg
from conftest import PASSWORD, USER, cli_env, icwschat, logged_in_sim, spawn, start_sim
from hostile import HostileServer, Request, login_reply, reply
from test_reliability import assert_every_line_once, watch_with_fault

from icwschat.client import HTTP, login
from icwschat.errors import ExitCode, ServerBusy, ServerUnavailable, exit_code
from icwschat.simulator import SimulatorServer
from icwschat.sinks import JSONSink
from icwschat.watch import Backoff, Watcher, WatchOptions

UNAUTHORIZED = {"errorCode": 1, "message": "This request requires a session ID!"}
BAD_CREDENTIALS = {
    "errorId": "error.request.connection.authenticationFailure",
    "errorCode": -2147221503,
    "message": "The authentication process failed.",
}
WWW_AUTHENTICATE = {"WWW-Authenticate": 'ICWS realm="ICWS" location="/ICWS/connection"'}
GIVE_UP = 3.0
SLACK = 12.0
"""Seconds allowed past --give-up-after for process start and the last request, on a loaded machine."""


def connection_down(*, should_reconnect: bool, reason: str = "The session was ended.") -> dict[str, Any]:
    return {
        "__type": "urn:inin.com:connection:connectionStateChangeMessage",
        "isDelta": True,
        "previousConnectionState": 1,
        "newConnectionState": 2,
        "reason": reason,
        "shouldReconnect": should_reconnect,
    }


class ICWS:
    """A handler that answers like ICWS; each kind of request has a method a test overrides.

    Logins are numbered from 1 (the ``icwschat login`` the test runs first); ``queue`` holds the messages
    the next poll returns.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logins = 0
        self.queue: list[Any] = []
        self.log: list[str] = []
        """What happened, in order: ``PUT 1001 done``, ``DELETE 1001 received`` and so on."""

    def __call__(self, request: Request, conn: socket.socket) -> None:
        path = request.path.split("?")[0]
        if request.method == "POST" and path == "/icws/connection":
            with self.lock:
                self.logins += 1
                number = self.logins
            self.login(conn, number)
        elif path.endswith("/messaging/messages"):
            self.poll(conn)
        elif path.endswith("/connection"):
            self.connection(conn)
        elif "/subscriptions/interactions/" in path:
            iid = path.split("/subscriptions/interactions/")[1].split("/")[0]
            chat = path.endswith("/chat")
            self.note(f"{request.method} {iid}{' chat' if chat else ''} received")
            if request.method == "PUT":
                self.subscribe(conn, iid, chat=chat)
            else:
                self.unsubscribe(conn, iid, chat=chat)
        else:
            reply(conn, 404, {"message": "no such resource"})

    def note(self, what: str) -> None:
        with self.lock:
            self.log.append(what)

    def login(self, conn: socket.socket, number: int) -> None:
        login_reply(conn, session_id=str(1000 + number))

    def poll(self, conn: socket.socket) -> None:
        with self.lock:
            batch, self.queue = self.queue, []
        reply(conn, 200, batch)

    def connection(self, conn: socket.socket) -> None:
        reply(conn, 401, UNAUTHORIZED, WWW_AUTHENTICATE)

    def subscribe(self, conn: socket.socket, iid: str, *, chat: bool) -> None:
        reply(conn, 200 if chat else 204)

    def unsubscribe(self, conn: socket.socket, iid: str, *, chat: bool) -> None:
        reply(conn, 204)


def unauthorized(conn: socket.socket) -> None:
    reply(conn, 401, UNAUTHORIZED, WWW_AUTHENTICATE)


class AlwaysUnauthorized(ICWS):
    """Logins succeed; every call made with the session answers 401."""

    def poll(self, conn: socket.socket) -> None:
        unauthorized(conn)

    def subscribe(self, conn: socket.socket, iid: str, *, chat: bool) -> None:
        unauthorized(conn)


class ReloginUnauthorized(ICWS):
    """The first session expires at the first poll, and every later login answers 401."""

    def login(self, conn: socket.socket, number: int) -> None:
        if number == 1:
            super().login(conn, number)
        else:
            unauthorized(conn)

    def poll(self, conn: socket.socket) -> None:
        unauthorized(conn)


class DownOnEveryPoll(ICWS):
    def poll(self, conn: socket.socket) -> None:
        reply(conn, 200, [connection_down(should_reconnect=True)])


class BadCredentialsOnRenewal(ReloginUnauthorized):
    def login(self, conn: socket.socket, number: int) -> None:
        if number == 1:
            login_reply(conn)
        else:
            reply(conn, 400, BAD_CREDENTIALS)


@pytest.fixture
def home(isolated: Path) -> Path:
    return isolated


@contextmanager
def serve(handler: ICWS) -> Iterator[HostileServer]:
    """The handler served on loopback, with a session stored by ``icwschat login`` (login number 1)."""
    with HostileServer(handler) as server:
        result = icwschat(
            "login", "--server", server.url, "--user", USER, env=cli_env(ICWS_PASSWORD=PASSWORD)
        )
        assert result.code == 0, result.err
        yield server


def watch_until_exit(*args: str, timeout: float = GIVE_UP + SLACK) -> tuple[int, str, float]:
    """Run watch with a password for renewals; (exit code, stderr, seconds it ran). Killed at ``timeout``."""
    started = time.monotonic()
    proc = spawn("watch", "1001", "--json", "--interval", "0.1", *args, env=cli_env(ICWS_PASSWORD=PASSWORD))
    try:
        _out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
    assert "Traceback" not in err, err
    return proc.returncode, err, time.monotonic() - started


# ---- renewal: backoff, deadline, and when not to log in again -----------------------------------------


@pytest.mark.parametrize(
    "handler",
    [AlwaysUnauthorized, ReloginUnauthorized, DownOnEveryPoll],
    ids=["every-call-401", "relogin-401", "down-on-every-poll"],
)
def test_a_session_that_never_holds_is_renewed_a_few_times_then_given_up(handler: type[ICWS]) -> None:
    icws = handler()
    with serve(icws):
        code, err, took = watch_until_exit("--give-up-after", str(GIVE_UP))
        renewals = icws.logins - 1
        assert code == ExitCode.SERVER_UNAVAILABLE, err
        assert f"gave up after {GIVE_UP:g} s of failures" in err
        assert 1 <= renewals <= 4, f"{renewals} logins in {took:.1f} s"
        assert took < GIVE_UP + SLACK


def test_bad_credentials_on_renewal_end_the_run_at_once_with_exit_3() -> None:
    icws = BadCredentialsOnRenewal()
    with serve(icws):
        code, err, _took = watch_until_exit("--give-up-after", "60")
        assert code == ExitCode.AUTHENTICATION, err
        assert "wrong user name or password" in err
        assert icws.logins == 2


class LoggedOffByMessage(ICWS):
    def poll(self, conn: socket.socket) -> None:
        down = connection_down(should_reconnect=False, reason="An administrator logged you off.")
        reply(conn, 200, [down])


class LoggedOffByConnectionCheck(ICWS):
    def poll(self, conn: socket.socket) -> None:
        unauthorized(conn)

    def connection(self, conn: socket.socket) -> None:
        body = {"connectionState": 2, "reason": "Another login replaced this one.", "shouldReconnect": False}
        reply(conn, 200, body)


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (LoggedOffByMessage, "An administrator logged you off."),
        (LoggedOffByConnectionCheck, "Another login replaced this one."),
    ],
    ids=["connection-state-message", "connection-check"],
)
def test_should_reconnect_false_is_obeyed_with_exit_3(handler: type[ICWS], reason: str) -> None:
    icws = handler()
    with serve(icws):
        code, err, _took = watch_until_exit("--give-up-after", "60")
        assert code == ExitCode.AUTHENTICATION, err
        assert "asked not to reconnect" in err
        assert reason in err
        assert icws.logins == 1


def test_a_busy_login_waits_as_long_as_retry_after_says(home: Path) -> None:
    """429 on a renewal: back off at least Retry-After each time, and end with exit 5, never 1 or 3."""
    with HostileServer(AlwaysUnauthorized()) as server:
        http = HTTP()
        session = login(http, server.url, USER, PASSWORD)
        http.close()
        calls: list[float] = []

        def busy_login() -> Any:
            calls.append(time.monotonic())
            error = ServerBusy("the server is busy (HTTP 429)", status=429)
            error.retry_after = 1.0
            raise error

        options = WatchOptions(("1001",), transport="poll", interval=0.1, give_up_after=GIVE_UP)
        sink = JSONSink(io.BytesIO(), io.StringIO())
        watcher = Watcher(HTTP, session, options, sink, relogin=busy_login)
        watcher.feed.renewal = Backoff(GIVE_UP, base=0.01)  # so only Retry-After can make the waits long
        with pytest.raises(ServerUnavailable) as raised:
            watcher.run()
    assert exit_code(raised.value) == ExitCode.SERVER_UNAVAILABLE
    assert len(calls) >= 2
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(gap >= 0.95 for gap in gaps[:-1]), gaps  # the last one is cut short by the deadline


# ---- a subscription in flight, and a bounded clean-up ------------------------------------------------


class SlowSubscribe(ICWS):
    """The chat subscription takes ``seconds`` to be answered; what happened when is logged."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def subscribe(self, conn: socket.socket, iid: str, *, chat: bool) -> None:
        if chat:
            time.sleep(self.seconds)
        super().subscribe(conn, iid, chat=chat)
        self.note(f"PUT {iid}{' chat' if chat else ''} done")


def sigterm_once(icws: ICWS, arrived: str) -> tuple[int, str, float]:
    """Start watch, SIGTERM it once the server has logged ``arrived``; (exit code, stderr, seconds from the
    signal to the exit)."""
    proc = spawn("watch", "1001", "--json", "--interval", "0.1")
    try:
        deadline = time.monotonic() + 15
        while arrived not in icws.log:
            assert time.monotonic() < deadline and proc.poll() is None, f"never saw {arrived}"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        _out, err = proc.communicate(timeout=5 + SLACK)
    finally:
        proc.kill()
    assert "Traceback" not in err, err
    return proc.returncode, err, time.monotonic() - signalled


def test_sigterm_during_the_subscribe_removes_the_subscription_once_it_exists() -> None:
    icws = SlowSubscribe(1.5)
    with serve(icws):
        code, err, _took = sigterm_once(icws, "PUT 1001 chat received")
        assert code == ExitCode.TERMINATED, err
        assert "DELETE 1001 chat received" in icws.log
        assert icws.log.index("PUT 1001 chat done") < icws.log.index("DELETE 1001 chat received"), icws.log


class TricklingDelete(ICWS):
    """A slow-loris on clean-up: each DELETE is answered one byte a second, for a minute."""

    def unsubscribe(self, conn: socket.socket, iid: str, *, chat: bool) -> None:
        for byte in b"HTTP/1.1 204 No Content\r\n" * 3:
            conn.sendall(bytes([byte]))
            time.sleep(1)


@pytest.mark.parametrize(
    ("handler", "arrived", "said"),
    [
        (
            lambda: SlowSubscribe(60),
            "PUT 1001 chat received",
            "the chat subscription for interaction 1001 may be left on the server",
        ),
        # The interaction watch is made after the chat subscription: both exist then.
        (
            TricklingDelete,
            "PUT 1001 received",
            "the chat subscription for interaction 1001 could not be removed",
        ),
    ],
    ids=["subscribe-never-answered", "delete-trickled"],
)
def test_clean_up_takes_a_few_seconds_in_all_then_says_what_it_left(
    handler: Callable[[], ICWS], arrived: str, said: str
) -> None:
    icws = handler()
    with serve(icws):
        code, err, took = sigterm_once(icws, arrived)
        assert code == ExitCode.TERMINATED, err
        assert took < 5 + SLACK
        assert said in err
        assert "icwschat unsubscribe 1001" in err


# ---- snapshots, morphs and faults --------------------------------------------------------------------


class MembersOnly(ICWS):
    """A chat with no lines: the subscription brings a members snapshot and no contents snapshot."""

    def subscribe(self, conn: socket.socket, iid: str, *, chat: bool) -> None:
        if chat:
            with self.lock:
                self.queue.append(members_msg(delta=False, added=[member("agent.one", "Agent One", 2)]))
        super().subscribe(conn, iid, chat=chat)


def test_transcript_of_a_chat_with_only_a_members_snapshot_completes() -> None:
    with serve(MembersOnly()):
        started = time.monotonic()
        result = icwschat("transcript", "1001", "--json", "--timeout", "20", timeout=40)
        assert result.code == 0, result.err
        assert time.monotonic() - started < 15
        events = result.events()
        assert [e["event"] for e in events] == ["member_joined"]
        assert events[0]["member"]["type"] == "current_user"


def ended(iid: str) -> dict[str, Any]:
    return {
        "__type": "urn:inin.com:interactions:interactionChangedMessage",
        "isDelta": True,
        "interactionID": iid,
        "attributes": {"Eic_State": "E"},
    }


class Interrupted(ICWS):
    """Sends ``interruption`` once, at the second empty poll after the first chat subscription: the
    watcher has its snapshot by then."""

    def __init__(self, interruption: dict[str, Any]) -> None:
        super().__init__()
        self.interruption = interruption
        self.empty_polls = 0

    def poll(self, conn: socket.socket) -> None:
        with self.lock:
            if any(what.endswith(" chat received") for what in self.log) and not self.queue:
                self.empty_polls += 1
                if self.empty_polls == 2:
                    self.queue.append(self.interruption)
        super().poll(conn)


class Morphing(Interrupted):
    """Chat 1001 becomes 2002 after its first snapshot has been read; 2002 ends after one more line."""

    def __init__(self) -> None:
        super().__init__(
            {
                "__type": "urn:inin.com:interactions:interactionMorphedMessage",
                "isDelta": True,
                "interactionID": "1001",
                "newInteractionID": "2002",
            }
        )

    def chat(self, iid: str, *texts: str) -> list[dict[str, Any]]:
        people = [member("jane", iid=iid), member("agent", iid=iid)]
        lines = [line("jane" if i % 2 == 0 else "agent", t, iid=iid) for i, t in enumerate(texts)]
        return [members_msg(delta=False, added=people, iid=iid), contents_msg(*lines, delta=False, iid=iid)]

    def subscribe(self, conn: socket.socket, iid: str, *, chat: bool) -> None:
        with self.lock:
            if chat and iid == "1001":
                self.queue += self.chat("1001", "hello", "hi")
            elif chat and iid == "2002":
                bye = contents_msg(line("jane", "bye", iid="2002"), iid="2002")
                self.queue += [*self.chat("2002", "hello", "hi", "moved"), bye, ended("2002")]
        super().subscribe(conn, iid, chat=chat)

    def unsubscribe(self, conn: socket.socket, iid: str, *, chat: bool) -> None:
        if iid == "1001":
            reply(conn, 404, {"message": "The interaction does not exist."})
        else:
            super().unsubscribe(conn, iid, chat=chat)


def watched_to_the_end(icws: ICWS) -> list[dict[str, Any]]:
    with serve(icws):
        result = icwschat("watch", "1001", "--json", "--interval", "0.1", timeout=40)
    assert result.code == 0, result.err
    return result.events()


def test_a_morphed_chat_is_followed_under_its_new_id() -> None:
    icws = Morphing()
    events = watched_to_the_end(icws)
    assert [e["text"] for e in events if e["event"] == "message"] == ["hello", "hi", "moved", "bye"]
    kinds = [e["event"] for e in events]
    assert kinds.count("member_joined") == 2 and "member_left" not in kinds
    assert "resynced" in kinds and kinds[-1] == "chat_ended"
    after = events[kinds.index("resynced") :]
    assert {e["interactionId"] for e in after} == {"2002"}
    assert "PUT 2002 chat received" in icws.log
    assert "DELETE 1001 chat received" in icws.log  # best effort: the server says it is gone already
    assert "DELETE 2002 chat received" in icws.log  # the clean-up on the way out


def test_a_capture_of_a_morphed_chat_replays_as_it_was_watched(tmp_path: Path) -> None:
    with serve(Morphing()):
        raw = icwschat("watch", "1001", "--raw", "--interval", "0.1", timeout=40)
    assert raw.code == 0, raw.err
    # Other messages after the morph push what follows into a later batch of replay's parser.
    lines = raw.out.splitlines(keepends=True)
    at = next(i for i, text in enumerate(lines) if "interactionMorphedMessage" in text) + 1
    other = json.dumps({"__type": "urn:inin.com:status:userStatusMessage", "isDelta": True}) + "\n"
    capture = tmp_path / "morphed.ndjson"
    capture.write_text("".join([*lines[:at], *[other] * 600, *lines[at:]]))
    replayed = icwschat("replay", str(capture), "--json")
    assert replayed.code == 0, replayed.err
    events = replayed.events()
    assert [e["text"] for e in events if e["event"] == "message"] == ["hello", "hi", "moved", "bye"]
    assert [e["interactionId"] for e in events[-2:]] == ["2002", "2002"]
    assert events[-1]["event"] == "chat_ended"


class Faulting(Interrupted):
    """The chat subscription faults once after its first snapshot; the next one brings a new line."""

    def __init__(self) -> None:
        super().__init__(
            {
                "__type": "urn:inin.com:messaging:subscriptionStateMessage",
                "isDelta": True,
                "state": 3,
                "error": {"message": "The subscription has faulted."},
            }
        )
        self.subscribes = 0

    def subscribe(self, conn: socket.socket, iid: str, *, chat: bool) -> None:
        with self.lock:
            if chat:
                self.subscribes += 1
                lines = [line("jane", "hello"), line("agent", "hi")]
                if self.subscribes > 1:
                    lines.append(line("jane", "said while faulted"))
                self.queue += [
                    members_msg(delta=False, added=[member("jane"), member("agent")]),
                    contents_msg(*lines, delta=False),
                ]
                if self.subscribes > 1:
                    self.queue.append(ended("1001"))
        super().subscribe(conn, iid, chat=chat)


def test_a_faulted_subscription_is_made_again_and_nothing_is_lost() -> None:
    icws = Faulting()
    events = watched_to_the_end(icws)
    assert [e["text"] for e in events if e["event"] == "message"] == ["hello", "hi", "said while faulted"]
    assert "resynced" in [e["event"] for e in events]
    assert icws.subscribes == 2


# ---- the same against the simulator's fault knobs ------------------------------------------------------


@pytest.fixture
def paced() -> Iterator[SimulatorServer]:
    """Chat 1001 takes about 3 s: time to inject a fault mid-chat."""
    with logged_in_sim(speed=5.0) as server:
        yield server


@pytest.mark.parametrize("transport", ["poll", "sse"])
def test_a_chat_that_morphs_mid_way_is_followed_to_its_end(paced: SimulatorServer, transport: str) -> None:
    morph = functools.partial(paced.simulator.morph, "1001", "7001")
    code, events, err = watch_with_fault(paced, morph, "--transport", transport)
    assert code == 0, err
    assert paced.simulator.faults.injected["morph"] == 1
    assert_every_line_once(paced, events)
    kinds = [e["event"] for e in events]
    assert kinds.count("resynced") == 1
    assert {e["interactionId"] for e in events[kinds.index("resynced") :]} == {"7001"}
    assert paced.simulator.subscribers("7001") == []


@pytest.mark.parametrize("transport", ["poll", "sse"])
def test_a_faulted_subscription_mid_chat_is_made_again(paced: SimulatorServer, transport: str) -> None:
    code, events, err = watch_with_fault(paced, paced.simulator.fault_subscriptions, "--transport", transport)
    assert code == 0, err
    assert paced.simulator.faults.injected["faultSubscriptions"] == 1
    assert [e["event"] for e in events].count("resynced") == 1
    assert_every_line_once(paced, events)


def test_a_session_logged_off_for_good_ends_the_watch_with_exit_3(paced: SimulatorServer) -> None:
    reason = "An administrator logged you off."
    drop = functools.partial(paced.simulator.drop_sessions, should_reconnect=False, reason=reason)
    code, _events, err = watch_with_fault(paced, drop)
    assert code == ExitCode.AUTHENTICATION, err
    assert paced.simulator.faults.injected["dropSessions"] == 1
    assert "asked not to reconnect" in err and reason in err
    assert paced.simulator.logins == 1


def test_transcript_without_a_contents_snapshot_completes(slow_sim: SimulatorServer) -> None:
    slow_sim.simulator.faults.withhold_contents = True
    # Chat 1001 ends after 15 s: a transcript still waiting for contents at 10 s gives up with exit 5.
    result = icwschat("transcript", "1001", "--json", "--timeout", "10")
    assert result.code == 0, result.err
    assert slow_sim.simulator.faults.injected["withholdContents"] == 1
    events = result.events()
    assert events[0]["event"] == "member_joined" and events[0]["history"] is True
    # No history lines without a contents snapshot; a line said meanwhile may come as new.
    assert not any(e["history"] for e in events if e["event"] == "message")


def test_sigterm_while_the_simulator_delays_the_subscribe_leaves_nothing(slow_sim: SimulatorServer) -> None:
    slow_sim.simulator.faults.subscribe_delay = 1.5
    proc = spawn("watch", "1001", "--json")
    try:
        deadline = time.monotonic() + 15
        while not slow_sim.simulator.faults.injected["subscribeDelay"]:
            assert time.monotonic() < deadline and proc.poll() is None, "watch never subscribed"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=5 + SLACK)
    finally:
        proc.kill()
    assert proc.returncode == ExitCode.TERMINATED, err
    time.sleep(2.0)  # past the delay: a PUT the clean-up did not wait for has registered by now
    assert slow_sim.simulator.subscribers("1001") == []


# ---- restarts after kill -9 repeat nothing -----------------------------------------------------------

RESTARTS = 20
RESTART_SPEED = 12.0


def restart_after_kill(run: int, root: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """One run: a watcher killed with SIGKILL mid-chat, then a second one to the chat's end; what the
    chat's lines were, and the second watcher's events."""
    sim = start_sim(speed=RESTART_SPEED)
    env = cli_env(ICWSCHAT_HOME=str(root / f"home-{run}"), ICWS_PASSWORD=PASSWORD)
    transport = ("poll", "sse")[run % 2]
    try:
        logged_in = icwschat("login", "--server", sim.url, "--user", USER, env=env)
        assert logged_in.code == 0, logged_in.err
        args = ("watch", "1001", "--json", "--interval", "0.1", "--transport", transport)
        first = spawn(*args, env=env)
        assert first.stdout is not None
        for text in first.stdout:  # killed at its first event that is not history
            if not json.loads(text).get("history"):
                break
        first.kill()
        first.communicate(timeout=10)
        second = spawn(*args, env=env)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        with sim.simulator.changed:
            chat = sim.simulator.chats["1001"]
            said = [entry["text"] for entry in chat.transcript]
        return said, [json.loads(text) for text in out.splitlines()]
    finally:
        sim.stop()


def repeats(events: list[dict[str, Any]], said: list[str]) -> tuple[int, int, int]:
    """(lines repeated, lines lost, member_joined for someone already present)."""
    got = Counter(e["text"] for e in events if e["event"] == "message")
    wanted = Counter(said)
    present: set[str] = set()
    joined_twice = 0
    for event in events:
        user = event.get("member", {}).get("userId")
        if event["event"] == "member_joined":
            joined_twice += user in present
            present.add(user)
        elif event["event"] == "member_left":
            present.discard(user)
    return sum((got - wanted).values()), sum((wanted - got).values()), joined_twice


def test_restarts_after_kill_9_repeat_and_lose_nothing(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda run: restart_after_kill(run, tmp_path), range(RESTARTS)))
    tallies = [repeats(events, said) for said, events in runs]
    assert all(events[-1]["event"] == "chat_ended" for _said, events in runs)
    assert [t for t in tallies if t != (0, 0, 0)] == [], tallies
