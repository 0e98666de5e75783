"""The stored session and profile: what `login` leaves for later commands, and where it lives.

Each profile is a directory holding ``session.json`` (the session), ``profile.json`` (how to log in again:
server, user, TLS options) and ``queue.lock``. The ``default`` profile's directory is the state directory
itself, where icwschat kept its one session before there were profiles, so an upgrade finds it in place; any
other profile's is ``profiles/NAME`` below it. Files are written atomically with mode 0600 inside 0700
directories, so a crash never leaves half a file and no other user can read the CSRF token or cookie. The
password is never part of them.

Ownership, modes and flock are POSIX; on Windows the files live in the user's own profile directory, whose
access control lists already keep other users out, and the queue lock is ``msvcrt.locking``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import re
import shlex
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .errors import AnotherWatcher, AuthenticationError, ICWSError, UsageError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from .client import HTTP

SESSION_FILE = "session.json"
PROFILE_FILE = "profile.json"
LOCK_FILE = "queue.lock"
PROFILES_DIR = "profiles"
DEFAULT_PROFILE = "default"
POSIX = os.name == "posix"
_PROFILE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")
_DEVICE_NAMES = {"con", "prn", "aux", "nul", *(f"{port}{n}" for port in ("com", "lpt") for n in range(10))}
"""Names Windows gives to devices in every directory: a profile so named could not be created there."""
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
        """The session :meth:`to_json` gave; ``ValueError`` naming what is wrong."""
        return _from_json(cls, data)


@dataclass(frozen=True, slots=True)
class LoginRequest:
    """Everything a login needs but the password: what ``login`` asks for, what a renewal repeats, and what
    a profile remembers for its next login."""

    server: str
    user: str
    app_name: str = "icwschat"
    language: str = "en-us"
    ca_bundle: str | None = None
    insecure: bool = False

    @classmethod
    def renewing(cls, session: Session) -> LoginRequest:
        return cls(
            session.server,
            session.user,
            session.app_name,
            session.language,
            session.ca_bundle,
            session.insecure,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> LoginRequest:
        return _from_json(cls, data)

    def http(self, *, timeout: tuple[float, float] | None = None) -> HTTP:
        from .client import DEFAULT_TIMEOUT, HTTP

        return HTTP(
            language=self.language,
            ca_bundle=self.ca_bundle,
            insecure=self.insecure,
            timeout=timeout or DEFAULT_TIMEOUT,
        )

    def log_in(
        self, password: str, *, on_switchover: Callable[[str, ICWSError], None] | None = None
    ) -> Session:
        from .client import login

        http = self.http()
        try:
            return login(
                http,
                self.server,
                self.user,
                password,
                app_name=self.app_name,
                language=self.language,
                ca_bundle=self.ca_bundle,
                insecure=self.insecure,
                on_switchover=on_switchover,
            )
        finally:
            http.close()


@dataclass(frozen=True, slots=True)
class Profile:
    """What a profile remembers across sessions: how it logs in, and whether the keyring holds its password
    (so that no command asks the keyring, or loads it, for a profile that never saved one)."""

    login: LoginRequest
    password_saved: bool = False

    @classmethod
    def of_session(cls, session: Session) -> Profile:
        """What a session stored before there were profiles tells of its profile."""
        return cls(LoginRequest.renewing(session))

    def to_json(self) -> dict[str, Any]:
        return {"login": self.login.to_json(), "password_saved": self.password_saved}

    @classmethod
    def from_json(cls, data: Any) -> Profile:
        if not isinstance(data, dict):
            raise ValueError(f"it holds {_json_type(data)}, not an object")
        try:
            login = LoginRequest.from_json(data.get("login"))
        except ValueError as exc:
            raise ValueError(f"login: {exc}") from None
        saved = data.get("password_saved", False)
        if not isinstance(saved, bool):
            raise ValueError(f"password_saved is {_json_type(saved)}, not a boolean")
        return cls(login, saved)


_Record = TypeVar("_Record", bound="DataclassInstance")


def _from_json(cls: type[_Record], data: Any) -> _Record:
    """The dataclass ``cls`` from the object its ``to_json`` gave. Fields it does not know (a later version's)
    are ignored; a field missing or of the wrong type raises ``ValueError`` naming it."""
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
    for name, value in values.items():
        check = _VALUE_CHECKS.get(name)
        if check is not None and not check(value):
            raise ValueError(f"{name} is not a usable value: {value!r:.80}")
    return cls(**values)


def _is_server(value: str) -> bool:
    """A base URL as ``login`` stores it: http(s), a host, a valid port, no query or credentials."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.query or parts.fragment or parts.username)
        and _PRINTABLE.fullmatch(value) is not None
    )


_PRINTABLE = re.compile(r"[\x21-\x7e]+")
"""Text that can go into a request line or header as it is: visible ASCII, no space, no line break."""
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")
_VALUE_CHECKS: dict[str, Callable[[Any], bool]] = {
    # Read back from a file another program (or person) may have edited, then put into requests.
    "server": _is_server,
    "csrf_token": lambda value: _HEADER_VALUE.fullmatch(value) is not None,
    "cookie": lambda value: _HEADER_VALUE.fullmatch(value) is not None,
    "language": lambda value: _HEADER_VALUE.fullmatch(value) is not None,
}


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


def profile_name(name: str) -> str:
    """``name`` when it can name a profile's directory on every platform; ``UsageError`` otherwise."""
    if not _PROFILE_NAME.fullmatch(name) or name.split(".")[0].lower() in _DEVICE_NAMES:
        raise UsageError(
            f"{name!r} is not a profile name",
            hint="a profile name is up to 64 letters, digits, '.', '_' or '-', beginning and ending with a "
            "letter or digit, such as prod or cic-2",
        )
    return name


def profile_store(home: Path, name: str) -> SessionStore:
    """The store of profile ``name`` under the state directory ``home``."""
    if profile_name(name) == DEFAULT_PROFILE:
        return SessionStore(home)
    return SessionStore(home / PROFILES_DIR / name, home=home, profile=name)


def profile_names(home: Path) -> list[str]:
    """The profiles that remember something, ``default`` first, the others sorted; no link is followed."""
    names = [DEFAULT_PROFILE] if profile_store(home, DEFAULT_PROFILE).remembers_anything() else []
    try:
        entries = list(os.scandir(home / PROFILES_DIR))
    except OSError:  # none yet, or unreadable: the store says why when a command uses that profile
        return names
    for entry in sorted(entries, key=lambda entry: entry.name):
        if (
            entry.is_dir(follow_symlinks=False)
            and _PROFILE_NAME.fullmatch(entry.name)
            and entry.name != DEFAULT_PROFILE
            and profile_store(home, entry.name).remembers_anything()
        ):
            names.append(entry.name)
    return names


class SessionStore:
    """Load, save and forget one profile's session and login settings, in a directory no one else can write.

    The directory, and every directory between the state directory ``home`` and it, is trusted as ssh trusts
    ``~/.ssh``: only when it is ours and closed to writes by others, who could otherwise plant a session or
    profile naming their own server (a renewal would send it the password) or a symbolic link where a lock is
    written. No file in it is ever opened through a symbolic link.
    """

    def __init__(self, directory: Path, *, home: Path | None = None, profile: str = DEFAULT_PROFILE) -> None:
        self.directory = directory
        self.profile = profile
        self.path = directory / SESSION_FILE
        self.profile_path = directory / PROFILE_FILE
        self.lock_path = directory / LOCK_FILE
        top = home or directory
        below = [directory, *directory.parents]
        self._trusted = [top, *reversed(below[: below.index(top)])]
        """``home`` down to ``directory``: each could swap what lies below it."""

    def save(self, session: Session) -> None:
        """Store ``session`` atomically; ``UsageError`` when the directory cannot take it."""
        self._write(self.path, session.to_json())

    def save_profile(self, profile: Profile) -> None:
        self._write(self.profile_path, profile.to_json())

    def check_writable(self) -> None:
        """Raise what :meth:`save` would raise now, so ``login`` never leaves a server session behind that it
        cannot store."""
        self._prepare_directory()
        with self._new_file(b""):
            pass
        for path in (self.path, self.profile_path):
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    raise self._cannot_store(path, "it is a directory")

    def load(self) -> Session | None:
        """The stored session, None when there is none; ``AuthenticationError`` when it cannot be used."""
        raw = self._read(self.path)
        return None if raw is None else self._parsed(raw, self.path, Session.from_json)

    def load_profile(self) -> Profile | None:
        """What the profile remembers, None when nothing; ``AuthenticationError`` when it cannot be used."""
        raw = self._read(self.profile_path)
        return None if raw is None else self._parsed(raw, self.profile_path, Profile.from_json)

    def remembered(self) -> Profile | None:
        """The profile, else what a session stored before there were profiles tells of it."""
        profile = self.load_profile()
        if profile is None:
            session = self.load()
            if session is not None:
                return Profile.of_session(session)
        return profile

    def remembers_anything(self) -> bool:
        return any(os.path.lexists(path) for path in (self.path, self.profile_path))

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
        session would silently steal messages from the first. The lock is advisory and dies with the
        process, so a crash never leaves it behind.
        """
        self._prepare_directory()
        try:
            fd = _open_file(self.lock_path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise UsageError(
                f"cannot use {self.lock_path}: {_why(exc)}",
                hint=f"remove it, icwschat makes a new one: rm -r {_quoted(self.lock_path)}",
            ) from exc
        try:
            if not _try_lock(fd):
                holder = os.read(fd, 32).decode(errors="replace").strip()
                pid = holder if holder.isascii() and holder.isdigit() else "unknown"
                raise AnotherWatcher(
                    f"another icwschat process (pid {pid}) is already reading this session's messages; "
                    "ICWS gives each message to one reader only, so two watchers on one session would each "
                    "miss messages",
                    hint="stop the other watcher; or let this command open a short-lived session of its own "
                    "by giving it a password (ICWS_PASSWORD, or login --save-password once); or use another "
                    "profile (--profile NAME) or ICWSCHAT_HOME",
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            os.close(fd)

    # ---- files ---------------------------------------------------------------------------------------

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        self._prepare_directory()
        with self._new_file(json.dumps(data, indent=2).encode()) as new:
            try:
                os.replace(new, path)
            except OSError as exc:
                raise self._cannot_store(path, _why(exc)) from exc

    def _read(self, path: Path) -> bytes | None:
        if self._checked_directory() is None:
            return None
        try:
            with os.fdopen(_open_file(path, os.O_RDONLY), "rb") as handle:
                return handle.read(MAX_SESSION_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuthenticationError(
                f"cannot read the stored {self._what(path)} {path}: {_why(exc)}",
                hint=self._login_hint(path, None),
            ) from exc

    def _parsed(self, raw: bytes, path: Path, parse: Callable[[Any], _Stored]) -> _Stored:
        from . import jsonio  # here, not at the top: every command's start-up imports this module

        if len(raw) > MAX_SESSION_BYTES:
            raise self._damaged(path, f"larger than {MAX_SESSION_BYTES} bytes")
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise self._damaged(path, "not UTF-8") from None
        try:
            data = jsonio.loads(text)
        except ValueError:
            raise self._damaged(path, "not JSON") from None
        try:
            return parse(data)
        except ValueError as exc:
            raise self._damaged(path, str(exc), data) from None

    # ---- the directories ---------------------------------------------------------------------------------

    def _checked_directory(self) -> os.stat_result | None:
        """The directory's status, None when it (or a directory above it) does not exist; ``UsageError``
        when one of them is no directory, is another user's, or others can write in it."""
        info = None
        for path in self._trusted:
            info = _checked(path)
            if info is None:
                return None
        return info

    def _prepare_directory(self) -> None:
        """The directories checked and closed to others, the missing ones created with their parents, all
        0700."""
        for path in self._trusted:
            info = _checked(path)
            if info is None:
                _create_directory(self.directory)
                return
            if (
                POSIX and info.st_mode & 0o077
            ):  # readable by others: a session's directory is 0700 by contract
                try:
                    os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o077)
                except OSError as exc:
                    raise _cannot_write(path, exc) from exc

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
                raise _cannot_write(self.directory, exc) from exc
            yield path
        finally:
            with contextlib.suppress(OSError):  # renamed already, or never created
                path.unlink()

    # ---- errors ------------------------------------------------------------------------------------------

    def _cannot_store(self, path: Path, why: str) -> UsageError:
        return UsageError(
            f"cannot store the {self._what(path)} in {path}: {why}",
            hint=f"move it away (mv {_quoted(path)} {_quoted(path)}.old), or {ELSEWHERE}",
        )

    def _damaged(self, path: Path, why: str, data: Any = None) -> AuthenticationError:
        return AuthenticationError(
            f"the stored {self._what(path)} in {path} is damaged ({why})", hint=self._login_hint(path, data)
        )

    def _what(self, path: Path) -> str:
        return "session" if path == self.path else "profile"

    def _login_hint(self, path: Path, data: Any) -> str:
        """Remove the file and log in again, with the server and user the file still names when it does."""
        known = data if isinstance(data, dict) else {}
        if isinstance(known.get("login"), dict):
            known = known["login"]
        server, user = (known.get(name) for name in ("server", "user"))
        profile = "" if self.profile == DEFAULT_PROFILE else f" --profile {_quoted(self.profile)}"
        return (
            f"remove it and log in again: rm {_quoted(path)}; icwschat login{profile} "
            f"--server {_quoted(server) if isinstance(server, str) else 'URL'} "
            f"--user {_quoted(user) if isinstance(user, str) else 'USER'}"
        )


_Stored = TypeVar("_Stored")


def _checked(directory: Path) -> os.stat_result | None:
    """``directory``'s status, None when it does not exist; ``UsageError`` when it is no directory, is another
    user's, or others can write in it."""
    where = _quoted(directory)
    try:
        info = os.stat(directory)
    except (FileNotFoundError, NotADirectoryError):  # missing, or a parent is a file: nothing stored
        return None
    except OSError as exc:
        raise UsageError(f"cannot use the state directory {directory}: {_why(exc)}", hint=ELSEWHERE) from exc
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(
            f"the state directory {directory} is not a directory",
            hint=f"move that file away (mv {where} {where}.old), or {ELSEWHERE}",
        )
    if not POSIX:  # no owner or mode bits to check: access control lists guard the user's own directories
        return info
    if info.st_uid != os.geteuid():
        raise UsageError(
            f"the state directory {directory} belongs to {_user(info.st_uid)}, not to you",
            hint=f"make it yours (as root: chown {_user_name(os.geteuid())} {where}), or {ELSEWHERE}",
        )
    if info.st_mode & 0o022:
        writers = {0o020: "its group", 0o002: "others", 0o022: "its group and others"}
        raise UsageError(
            f"the state directory {directory} is writable by {writers[info.st_mode & 0o022]} "
            f"(mode {stat.S_IMODE(info.st_mode):04o}), so they could plant a session or a link in it",
            hint=f"close it to them (chmod 700 {where}), or {ELSEWHERE}",
        )
    return info


def _create_directory(directory: Path) -> None:
    missing = itertools.takewhile(lambda path: not os.path.lexists(path), [directory, *directory.parents])
    try:
        for path in reversed(list(missing)):
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)  # mkdir's mode passes through the umask, which may take the owner's bits
    except OSError as exc:
        failed = f" (at {exc.filename})" if exc.filename and Path(exc.filename) != directory else ""
        raise UsageError(
            f"cannot create the state directory {directory}: {_why(exc)}{failed}",
            hint=f"create it yourself (mkdir -m 700 -p {_quoted(directory)}), or {ELSEWHERE}",
        ) from exc


def _cannot_write(directory: Path, error: OSError) -> UsageError:
    return UsageError(
        f"cannot write in the state directory {directory}: {_why(error)}",
        hint=f"make it writable (chmod 700 {_quoted(directory)}), or {ELSEWHERE}",
    )


_OPEN_FLAGS = (
    getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
"""Never through a symbolic link nor blocking on a FIFO, where the platform has them (Windows has neither
flag; its links need a privilege to create)."""


def _open_file(path: Path, flags: int) -> int:
    """``path`` opened, never through a symbolic link nor blocking on a FIFO; ``OSError`` with a reason a user
    can act on as its ``strerror`` when it is a link or no regular file."""
    try:
        fd = os.open(path, flags | _OPEN_FLAGS, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, "it is a symbolic link, which icwschat never follows") from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "it is not a regular file")
    if POSIX and flags & os.O_CREAT:
        os.fchmod(fd, 0o600)  # the mode given to open() passes through the umask
    return fd


if sys.platform == "win32":
    import msvcrt

    _LOCKED_BYTE = 1 << 30
    """Far past the pid written at the start: Windows refuses to read a locked range, and the second reader
    reads the pid to name the first."""

    def _try_lock(fd: int) -> bool:
        """Lock the queue for this process; False when another holds it. Released when the file closes."""
        os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        """Lock the queue for this process; False when another holds it. Released when the file closes."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def _why(error: OSError) -> str:
    return error.strerror or str(error)


def _quoted(value: Path | str) -> str:
    """``value`` as one shell word, and inert: hints are printed, and a path or name may hold anything."""
    from .textsafe import inert

    return shlex.quote(inert(str(value), multiline=False))


def _user_name(uid: int) -> str:
    try:
        import pwd  # POSIX only, like the ownership checks that call this
    except ImportError:
        return str(uid)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _user(uid: int) -> str:
    name = _user_name(uid)
    return f"uid {uid}" if name == str(uid) else f"uid {uid} ({name})"
