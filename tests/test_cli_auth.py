"""login, status and logout through the real CLI: exit codes, messages, files and secrets."""

from __future__ import annotations

import os
import shutil
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from conftest import PASSWORD, USER, cli_env, icwschat, login, start_sim, stored_session

from icwschat.simulator import SimulatorServer


def test_login_writes_a_private_session_without_the_password(sim: SimulatorServer, isolated: Path) -> None:
    result = login(sim)
    assert f"Logged in to {sim.url} as {USER}" in result.out
    assert stat.S_IMODE(os.stat(isolated).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(isolated / "session.json").st_mode) == 0o600
    for path in isolated.rglob("*"):
        assert PASSWORD not in path.read_text(errors="replace")
    assert stored_session(isolated)["features"]["messaging"] == 2


def test_password_from_stdin(sim: SimulatorServer) -> None:
    result = icwschat("login", "--server", sim.url, "--user", USER, "--password-stdin", input=PASSWORD + "\n")
    assert result.code == 0, result.err


def test_server_and_user_from_the_environment(sim: SimulatorServer) -> None:
    env = cli_env(ICWS_SERVER=sim.url, ICWS_USER=USER, ICWS_PASSWORD=PASSWORD)
    assert icwschat("login", env=env).code == 0


def test_no_password_source_is_a_usage_error(sim: SimulatorServer) -> None:
    result = icwschat("login", "--server", sim.url, "--user", USER, input="")
    assert result.code == 2
    assert "set ICWS_PASSWORD or pipe it with --password-stdin" in result.err


def test_there_is_no_password_option(sim: SimulatorServer) -> None:
    result = icwschat("login", "--server", sim.url, "--user", USER, "--password", PASSWORD)
    assert result.code == 2


def test_bad_password_exits_3_with_a_sentence(sim: SimulatorServer, isolated: Path) -> None:
    result = icwschat("login", "--server", sim.url, "--user", USER, env=cli_env(ICWS_PASSWORD="wrong"))
    assert result.code == 3
    assert "login failed for 'agent.one': wrong user name or password" in result.err
    assert "error.request.connection.authenticationFailure" in result.err
    assert not (isolated / "session.json").exists()


def test_unreachable_server_exits_5() -> None:
    result = icwschat(
        "login", "--server", "http://127.0.0.1:9", "--user", USER, env=cli_env(ICWS_PASSWORD=PASSWORD)
    )
    assert result.code == 5
    assert "cannot reach 127.0.0.1:9" in result.err


def test_bad_server_url_is_a_usage_error() -> None:
    result = icwschat("login", "--server", "cic:8019", "--user", USER, env=cli_env(ICWS_PASSWORD=PASSWORD))
    assert result.code == 2
    assert "has no scheme" in result.err


def test_switchover_on_503_is_announced_and_remembered(sim: SimulatorServer, isolated: Path) -> None:
    peer = start_sim(host="127.0.0.2", port=sim.port)
    try:
        sim.simulator.faults.login_alternates = ["127.0.0.2"]
        result = login(sim)
        assert "trying alternate host http://127.0.0.2" in result.err
        assert stored_session(isolated)["server"] == peer.url
        assert icwschat("status").code == 0
    finally:
        peer.stop()


def test_503_with_no_working_alternate_exits_5(sim: SimulatorServer) -> None:
    sim.simulator.faults.login_alternates = []
    result = icwschat("login", "--server", sim.url, "--user", USER, env=cli_env(ICWS_PASSWORD=PASSWORD))
    assert result.code == 5
    assert "unavailable for login (503)" in result.err


def test_malformed_reply_exits_5_with_a_sentence() -> None:
    with serve(b"<html>not icws</html>", status=201) as url:
        result = icwschat("login", "--server", url, "--user", USER, env=cli_env(ICWS_PASSWORD=PASSWORD))
    assert result.code == 5
    assert "reply to login is not JSON" in result.err


def test_status_and_logout(logged_in: SimulatorServer, isolated: Path) -> None:
    status = icwschat("status")
    assert status.code == 0
    assert "Connection: up" in status.out
    sid = stored_session(isolated)["session_id"]
    assert icwschat("status", "--json").events()[0]["sessionId"] == sid
    out = icwschat("logout")
    assert (out.code, out.out.strip()) == (0, f"Logged out of {logged_in.url}.")
    assert sid not in logged_in.simulator.sessions
    assert not (isolated / "session.json").exists()
    again = icwschat("logout")
    assert (again.code, again.out.strip()) == (0, "Not logged in; nothing to do.")


def test_status_without_a_session_exits_3() -> None:
    result = icwschat("status")
    assert result.code == 3
    assert "not logged in" in result.err


def test_status_of_an_expired_session_exits_3(logged_in: SimulatorServer) -> None:
    logged_in.simulator.expire_sessions()
    result = icwschat("status")
    assert result.code == 3
    assert "Connection: expired" in result.out


def test_status_of_an_unreachable_server_exits_5(sim: SimulatorServer) -> None:
    login(sim)
    sim.stop()
    assert icwschat("status").code == 5


def test_logout_of_an_expired_session_still_succeeds(logged_in: SimulatorServer, isolated: Path) -> None:
    logged_in.simulator.expire_sessions()
    result = icwschat("logout")
    assert result.code == 0
    assert "had already expired" in result.out
    assert not (isolated / "session.json").exists()


def test_debug_redacts_token_cookie_and_password(sim: SimulatorServer, isolated: Path) -> None:
    result = icwschat(
        "--debug", "login", "--server", sim.url, "--user", USER, env=cli_env(ICWS_PASSWORD=PASSWORD)
    )
    assert result.code == 0
    session = stored_session(isolated)
    assert "POST" in result.err and "<redacted>" in result.err
    for secret in (PASSWORD, session["csrf_token"], session["cookie"].split("=", 1)[1]):
        assert secret not in result.err
    status = icwschat("--debug", "status")
    assert session["csrf_token"] not in status.err and "GET" in status.err


def test_version_and_help() -> None:
    assert icwschat("--version").out.startswith("icwschat ")
    commands = ["login", "status", "logout", "watch", "transcript", "replay", "unsubscribe"]
    for command in [*commands, "simulate", "demo"]:
        result = icwschat(command, "--help")
        assert result.code == 0 and "Usage" in result.out, command
        assert "<str>" not in result.out and "range>" not in result.out, command  # every value is named


# ---- TLS --------------------------------------------------------------------------------------------


class _Reply(BaseHTTPRequestHandler):
    body = b""
    status = 200

    def do_POST(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


class serve:
    def __init__(self, body: bytes, status: int = 200, tls: ssl.SSLContext | None = None) -> None:
        handler = type("Handler", (_Reply,), {"body": body, "status": status})
        self.server = HTTPServer(("127.0.0.1", 0), handler)
        if tls:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls else "http"

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"{self.scheme}://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def self_signed(tmp_path: Path) -> Iterator[ssl.SSLContext]:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a test certificate"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.cert_path = cert  # type: ignore[attr-defined]
    yield context


def test_tls_failure_exits_5_and_hints_at_ca_bundle(self_signed: ssl.SSLContext) -> None:
    with serve(b"{}", tls=self_signed) as url:
        result = icwschat("login", "--server", url, "--user", USER, env=cli_env(ICWS_PASSWORD=PASSWORD))
    assert result.code == 5
    assert "TLS verification failed for 127.0.0.1" in result.err
    assert "--ca-bundle" in result.err


REFUSING_LOGIN = b'{"errorId": "error.request.connection.authenticationFailure", "message": "no"}'


@pytest.mark.parametrize("trust", ["--ca-bundle", "--insecure"])
def test_tls_is_trusted_with_ca_bundle_or_skipped_loudly(self_signed: ssl.SSLContext, trust: str) -> None:
    cert = str(self_signed.cert_path)  # type: ignore[attr-defined]
    extra = [trust, cert] if trust == "--ca-bundle" else [trust]
    with serve(REFUSING_LOGIN, status=400, tls=self_signed) as url:
        result = icwschat(
            "login", "--server", url, "--user", USER, *extra, env=cli_env(ICWS_PASSWORD=PASSWORD)
        )
    assert result.code == 3, result.err  # got through TLS to the (refusing) server
    assert ("WARNING: --insecure" in result.err) == (trust == "--insecure")
