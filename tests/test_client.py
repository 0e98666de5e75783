"""The ICWS client against the simulator over real HTTP: login, switchover, headers, errors."""

from __future__ import annotations

import logging

import pytest
import requests
from conftest import PASSWORD, USER, start_sim

from icwschat.client import HTTP, Connection, alternate_server, login, normalize_server, redact
from icwschat.errors import AuthenticationError, ProtocolError, ServerUnavailable, SessionGone, UsageError
from icwschat.simulator import SimulatorServer


def test_login_stores_what_the_server_handed_out(sim: SimulatorServer) -> None:
    session = login(HTTP(), sim.url, USER, PASSWORD)
    assert session.server == sim.url
    assert session.cookie.startswith(f"icws_{session.session_id}=")
    assert session.csrf_token and session.features["messaging"] == 2
    assert session.user_display_name == "Agent One"


def test_session_calls_work_behind_a_proxy_prefix(sim: SimulatorServer) -> None:
    session = login(HTTP(), f"{sim.url}/api/cic1", USER, PASSWORD)
    connection = Connection(HTTP(), session)
    assert connection.connection_state()["connectionState"] == 1
    connection.subscribe_chat("1002")
    assert sim.simulator.subscribers("1002") == [session.session_id]


def test_bad_password_is_an_authentication_error_with_the_server_words(sim: SimulatorServer) -> None:
    with pytest.raises(AuthenticationError) as caught:
        login(HTTP(), sim.url, USER, "wrong")
    assert caught.value.error_id == "error.request.connection.authenticationFailure"
    assert caught.value.error_code == -2147221503
    assert caught.value.status == 400


def test_switchover_follows_the_alternate_host_and_remembers_it(sim: SimulatorServer) -> None:
    peer = start_sim(host="127.0.0.2", port=sim.port)
    try:
        sim.simulator.faults.login_alternates = ["127.0.0.2"]
        hops: list[str] = []
        session = login(HTTP(), sim.url, USER, PASSWORD, on_switchover=lambda host, err: hops.append(host))
        assert session.server == f"http://127.0.0.2:{sim.port}"
        assert hops == [session.server]
        assert peer.simulator.sessions and not sim.simulator.sessions
    finally:
        peer.stop()


def test_switchover_is_bounded_when_every_host_refuses(sim: SimulatorServer) -> None:
    peer = start_sim(host="127.0.0.2", port=sim.port)
    try:
        sim.simulator.faults.login_alternates = ["127.0.0.2"]
        peer.simulator.faults.login_alternates = ["127.0.0.1"]
        with pytest.raises(ServerUnavailable, match="tried 2 hosts"):
            login(HTTP(), sim.url, USER, PASSWORD)
    finally:
        peer.stop()


def test_unreachable_server_is_server_unavailable() -> None:
    with pytest.raises(ServerUnavailable, match=r"cannot reach 127\.0\.0\.1:9"):
        login(HTTP(), "http://127.0.0.1:9", USER, PASSWORD)


def test_every_session_call_needs_cookie_and_csrf(sim: SimulatorServer) -> None:
    session = login(HTTP(), sim.url, USER, PASSWORD)
    base = f"{sim.url}/icws/{session.session_id}/connection"
    no_csrf = requests.get(base, headers={"Cookie": session.cookie}, timeout=5)
    no_cookie = requests.get(base, headers={"ININ-ICWS-CSRF-Token": session.csrf_token}, timeout=5)
    for reply in (no_csrf, no_cookie):
        assert reply.status_code == 401
        assert reply.headers["WWW-Authenticate"] == 'ICWS realm="ICWS" location="/ICWS/connection"'
    assert no_csrf.json()["errorCode"] == 2


def test_expired_session_is_session_gone(sim: SimulatorServer) -> None:
    connection = Connection(HTTP(), login(HTTP(), sim.url, USER, PASSWORD))
    sim.simulator.expire_sessions()
    with pytest.raises(SessionGone):
        connection.poll_messages()


def test_truncated_json_is_a_protocol_error(sim: SimulatorServer) -> None:
    connection = Connection(HTTP(), login(HTTP(), sim.url, USER, PASSWORD))
    sim.simulator.faults.poll_failures.append("truncated")
    with pytest.raises(ProtocolError, match="not JSON"):
        connection.poll_messages()


def test_logout_deletes_the_server_session(sim: SimulatorServer) -> None:
    session = login(HTTP(), sim.url, USER, PASSWORD)
    Connection(HTTP(), session).logout()
    assert session.session_id not in sim.simulator.sessions


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://cic:8019", "https://cic:8019"),
        ("https://cic:8019/", "https://cic:8019"),
        ("https://cic:8019/icws", "https://cic:8019"),
        ("https://web.example/apps/client/api/cic1/", "https://web.example/apps/client/api/cic1"),
    ],
)
def test_server_urls_are_normalised(given: str, expected: str) -> None:
    assert normalize_server(given) == expected


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("cic:8019", "has no scheme"),
        ("ftp://cic", "not an http"),
        ("https://", "has no host"),
        ("http://", "has no host"),
        ("http://:8018", "has no host"),
        ("https://u:p@cic", "credentials"),
        ("https://cic/?x=1", "query"),
        ("http://cic:notaport", "port that is not a number"),
        ("https://cic:99999", "port that is not a number"),
        ("https://cic:0", "port that is not a number"),
        ("https://[::1", "not a URL"),
    ],
)
def test_bad_server_urls_are_usage_errors_that_say_why(bad: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        normalize_server(bad)


def test_alternate_hosts_keep_scheme_port_and_prefix() -> None:
    assert alternate_server("https://a:8019/pre", "b") == "https://b:8019/pre"
    assert alternate_server("https://web/apps/api/cic1", "cic2") == "https://web/apps/api/cic2"
    for hostile in ["evil/x", "a b", "x\r\nHeader: y", "u@evil", "../"]:
        with pytest.raises(ProtocolError):
            alternate_server("https://a:8019", hostile)


def test_debug_log_redacts_every_secret(sim: SimulatorServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="icwschat")
    session = login(HTTP(), sim.url, USER, PASSWORD)
    Connection(HTTP(), session).connection_state()
    text = caplog.text
    assert "ININ-ICWS-CSRF-Token" in text and "<redacted>" in text
    for secret in (PASSWORD, session.csrf_token, session.cookie.split("=", 1)[1]):
        assert secret not in text


def test_redact_reaches_nested_fields() -> None:
    assert redact({"a": [{"password": "p", "csrfToken": "t"}]}) == {
        "a": [{"password": "<redacted>", "csrfToken": "<redacted>"}]
    }
