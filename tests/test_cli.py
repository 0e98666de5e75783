"""Commands run in-process with an injected Environment: exit statuses, messages, what reaches a terminal."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORD, USER, icwschat
from hostile import HostileServer, Request, login_reply, reply
from typer.testing import CliRunner

from icwschat import runtime
from icwschat.cli import app
from icwschat.environment import Environment
from icwschat.errors import ExitCode, ICWSError, SessionGone
from icwschat.simulator import SimulatorServer
from icwschat.sinks import JSONSink

ESCAPES = "\x1b]0;owned\x07\x1b[2J\u202e\x9b"


@dataclass
class Ran:
    code: int
    out: str
    err: str


def run(*args: str, password: str | None = None, stdin: str = "", tty: bool = False) -> Ran:
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    stderr = io.StringIO()
    env = Environment(
        stdout=stdout,
        stderr=stderr,
        stdin=io.StringIO(stdin),
        stdout_isatty=False,
        stdin_isatty=tty,
        no_color=True,
        password=password,
        debug=False,
    )
    result = CliRunner().invoke(app, list(args), obj=env)
    stdout.flush()
    out = stdout.buffer.getvalue().decode()  # type: ignore[attr-defined]
    return Ran(result.exit_code, out, stderr.getvalue())


def assert_inert(text: str) -> None:
    for char in "\x1b\x07\x9b\u202e":
        assert char not in text, repr(text)


def test_an_unexpected_error_is_reported_as_a_bug_without_a_traceback(
    logged_in: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr("icwschat.client.Connection.connection_state", broken)
    quiet = run("status")
    assert quiet.code == ExitCode.BUG == 1
    assert "unexpected error: this is a bug in icwschat" in quiet.err
    assert "--debug" in quiet.err and "Traceback" not in quiet.err
    loud = run("status", "--debug")
    assert loud.code == 1
    assert "Traceback" in loud.err and "RuntimeError: boom" in loud.err


def test_debug_is_accepted_before_and_after_the_command_and_from_the_environment(
    logged_in: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "→ GET" not in run("status").err
    assert "→ GET" in run("--debug", "status").err
    assert "→ GET" in run("status", "--debug").err
    monkeypatch.setenv("ICWSCHAT_DEBUG", "1")
    assert "→ GET" in icwschat("status").err


def test_server_text_in_an_error_is_made_inert() -> None:
    stderr = io.StringIO()
    env = Environment(stderr=stderr)
    error = ICWSError(
        f"the server failed {ESCAPES}", status=500, error_id=ESCAPES, server_message=ESCAPES, hint=ESCAPES
    )
    assert runtime.run(env, lambda: _raise(error)) == ExitCode.BUG
    assert "server said: HTTP 500" in stderr.getvalue()
    assert_inert(stderr.getvalue())


def test_login_and_status_show_server_text_inert(isolated: Path) -> None:
    """userID, sessionId and featureId come from the server and are printed by login and status."""

    def hostile(request: Request, conn: socket.socket) -> None:
        if request.path.startswith("/icws/connection"):
            body = {
                "sessionId": "7" + ESCAPES,
                "csrfToken": "t",
                "userID": ESCAPES,
                "features": [{"featureId": ESCAPES, "version": 1}],
            }
            reply(conn, 201, body, {"Set-Cookie": "icws_x=1; Path=/"})
        else:
            reply(conn, 200, {"connectionState": 1})

    with HostileServer(hostile) as server:
        logged = run("login", "--server", server.url, "--user", USER, password=PASSWORD)
        assert logged.code == 0, logged.err
        assert_inert(logged.out)
        shown = run("status")
        assert shown.code == 0, shown.err
        assert_inert(shown.out)
        assert "User:" in shown.out


def test_login_advice_names_the_stored_server_and_user(logged_in: SimulatorServer) -> None:
    logged_in.simulator.expire_sessions()
    result = run("status")
    assert result.code == ExitCode.AUTHENTICATION
    assert f"run icwschat login --server {logged_in.url} --user {USER}" in result.err


def test_login_advice_without_a_stored_session_shows_the_options() -> None:
    result = run("status")
    assert result.code == 3
    assert result.err.count("--server URL --user USER") == 1


@pytest.mark.parametrize(
    "args",
    [
        ("watch", "1001", "--interval", "nan"),
        ("watch", "1001", "--interval", "inf"),
        ("watch", "1001", "--give-up-after", "nan"),
        ("transcript", "1001", "--timeout", "nan"),
        ("demo", "--speed", "inf"),
        ("watch", "1001", "--json", "--raw"),
    ],
)
def test_numbers_that_are_not_numbers_are_usage_errors(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.code == ExitCode.USAGE, (result.out, result.err)


def test_ctrl_c_at_the_password_prompt_ends_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(prompt: str, stream: Any = None) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr("getpass.getpass", interrupted)
    result = run("login", "--server", "http://127.0.0.1:9", "--user", USER, tty=True)
    assert result.code == ExitCode.INTERRUPTED
    assert result.err.endswith("\n")


@pytest.mark.parametrize(
    ("server", "warned"),
    [
        ("http://cic.example.com:8018", True),
        ("http://10.1.2.3:8018", True),
        ("https://cic.example.com:8019", False),
        ("http://127.0.0.2:8018", False),
        ("http://localhost:8018", False),
        ("http://[::1]:8018", False),
    ],
)
def test_a_password_over_plain_http_is_warned_about(server: str, warned: bool) -> None:
    stderr = io.StringIO()
    runtime.warn_about_transport(Environment(stderr=stderr), server, insecure=False)
    assert ("travel in clear text" in stderr.getvalue()) is warned


def test_renewal_repeats_the_first_login(logged_in: SimulatorServer) -> None:
    session = Environment().store.require()
    renewed = runtime.LoginRequest.renewing(session).log_in(PASSWORD)
    kept = ("server", "user", "app_name", "language", "ca_bundle", "insecure")
    assert [getattr(renewed, name) for name in kept] == [getattr(session, name) for name in kept]
    assert renewed.session_id != session.session_id


def test_status_help_describes_its_own_json() -> None:
    shown = CliRunner().invoke(app, ["status", "--help"]).output
    assert "one JSON object" in shown and "NDJSON" not in shown


def test_simulate_on_a_port_in_use_is_one_sentence_and_exit_2() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = icwschat("simulate", "--port", str(port))
    assert result.code == ExitCode.USAGE
    assert f"cannot listen on 127.0.0.1:{port}" in result.err
    assert "--port 0" in result.err


def test_a_session_gone_maps_to_exit_3() -> None:
    assert runtime.run(Environment(stderr=io.StringIO()), lambda: _raise(SessionGone("gone"))) == 3


def _raise(error: BaseException) -> None:
    raise error


def test_login_round_trip_in_process(sim: SimulatorServer) -> None:
    result = run("login", "--server", sim.url, "--user", USER, password=PASSWORD)
    assert result.code == 0, result.err
    assert f"Logged in to {sim.url} as {USER}" in result.out


def test_login_that_could_not_store_its_session_creates_none(isolated: Path) -> None:
    isolated.parent.mkdir(parents=True, exist_ok=True)
    isolated.write_text("not a directory")
    with HostileServer(lambda request, conn: reply(conn, 500)) as server:
        result = run("login", "--server", server.url, "--user", USER, password=PASSWORD)
    assert result.code == ExitCode.USAGE, result.err
    assert server.requests == []
    assert str(isolated) in result.err


def test_json_on_a_terminal_escapes_what_the_terminal_would_act_on() -> None:
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    env = Environment(stdout=stdout, stdout_isatty=True)
    events = runtime.choose_sink(env, "json")
    assert isinstance(events, JSONSink)
    events.write_json([{"text": ESCAPES}])
    messages = runtime.choose_sink(env, "raw")
    messages.raw([{"text": ESCAPES}])
    written = stdout.buffer.getvalue()  # type: ignore[attr-defined]
    assert written.count(b"\\u001b") == 4  # two ESCs in each line
    assert b"\x1b" not in written and "\u202e".encode() not in written


def test_no_arguments_prints_the_help_and_succeeds() -> None:
    result = icwschat()
    assert result.code == 0
    assert "Commands:" in result.out and "watch" in result.out


def test_version_names_python_and_the_libraries() -> None:
    result = run("version", "--json")
    assert result.code == 0
    versions = json.loads(result.out)
    assert versions["icwschat"] and versions["python"] and versions["typer"] and versions["requests"]


def bash_complete(words: str) -> list[str]:
    """What bash offers for ``words`` (the cursor after the last one) with the printed script loaded."""
    script = subprocess.run(
        [sys.executable, "-m", "icwschat", "completion", "bash"], capture_output=True, text=True, check=True
    ).stdout
    shell = (
        f"{script}\ncomplete -p icwschat >/dev/null || exit 9\n"
        f"COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n"
        '_icwschat_completion icwschat; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, env={**os.environ, "PATH": path}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_commands_options_and_their_values() -> None:
    assert bash_complete("icwschat wat") == ["watch"]
    assert bash_complete("icwschat watch 1001 --transport ''") == ["auto", "poll", "sse"]
    assert "--give-up-after" in bash_complete("icwschat watch 1001 --gi")
    assert bash_complete("icwschat completion ''") == ["bash", "zsh", "fish"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_completion_scripts_for_other_shells_name_the_program(shell: str) -> None:
    result = run("completion", shell)
    assert result.code == 0 and "_ICWSCHAT_COMPLETE=complete_" + shell in result.out


def test_status_names_the_servers_icws_release(logged_in: SimulatorServer) -> None:
    shown = run("status")
    assert shown.code == 0, shown.err
    assert "ICWS:       2015 R1 (icwschat simulator)" in shown.out
    assert json.loads(run("status", "--json").out)["serverVersion"] == "2015 R1 (icwschat simulator)"


def test_transcript_hints_name_its_own_options(logged_in: SimulatorServer) -> None:
    logged_in.simulator.expire_sessions()
    expired = run("transcript", "1001")
    assert expired.code == ExitCode.AUTHENTICATION
    assert "--save-password" in expired.err and "--password-stdin" not in expired.err
    logged_in.stop()
    unreachable = run("transcript", "1001", "--timeout", "1")
    assert unreachable.code == ExitCode.SERVER_UNAVAILABLE
    assert "--timeout sets how long" in unreachable.err and "--give-up-after" not in unreachable.err


def test_bash_completes_profile_names(sim: SimulatorServer) -> None:
    for name in ("prod", "staging"):
        logged = run("login", "--profile", name, "--server", sim.url, "--user", USER, password=PASSWORD)
        assert logged.code == 0, logged.err
    assert bash_complete("icwschat status --profile ''") == ["prod", "staging"]
    assert bash_complete("icwschat --profile st") == ["staging"]


# ---- what an adversarial review found ---------------------------------------------------------------


def icws_server(answer: Callable[[Request, socket.socket], None]) -> HostileServer:
    """A server that logs in like ICWS and answers everything else with ``answer``."""

    def handle(request: Request, conn: socket.socket) -> None:
        if request.method == "POST" and request.path.startswith("/icws/connection"):
            login_reply(conn)
        else:
            answer(request, conn)

    return HostileServer(handle)


def test_debug_output_makes_the_servers_words_inert() -> None:
    def failing(request: Request, conn: socket.socket) -> None:
        reply(conn, 500, {"errorId": "boom" + ESCAPES, "message": ESCAPES})

    with icws_server(failing) as server:
        assert run("login", "--server", server.url, "--user", USER, password=PASSWORD).code == 0
        result = icwschat("watch", "1001", "--transport", "poll", "--give-up-after", "1", "--debug")
    assert result.code == ExitCode.SERVER_UNAVAILABLE
    assert "HTTP 500" in result.err
    assert_inert(result.err)


@pytest.mark.parametrize(("method", "status", "command"), [("GET", 404, "status"), ("DELETE", 403, "logout")])
def test_a_session_call_refused_with_an_odd_4xx_is_no_bug(method: str, status: int, command: str) -> None:
    def odd(request: Request, conn: socket.socket) -> None:
        reply(conn, status if request.method == method else 200, {"connectionState": 1})

    with icws_server(odd) as server:
        assert run("login", "--server", server.url, "--user", USER, password=PASSWORD).code == 0
        result = run(command)
    assert result.code == ExitCode.SERVER_UNAVAILABLE, result.err
    assert f"HTTP {status}" in result.err


@pytest.mark.parametrize(
    "args",
    [
        ("watch", "1001", "--interval", "1e10"),
        ("login", "--server", "http://127.0.0.1:9", "--user", USER, "--language", "€"),
        ("login", "--server", "http://127.0.0.1:9", "--user", USER, "--language", "en\r\nX-Evil: 1"),
    ],
)
def test_values_no_request_could_carry_are_usage_errors(args: tuple[str, ...]) -> None:
    result = run(*args, password=PASSWORD)
    assert result.code == ExitCode.USAGE, (result.out, result.err)


def test_output_that_cannot_be_written_is_said_once_and_is_no_bug(logged_in: SimulatorServer) -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "icwschat", "status"], stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert "cannot write the output" in proc.stderr and "Traceback" not in proc.stderr
    closed = subprocess.run(
        [sys.executable, "-m", "icwschat", "status"],
        stdout=None,
        stderr=subprocess.PIPE,
        text=True,
        close_fds=True,
        preexec_fn=lambda: os.close(1),
    )
    assert closed.returncode == 0, closed.stderr
    assert "Traceback" not in closed.stderr


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("server", "http://[::1"),
        ("server", "ftp://cic.example.com"),
        ("server", ""),
        ("server", "http://cic.example.com\x1b[2J"),
        ("csrf_token", "a\nX-Evil: 1"),
        ("language", "€"),
    ],
)
def test_a_session_file_with_unusable_values_is_damaged(
    logged_in: SimulatorServer, isolated: Path, field: str, value: str
) -> None:
    stored = json.loads((isolated / "session.json").read_text())
    stored[field] = value
    (isolated / "session.json").write_text(json.dumps(stored))
    result = run("status")
    assert result.code == ExitCode.AUTHENTICATION, result.err
    assert field in result.err
    assert_inert(result.err)


def test_a_failed_login_keeps_the_session_that_works(logged_in: SimulatorServer) -> None:
    refused = run("login", "--user", "typo", password="wrong")
    assert refused.code == ExitCode.AUTHENTICATION
    assert run("status").code == 0
    assert len(logged_in.simulator.sessions) == 1


def test_clean_up_names_no_subscription_the_server_refused_to_make() -> None:
    def conflict(request: Request, conn: socket.socket) -> None:
        reply(conn, 409 if request.method == "PUT" else 500, {"message": "no"})

    with icws_server(conflict) as server:
        assert run("login", "--server", server.url, "--user", USER, password=PASSWORD).code == 0
        result = run("watch", "1001", "--json", "--transport", "poll")
    assert result.code == ExitCode.UNAVAILABLE_INTERACTION, result.err
    assert "could not remove" not in result.err and "may be left" not in result.err
    assert not [r for r in server.requests if r.method == "DELETE" and r.path.endswith("/chat")]


def test_a_sigterm_whose_exception_python_dropped_still_ends_the_watch(
    slow_sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal handler's exception raised inside a finalizer is printed and dropped by Python; the watch
    must still end with 143 (and its clean-up) instead of running on to the chat's end."""
    import signal as signals

    from icwschat.errors import Terminated

    real = signals.signal
    dropped: list[threading.Timer] = []

    def dropping_handler(number: int, handler: Any) -> Any:
        # Once: the clean-up sets (and restores) handlers too, and a second timer would set the flag after
        # this test, in whichever test runs next.
        if number == signals.SIGTERM and callable(handler) and not dropped:
            dropped.append(
                threading.Timer(1.0, Terminated.requested.set)
            )  # the handler ran; its raise was dropped
            dropped[0].start()
        return real(number, handler)

    monkeypatch.setattr(signals, "signal", dropping_handler)
    result = run("watch", "1001", "--json")
    assert result.code == ExitCode.TERMINATED, result.err
    assert slow_sim.simulator.subscribers("1001") == []
    assert not Terminated.requested.is_set()
