"""The error vocabulary: everything the core raises means something to a user.

The CLI maps each class to one of the contract's exit codes in one table; nothing above the client sees a
``requests`` or ``socket`` exception.
"""

from __future__ import annotations

from typing import Any


class ICWSError(Exception):
    """Base of every expected failure; keeps what the server said, when it said anything."""

    exit_code = 1

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

    exit_code = 2


class AuthenticationError(ICWSError):
    """Bad credentials, no stored session, or a session that is gone with no way to log in again."""

    exit_code = 3


class SessionGone(AuthenticationError):
    """The server no longer knows the session (401, or a connection state 'down')."""


class InteractionUnavailable(ICWSError):
    """The interaction does not exist, is not a chat, or the user has no rights to it."""

    exit_code = 4


class ServerUnavailable(ICWSError):
    """The server cannot be reached or answered 5xx / 503; may carry alternate hosts to try."""

    exit_code = 5

    def __init__(self, message: str, *, alternate_hosts: list[str] | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.alternate_hosts = alternate_hosts or []
        self.retry_after: float | None = None


class ProtocolError(ServerUnavailable):
    """The server answered something that is not ICWS (not JSON, wrong shape)."""


class AnotherWatcher(ICWSError):
    """Another icwschat process is already reading this session's message queue (a usage error)."""

    exit_code = 2


class Interrupted(BaseException):
    """SIGTERM arrived; carries the exit status the contract gives it."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code
