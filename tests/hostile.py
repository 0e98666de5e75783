"""A small HTTP server on loopback whose every byte a test chooses: for redirects, bombs, trickles, broken
framing and other things the simulator, being a faithful ICWS server, never does.

Each connection is served in its own thread by the test's ``handler(request, conn)``, which writes raw bytes
(``reply`` builds an ordinary response). Every request received is kept in ``requests`` for assertions such
as "the other host received nothing".
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[Request, socket.socket], None]


def reply(
    conn: socket.socket,
    status: int = 200,
    body: bytes | str | Any = b"",
    headers: dict[str, str] | None = None,
    *,
    content_type: str = "application/vnd.inin.icws+json",
) -> None:
    """A complete response with ``Content-Length``; a non-bytes, non-str body is sent as JSON."""
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    head = {"Content-Type": content_type, "Content-Length": str(len(data)), **(headers or {})}
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in head.items()]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)


def login_reply(
    conn: socket.socket, session_id: str = "1001", features: dict[str, int] | None = None
) -> None:
    """A successful ICWS login, for servers that misbehave only after it."""
    body = {
        "sessionId": session_id,
        "csrfToken": "csrf-token",
        "userID": "agent.one",
        "features": [{"featureId": k, "version": v} for k, v in (features or {"messaging": 1}).items()],
    }
    reply(conn, 201, body, {"Set-Cookie": f"icws_{session_id}=cookie-value; Path=/icws/{session_id}"})


@dataclass
class HostileServer:
    handler: Handler
    host: str = "127.0.0.1"
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server((self.host, 0))
        self.port = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._closing = False
        self._thread = threading.Thread(target=self._accept, name="hostile-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):  # wakes the accept() below, which close() alone does not
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), name="hostile-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while not self._closing:
                request = _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                self.handler(request, conn)
        except OSError:
            return
        finally:
            reader.close()
            with contextlib.suppress(OSError):
                conn.close()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"only {len(self.requests)} requests arrived"
            time.sleep(0.01)


def _read_request(reader: Any) -> Request | None:
    line = reader.readline(65536)
    if not line:
        return None
    method, path, _version = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        header = reader.readline(65536).decode("latin-1").rstrip("\r\n")
        if not header:
            break
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0") or 0))
    return Request(method, path, headers, body)
