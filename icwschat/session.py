"""The stored session: what `login` leaves for later commands, and where it lives.

One file, ``session.json``, written atomically with mode 0600 inside a 0700 directory, so a crash never
leaves half a file and no other user can read the CSRF token or cookie. The password is never part of it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import AnotherWatcher, AuthenticationError

SESSION_FILE = "session.json"


@dataclass(frozen=True, slots=True)
class Session:
    """An ICWS connection as the server handed it out."""

    server: str
    """Base URL actually used (after any switchover), without the trailing ``/icws``."""
    session_id: str
    csrf_token: str = field(repr=False)
    cookie: str = field(repr=False)
    """``icws_{sessionId}=value``: the Set-Cookie text before the first ``;``."""
    user: str
    language: str = "en-us"
    app_name: str = "icwschat"
    user_display_name: str = ""
    features: dict[str, int] = field(default_factory=dict)
    ca_bundle: str | None = None
    insecure: bool = False

    def feature(self, name: str) -> int:
        """Version of an ICWS feature, 0 when the server does not offer it."""
        return self.features.get(name, 0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def state_dir() -> Path:
    """Where every file icwschat writes lives: ``ICWSCHAT_HOME``, else the platform's state directory."""
    home = os.environ.get("ICWSCHAT_HOME")
    if home:
        return Path(home)
    import platformdirs

    return Path(platformdirs.user_state_dir("icwschat", appauthor=False))


class SessionStore:
    """Load, save and forget the one stored session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / SESSION_FILE

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    def save(self, session: Session) -> None:
        self._ensure_directory()
        data = json.dumps(session.to_json(), indent=2).encode()
        tmp = self.path.with_name(f".{SESSION_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def load(self) -> Session | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
            return Session.from_json(data)
        except (ValueError, TypeError) as exc:
            raise AuthenticationError(
                f"the stored session in {self.path} is unreadable; run icwschat login"
            ) from exc

    def require(self) -> Session:
        session = self.load()
        if session is None:
            raise AuthenticationError("not logged in; run icwschat login --server URL --user USER")
        return session

    def forget(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    @contextlib.contextmanager
    def queue_lock(self) -> Iterator[None]:
        """Hold the session's message queue for one reader.

        ICWS hands each queued message to whichever request takes it first, so a second reader on the same
        session would silently steal messages from the first. The lock is advisory (flock) and dies with the
        process, so a crash never leaves it behind.
        """
        import fcntl

        self._ensure_directory()
        lock_path = self.directory / "queue.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                raise AnotherWatcher(
                    f"another icwschat process (pid {holder}) is already reading this session's messages; "
                    "ICWS gives each message to one reader only, so two watchers on one session would each "
                    "miss messages",
                    hint="stop the other watcher, or log in again with ICWSCHAT_HOME set to another "
                    "directory to give this one its own session",
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            os.close(fd)
