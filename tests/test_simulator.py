"""The simulator speaks the protocol reference, whatever the client does."""

from __future__ import annotations

import json

import pytest
import requests
from conftest import PASSWORD, USER

from icwschat.simulator import SimulatorServer
from icwschat.simulator.scenarios import ScenarioError, load_scenarios
from icwschat.simulator.server import ensure_loopback

AUTH = "urn:inin.com:connection:icAuthConnectionRequestSettings"
BODY = {"__type": AUTH, "applicationName": "t", "userID": USER, "password": PASSWORD}


def post_login(sim: SimulatorServer, **headers: str) -> requests.Response:
    return requests.post(
        f"{sim.url}/icws/connection?include=features,version",
        data=json.dumps(BODY),
        headers={"Content-Type": "application/json", **headers},
        timeout=5,
    )


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
    body = post_login(sim, **{"Accept-Language": "en-us"}).json()
    sid = body["sessionId"]
    cookie = sim.simulator.sessions[sid].cookie_value
    headers = {"ININ-ICWS-CSRF-Token": body["csrfToken"], "Cookie": f"icws_{sid}={cookie}"}
    put = requests.put(
        f"{sim.url}/icws/{sid}/messaging/subscriptions/interactions/1001/chat", headers=headers, timeout=5
    )
    assert put.status_code == 200
    messages = requests.get(f"{sim.url}/icws/{sid}/messaging/messages", headers=headers, timeout=5).json()
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
