"""The client against servers that misbehave on purpose: redirects, bombs, trickles, odd JSON, 429, broken
setups. Each server is a ``HostileServer`` whose every byte the test writes."""

from __future__ import annotations

import contextlib
import email.utils
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PASSWORD, ROOT, USER, cli_env, icwschat
from hostile import HostileServer, Request, login_reply, reply

from icwschat.client import HTTP, RETRY_AFTER_CAP, Connection, login, parse_retry_after
from icwschat.errors import (
    ProtocolError,
    Redirected,
    ServerBusy,
    ServerUnavailable,
    UsageError,
)
from icwschat.session import Session

MESSAGES = "/icws/1001/messaging/messages"


def refusing(request: Request, conn: socket.socket) -> None:
    reply(conn, 500, {"message": "this host should never be asked"})


def session_for(url: str) -> Session:
    """A session as if logged in to ``url``, for servers that misbehave from the first session call."""
    return Session(server=url, session_id="1001", csrf_token="csrf-token", cookie="icws_1001=c", user=USER)


def logs_in_then(
    answer: Callable[[Request, socket.socket], None],
) -> Callable[[Request, socket.socket], None]:
    """A server whose login works and whose every other request gets ``answer``."""

    def handler(request: Request, conn: socket.socket) -> None:
        if request.method == "POST" and request.path.startswith("/icws/connection"):
            login_reply(conn)
        else:
            answer(request, conn)

    return handler


# ---- 1. redirects ---------------------------------------------------------------------------------


def test_a_login_redirected_elsewhere_sends_the_other_host_nothing() -> None:
    with HostileServer(refusing) as other:
        target = f"{other.url}/pre/icws/connection?include=features"

        def moved(request: Request, conn: socket.socket) -> None:
            reply(conn, 307, b"", {"Location": target})

        with HostileServer(moved) as server, pytest.raises(Redirected) as caught:
            login(HTTP(), server.url, USER, PASSWORD)
    assert other.requests == []
    assert caught.value.target == target
    assert caught.value.message == f"the server redirected to {target}; use --server {other.url}/pre"


def test_a_poll_redirected_elsewhere_carries_no_token_there() -> None:
    with HostileServer(refusing) as other:

        def moved(request: Request, conn: socket.socket) -> None:
            reply(conn, 302, b"", {"Location": f"{other.url}{MESSAGES}"})

        with HostileServer(logs_in_then(moved)) as server:
            connection = Connection(HTTP(), login(HTTP(), server.url, USER, PASSWORD))
            with pytest.raises(Redirected, match=f"use --server {other.url}$"):
                connection.poll_messages()
    assert other.requests == []


def test_a_relative_redirect_is_named_in_full() -> None:
    def moved(request: Request, conn: socket.socket) -> None:
        reply(conn, 301, b"", {"Location": "/api/cic2/icws/connection"})

    with HostileServer(moved) as server, pytest.raises(Redirected) as caught:
        login(HTTP(), server.url, USER, PASSWORD)
    assert caught.value.target == f"{server.url}/api/cic2/icws/connection"
    assert caught.value.message.endswith(f"use --server {server.url}/api/cic2")
    assert len(server.requests) == 1


def test_a_redirect_to_something_that_is_no_server_suggests_nothing() -> None:
    def moved(request: Request, conn: socket.socket) -> None:
        reply(conn, 302, b"", {"Location": "javascript:alert(1)"})

    with HostileServer(moved) as server, pytest.raises(Redirected) as caught:
        login(HTTP(), server.url, USER, PASSWORD)
    assert caught.value.message == "the server redirected to javascript:alert(1)"


# ---- 3. replies that inflate without end ----------------------------------------------------------


def gzip_bomb(inflated: int) -> bytes:
    """A gzip body that inflates to ``inflated`` zero bytes, built from one compressed megabyte repeated."""
    block = 1 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + again * (inflated // block - 1) + compressor.flush()


def bomb_answer(inflated: int) -> Callable[[Request, socket.socket], None]:
    body = gzip_bomb(inflated)

    def answer(request: Request, conn: socket.socket) -> None:
        if request.path.endswith("/messaging/messages"):
            reply(conn, 200, body, {"Content-Encoding": "gzip"})
        else:
            reply(conn, 200, b"")

    return answer


def test_a_gzip_bomb_is_a_protocol_error_not_a_memory_grab() -> None:
    with (
        HostileServer(bomb_answer(1 << 30)) as server,
        pytest.raises(ProtocolError, match="more than 16 MiB"),
    ):
        Connection(HTTP(), session_for(server.url)).poll_messages()


def test_compressed_replies_still_decode_whole() -> None:
    messages = [{"__type": "urn:x", "text": "é" * 1000}]

    def answer(request: Request, conn: socket.socket) -> None:
        # two gzip members back to back, as a server may stream them
        encoded = ('[{"__type": "urn:x", "text": "' + "é" * 1000 + '"}]').encode()
        half = len(encoded) // 2
        parts = [zlib.compressobj(6, zlib.DEFLATED, 31) for _ in range(2)]
        body = b"".join(
            p.compress(chunk) + p.flush()
            for p, chunk in zip(parts, [encoded[:half], encoded[half:]], strict=True)
        )
        reply(conn, 200, body, {"Content-Encoding": "gzip"})

    with HostileServer(answer) as server:
        assert Connection(HTTP(), session_for(server.url)).poll_messages() == messages
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


def test_a_deflate_reply_decodes_and_an_unknown_encoding_is_refused() -> None:
    def answer(request: Request, conn: socket.socket) -> None:
        if request.method == "GET":
            reply(conn, 200, zlib.compress(b"[1, 2]"), {"Content-Encoding": "deflate"})
        else:
            reply(conn, 200, b"[]", {"Content-Encoding": "br"})

    with HostileServer(answer) as server:
        connection = Connection(HTTP(), session_for(server.url))
        assert connection.poll_messages() == [1, 2]
        with pytest.raises(ProtocolError, match="'br'"):
            connection.subscribe_chat("1001")


def test_json_packed_denser_than_any_chat_is_refused_before_parsing() -> None:
    dense = zlib.compress(b"[" + b"{}," * 600_000 + b"{}]")

    with HostileServer(
        lambda request, conn: reply(conn, 200, dense, {"Content-Encoding": "deflate"})
    ) as server:
        connection = Connection(HTTP(), session_for(server.url))
        with pytest.raises(ProtocolError, match="more than 500,000 JSON values"):
            connection.poll_messages()


MEASURED = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)
"""Runs a command and prints its peak RSS (KiB). The command is started from this small process because on
Linux a child's peak RSS starts at its parent's peak when it was started, and pytest's may be large."""


def test_watch_under_a_two_gigabyte_bomb_stays_small_and_exits_5() -> None:
    with HostileServer(logs_in_then(bomb_answer(2 << 30))) as server:
        env = cli_env(ICWS_PASSWORD=PASSWORD)
        assert icwschat("login", "--server", server.url, "--user", USER, env=env).code == 0
        watch = [
            sys.executable,
            "-m",
            "icwschat",
            "watch",
            "1001",
            "--transport",
            "poll",
            "--give-up-after",
            "3",
        ]
        measured = subprocess.run(
            [sys.executable, "-c", MEASURED, *watch],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
        )
    max_rss_mb = int(measured.stdout) / 1024
    print(f"max RSS of watch under a 2 GB gzip bomb: {max_rss_mb:.0f} MB")
    assert measured.returncode == 5, measured.stderr
    assert "more than 16 MiB" in measured.stderr
    assert max_rss_mb <= 150


# ---- 7. slow-loris --------------------------------------------------------------------------------


def trickle(data: bytes, pause: float = 0.25) -> Callable[[socket.socket], None]:
    def send(conn: socket.socket) -> None:
        for byte in data:
            conn.sendall(bytes([byte]))
            time.sleep(pause)

    return send


SLOW_HEAD = b"HTTP/1.1 201 Created\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"


def test_a_login_trickling_its_headers_ends_at_the_deadline() -> None:
    def answer(request: Request, conn: socket.socket) -> None:
        trickle(SLOW_HEAD)(conn)

    with HostileServer(answer) as server:
        started = time.monotonic()
        with pytest.raises(ServerUnavailable, match=r"did not answer within 3 s"):
            login(HTTP(timeout=(1.0, 2.0)), server.url, USER, PASSWORD)
    assert time.monotonic() - started < 20  # 3 s deadline; without one this trickle takes 50 s


def test_a_poll_trickling_its_body_ends_at_the_deadline() -> None:
    def answer(request: Request, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n[")
        trickle(b" " * 198 + b"]")(conn)

    with HostileServer(answer) as server:
        started = time.monotonic()
        connection = Connection(HTTP(timeout=(1.0, 2.0)), session_for(server.url))
        with pytest.raises(ServerUnavailable, match=r"did not answer within 3 s"):
            connection.poll_messages()
    assert time.monotonic() - started < 20


def test_a_quiet_server_is_a_timeout_too() -> None:
    def answer(request: Request, conn: socket.socket) -> None:
        time.sleep(5)

    with (
        HostileServer(answer) as server,
        pytest.raises(ServerUnavailable, match=r"did not answer within [\d.]+ s"),
    ):
        Connection(HTTP(timeout=(0.5, 1.0)), session_for(server.url)).connection_state()


# ---- 9. odd input ---------------------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


def test_deeply_nested_json_in_a_poll_is_not_json() -> None:
    with HostileServer(lambda request, conn: reply(conn, 200, DEEP)) as server:
        connection = Connection(HTTP(), session_for(server.url))
        with pytest.raises(ProtocolError, match="not JSON"):
            connection.poll_messages()


def test_deeply_nested_json_in_a_login_reply_is_not_json() -> None:
    def answer(request: Request, conn: socket.socket) -> None:
        reply(conn, 201, DEEP, {"Set-Cookie": "icws_1001=c"})

    with HostileServer(answer) as server, pytest.raises(ProtocolError, match="not JSON"):
        login(HTTP(), server.url, USER, PASSWORD)


def test_deeply_nested_json_in_an_error_body_carries_no_fields() -> None:
    with (
        HostileServer(lambda request, conn: reply(conn, 503, DEEP)) as server,
        pytest.raises(ServerUnavailable) as caught,
    ):
        login(HTTP(), server.url, USER, PASSWORD)
    assert caught.value.status == 503
    assert caught.value.error_id is None and caught.value.alternate_hosts == []


def test_a_login_token_that_would_break_a_header_is_refused_without_quoting_it() -> None:
    def answer(request: Request, conn: socket.socket) -> None:
        body = {"sessionId": "1001", "csrfToken": "secret\r\nX-Evil: 1"}
        reply(conn, 201, body, {"Set-Cookie": "icws_1001=c; Path=/icws/1001"})

    with HostileServer(answer) as server, pytest.raises(ProtocolError) as caught:
        login(HTTP(), server.url, USER, PASSWORD)
    assert "secret" not in caught.value.message


# ---- 10. 429 --------------------------------------------------------------------------------------


def test_a_login_answered_429_is_busy_not_bad_credentials() -> None:
    def busy(request: Request, conn: socket.socket) -> None:
        reply(conn, 429, {"message": "slow down"}, {"Retry-After": "7"})

    with HostileServer(busy) as server, pytest.raises(ServerBusy) as caught:
        login(HTTP(), server.url, USER, PASSWORD)
    assert caught.value.retry_after == 7
    assert "busy" in caught.value.message and "credentials" not in caught.value.message
    assert len(server.requests) == 1


def test_a_poll_answered_429_is_busy() -> None:
    def busy(request: Request, conn: socket.socket) -> None:
        reply(conn, 429, b"", {"Retry-After": "100000"})

    with HostileServer(busy) as server, pytest.raises(ServerBusy) as caught:
        Connection(HTTP(), session_for(server.url)).poll_messages()
    assert caught.value.retry_after == RETRY_AFTER_CAP


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        (email.utils.formatdate(NOW + 42, usegmt=True), 42.0),
        (email.utils.formatdate(NOW - 42, usegmt=True), 0.0),
        (email.utils.formatdate(NOW + 86_400, usegmt=True), RETRY_AFTER_CAP),
        ("9" * 5000, RETRY_AFTER_CAP),
        ("-5", None),
        ("1.5", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Fri, 31 Dec 99999 23:59:59 GMT", None),
    ],
)
def test_retry_after_is_seconds_or_a_date_capped(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


# ---- messages a new user meets ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_connection_refused_is_one_sentence_with_a_hint() -> None:
    port = free_port()
    with pytest.raises(ServerUnavailable) as caught:
        login(HTTP(), f"http://127.0.0.1:{port}", USER, PASSWORD)
    assert caught.value.message == f"cannot reach 127.0.0.1:{port}: connection refused"
    assert caught.value.hint and "is the server running" in caught.value.hint


def test_a_login_404_asks_whether_the_url_is_right() -> None:
    with (
        HostileServer(lambda request, conn: reply(conn, 404, b"<html>nope</html>")) as server,
        pytest.raises(UsageError) as caught,
    ):
        login(HTTP(), f"{server.url}/wrong", USER, PASSWORD)
    assert caught.value.hint and "is the URL right" in caught.value.hint
    assert "prefix" in caught.value.hint


def certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (an IP address or a DNS name) and its key."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a test certificate"
    kind = "IP" if name[0].isdigit() else "DNS"
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}"]
    command += ["-addext", f"subjectAltName={kind}:{name}", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


Serve = Callable[[socket.socket], None]


@pytest.fixture
def one_shot() -> Iterator[Callable[[Serve], int]]:
    """Starts a loopback listener that hands its first connection to ``serve``; returns the port."""
    listeners: list[socket.socket] = []

    def start(serve: Serve) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def accept() -> None:
            with contextlib.suppress(OSError), listener.accept()[0] as conn:
                serve(conn)

        threading.Thread(target=accept, daemon=True).start()
        port: int = listener.getsockname()[1]
        return port

    yield start
    for listener in listeners:
        listener.close()


@pytest.fixture
def tls_server(tmp_path: Path, one_shot: Callable[[Serve], int]) -> Callable[[str], tuple[str, Path]]:
    """Starts a TLS listener whose certificate names the given host; returns its URL and the certificate."""

    def start(name: str) -> tuple[str, Path]:
        cert, key = certificate(tmp_path, name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)

        def handshake(conn: socket.socket) -> None:  # which the client is expected to refuse
            context.wrap_socket(conn, server_side=True).close()

        return f"https://127.0.0.1:{one_shot(handshake)}", cert

    return start


def tls_failure(url: str, **http: str) -> ServerUnavailable:
    with pytest.raises(ServerUnavailable) as caught:
        login(HTTP(**http), url, USER, PASSWORD)  # type: ignore[arg-type]
    return caught.value


def test_https_to_a_plain_http_port_says_so_without_suggesting_insecure(
    one_shot: Callable[[Serve], int],
) -> None:
    def plain(conn: socket.socket) -> None:  # what an http server answers to a TLS hello
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    port = one_shot(plain)
    error = tls_failure(f"https://127.0.0.1:{port}")
    assert "does not speak https" in error.message
    assert error.hint and f"http://127.0.0.1:{port}" in error.hint
    assert "--insecure" not in error.hint


def test_a_certificate_for_another_name_names_the_mismatch(
    tls_server: Callable[[str], tuple[str, Path]],
) -> None:
    url, cert = tls_server("chat.example")
    error = tls_failure(url, ca_bundle=str(cert))
    assert "not issued for 127.0.0.1" in error.message
    assert error.hint and "host name" in error.hint and "--insecure" not in error.hint


def test_an_unknown_ca_suggests_a_ca_bundle(tls_server: Callable[[str], tuple[str, Path]]) -> None:
    url, _cert = tls_server("127.0.0.1")
    error = tls_failure(url)
    assert error.message.startswith("TLS verification failed for 127.0.0.1")
    assert error.hint and "--ca-bundle" in error.hint
