"""Serving the simulator over real HTTP on a loopback address, in a background thread."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
from typing import Any

from werkzeug.serving import (
    BaseWSGIServer,
    WSGIRequestHandler,
    get_sockaddr,
    make_server,
    select_address_family,
)

from .routes import Routes
from .state import Simulator


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the ``icwschat.simulator`` logger at debug level, not to stderr."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logging.getLogger("icwschat.simulator").debug('"%s" %s %s', self.requestline, code, size)

    def log(self, type: str, message: str, *args: Any) -> None:
        logging.getLogger("icwschat.simulator").debug(message, *args)


def ensure_loopback(host: str) -> None:
    """The simulator never listens beyond this machine."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"{host!r} is not a loopback address; use 127.0.0.1 or localhost") from None
        return
    if not address.is_loopback:
        raise ValueError(f"{host} is not a loopback address; the simulator listens on loopback only")


class SimulatorServer:
    """A threaded werkzeug server for one :class:`Simulator`; port 0 picks a free one."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        ensure_loopback(host)
        self.simulator = simulator
        # werkzeug answers a failed bind by printing to stderr and calling sys.exit(1); binding here first
        # turns a port in use into a plain OSError (errno EADDRINUSE) the caller can explain.
        family = select_address_family(host, port)
        try:
            listener = socket.create_server(get_sockaddr(host, port, family), family=family)
        except OSError as exc:  # its text names the address in Python's own words: keep the reason only
            raise OSError(exc.errno, os.strerror(exc.errno) if exc.errno else str(exc)) from None
        with listener:
            self.server: BaseWSGIServer = make_server(
                host,
                port,
                Routes(simulator),
                threaded=True,
                request_handler=_QuietHandler,
                fd=listener.fileno(),
            )
        self.host = host
        self.port = self.server.port
        self._thread = threading.Thread(target=self.server.serve_forever, name="sim-http", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> SimulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.simulator.close()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
