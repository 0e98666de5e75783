"""Profiles: one name for each CIC server and user, with how to log in there and the session it has.

``login`` fills in what its options leave out from the profile, ends the profile's old session on the
server, stores the new one and remembers how it logged in; ``profiles`` lists them all with whether each
session is still alive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .environment import Environment
from .errors import (
    AnotherWatcher,
    AuthenticationError,
    ICWSError,
    ServerUnavailable,
    SessionGone,
    UsageError,
)
from .runtime import end_session, read_password, warn_about_transport
from .session import (
    DEFAULT_PROFILE,
    LoginRequest,
    Profile,
    Session,
    SessionStore,
    profile_names,
    profile_store,
)

PROBE_TIMEOUT = (2.0, 3.0)
"""(connect, read) seconds for each profile's liveness check: a listing must not wait on a dead server."""
MAX_PROBES = 8
_Stored = TypeVar("_Stored")


@dataclass(frozen=True, slots=True)
class LoginOptions:
    """What ``login`` was given; None where an option (or its environment variable) was not."""

    server: str | None = None
    user: str | None = None
    app_name: str | None = None
    language: str | None = None
    ca_bundle: str | None = None
    insecure: bool | None = None


def resolve(given: LoginOptions, remembered: LoginRequest | None, profile: str) -> LoginRequest:
    """The login ``given`` asks for, the rest taken from the profile. TLS options are the server's: they
    carry over only while the server is the profile's."""
    from .client import alternate_server, normalize_server

    server = given.server or (remembered.server if remembered else None)
    user = given.user or (remembered.user if remembered else None)
    if server is None or user is None:
        missing = " and ".join(
            option for option, value in (("--server URL", server), ("--user USER", user)) if value is None
        )
        raise UsageError(
            f"login needs {missing}: the profile {profile!r} does not remember one yet",
            hint="pass them (or set ICWS_SERVER and ICWS_USER) once; later logins on this profile reuse them",
        )
    base = normalize_server(server)
    alternate_server(base, "probe")  # rejects a server URL no alternate host could be put into
    same = remembered if remembered is not None and remembered.server == base else None
    return LoginRequest(
        base,
        user,
        given.app_name or (remembered.app_name if remembered else "icwschat"),
        given.language or (remembered.language if remembered else "en-us"),
        given.ca_bundle or (same.ca_bundle if same else None),
        given.insecure if given.insecure is not None else (same.insecure if same else False),
    )


def log_in(env: Environment, given: LoginOptions, *, password_stdin: bool, save_password: bool) -> Session:
    """Log the profile in: its old server session ended, the new one stored, the login remembered, and the
    password saved in the keyring when asked. The profile's queue is held throughout, so no watch starts
    reading a session this login is about to end."""
    from . import credentials

    store = env.store
    store.check_writable()  # before the server creates a session this command could not keep
    with _locked_for_login(store):
        previous = _tolerated(env, store.load)
        profile = _tolerated(env, store.load_profile)
        if profile is None and previous is not None:
            profile = Profile.of_session(previous)
        request = resolve(given, profile.login if profile else None, env.profile)
        warn_about_transport(env, request.server, insecure=request.insecure)
        if save_password:
            credentials.check_usable()  # before the password is asked for, or a session created
        entry = credentials.key(env.profile, request)
        saved = credentials.key(env.profile, profile.login) if profile and profile.password_saved else None
        password = read_password(
            env,
            password_stdin,
            keyring_entry=entry if saved == entry else None,
            prompt_for=f"{request.user} at {request.server}",
        )
        assert password is not None
        session = _replace_session(env, store, request, password, previous)
        _remember(store, request, password, entry if save_password else None, kept=saved == entry)
    if saved is not None and saved != entry:
        _forget_old_password(env, saved)
    return session


def _tolerated(env: Environment, load: Callable[[], _Stored | None]) -> _Stored | None:
    """What ``load`` reads; a damaged file is only reported, since this login replaces it."""
    try:
        return load()
    except AuthenticationError as damaged:
        env.say(f"{damaged.message}; this login replaces it")
        return None


@contextlib.contextmanager
def _locked_for_login(store: SessionStore) -> Iterator[None]:
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(store.queue_lock())
        except AnotherWatcher as busy:
            raise UsageError(
                "another icwschat process is reading this profile's session; a new login would end it "
                "under it",
                hint="stop that process first (it logs in again by itself when it has a password), or log "
                "in with another --profile",
            ) from busy
        yield


def _replace_session(
    env: Environment, store: SessionStore, request: LoginRequest, password: str, previous: Session | None
) -> Session:
    """Log in, then end the profile's previous session: a login that fails leaves the old one working."""

    def announce(host: str, error: ICWSError) -> None:
        env.say(f"{error}; trying alternate host {host}")

    session = request.log_in(password, on_switchover=announce)
    store.save(session)
    if previous is not None and end_session(previous):
        env.say(f"ended the profile's previous session {previous.session_id} on {previous.server}")
    return session


def _remember(
    store: SessionStore, request: LoginRequest, password: str, save_under: str | None, *, kept: bool
) -> None:
    """Remember the login, and keep the password in the keyring under ``save_under`` when given; ``kept``:
    the keyring already holds it for this very login."""
    from . import credentials

    try:
        if save_under is not None:
            credentials.save(save_under, password)
            kept = True
    except UsageError as error:
        raise UsageError(f"logged in, but {error.message}", hint=error.hint) from error
    finally:
        store.save_profile(Profile(request, password_saved=kept))


def _forget_old_password(env: Environment, entry: str) -> None:
    """The profile now logs in elsewhere: the password it saved for the old server and user goes."""
    from . import credentials

    try:
        credentials.forget(entry)
    except UsageError as error:
        env.say(f"could not remove the password saved for the profile's previous login: {error.message}")


def forget_password(env: Environment) -> bool:
    """Remove the profile's password from the keyring; False when it saved none."""
    from . import credentials

    store = env.store
    remembered = store.remembered()
    if remembered is None:
        return False
    forgotten = credentials.forget(credentials.key(env.profile, remembered.login))
    if store.load_profile() is not None:
        store.save_profile(Profile(remembered.login, password_saved=False))
    return forgotten


# ---- listing ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfileState:
    """One line of ``icwschat profiles``."""

    name: str
    current: bool
    server: str | None
    user: str | None
    session: str
    """``alive``, ``expired``, ``logged out``, ``unreachable`` (no answer in time), ``unknown`` (an answer
    that is no verdict) or ``unusable`` (the profile's files cannot be read; the reason goes to stderr)."""
    password_saved: bool = False
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "current": self.current,
            "server": self.server,
            "user": self.user,
            "session": self.session,
            "passwordSaved": self.password_saved,
        }


def list_profiles(env: Environment) -> list[ProfileState]:
    """Every profile that remembers something, and the current one; their servers asked all at once."""
    names = profile_names(env.state_dir)
    if env.profile not in names:
        names = sorted([*names, env.profile], key=lambda name: (name != DEFAULT_PROFILE, name))
    with ThreadPoolExecutor(max_workers=min(MAX_PROBES, len(names))) as pool:
        return list(pool.map(lambda name: _state(env, name), names))


def _state(env: Environment, name: str) -> ProfileState:
    current = name == env.profile
    store = profile_store(env.state_dir, name)
    try:
        session = store.load()
        remembered = store.remembered()
    except ICWSError as error:
        return ProfileState(name, current, None, None, "unusable", problem=error.message)
    login = remembered.login if remembered else None
    return ProfileState(
        name,
        current,
        login.server if login else None,
        login.user if login else None,
        "logged out" if session is None else _probe(session),
        remembered is not None and remembered.password_saved,
    )


def _probe(session: Session) -> str:
    from .client import Connection

    http = LoginRequest.renewing(session).http(timeout=PROBE_TIMEOUT)
    try:
        state = Connection(http, session).connection_state().get("connectionState")
    except SessionGone:
        return "expired"
    except ServerUnavailable:
        return "unreachable"
    except ICWSError:
        return "unknown"
    finally:
        http.close()
    return "alive" if state == 1 else "expired"


def table(states: list[ProfileState]) -> list[str]:
    """The listing as aligned lines, ``*`` marking the current profile."""
    from .listing import aligned

    rows = [(s.name, s.server, s.user, s.session) for s in states]
    return aligned(("NAME", "SERVER", "USER", "SESSION"), rows, ["* " if s.current else "  " for s in states])
