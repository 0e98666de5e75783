"""The error vocabulary: everything the core raises means something to a user.

Each class maps to one of the contract's exit codes in one table, :data:`EXIT_CODES`; nothing above the
client sees a ``requests`` or ``socket`` exception.
"""

from __future__ import annotations

import enum
import threading
from typing import Any


class ExitCode(enum.IntEnum):
    """The contract's exit statuses, the only ones icwschat ends with."""

    OK = 0
    BUG = 1
    USAGE = 2
    AUTHENTICATION = 3
    UNAVAILABLE_INTERACTION = 4
    SERVER_UNAVAILABLE = 5
    INTERRUPTED = 130
    """SIGINT (Ctrl-C): 128 + 2, as shells report it."""
    TERMINATED = 143
    """SIGTERM: 128 + 15."""


class ICWSError(Exception):
    """Base of every expected failure; keeps what the server said, when it said anything."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_id: str | None = None,
        error_code: int | None = None,
        server_message: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_id = error_id
        self.error_code = error_code
        self.server_message = server_message
        self.hint = hint

    def details(self) -> str:
        """The server's own words (status, errorId, errorCode, message), for a second line or a log."""
        parts: list[str] = []
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.error_id:
            parts.append(self.error_id)
        if self.error_code is not None:
            parts.append(f"errorCode {self.error_code}")
        if self.server_message:
            parts.append(repr(self.server_message))
        return ", ".join(parts)


class UsageError(ICWSError):
    """The user asked for something that cannot work (a missing option, a bad URL)."""


class Redirected(UsageError):
    """The server answered 3xx. Nothing carrying a password, token or cookie follows a redirect, so the
    target is named for the user to check and pass with ``--server`` instead."""

    def __init__(self, message: str, *, target: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.target = target


class AuthenticationError(ICWSError):
    """Bad credentials, no stored session, or a session that is gone with no way to log in again."""


class SessionGone(AuthenticationError):
    """The server no longer knows the session (401, or a connection state 'down')."""


class InteractionUnavailable(ICWSError):
    """The interaction does not exist, is not a chat, or the user has no rights to it."""


class ServerUnavailable(ICWSError):
    """The server cannot be reached or answered 5xx / 503; may carry alternate hosts to try."""

    def __init__(self, message: str, *, alternate_hosts: list[str] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.alternate_hosts = alternate_hosts or []
        self.retry_after: float | None = None


class ServerBusy(ServerUnavailable):
    """429 Too Many Requests: not a refusal, a request to come back later (``retry_after``)."""


class ProtocolError(ServerUnavailable):
    """The server answered something that is not ICWS (not JSON, wrong shape, too large)."""


class AnotherWatcher(UsageError):
    """Another icwschat process is already reading this session's message queue (a usage error)."""


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like ``KeyboardInterrupt`` so every ``finally`` cleans up.

    ``requested`` stays set after the signal: a handler's exception that lands inside a finalizer (a
    weakref callback during garbage collection) is printed and dropped by Python, so a long loop checks it
    and raises again."""

    requested = threading.Event()

    @classmethod
    def check(cls) -> None:
        if cls.requested.is_set():
            raise cls()


EXIT_CODES: dict[type[BaseException], ExitCode] = {
    UsageError: ExitCode.USAGE,
    AuthenticationError: ExitCode.AUTHENTICATION,
    InteractionUnavailable: ExitCode.UNAVAILABLE_INTERACTION,
    ServerUnavailable: ExitCode.SERVER_UNAVAILABLE,
    ICWSError: ExitCode.BUG,
    KeyboardInterrupt: ExitCode.INTERRUPTED,
    Terminated: ExitCode.TERMINATED,
}
"""Every exit status but 0 comes from here: the nearest class in an error's ancestry that is listed."""


def exit_code(error: BaseException) -> ExitCode:
    for kind in type(error).__mro__:
        code = EXIT_CODES.get(kind)
        if code is not None:
            return code
    return ExitCode.BUG
