"""What the commands share below the command line: running one command to an exit status, passwords,
logging in (first and again), choosing the output, following a chat, signals, the simulator.

Nothing here knows Typer: ``cli.py`` parses options and calls in, so every command's behaviour can be
driven in-process with an :class:`~icwschat.environment.Environment` built by a test.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import os
import re
import shlex
import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from .environment import Environment
from .errors import (
    AnotherWatcher,
    AuthenticationError,
    ExitCode,
    ICWSError,
    Terminated,
    UsageError,
    exit_code,
)
from .session import DEFAULT_PROFILE, Session, profile_name
from .session import LoginRequest as LoginRequest  # where commands and tests have always found it
from .textsafe import inert
from .window import EVERYTHING, Window

if TYPE_CHECKING:
    from .client import HTTP
    from .simulator import SimulatorServer
    from .sinks import Sink
    from .watch import Watcher, WatchOptions

BUG_REPORT = (
    "this is a bug in icwschat.\n"
    "  Please report it to the icwschat maintainers with the output of the same command run with --debug "
    "(tokens, cookies and passwords are redacted in it)."
)
_OUTPUT_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF})
_LOGIN_ADVICE = re.compile(r"run icwschat login(?: --server URL --user USER)?")
SHORT_TIMEOUT = (3.0, 5.0)
"""(connect, read) seconds for what is only worth a moment: ending a session nobody will use again."""
log = logging.getLogger("icwschat.runtime")


def run(env: Environment, action: Callable[[], None]) -> ExitCode:
    """Run one command: every expected failure becomes a message and the contract's exit status; anything
    else is a bug, reported as one, with the traceback only under ``--debug``."""
    if env.debug:
        _log_to(env)
    try:
        profile_name(env.profile)  # every command takes --profile, and a bad one is refused by every one
        action()
    except ICWSError as error:
        report(env, error)
        return exit_code(error)
    except (KeyboardInterrupt, Terminated) as interrupted:
        return exit_code(interrupted)
    except BrokenPipeError:
        _quiet_stdout(env)
        return ExitCode.OK
    except OSError as error:
        if error.errno not in _OUTPUT_ERRORS:
            raise
        # Standard output on a full disk, or closed: what was asked cannot be shown. Said on stderr; the
        # interpreter's last flush of stdout would fail again, so it goes to /dev/null.
        _quiet_stdout(env)
        env.say(f"error: cannot write the output: {error.strerror or error}")
        return ExitCode.USAGE
    except Exception:  # noqa: BLE001 - the last resort: a bug is reported, never shown as a traceback
        env.say(f"unexpected error: {BUG_REPORT}")
        if env.debug:
            import traceback

            env.stderr.write(traceback.format_exc())
        return ExitCode.BUG
    return ExitCode.OK


class _InertFormatter(logging.Formatter):
    """Debug records quote the server (error bodies, ids, problems in its messages): each is made inert as
    a whole, so no log call can forget it."""

    def format(self, record: logging.LogRecord) -> str:
        return inert(super().format(record))


def _log_to(env: Environment) -> None:
    handler = logging.StreamHandler(env.stderr)
    handler.setFormatter(_InertFormatter("%(asctime)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.INFO)


def report(env: Environment, error: ICWSError) -> None:
    """The error in a sentence, the server's own words, and what to do; all of it made inert."""
    message = error.message
    if isinstance(error, AuthenticationError):
        message = _LOGIN_ADVICE.sub(login_command(env), message)
    env.say(f"error: {message}")
    details = error.details()
    if details:
        env.say(f"server said: {details}", prefix="  ")
    if error.hint:
        env.say(f"hint: {error.hint}", prefix="  ")


def login_command(env: Environment) -> str:
    """``run icwschat login ...`` with the profile's server and user when it remembers them."""
    profile = "" if env.profile == DEFAULT_PROFILE else f" --profile {shlex.quote(env.profile)}"
    try:
        remembered = env.store.remembered()
    except ICWSError:
        remembered = None
    if remembered is None:
        return f"run icwschat login{profile} --server URL --user USER"
    login = remembered.login
    return f"run icwschat login{profile} --server {login.server} --user {shlex.quote(login.user)}"


def _quiet_stdout(env: Environment) -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush stays silent."""
    try:
        fileno = env.stdout.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)


# ---- passwords and logging in ------------------------------------------------------------------------


def read_password(
    env: Environment, password_stdin: bool, *, keyring_entry: str | None, prompt_for: str | None
) -> str | None:
    """The password from ICWS_PASSWORD, else stdin, else the keyring (under ``keyring_entry``, when the
    profile saved one), else a hidden prompt (when ``prompt_for`` is given)."""
    if env.password:
        return env.password
    if password_stdin:
        line = env.stdin.readline().rstrip("\r\n")
        if not line:
            raise UsageError("--password-stdin was given but standard input held no password")
        return line
    if keyring_entry is not None:
        from . import credentials

        try:
            saved = credentials.saved(keyring_entry)
        except UsageError as error:  # the next source may still do; the user learns why this one did not
            env.say(f"the saved password is out of reach: {error.message}")
            saved = None
        if saved:
            return saved
        log.debug("the keyring holds no password for this profile")
    if prompt_for is None:
        return None
    if not env.stdin_isatty:
        raise UsageError(
            "no password: standard input is not a terminal",
            hint="set ICWS_PASSWORD or pipe it with --password-stdin",
        )
    import getpass

    try:
        return getpass.getpass(f"Password for {prompt_for}: ", stream=env.stderr)
    except KeyboardInterrupt:
        env.stderr.write("\n")  # the prompt left the cursor on its line; the shell's prompt needs its own
        raise


def keyring_entry(env: Environment) -> str | None:
    """Where the keyring keeps the profile's password, None when the profile saved none."""
    profile = env.store.load_profile()
    if profile is None or not profile.password_saved:
        return None
    from .credentials import key

    return key(env.profile, profile.login)


def end_session(session: Session) -> bool:
    """``DELETE`` the server session, best effort and in little time; True when the server ended it."""
    from .client import Connection

    http = make_http(session)
    try:
        Connection(http, session).logout(timeout=SHORT_TIMEOUT)
    except ICWSError as error:
        log.debug("could not end session %s: %s %s", session.session_id, error, error.details())
        return False
    finally:
        http.close()
    return True


def warn_about_transport(env: Environment, server: str, *, insecure: bool) -> None:
    """A password over plain http, or a session over unverified TLS, is said out loud before it happens."""
    if insecure:
        env.say(
            "WARNING: --insecure: TLS certificates are NOT verified; anyone on the network can "
            "read or take over this session."
        )
    parts = urlsplit(server)
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        env.say(
            f"WARNING: {parts.netloc} is plain http: the password and the session travel in clear text; "
            "use https:// (CIC serves it on port 8019) where the server offers it."
        )


def _is_loopback(host: str) -> bool:
    """The password of a login to this machine crosses no network (the simulator, a tunnel's end)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_http(session: Session) -> HTTP:
    return LoginRequest.renewing(session).http()


# ---- output and following chats ----------------------------------------------------------------------


def choose_sink(
    env: Environment, output: str | None = None, *, live: bool = True, window: Window = EVERYTHING
) -> Sink:
    """The sink of an ``-o/--output`` format (default: the view on a terminal, else the plain log), showing
    the history inside ``window``."""
    from .sinks import OUTPUTS, Windowed

    sink = OUTPUTS[output or ("live" if env.stdout_isatty else "plain")](env, live)
    return sink if window.everything else Windowed(sink, window)


def follow(env: Environment, options: WatchOptions, sink: Sink, password_stdin: bool) -> Watcher:
    """Run a watcher on the profile's session, holding its queue lock, renewing the session if it can.

    When another process holds the lock, the stored session has its one reader already: with a password at
    hand (not a prompt) this command reads on a session of its own instead, else it is refused.
    """
    from .watch import Watcher

    store = env.store
    session = store.require()
    password = read_password(env, password_stdin, keyring_entry=keyring_entry(env), prompt_for=None)
    relogin = None if password is None else functools.partial(LoginRequest.renewing(session).log_in, password)
    with ExitStack() as held:
        try:
            held.enter_context(store.queue_lock())
        except AnotherWatcher:
            if relogin is None:
                raise
            return _follow_on_its_own_session(env, relogin, options, sink)
        watcher = Watcher(
            lambda: make_http(session),
            session,
            options,
            sink,
            relogin=relogin,
            on_session=store.save,
            warn=env.say,
        )
        with handled_signals():
            watcher.run()
    return watcher


def _follow_on_its_own_session(
    env: Environment, log_in: Callable[[], Session], options: WatchOptions, sink: Sink
) -> Watcher:
    """Log in for this command alone, store nothing, and end the session (the latest, after renewals) however
    the command ends."""
    from .watch import Watcher

    env.say(
        "another icwschat process is reading this profile's session; "
        "this command uses a short-lived session of its own"
    )
    with handled_signals():
        sessions = [log_in()]
        try:
            watcher = Watcher(
                lambda: make_http(sessions[-1]),
                sessions[0],
                options,
                sink,
                relogin=log_in,
                on_session=sessions.append,
                warn=env.say,
            )
            watcher.run()
        finally:
            end_session(sessions[-1])
    return watcher


@contextmanager
def handled_signals() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C does (so subscriptions are removed, a replay's parser ended), with exit
    status 143."""

    def terminate(signum: int, frame: FrameType | None) -> NoReturn:
        Terminated.requested.set()
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        Terminated.requested.clear()


# ---- the simulator -----------------------------------------------------------------------------------


def start_simulator(
    host: str, port: int, speed: float, scenarios: Path | None, messaging_version: int, *, load: int = 0
) -> SimulatorServer:
    from .simulator import Simulator, SimulatorServer, load_scenarios
    from .simulator.scenarios import ScenarioError

    try:
        sim = Simulator(load_scenarios(scenarios), speed=speed, messaging_version=messaging_version)
        if load:
            sim.start_load(load)
        return SimulatorServer(sim, host=host, port=port).start()
    except ScenarioError as exc:
        raise UsageError(f"cannot load scenarios: {exc}") from exc
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port, or --port 0 for a free one",
        ) from exc


def wait_for_interrupt() -> None:
    """Block until a signal ends the process; ``signal.pause`` where there is one (not on Windows)."""
    pause: Callable[[], Any] | None = getattr(signal, "pause", None)
    if pause is not None:
        pause()
        return
    import threading

    threading.Event().wait()
