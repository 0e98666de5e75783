"""The simulator speaks the protocol reference, whatever the client does."""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from conftest import PASSWORD, USER, start_sim

from icwschat.simulator import Faults, Simulator, SimulatorServer
from icwschat.simulator.faults import FAULT_KNOBS, WWW_AUTHENTICATE
from icwschat.simulator.scenarios import ScenarioError, load_scenarios
from icwschat.simulator.server import ensure_loopback

AUTH = "urn:inin.com:connection:icAuthConnectionRequestSettings"
BODY = {"__type": AUTH, "applicationName": "t", "userID": USER, "password": PASSWORD}
CHAT_1001 = "messaging/subscriptions/interactions/1001/chat"
SUPERVISOR = "sue.supervisor"


@pytest.fixture
def still_sim() -> Iterator[SimulatorServer]:
    """A simulator whose scripts do not advance during a test, so a poll holds only what the test caused."""
    server = start_sim(speed=1e-6)
    yield server
    server.stop()


def post_login(
    sim: SimulatorServer, user: str = USER, password: str = PASSWORD, **headers: str
) -> requests.Response:
    return requests.post(
        f"{sim.url}/icws/connection?include=features,version",
        data=json.dumps({**BODY, "userID": user, "password": password}),
        headers={"Content-Type": "application/json", **headers},
        timeout=5,
    )


@dataclass
class Icws:
    """One logged-in session, spoken to over HTTP as a client would."""

    url: str
    sid: str
    headers: dict[str, str]

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 10)
        kw.setdefault("headers", self.headers)
        return requests.request(method, f"{self.url}/icws/{self.sid}/{path}", **kw)

    def put(self, path: str) -> requests.Response:
        return self.call("PUT", path, json={})

    def delete(self, path: str) -> requests.Response:
        return self.call("DELETE", path)

    def poll(self) -> list[dict[str, Any]]:
        reply = self.call("GET", "messaging/messages")
        assert reply.status_code == 200, reply.text
        messages: list[dict[str, Any]] = reply.json()
        return messages

    def poll_until(self, wanted: str, tries: int = 50) -> list[dict[str, Any]]:
        """Every message up to and including the first whose __type ends with ``wanted``."""
        seen: list[dict[str, Any]] = []
        for _ in range(tries):
            seen += self.poll()
            if any(m["__type"].endswith(wanted) for m in seen):
                return seen
            time.sleep(0.1)
        raise AssertionError(f"no {wanted} in {seen}")

    def stream_events(self, most: int = 20, seconds: float = 15) -> Iterator[str]:
        """The data of each event of one event stream, until the server closes it (or ``most`` events, or
        ``seconds``: keep-alive pings arrive every few seconds)."""
        deadline = time.monotonic() + seconds
        with self.call(
            "GET", "messaging/messages", stream=True, headers={**self.headers, "Accept": "text/event-stream"}
        ) as reply:
            assert reply.status_code == 200, reply.text
            for line in reply.iter_lines(decode_unicode=True):
                if line.startswith("data: "):
                    yield line[len("data: ") :]
                    most -= 1
                if most <= 0 or time.monotonic() > deadline:
                    return


def connect(sim: SimulatorServer, user: str = USER, password: str = PASSWORD) -> Icws:
    reply = post_login(sim, user, password, **{"Accept-Language": "en-us"})
    assert reply.status_code == 201, reply.text
    sid = reply.json()["sessionId"]
    cookie = reply.headers["Set-Cookie"].split(";")[0]
    return Icws(sim.url, sid, {"ININ-ICWS-CSRF-Token": reply.json()["csrfToken"], "Cookie": cookie})


def set_faults(sim: SimulatorServer, **body: Any) -> requests.Response:
    return requests.post(f"{sim.url}/_sim/faults", json=body, timeout=5)


def injected(sim: SimulatorServer) -> dict[str, int]:
    counts: dict[str, int] = requests.get(f"{sim.url}/_sim/state", timeout=5).json()["faults"]
    return counts


def test_login_reply_is_201_with_headers_cookie_and_body(sim: SimulatorServer) -> None:
    reply = post_login(sim, **{"Accept-Language": "en-us"})
    body = reply.json()
    assert reply.status_code == 201
    assert reply.headers["ININ-ICWS-Session-ID"] == body["sessionId"]
    assert reply.headers["ININ-ICWS-CSRF-Token"] == body["csrfToken"]
    sid = body["sessionId"]
    assert reply.headers["Set-Cookie"].startswith(f"icws_{sid}=")
    assert f"Path=/icws/{sid}" in reply.headers["Set-Cookie"]
    assert reply.headers["Location"] == f"/icws/{sid}/connection"
    assert {"featureId": "messaging", "version": 2} in body["features"]
    assert body["version"]["majorVersion"]


def test_login_requires_accept_language(sim: SimulatorServer) -> None:
    reply = requests.post(f"{sim.url}/icws/connection", json=BODY, headers={"Accept-Language": ""}, timeout=5)
    assert reply.status_code == 400


def test_login_with_503_names_alternate_hosts(sim: SimulatorServer) -> None:
    sim.simulator.faults.login_alternates = ["cic-b"]
    reply = post_login(sim, **{"Accept-Language": "en-us"})
    assert reply.status_code == 503
    assert reply.json()["alternateHostList"] == ["cic-b"]
    assert reply.json()["errorId"] == "error.server.notAcceptingConnections"


def test_sessionless_endpoints(sim: SimulatorServer) -> None:
    assert requests.get(f"{sim.url}/icws/connection/version", timeout=5).json()["majorVersion"]
    features = requests.get(f"{sim.url}/icws/connection/features", timeout=5).json()["featureInfoList"]
    assert {f["featureId"] for f in features} >= {"messaging", "interactions", "connection"}
    one = requests.get(f"{sim.url}/icws/connection/features/messaging", timeout=5).json()
    assert one == {"featureId": "messaging", "version": 2}


def test_the_first_messages_after_subscribing_are_the_snapshot(sim: SimulatorServer) -> None:
    icws = connect(sim)
    assert icws.put(CHAT_1001).status_code == 200
    messages = icws.poll()
    assert [m["isDelta"] for m in messages[:2]] == [False, False]
    assert messages[0]["__type"].endswith("chatMembersMessage")
    assert messages[1]["__type"].endswith("chatContentsMessage")
    assert len(messages[1]["messagesAdded"]) == 4


def test_simulator_refuses_non_loopback_addresses() -> None:
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        with pytest.raises(ValueError, match="loopback"):
            ensure_loopback(host)


def test_scenario_errors_name_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bad.json").write_text('{"interactionId": "1", "script": [{"at": 1, "op": "dance"}]}')
    with pytest.raises(ScenarioError, match=r"bad\.json"):
        load_scenarios(tmp_path)


def test_simulate_command_prints_how_to_log_in_and_serves(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import signal

    from conftest import spawn

    proc = spawn("simulate", "--port", "0")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("ICWS simulator listening on http://127.0.0.1:")
        url = first.split()[-1]
        header = [proc.stdout.readline() for _ in range(5)]
        assert f"user: {USER}   password: {PASSWORD}" in header[0]
        assert [h.split()[1] for h in header[1:]] == ["1001:", "1002:", "1003:", "1004:"]
        assert requests.get(f"{url}/icws/connection/version", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    assert "Traceback" not in err


def test_simulate_refuses_a_non_loopback_host() -> None:
    from conftest import icwschat

    result = icwschat("simulate", "--host", "0.0.0.0", "--port", "0")
    assert result.code == 2
    assert "loopback" in result.err


# ---- fault knobs over HTTP ---------------------------------------------------------------------------

KNOB_VALUES: dict[str, Any] = {
    "loginAlternates": ["cic-b"],
    "loginStatus": 429,
    "callStatus": 503,
    "retryAfter": 2.5,
    "pollFailures": ["500", "429", "down"],
    "downEveryPoll": True,
    "delay": 0.0,
    "dropStreamsAfter": 3,
    "corruptEvents": 2,
    "withholdSnapshots": True,
    "withholdContents": True,
    "subscribeDelay": 0.25,
    "queueResultLimit": 10,
    "omitObjectType": True,
}


def test_every_faults_field_is_a_knob_by_its_camelcase_name(sim: SimulatorServer) -> None:
    assert set(FAULT_KNOBS) == set(KNOB_VALUES)
    assert set_faults(sim, **KNOB_VALUES).json() == {"ok": True}
    faults = sim.simulator.faults
    for key, value in KNOB_VALUES.items():
        got = getattr(faults, FAULT_KNOBS[key].name)
        assert (list(got) if key == "pollFailures" else got) == value, key
    assert Faults().injected == {}


@pytest.mark.parametrize(
    "body",
    [
        {"delay": 0.5, "dleay": 1},
        {"delay": 0.5, "loginStatus": 200},
        {"delay": 0.5, "pollFailures": ["418"]},
        {"delay": 0.5, "retryAfter": -1},
        {"delay": 0.5, "downEveryPoll": "yes"},
        {"delay": 0.5, "morph": {"from": "1001"}},
        {"delay": 0.5, "dropSessions": {"shouldReconnect": "no"}},
    ],
)
def test_a_bad_knob_is_refused_whole_and_named(sim: SimulatorServer, body: dict[str, Any]) -> None:
    reply = set_faults(sim, **body)
    assert reply.status_code == 400
    bad = next(key for key in body if key != "delay")
    assert bad in reply.json()["message"]
    assert sim.simulator.faults.delay == 0.0


@pytest.mark.parametrize(
    ("status", "error_code", "header"),
    [(401, 1, "WWW-Authenticate"), (429, None, "Retry-After"), (503, None, None), (500, -2147467259, None)],
)
def test_login_status_answers_every_login(
    sim: SimulatorServer, status: int, error_code: int | None, header: str | None
) -> None:
    set_faults(sim, loginStatus=status, retryAfter=7)
    replies = [post_login(sim, **{"Accept-Language": "en-us"}) for _ in range(3)]
    assert [r.status_code for r in replies] == [status] * 3
    assert replies[0].json()["message"]
    assert replies[0].json().get("errorCode") == error_code
    if header:
        assert replies[0].headers[header] == ("7" if header == "Retry-After" else WWW_AUTHENTICATE)
    assert injected(sim) == {"loginStatus": 3}
    assert sim.simulator.logins == 0


def test_login_status_400_is_the_bad_credentials_body(sim: SimulatorServer) -> None:
    set_faults(sim, loginStatus=400)
    body = post_login(sim, **{"Accept-Language": "en-us"}).json()
    assert body["errorId"] == "error.request.connection.authenticationFailure"
    assert body["errorCode"] == -2147221503


@pytest.mark.parametrize("status", [401, 429, 503])
def test_call_status_answers_every_session_call_but_not_login(sim: SimulatorServer, status: int) -> None:
    icws = connect(sim)
    set_faults(sim, callStatus=status, retryAfter=0.5)
    replies = [
        icws.call("GET", "messaging/messages"),
        icws.call("GET", "messaging/messages", headers={**icws.headers, "Accept": "text/event-stream"}),
        icws.put(CHAT_1001),
        icws.call("GET", "connection"),
        icws.call("GET", "no/such/path"),
    ]
    assert [r.status_code for r in replies] == [status] * 5
    assert all(r.json()["message"] for r in replies)
    if status == 401:
        assert replies[0].headers["WWW-Authenticate"] == WWW_AUTHENTICATE
    if status == 429:
        assert replies[0].headers["Retry-After"] == "0.5"
    if status == 503:
        assert replies[0].json()["errorId"] == "error.server.unavailable"
    assert injected(sim) == {"callStatus": 5}
    assert post_login(sim, **{"Accept-Language": "en-us"}).status_code == 201
    assert requests.get(f"{sim.url}/icws/connection/version", timeout=5).status_code == 200
    assert sim.simulator.subscribers("1001") == []


def test_poll_failures_429_and_down_keep_the_session_and_its_queue(sim: SimulatorServer) -> None:
    icws = connect(sim)
    icws.put(CHAT_1001)
    set_faults(sim, pollFailures=["429", "down"], retryAfter=3)
    busy = icws.call("GET", "messaging/messages")
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "3"
    down = icws.poll()
    assert down == [
        {
            "__type": "urn:inin.com:connection:connectionStateChangeMessage",
            "isDelta": True,
            "previousConnectionState": 1,
            "newConnectionState": 2,
            "reason": down[0]["reason"],
            "shouldReconnect": True,
        }
    ]
    snapshot = icws.poll()
    assert [m["isDelta"] for m in snapshot[:2]] == [False, False]
    assert injected(sim) == {"pollFailures": 2}


def test_down_every_poll_answers_every_poll_and_stream(sim: SimulatorServer) -> None:
    icws = connect(sim)
    set_faults(sim, downEveryPoll=True)
    for _ in range(3):
        assert icws.poll()[0]["newConnectionState"] == 2
    events = list(icws.stream_events())
    assert [json.loads(e)["newConnectionState"] for e in events] == [2]
    assert injected(sim) == {"downEveryPoll": 4}
    assert icws.call("GET", "connection").json()["connectionState"] == 1


@pytest.mark.parametrize("should_reconnect", [True, False])
def test_dropped_sessions_say_should_reconnect_as_given(sim: SimulatorServer, should_reconnect: bool) -> None:
    sessions = [connect(sim), connect(sim)]
    set_faults(sim, dropSessions={"shouldReconnect": should_reconnect, "reason": "Logged off by admin."})
    for icws in sessions:
        (message,) = icws.poll()
        assert message["newConnectionState"] == 2
        assert (message["shouldReconnect"], message["reason"]) == (should_reconnect, "Logged off by admin.")
    state = sessions[0].call("GET", "connection").json()
    assert state == {
        "connectionState": 2,
        "reason": "Logged off by admin.",
        "shouldReconnect": should_reconnect,
    }
    assert injected(sim) == {"dropSessions": 2}
    deadline = time.monotonic() + 10
    while sessions[0].call("GET", "connection").status_code != 401:
        assert time.monotonic() < deadline, "the dropped session was never forgotten"
        time.sleep(0.1)


def test_drop_session_from_python_defaults_to_should_reconnect(sim: SimulatorServer) -> None:
    icws = connect(sim)
    sim.simulator.drop_session(icws.sid)
    assert icws.poll()[0]["shouldReconnect"] is True
    assert sim.simulator.faults.injected["dropSessions"] == 1


def test_morph_tells_subscribers_and_moves_the_chat_to_the_new_id() -> None:
    server = start_sim(speed=1.0)
    try:
        icws = connect(server)
        icws.put(CHAT_1001)
        icws.put("messaging/subscriptions/interactions/1001")
        icws.poll()
        assert set_faults(server, morph={"from": "1001", "to": "2001001"}).status_code == 200
        morphed = [m for m in icws.poll() if m["__type"].endswith("interactionMorphedMessage")]
        assert morphed == [
            {
                "__type": "urn:inin.com:interactions:interactionMorphedMessage",
                "isDelta": True,
                "interactionID": "1001",
                "newInteractionID": "2001001",
            }
        ]
        assert icws.put(CHAT_1001).status_code == 404
        assert icws.delete(CHAT_1001).status_code == 404
        assert server.simulator.subscribers("1001") == server.simulator.subscribers("2001001") == []
        assert icws.put("messaging/subscriptions/interactions/2001001/chat").status_code == 200
        members, contents = icws.poll()[:2]
        assert {m["interactionId"] for m in members["membersAdded"]} == {"2001001"}
        assert {line["chatMember"]["interactionId"] for line in contents["messagesAdded"]} == {"2001001"}
        assert members["interactionId"] == contents["interactionId"] == "2001001"
        later = icws.poll_until("chatContentsMessage", tries=60)  # the script goes on under the new id
        assert {m["interactionId"] for m in later} == {"2001001"}
        assert injected(server) == {"morph": 1}
    finally:
        server.stop()


def test_faulted_subscriptions_deliver_nothing_until_subscribed_again(still_sim: SimulatorServer) -> None:
    sim = still_sim
    icws = connect(sim)
    icws.put(CHAT_1001)
    icws.poll()
    set_faults(sim, faultSubscriptions=True)
    assert icws.poll() == [
        {
            "__type": "urn:inin.com:messaging:subscriptionStateMessage",
            "isDelta": True,
            "state": 3,
            "error": {"message": "The subscription has faulted."},
        }
    ]
    sim.simulator.say("1001", "jane", "anyone there?")
    assert icws.poll() == []
    assert icws.put(CHAT_1001).status_code == 200
    snapshot = icws.poll()
    assert [m["isDelta"] for m in snapshot] == [False, False]
    assert snapshot[1]["messagesAdded"][-1]["text"] == "anyone there?"
    assert injected(sim) == {"faultSubscriptions": 1}
    set_faults(sim, faultSubscriptions=True)
    assert icws.delete(CHAT_1001).status_code == 204


def test_withhold_contents_sends_the_members_snapshot_and_deltas_only(still_sim: SimulatorServer) -> None:
    sim = still_sim
    icws = connect(sim)
    set_faults(sim, withholdContents=True)
    icws.put(CHAT_1001)
    (members,) = icws.poll()
    assert members["__type"].endswith("chatMembersMessage") and members["isDelta"] is False
    sim.simulator.say("1001", "jane", "hello?")
    delta = [m for m in icws.poll() if m["__type"].endswith("chatContentsMessage")]
    assert delta[0]["isDelta"] is True and delta[0]["messagesAdded"][0]["text"] == "hello?"
    assert injected(sim) == {"withholdContents": 1}


def test_subscribe_delay_lets_a_delete_overtake_the_put(sim: SimulatorServer) -> None:
    icws = connect(sim)
    set_faults(sim, subscribeDelay=1.0)
    put: list[requests.Response] = []
    worker = threading.Thread(target=lambda: put.append(icws.put(CHAT_1001)))
    worker.start()
    deadline = time.monotonic() + 10
    while not sim.simulator.faults.injected["subscribeDelay"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert icws.delete(CHAT_1001).status_code == 404
    worker.join(timeout=10)
    assert put[0].status_code == 200
    assert sim.simulator.subscribers("1001") == [icws.sid]
    assert injected(sim) == {"subscribeDelay": 1}


def test_the_logged_in_user_is_current_user_to_their_session_only() -> None:
    server = SimulatorServer(
        Simulator(load_scenarios(), speed=20.0, users={USER: PASSWORD, SUPERVISOR: "pw"})
    ).start()
    try:
        mine, theirs = connect(server), connect(server, SUPERVISOR, "pw")
        for icws in (mine, theirs):
            icws.put(CHAT_1001)
        server.simulator.say("1001", "agent", "a delta")

        def agent_types(icws: Icws) -> set[int]:
            messages = icws.poll_until("chatMembersMessage")
            members = [
                m for msg in messages for m in msg.get("membersAdded", []) + msg.get("membersChanged", [])
            ]
            lines = [line["chatMember"] for msg in messages for line in msg.get("messagesAdded", [])]
            return {m["chatMemberType"] for m in members + lines if m["userId"] == USER}

        assert agent_types(mine) == {2}
        assert agent_types(theirs) == {3}
    finally:
        server.stop()


def test_every_knob_injection_is_counted(sim: SimulatorServer) -> None:
    icws = connect(sim)
    icws.put(CHAT_1001)
    set_faults(sim, delay=0.05, corruptEvents=1, dropStreamsAfter=2)
    events = list(icws.stream_events())
    assert len(events) == 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[0])
    counts = injected(sim)
    assert counts == {"delay": 1, "corruptEvents": 1, "dropStreamsAfter": 1}


def test_a_port_in_use_is_a_plain_os_error(capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as caught:
            SimulatorServer(Simulator(load_scenarios()), port=port)
    assert (caught.value.errno, caught.value.strerror) == (errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
    assert capfd.readouterr() == ("", "")
