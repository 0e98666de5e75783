"""The command line: parse options, call the core, turn errors into the contract's exit codes.

Everything typer does not already load (requests, rich, logging, the session store, the simulator) is
imported inside the command that needs it, so ``--help`` and ``--version`` cost little more than typer.
"""

import enum
import functools
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from . import __version__
from .errors import ExitCode, ICWSError, Terminated, UsageError, exit_code

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .client import HTTP
    from .environment import Environment
    from .session import Session
    from .sinks import Sink

ISSUES_URL = "https://github.com/icwschat/icwschat/issues"
INTERACTION_ID = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"

app = typer.Typer(
    name="icwschat",
    help="Follow Genesys PureConnect (ICWS) chats from the command line.\n\n"
    "Log in once, then watch a chat live, pipe it as NDJSON events, or take a transcript. "
    "Try it without a server: icwschat demo.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class TransportChoice(str, enum.Enum):
    auto = "auto"
    poll = "poll"
    sse = "sse"


class State:
    debug = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"icwschat {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Log every request and reply to stderr (tokens, cookies and passwords redacted).",
        ),
    ] = False,
) -> None:
    State.debug = debug
    if debug:
        import logging

        logging.basicConfig(
            level=logging.DEBUG,
            stream=sys.stderr,
            format="%(asctime)s %(name)s: %(message)s",
        )
        logging.getLogger("urllib3").setLevel(logging.INFO)


def environment() -> "Environment":
    from .environment import Environment

    return Environment()


# ---- shared option types ---------------------------------------------------------------------------

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input (ICWS_PASSWORD takes precedence).",
    ),
]
InteractionArg = Annotated[str, typer.Argument(metavar="INTERACTION_ID", help="The chat interaction's id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Write the contract's events as NDJSON.")]


def interaction_id(value: str) -> str:
    if not re.fullmatch(INTERACTION_ID, value):
        raise UsageError(
            f"{value!r} is not an interaction id",
            hint="interaction ids are letters and digits, such as 1001234567",
        )
    return value


def read_password(env: "Environment", password_stdin: bool, *, prompt_for: str | None) -> str | None:
    """The password from ICWS_PASSWORD, else stdin, else a hidden prompt (when ``prompt_for`` is given)."""
    if env.password:
        return env.password
    if password_stdin:
        line = env.stdin.readline().rstrip("\r\n")
        if not line:
            raise UsageError("--password-stdin was given but standard input held no password")
        return line
    if prompt_for is None:
        return None
    if not env.stdin_isatty:
        raise UsageError(
            "no password: standard input is not a terminal",
            hint="set ICWS_PASSWORD or pipe it with --password-stdin",
        )
    import getpass

    return getpass.getpass(f"Password for {prompt_for}: ")


def make_http(session: "Session") -> "HTTP":
    from .client import HTTP

    return HTTP(language=session.language, ca_bundle=session.ca_bundle, insecure=session.insecure)


def say(env: "Environment", text: str) -> None:
    env.stderr.write(f"icwschat: {text}\n")
    env.stderr.flush()


def guarded(command: Callable[..., None]) -> Callable[..., None]:
    """The one place errors become messages and exit statuses, wrapped around every command."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        raise typer.Exit(outcome(lambda: command(*args, **kwargs)))

    return run


def outcome(action: Callable[[], None]) -> int:
    try:
        action()
    except ICWSError as error:
        report(error, sys.stderr)
        return exit_code(error)
    except (KeyboardInterrupt, Terminated) as interrupted:
        return exit_code(interrupted)
    except BrokenPipeError:
        quiet_stdout()
        return ExitCode.OK
    except typer.Exit:
        raise
    except Exception:  # noqa: BLE001 - the last resort: a bug is reported, never shown as a traceback
        sys.stderr.write(
            "icwschat: unexpected error: this is a bug in icwschat.\n"
            f"  Please report it at {ISSUES_URL} with the output of the same command run with --debug.\n"
        )
        if State.debug:
            import traceback

            traceback.print_exc()
        return ExitCode.BUG
    return ExitCode.OK


# ---- commands --------------------------------------------------------------------------------------


@app.command()
@guarded
def login(
    server: Annotated[
        str,
        typer.Option(
            envvar="ICWS_SERVER",
            metavar="URL",
            help="scheme://host[:port][/proxy/prefix] of the CIC server, e.g. https://cic.example.com:8019.",
        ),
    ],
    user: Annotated[str, typer.Option(envvar="ICWS_USER", metavar="USER", help="The CIC user id.")],
    password_stdin: PasswordStdin = False,
    app_name: Annotated[
        str, typer.Option(metavar="NAME", help="Application name the server shows for this session.")
    ] = "icwschat",
    language: Annotated[
        str, typer.Option(metavar="LANG", help="Accept-Language for the whole session.")
    ] = "en-us",
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            metavar="PEM",
            help="PEM file of the CA that signed the server's certificate.",
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify the server's TLS certificate (dangerous).")
    ] = False,
) -> None:
    """Log in to an ICWS server and keep the session for later commands.

    The password comes from ICWS_PASSWORD, else --password-stdin, else a hidden prompt; it is never
    written to disk.
    """
    from .client import HTTP, alternate_server, normalize_server
    from .client import login as icws_login

    env = environment()
    base = normalize_server(server)
    alternate_server(base, "probe")  # rejects a server URL no alternate host could be put into
    if insecure:
        say(
            env,
            "WARNING: --insecure: TLS certificates are NOT verified; anyone on the network can "
            "read or take over this session.",
        )
    password = read_password(env, password_stdin, prompt_for=f"{user} at {base}")
    assert password is not None
    bundle = str(ca_bundle.resolve()) if ca_bundle else None
    http = HTTP(language=language, ca_bundle=bundle, insecure=insecure)

    def announce(host: str, error: ICWSError) -> None:
        say(env, f"{error.message}; trying alternate host {host}")

    session = icws_login(
        http,
        base,
        user,
        password,
        app_name=app_name,
        language=language,
        ca_bundle=bundle,
        insecure=insecure,
        on_switchover=announce,
    )
    env.store.save(session)
    features = ", ".join(f"{k} {v}" for k, v in sorted(session.features.items())) or "none reported"
    typer.echo(f"Logged in to {session.server} as {session.user} (session {session.session_id}).")
    typer.echo(f"Features: {features}")


@app.command()
@guarded
def status(json_out: JsonOption = False) -> None:
    """Show the stored session and whether the server still has it (exit 3 when it does not)."""
    import json

    from .client import Connection
    from .errors import AuthenticationError, SessionGone

    env = environment()
    session = env.store.require()
    http = make_http(session)
    state_names = {0: "none", 1: "up", 2: "down"}
    try:
        reply = Connection(http, session).connection_state()
        code = reply.get("connectionState")
        state = state_names.get(code, "unknown") if isinstance(code, int) else "unknown"
    except SessionGone:
        state = "expired"
    info = {
        "user": session.user,
        "server": session.server,
        "sessionId": session.session_id,
        "features": session.features,
        "connectionState": state,
    }
    if json_out:
        typer.echo(json.dumps(info))
    else:
        typer.echo(f"User:       {session.user}")
        typer.echo(f"Server:     {session.server}")
        typer.echo(f"Session:    {session.session_id}")
        typer.echo(
            "Features:   " + (", ".join(f"{k} {v}" for k, v in sorted(session.features.items())) or "-")
        )
        typer.echo(f"Connection: {state}")
    if state != "up":
        raise AuthenticationError(f"the server reports the session as {state}; run icwschat login")


@app.command()
@guarded
def logout() -> None:
    """End the session on the server and forget it here (exit 0 also when it had already expired)."""
    from .client import Connection
    from .errors import SessionGone

    env = environment()
    session = env.store.load()
    if session is None:
        typer.echo("Not logged in; nothing to do.")
        return
    try:
        Connection(make_http(session), session).logout()
        message = f"Logged out of {session.server}."
    except SessionGone:
        message = "The server session had already expired; forgot it here."
    env.store.forget()
    typer.echo(message)


@app.command()
@guarded
def watch(
    interaction: InteractionArg,
    json_out: JsonOption = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Write every ICWS message as received, one per line.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option(min=0.1, metavar="SECONDS", help="Seconds between short polls (after each reply)."),
    ] = 1.0,
    transport: Annotated[
        TransportChoice,
        typer.Option(help="How to read messages: auto = server-sent events when the server offers them."),
    ] = TransportChoice.auto,
    keep_subscription: Annotated[
        bool, typer.Option("--keep-subscription", help="Leave the server subscription in place on exit.")
    ] = False,
    give_up_after: Annotated[
        float,
        typer.Option(min=0, metavar="SECONDS", help="Seconds of failed retries before giving up (exit 5)."),
    ] = 300.0,
    password_stdin: PasswordStdin = False,
) -> None:
    """Follow a chat live until it ends or you press Ctrl-C.

    On a terminal: a live view of members, who is typing and the transcript. Into a pipe: a plain log, or
    NDJSON events with --json. With ICWS_PASSWORD (or --password-stdin) set, a dropped session is renewed
    by itself and the transcript resynchronised, never losing or repeating a line.
    """
    from .watch import WatchOptions

    if json_out and raw:
        raise UsageError("--json and --raw cannot be used together")
    options = WatchOptions(
        interaction_id=interaction_id(interaction),
        transport=transport.value,
        interval=interval,
        keep_subscription=keep_subscription,
        give_up_after=give_up_after,
    )
    env = environment()
    follow(env, options, choose_sink(env, json_out=json_out, raw=raw), password_stdin)


@app.command()
@guarded
def transcript(
    interaction: InteractionArg,
    json_out: JsonOption = False,
    timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            metavar="SECONDS",
            help="Seconds to wait for the server's snapshot before giving up (exit 5).",
        ),
    ] = 30.0,
) -> None:
    """Print a chat's members and transcript so far, then remove the subscription."""
    from .render import make_console, print_transcript
    from .watch import WatchOptions

    options = WatchOptions(
        interaction_id=interaction_id(interaction),
        transport="poll",
        interval=0.2,
        snapshot_only=True,
        snapshot_timeout=timeout,
        give_up_after=timeout,
    )
    env = environment()
    if json_out or not env.stdout_isatty:
        follow(env, options, choose_sink(env, json_out=json_out, raw=False), password_stdin=False)
        return
    from .sinks import LineSink

    watcher = follow(env, options, LineSink(env.stdout_bytes, env.stderr), password_stdin=False)
    print_transcript(make_console(env.stdout, no_color=env.no_color), watcher.info(), watcher.cache)


@app.command()
@guarded
def replay(
    capture: Annotated[
        str, typer.Argument(metavar="FILE", help="A capture written by watch --raw, or - for standard input.")
    ],
    json_out: JsonOption = False,
    interaction: Annotated[
        str | None,
        typer.Option(
            metavar="ID",
            help="The interaction to replay when the capture holds several (default: the first).",
        ),
    ] = None,
) -> None:
    """Play a capture of watch --raw through the same cache and output as watch, offline.

    --json gives the events watch --json would have written; on a terminal the final frame of the live
    view; into a pipe the plain log. Lines that are not JSON (a capture cut short) are skipped with a note.
    """
    from .replay import replay as play

    env = environment()
    iid = interaction_id(interaction) if interaction is not None else None
    sink = choose_sink(env, json_out=json_out, raw=False, live=False)
    source: AbstractContextManager[IO[bytes]]
    if capture == "-":
        if env.stdin_isatty:
            raise UsageError(
                "replay - reads a capture from standard input, which is a terminal",
                hint="pipe one in: icwschat replay - < 1001.ndjson",
            )
        source, name = nullcontext(env.stdin.buffer), "standard input"
    else:
        try:
            source = open(capture, "rb")  # noqa: SIM115 - closed below; open() errors need their own message
        except OSError as exc:
            raise UsageError(f"cannot read {capture}: {exc.strerror or exc}") from exc
        name = Path(capture).name
    with source as stream, handled_signals():  # SIGTERM unwinds, so the parsing process is ended too
        report = play(stream, name, sink, iid)
    if report.bad_lines:
        count = len(report.bad_lines)
        say(
            env,
            f"skipped {count} line{'s' if count != 1 else ''} that held no JSON "
            f"(first: line {report.bad_lines[0]})",
        )


@app.command()
@guarded
def unsubscribe(interaction: InteractionArg) -> None:
    """Remove the chat subscription (exit 0 also when there was none)."""
    from .client import Connection

    env = environment()
    iid = interaction_id(interaction)
    session = env.store.require()
    connection = Connection(make_http(session), session)
    removed = connection.unsubscribe_chat(iid)
    connection.unwatch_interaction(iid)
    if removed:
        typer.echo(f"Removed the chat subscription for interaction {iid}.")
    else:
        typer.echo(f"There was no chat subscription for interaction {iid}; nothing to remove.")


@app.command()
@guarded
def simulate(
    port: Annotated[
        int, typer.Option(min=0, max=65535, metavar="PORT", help="TCP port (0 picks a free one).")
    ] = 8018,
    host: Annotated[
        str, typer.Option(metavar="ADDRESS", help="Loopback address to listen on.")
    ] = "127.0.0.1",
    speed: Annotated[
        float,
        typer.Option(min=0.01, metavar="FACTOR", help="Play the scripted chats this many times faster."),
    ] = 1.0,
    scenarios: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            metavar="DIR",
            help="Folder of scenario *.json files to play instead.",
        ),
    ] = None,
    messaging_version: Annotated[
        int,
        typer.Option(
            min=1,
            max=2,
            metavar="VERSION",
            help="ICWS messaging feature version: 2 offers server-sent events.",
        ),
    ] = 2,
) -> None:
    """Run the bundled ICWS simulator on loopback until Ctrl-C."""
    env = environment()
    server = start_simulator(host, port, speed, scenarios, messaging_version)
    sim = server.simulator
    user, password = next(iter(sim.users.items()))
    typer.echo(f"ICWS simulator listening on {server.url}")
    typer.echo(f"  user: {user}   password: {password}")
    for iid, scenario in sim.scenarios.items():
        typer.echo(f"  interaction {iid}: {scenario.title}")
    typer.echo(f"Log in with:  ICWS_PASSWORD={password} icwschat login --server {server.url} --user {user}")
    typer.echo("Press Ctrl-C to stop.")
    env.stdout.flush()
    try:
        signal.pause()
    finally:
        server.stop()


@app.command()
@guarded
def demo(
    speed: Annotated[
        float, typer.Option(min=0.01, metavar="FACTOR", help="Play the chat this many times faster.")
    ] = 1.0,
    json_out: JsonOption = False,
) -> None:
    """Start the simulator, log in to it and watch its busiest chat. Touches no stored session."""
    from .client import HTTP
    from .client import login as icws_login
    from .watch import Watcher, WatchOptions

    env = environment()
    server = start_simulator("127.0.0.1", 0, speed, None, 2)
    try:
        sim = server.simulator
        user, password = next(iter(sim.users.items()))
        busiest = max((s for s in sim.scenarios.values() if s.is_chat and s.rights), key=lambda s: s.lines)
        session = icws_login(HTTP(), server.url, user, password, app_name="icwschat demo")
        sink = choose_sink(env, json_out=json_out, raw=False)
        options = WatchOptions(interaction_id=busiest.interaction_id)
        with handled_signals():
            Watcher(lambda: make_http(session), session, options, sink).run()
    finally:
        server.stop()


def start_simulator(
    host: str, port: int, speed: float, scenarios: Path | None, messaging_version: int
) -> Any:
    from .simulator import Simulator, SimulatorServer, load_scenarios
    from .simulator.scenarios import ScenarioError

    try:
        sim = Simulator(load_scenarios(scenarios), speed=speed, messaging_version=messaging_version)
        return SimulatorServer(sim, host=host, port=port).start()
    except ScenarioError as exc:
        raise UsageError(f"cannot load scenarios: {exc}") from exc
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port (0 picks a free one)",
        ) from exc


# ---- the watch plumbing shared by watch, transcript and demo ----------------------------------------


def choose_sink(env: "Environment", *, json_out: bool, raw: bool, live: bool = True) -> "Sink":
    """NDJSON, raw messages, the view on a terminal (live, or only its final frame), else a plain log."""
    from .sinks import JSONSink, PlainSink, RawSink

    if json_out:
        return JSONSink(env.stdout_bytes, env.stderr)
    if raw:
        return RawSink(env.stdout_bytes, env.stderr)
    if env.stdout_isatty:
        from .render import FrameSink, LiveSink, make_console

        console = make_console(env.stdout, no_color=env.no_color)
        return LiveSink(console) if live else FrameSink(console)
    return PlainSink(env.stdout_bytes, env.stderr)


def follow(env: "Environment", options: Any, sink: "Sink", password_stdin: bool) -> Any:
    """Run a watcher on the stored session, holding the queue lock, renewing the session if it can."""
    from .client import login as icws_login
    from .watch import Watcher

    store = env.store
    session = store.require()
    password = read_password(env, password_stdin, prompt_for=None)
    relogin: Callable[[], Session] | None = None
    if password is not None:

        def relogin() -> "Session":
            return icws_login(
                make_http(session),
                session.server,
                session.user,
                password,
                app_name=session.app_name,
                language=session.language,
                ca_bundle=session.ca_bundle,
                insecure=session.insecure,
            )

    watcher = Watcher(
        lambda: make_http(session), session, options, sink, relogin=relogin, on_session=store.save
    )
    with store.queue_lock(), handled_signals():
        watcher.run()
    return watcher


@contextmanager
def handled_signals() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C does (so subscriptions are removed, a replay's parser ended), with exit
    status 143."""

    def terminate(signum: int, frame: FrameType | None) -> NoReturn:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- reporting ----------------------------------------------------------------------------------------


def report(error: ICWSError, stream: Any) -> None:
    stream.write(f"icwschat: error: {error.message}\n")
    details = error.details()
    if details:
        stream.write(f"  server said: {details}\n")
    if error.hint:
        stream.write(f"  hint: {error.hint}\n")
    stream.flush()


def quiet_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush stays silent."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main() -> None:
    app(prog_name="icwschat")
