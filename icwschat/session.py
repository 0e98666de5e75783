"""The stored session: what `login` leaves for later commands, and where it lives.

One file, ``session.json``, written atomically with mode 0600 inside a 0700 directory, so a crash never
leaves half a file and no other user can read the CSRF token or cookie. The password is never part of it.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import pwd
import shlex
import stat
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import AnotherWatcher, AuthenticationError, UsageError

SESSION_FILE = "session.json"
LOCK_FILE = "queue.lock"
MAX_SESSION_BYTES = 1 << 20
"""Far above any session (a few hundred bytes): a larger file is damaged, and is not read into memory."""
ELSEWHERE = "set ICWSCHAT_HOME to a directory of your own that only you can write"


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
    def from_json(cls, data: Any) -> Session:
        """The session :meth:`to_json` gave. Fields it does not know (a later version's) are ignored; a field
        missing or of the wrong type raises ``ValueError`` naming it."""
        if not isinstance(data, dict):
            raise ValueError(f"it holds {_json_type(data)}, not an object")
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name not in data:
                if spec.default is MISSING and spec.default_factory is MISSING:
                    raise ValueError(f"{spec.name} is missing")
                continue
            value = data[spec.name]
            expected, fits = _FIELD_TYPES[str(spec.type)]
            if not fits(value):
                raise ValueError(f"{spec.name} is {_json_type(value)}, not {expected}")
            values[spec.name] = value
        return cls(**values)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _is_features(value: Any) -> bool:
    return isinstance(value, dict) and all(type(version) is int for version in value.values())


_FIELD_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    # Keyed by a field's annotation as written: ``from __future__ import annotations`` keeps it a string.
    "str": ("a string", lambda value: isinstance(value, str)),
    "bool": ("a boolean", lambda value: isinstance(value, bool)),
    "str | None": ("a string or null", lambda value: value is None or isinstance(value, str)),
    "dict[str, int]": ("an object of version numbers", _is_features),
}


def state_dir() -> Path:
    """Where every file icwschat writes lives: ``ICWSCHAT_HOME``, else the platform's state directory."""
    home = os.environ.get("ICWSCHAT_HOME")
    if home:
        return Path(home)
    import platformdirs

    return Path(platformdirs.user_state_dir("icwschat", appauthor=False))


class SessionStore:
    """Load, save and forget the one stored session, in a directory no one else can write.

    The directory is trusted as ssh trusts ``~/.ssh``: only when it is ours and closed to writes by others,
    who could otherwise plant a session naming their own server (a renewal would send it the password) or
    a symbolic link where a lock is written. No file in it is ever opened through a symbolic link.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / SESSION_FILE
        self.lock_path = directory / LOCK_FILE

    def save(self, session: Session) -> None:
        """Store ``session`` atomically; ``UsageError`` when the directory cannot take it."""
        self._prepare_directory()
        with self._new_file(json.dumps(session.to_json(), indent=2).encode()) as new:
            try:
                os.replace(new, self.path)
            except OSError as exc:
                raise self._cannot_store(_why(exc)) from exc

    def check_writable(self) -> None:
        """Raise what :meth:`save` would raise now, so ``login`` never leaves a server session behind that it
        cannot store."""
        self._prepare_directory()
        with self._new_file(b""):
            pass
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(self.path).st_mode):
                raise self._cannot_store("it is a directory")

    def load(self) -> Session | None:
        """The stored session, None when there is none; ``AuthenticationError`` when it cannot be used."""
        if self._checked_directory() is None:
            return None
        try:
            with os.fdopen(_open_file(self.path, os.O_RDONLY), "rb") as handle:
                raw = handle.read(MAX_SESSION_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuthenticationError(
                f"cannot read the stored session {self.path}: {_why(exc)}", hint=self._login_hint(None)
            ) from exc
        return self._parsed(raw)

    def _parsed(self, raw: bytes) -> Session:
        from . import jsonio  # here, not at the top: every command's start-up imports this module

        if len(raw) > MAX_SESSION_BYTES:
            raise self._damaged(f"larger than {MAX_SESSION_BYTES} bytes")
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise self._damaged("not UTF-8") from None
        try:
            data = jsonio.loads(text)
        except ValueError:
            raise self._damaged("not JSON") from None
        try:
            return Session.from_json(data)
        except ValueError as exc:
            raise self._damaged(str(exc), data) from None

    def require(self) -> Session:
        session = self.load()
        if session is None:
            raise AuthenticationError("not logged in; run icwschat login --server URL --user USER")
        return session

    def forget(self) -> bool:
        if self._checked_directory() is None:
            return False
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise UsageError(
                f"cannot remove the stored session {self.path}: {_why(exc)}",
                hint=f"remove it yourself: rm -r {_quoted(self.path)}",
            ) from exc
        return True

    @contextlib.contextmanager
    def queue_lock(self) -> Iterator[None]:
        """Hold the session's message queue for one reader.

        ICWS hands each queued message to whichever request takes it first, so a second reader on the same
        session would silently steal messages from the first. The lock is advisory (flock) and dies with the
        process, so a crash never leaves it behind.
        """
        import fcntl

        self._prepare_directory()
        try:
            fd = _open_file(self.lock_path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise UsageError(
                f"cannot use {self.lock_path}: {_why(exc)}",
                hint=f"remove it, icwschat makes a new one: rm -r {_quoted(self.lock_path)}",
            ) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip()
                pid = holder if holder.isascii() and holder.isdigit() else "unknown"
                raise AnotherWatcher(
                    f"another icwschat process (pid {pid}) is already reading this session's messages; "
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

    # ---- the directory -----------------------------------------------------------------------------------

    def _checked_directory(self) -> os.stat_result | None:
        """The directory's status, None when it does not exist; ``UsageError`` when it is no directory, is
        another user's, or others can write in it."""
        where = _quoted(self.directory)
        try:
            info = os.stat(self.directory)
        except (FileNotFoundError, NotADirectoryError):  # missing, or a parent is a file: nothing stored
            return None
        except OSError as exc:
            raise UsageError(
                f"cannot use the state directory {self.directory}: {_why(exc)}", hint=ELSEWHERE
            ) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise UsageError(
                f"the state directory {self.directory} is not a directory",
                hint=f"move that file away (mv {where} {where}.old), or {ELSEWHERE}",
            )
        if info.st_uid != os.geteuid():
            raise UsageError(
                f"the state directory {self.directory} belongs to {_user(info.st_uid)}, not to you",
                hint=f"make it yours (as root: chown {_user_name(os.geteuid())} {where}), or {ELSEWHERE}",
            )
        if info.st_mode & 0o022:
            writers = {0o020: "its group", 0o002: "others", 0o022: "its group and others"}
            raise UsageError(
                f"the state directory {self.directory} is writable by {writers[info.st_mode & 0o022]} "
                f"(mode {stat.S_IMODE(info.st_mode):04o}), so they could plant a session or a link in it",
                hint=f"close it to them (chmod 700 {where}), or {ELSEWHERE}",
            )
        return info

    def _prepare_directory(self) -> None:
        """The directory checked and closed to others, or created with its missing parents, all 0700."""
        info = self._checked_directory()
        if info is None:
            self._create_directory()
        elif info.st_mode & 0o077:  # readable by others: the session's directory is 0700 by contract
            try:
                os.chmod(self.directory, stat.S_IMODE(info.st_mode) & ~0o077)
            except OSError as exc:
                raise self._cannot_write(exc) from exc

    def _create_directory(self) -> None:
        missing = itertools.takewhile(
            lambda path: not os.path.lexists(path), [self.directory, *self.directory.parents]
        )
        try:
            for path in reversed(list(missing)):
                os.mkdir(path, 0o700)
                os.chmod(
                    path, 0o700
                )  # mkdir's mode passes through the umask, which may take the owner's bits
        except OSError as exc:
            failed = f" (at {exc.filename})" if exc.filename and Path(exc.filename) != self.directory else ""
            raise UsageError(
                f"cannot create the state directory {self.directory}: {_why(exc)}{failed}",
                hint=f"create it yourself (mkdir -m 700 -p {_quoted(self.directory)}), or {ELSEWHERE}",
            ) from exc

    @contextlib.contextmanager
    def _new_file(self, data: bytes) -> Iterator[Path]:
        """A new file in the directory holding ``data``, mode 0600 and synced, removed on the way out unless
        it was renamed; ``UsageError`` when the directory takes no file."""
        path = self.directory / f".{SESSION_FILE}.{os.urandom(8).hex()}.tmp"
        try:
            try:
                with os.fdopen(_open_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                raise self._cannot_write(exc) from exc
            yield path
        finally:
            with contextlib.suppress(OSError):  # renamed already, or never created
                path.unlink()

    # ---- errors ------------------------------------------------------------------------------------------

    def _cannot_write(self, error: OSError) -> UsageError:
        return UsageError(
            f"cannot write in the state directory {self.directory}: {_why(error)}",
            hint=f"make it writable (chmod 700 {_quoted(self.directory)}), or {ELSEWHERE}",
        )

    def _cannot_store(self, why: str) -> UsageError:
        return UsageError(
            f"cannot store the session in {self.path}: {why}",
            hint=f"move it away (mv {_quoted(self.path)} {_quoted(self.path)}.old), or {ELSEWHERE}",
        )

    def _damaged(self, why: str, data: Any = None) -> AuthenticationError:
        return AuthenticationError(
            f"the stored session in {self.path} is damaged ({why})", hint=self._login_hint(data)
        )

    def _login_hint(self, data: Any) -> str:
        """Remove the file and log in again, with the server and user the file still names when it does."""
        known = data if isinstance(data, dict) else {}
        server, user = (known.get(name) for name in ("server", "user"))
        return (
            f"remove it and log in again: rm {_quoted(self.path)}; icwschat login "
            f"--server {_quoted(server) if isinstance(server, str) else 'URL'} "
            f"--user {_quoted(user) if isinstance(user, str) else 'USER'}"
        )


def _open_file(path: Path, flags: int) -> int:
    """``path`` opened, never through a symbolic link nor blocking on a FIFO; ``OSError`` with a reason a user
    can act on as its ``strerror`` when it is a link or no regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, "it is a symbolic link, which icwschat never follows") from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "it is not a regular file")
    if flags & os.O_CREAT:
        os.fchmod(fd, 0o600)  # the mode given to open() passes through the umask
    return fd


def _why(error: OSError) -> str:
    return error.strerror or str(error)


def _quoted(value: Path | str) -> str:
    """``value`` as one shell word, and inert: hints are printed, and a path or name may hold anything."""
    from .textsafe import inert

    return shlex.quote(inert(str(value), multiline=False))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _user(uid: int) -> str:
    name = _user_name(uid)
    return f"uid {uid}" if name == str(uid) else f"uid {uid} ({name})"
