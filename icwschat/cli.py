"""The command line: declare the commands and their options, and call the core.

Each command is a function of an :class:`~icwschat.environment.Environment` and its options; :func:`command`
registers it with Typer, gives it ``--debug`` and runs it through :func:`icwschat.runtime.run`, the one place
errors become messages and exit statuses. A test passes its own Environment as Typer's context object.

Everything typer does not already load (requests, rich, logging, the session store, the simulator) is
imported inside the command that needs it, so ``--help`` and ``--version`` cost little more than typer.
"""

import enum
import functools
import inspect
import math
import os
import re
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from . import __version__
from .errors import UsageError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .environment import Environment
    from .router import Queue
    from .watch import Watcher, WatchOptions
    from .window import Window

INTERACTION_ID = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}"
LANGUAGE = re.compile(r"[A-Za-z0-9*][A-Za-z0-9*,;=. _-]{0,99}")

app = typer.Typer(
    name="icwschat",
    help="Follow Genesys PureConnect (ICWS) chats from the command line.\n\n"
    "Log in once, then watch a chat live, pipe it as NDJSON events, or take a transcript. "
    "Try it without a server: icwschat demo.",
    invoke_without_command=True,
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


DEBUG_HELP = (
    "Log every request and reply to stderr (tokens, cookies and passwords redacted); also ICWSCHAT_DEBUG=1."
)
DebugOption = Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)]


def _profile_names(incomplete: str) -> list[str]:
    from .session import profile_names, state_dir

    return [name for name in profile_names(state_dir()) if name.startswith(incomplete)]


ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        metavar="NAME",
        autocompletion=_profile_names,
        help="The profile to use: a server, a user and their session (default: ICWSCHAT_PROFILE, else "
        "default). See icwschat profiles.",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"icwschat {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: DebugOption = False,
    profile: ProfileOption = None,
) -> None:
    if debug:
        environment(ctx).debug = True
    if profile is not None:
        environment(ctx).profile = profile
    if ctx.invoked_subcommand is None:
        # Asking for nothing is asking what there is: the help, on stdout, and success (as gh does).
        typer.echo(ctx.get_help())
        raise typer.Exit()


def environment(ctx: typer.Context) -> "Environment":
    """The Environment a test passed as context object, else one built from this process, once."""
    root = ctx.find_root()
    if root.obj is None:
        from .environment import Environment

        root.obj = Environment()
    env: Environment = root.obj
    return env


def command(fn: Callable[..., None]) -> Callable[..., None]:
    """Register ``fn(env, **options)`` as a command: it receives the Environment, accepts ``--debug`` and
    ``--profile`` after the command name too, and ends with the contract's exit status."""
    from_fn = list(inspect.signature(fn).parameters.values())[1:]
    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    debug = inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=DebugOption)
    profile = inspect.Parameter(
        "profile", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ProfileOption
    )

    @functools.wraps(fn)
    def run(
        ctx: typer.Context, *args: Any, debug: bool = False, profile: str | None = None, **kwargs: Any
    ) -> None:
        from .runtime import run as run_command

        env = environment(ctx)
        env.debug = env.debug or debug
        if profile is not None:
            env.profile = profile
        raise typer.Exit(run_command(env, lambda: fn(env, *args, **kwargs)))

    parameters = [context, *from_fn, debug, profile]
    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return app.command(name=fn.__name__.rstrip("_").replace("_", "-"))(run)


# ---- shared option types ---------------------------------------------------------------------------


def _finite(value: float) -> float:
    """typer's range check lets NaN through (every comparison with it is false), and infinity past a
    minimum: neither is a usable number."""
    if not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


A_WEEK = 7 * 24 * 3600.0
"""The largest number of seconds (or speed-up) any option takes: far beyond any use, and within what a
timer accepts (an interval of 1e10 s overflowed one)."""


def finite(help: str, *, minimum: float, metavar: str = "SECONDS", maximum: float = A_WEEK) -> Any:
    return typer.Option(min=minimum, max=maximum, metavar=metavar, callback=_finite, help=help)


def _language(value: str | None) -> str | None:
    """Accept-Language is sent as a header: a language range list (``en-us``, ``de;q=0.8``), nothing else."""
    if value is not None and not LANGUAGE.fullmatch(value):
        raise typer.BadParameter(f"{value!r} is not an Accept-Language value such as en-us or de-de,de;q=0.8")
    return value


PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input (ICWS_PASSWORD takes precedence).",
    ),
]
InteractionArg = Annotated[str, typer.Argument(metavar="INTERACTION_ID", help="The chat interaction's id.")]
InteractionsArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[INTERACTION_ID]...", help="The chat interactions' ids (or --queue).", show_default=False
    ),
]
QueueOption = Annotated[
    str | None,
    typer.Option(
        "--queue",
        metavar="QUEUE",
        help="Every chat of a queue instead of chats by id: user:NAME, workgroup:NAME, station:NAME or "
        "system:NAME.",
    ),
]


class OutputChoice(str, enum.Enum):
    live = "live"
    plain = "plain"
    json = "json"
    raw = "raw"


class ColorChoice(str, enum.Enum):
    auto = "auto"
    always = "always"
    never = "never"


OutputOption = Annotated[
    OutputChoice | None,
    typer.Option(
        "--output",
        "-o",
        help="live: the view on a terminal (the plain log where there is none); plain: a log, a line per "
        "thing said or done; json: the contract's events as NDJSON; raw: every ICWS message as received. "
        "Default: live on a terminal, else plain.",
    ),
]
JsonEvents = Annotated[
    bool, typer.Option("--json", help="Short for -o json: the contract's events as NDJSON.")
]
SnapshotTimeout = Annotated[
    float, finite("Seconds to wait for the server's snapshot before giving up (exit 5).", minimum=0.1)
]
RawMessages = Annotated[
    bool, typer.Option("--raw", help="Short for -o raw: every ICWS message as received, one per line.")
]
ColorOption = Annotated[
    ColorChoice | None,
    typer.Option(
        "--color",
        help="Colour names in the view and the plain log: auto = on a terminal only (default: never with "
        "NO_COLOR set, always with FORCE_COLOR set, else auto).",
    ),
]
UtcOption = Annotated[
    bool, typer.Option("--utc", help="Times in UTC (marked Z) rather than local time; JSON is always UTC.")
]
TailOption = Annotated[
    int | None,
    typer.Option(
        "--tail", min=0, metavar="N", help="Show only the last N lines of the chat's history (0: none)."
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="DURATION|TIME",
        help="Show only the history since then: 10m, 2h, 1d, or an ISO 8601 time (local without a zone).",
    ),
]


def output_format(output: OutputChoice | None, *, json_out: bool, raw: bool = False) -> str | None:
    """The one format the options choose (None: the default); two different ones are a usage error."""
    chosen = {
        flag: name for flag, name, given in (("--json", "json", json_out), ("--raw", "raw", raw)) if given
    }
    if output is not None:
        chosen[f"--output {output.value}"] = output.value
    if len(set(chosen.values())) > 1:
        raise UsageError(
            f"{' and '.join(chosen)} ask for different outputs", hint="choose one with -o live|plain|json|raw"
        )
    return next(iter(chosen.values()), None)


def history_window(tail: int | None, since: str | None, output: str | None) -> "Window":
    """``--tail`` and ``--since`` as a window; they choose among events, which raw output does not write."""
    from datetime import datetime, timezone

    from .window import Window, parse_since

    if output == "raw" and (tail is not None or since is not None):
        raise UsageError("--tail and --since choose lines of history; raw output copies every message as is")
    try:
        moment = None if since is None else parse_since(since, datetime.now(timezone.utc))
    except ValueError as error:
        raise UsageError(f"--since: {error}") from None
    return Window(tail=tail, since=moment)


def presentation(
    env: "Environment",
    output: OutputChoice | None,
    *,
    json_out: bool,
    raw: bool = False,
    color: ColorChoice | None,
    utc: bool,
    tail: int | None,
    since: str | None,
) -> tuple[str | None, "Window"]:
    """What the options shared by every command that prints a chat choose: the output format (None: the
    default), with colour and time zone set on ``env``, and the window of history to show."""
    chosen = output_format(output, json_out=json_out, raw=raw)
    if color is not None:
        env.color = color.value
    env.utc = utc
    return chosen, history_window(tail, since, chosen)


def interaction_id(value: str) -> str:
    if not re.fullmatch(INTERACTION_ID, value):
        raise UsageError(
            f"{value!r} is not an interaction id",
            hint="interaction ids are letters and digits, such as 1001234567",
        )
    return value


def followed(
    env: "Environment", interactions: list[str] | None, queue: str | None
) -> tuple[tuple[str, ...], "Queue | None"]:
    """The chats by id, or the queue, a command is to follow: one or the other."""
    from .router import parse_queue

    ids = tuple(dict.fromkeys(interaction_id(value) for value in interactions or ()))
    if queue is None:
        if not ids:
            raise UsageError(
                "name the chats to follow, or a queue", hint="e.g. 1001 1002, or --queue workgroup:Support"
            )
        return ids, None
    if ids:
        raise UsageError("give interaction ids or --queue, not both")
    try:
        return (), parse_queue(queue)
    except ValueError as problem:
        raise UsageError(str(problem)) from None


# ---- commands --------------------------------------------------------------------------------------


@command
def login(
    env: "Environment",
    server: Annotated[
        str | None,
        typer.Option(
            envvar="ICWS_SERVER",
            metavar="URL",
            help="scheme://host[:port][/proxy/prefix] of the CIC server, e.g. https://cic.example.com:8019 "
            "(default: the profile's).",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(envvar="ICWS_USER", metavar="USER", help="The CIC user id (default: the profile's)."),
    ] = None,
    password_stdin: PasswordStdin = False,
    save_password: Annotated[
        bool,
        typer.Option(
            "--save-password",
            help="Keep the password in the operating system's keyring for this profile, so later logins and "
            "watch's renewals need no ICWS_PASSWORD.",
        ),
    ] = False,
    app_name: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Application name the server shows for the session (default: the profile's, else icwschat).",
        ),
    ] = None,
    language: Annotated[
        str | None,
        typer.Option(
            metavar="LANG",
            callback=_language,
            help="Accept-Language for the whole session (default: the profile's, else en-us).",
        ),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            metavar="PEM",
            help="PEM file of the CA that signed the server's certificate (default: the profile's, while the "
            "server is the profile's).",
        ),
    ] = None,
    insecure: Annotated[
        bool | None,
        typer.Option(
            "--insecure/--no-insecure",
            show_default=False,
            help="Do not verify the server's TLS certificate (dangerous; default: the profile's, while the "
            "server is the profile's).",
        ),
    ] = None,
) -> None:
    """Log in to an ICWS server and keep the session in the profile for later commands.

    Options not given are the profile's, from its last login. The profile's previous session is ended
    once the new one exists. The password comes from ICWS_PASSWORD, else --password-stdin, else the
    keyring (after --save-password), else a hidden prompt; it is never written to a file.
    """
    from .profiles import LoginOptions, log_in

    given = LoginOptions(
        server, user, app_name, language, str(ca_bundle.resolve()) if ca_bundle else None, insecure
    )
    session = log_in(env, given, password_stdin=password_stdin, save_password=save_password)
    features = ", ".join(f"{k} {v}" for k, v in sorted(session.features.items())) or "none reported"
    env.echo(f"Logged in to {session.server} as {session.user} (session {session.session_id}).")
    env.echo(f"Features: {features}")
    if save_password:
        env.echo(f"Saved the password in the keyring for profile {env.profile}.")


@command
def status(
    env: "Environment",
    json_out: Annotated[bool, typer.Option("--json", help="Print the session as one JSON object.")] = False,
) -> None:
    """Show the stored session and whether the server still has it (exit 3 when it does not)."""
    import json

    from .client import Connection, server_version
    from .errors import AuthenticationError, ICWSError, SessionGone
    from .runtime import make_http

    session = env.store.require()
    http = make_http(session)
    state_names = {0: "none", 1: "up", 2: "down"}
    try:
        reply = Connection(http, session).connection_state()
        code = reply.get("connectionState")
        state = state_names.get(code, "unknown") if isinstance(code, int) else "unknown"
    except SessionGone:
        state = "expired"
    try:
        release = server_version(http, session.server)
    except ICWSError as error:  # the version is a nicety: a server that hides it is still up
        release = f"unknown ({error})"
    info = {
        "user": session.user,
        "server": session.server,
        "serverVersion": release,
        "sessionId": session.session_id,
        "features": session.features,
        "connectionState": state,
    }
    if json_out:
        env.echo(json.dumps(info))  # ASCII only: every control character is escaped, the text exact
    else:
        env.echo(f"User:       {session.user}")
        env.echo(f"Server:     {session.server}")
        env.echo(f"ICWS:       {release}")
        env.echo(f"Session:    {session.session_id}")
        env.echo("Features:   " + (", ".join(f"{k} {v}" for k, v in sorted(session.features.items())) or "-"))
        env.echo(f"Connection: {state}")
    if state != "up":
        raise AuthenticationError(f"the server reports the session as {state}; run icwschat login")


@command
def logout(
    env: "Environment",
    local: Annotated[
        bool,
        typer.Option(
            "--local", help="Forget the session here without telling the server (when it cannot be reached)."
        ),
    ] = False,
    forget_password: Annotated[
        bool, typer.Option("--forget-password", help="Also remove the profile's password from the keyring.")
    ] = False,
) -> None:
    """End the session on the server and forget it here (exit 0 also when it had already expired)."""
    from .client import Connection
    from .errors import SessionGone
    from .runtime import make_http

    if forget_password:
        from .profiles import forget_password as forget

        forgotten = forget(env)
        env.echo("Removed the saved password." if forgotten else "There was no saved password to remove.")
    session = env.store.load()
    if session is None:
        env.echo("Not logged in; nothing to do.")
        return
    if local:
        message = f"Forgot the session here without telling {session.server}; it ends there in time."
    else:
        try:
            Connection(make_http(session), session).logout()
            message = f"Logged out of {session.server}."
        except SessionGone:
            message = "The server session had already expired; forgot it here."
    env.store.forget()
    env.echo(message)


@command
def profiles(
    env: "Environment",
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per profile, one per line (NDJSON).")
    ] = False,
) -> None:
    """List the profiles: server, user, and whether each session is alive (* marks the one in use).

    A session is alive, expired, logged out, or unreachable (its server did not answer within seconds).
    """
    import json

    from .profiles import list_profiles, table

    states = list_profiles(env)
    for state in states:
        if state.problem:
            env.say(f"profile {state.name}: {state.problem}")
    for line in [json.dumps(state.to_json()) for state in states] if json_out else table(states):
        env.echo(line)


@command
def watch(
    env: "Environment",
    interactions: InteractionsArg = None,
    queue: QueueOption = None,
    output: OutputOption = None,
    json_out: JsonEvents = False,
    raw: RawMessages = False,
    color: ColorOption = None,
    utc: UtcOption = False,
    tail: TailOption = None,
    since: SinceOption = None,
    interval: Annotated[float, finite("Seconds between short polls (after each reply).", minimum=0.1)] = 1.0,
    transport: Annotated[
        TransportChoice,
        typer.Option(help="How to read messages: auto = server-sent events when the server offers them."),
    ] = TransportChoice.auto,
    keep_subscription: Annotated[
        bool, typer.Option("--keep-subscription", help="Leave the server subscription in place on exit.")
    ] = False,
    give_up_after: Annotated[
        float, finite("Seconds of failed retries before giving up (exit 5).", minimum=0)
    ] = 300.0,
    password_stdin: PasswordStdin = False,
) -> None:
    """Follow chats live: until they end, or (--queue) every chat of a queue until you press Ctrl-C.

    On a terminal: a live view of members, who is typing and the transcript. Into a pipe: a plain log, or
    NDJSON events with --json, every event with its interactionId. With a password at hand (ICWS_PASSWORD,
    --password-stdin, or one saved by login --save-password), a dropped session is renewed by itself and the
    transcripts resynchronised, never losing or repeating a line.
    """
    from .runtime import choose_sink, follow
    from .watch import WatchOptions

    chosen, window = presentation(
        env, output, json_out=json_out, raw=raw, color=color, utc=utc, tail=tail, since=since
    )
    ids, followed_queue = followed(env, interactions, queue)
    sink = choose_sink(env, chosen, window=window)
    options = WatchOptions(
        interaction_ids=ids,
        queue=followed_queue,
        transport=transport.value,
        interval=interval,
        keep_subscription=keep_subscription,
        give_up_after=give_up_after,
    )
    follow(env, options, sink, password_stdin)


@command
def transcript(
    env: "Environment",
    interactions: InteractionsArg = None,
    queue: QueueOption = None,
    output: OutputOption = None,
    json_out: JsonEvents = False,
    raw: RawMessages = False,
    color: ColorOption = None,
    utc: UtcOption = False,
    tail: TailOption = None,
    since: SinceOption = None,
    timeout: SnapshotTimeout = 30.0,
) -> None:
    """Print chats' members and transcripts so far (by id, or every chat of a --queue), then remove the
    subscriptions."""
    from .runtime import choose_sink, follow

    chosen, window = presentation(
        env, output, json_out=json_out, raw=raw, color=color, utc=utc, tail=tail, since=since
    )
    ids, followed_queue = followed(env, interactions, queue)
    options = snapshot_options("transcript", timeout, interaction_ids=ids, queue=followed_queue)
    if (chosen or "live") != "live" or not env.stdout_isatty:
        watcher = follow(env, options, choose_sink(env, chosen, window=window), password_stdin=False)
        say_if_empty(env, watcher)
        return
    from .render import make_console, print_transcript
    from .sinks import Clock, LineSink, Windowed

    shown = Windowed(LineSink(env.stdout_bytes, env.stderr), window, keeps_lines=True)
    watcher = follow(env, options, shown, password_stdin=False)
    console = make_console(env.stdout, no_color=not env.use_color)
    print_transcript(console, watcher.info(), shown.view() or watcher.router, Clock(utc=env.utc))
    say_if_empty(env, watcher)


@command
def replay(
    env: "Environment",
    capture: Annotated[
        str, typer.Argument(metavar="FILE", help="A capture written by watch --raw, or - for standard input.")
    ],
    output: OutputOption = None,
    json_out: JsonEvents = False,
    color: ColorOption = None,
    utc: UtcOption = False,
    tail: TailOption = None,
    since: SinceOption = None,
    interaction: Annotated[
        str | None,
        typer.Option(
            metavar="ID",
            help="Replay only this interaction of a capture of several (default: all of them).",
        ),
    ] = None,
) -> None:
    """Play a capture of watch --raw through the same cache and output as watch, offline.

    --json gives the events watch --json would have written; on a terminal the final frame of the live
    view; into a pipe the plain log. Lines that are not JSON (a capture cut short) are skipped with a note.
    """
    from .replay import replay as play
    from .runtime import choose_sink, handled_signals

    iid = interaction_id(interaction) if interaction is not None else None
    if output is not None and output.value == "raw":
        raise UsageError("replay reads a raw capture; -o raw would only copy it", hint="use cat instead")
    chosen, window = presentation(
        env, output, json_out=json_out, color=color, utc=utc, tail=tail, since=since
    )
    sink = choose_sink(env, chosen, live=False, window=window)
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
        env.say(
            f"skipped {count} line{'s' if count != 1 else ''} that held no JSON "
            f"(first: line {report.bad_lines[0]})"
        )


@command
def chats(
    env: "Environment",
    queue: Annotated[
        str | None,
        typer.Argument(
            metavar="[QUEUE]",
            help="user:NAME, workgroup:NAME, station:NAME or system:NAME (default: your own, user:USER).",
            show_default=False,
        ),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Also the interactions that are not chats (calls, emails, ...).")
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help='One JSON object per chat: {"interactionId", "queue", "state", "attributes"}.'
        ),
    ] = False,
    timeout: SnapshotTimeout = 30.0,
) -> None:
    """List the chats in a queue (id, state, customer, agent, workgroup, age), then exit.

    Watch them all with: icwschat watch --queue QUEUE
    """
    import json
    from datetime import datetime, timezone

    from .listing import chat_table, listed
    from .router import parse_queue
    from .runtime import follow
    from .sinks import LineSink

    named = queue or f"user:{env.store.require().user}"
    try:
        target = parse_queue(named)
    except ValueError as problem:
        raise UsageError(str(problem)) from None
    options = snapshot_options("chats", timeout, queue=target, follow_chats=False)
    watcher = follow(env, options, LineSink(env.stdout_bytes, env.stderr), password_stdin=False)
    rows = listed(watcher.router.queued, target.label, everything=everything)
    if json_out:
        for row in rows:
            env.echo(json.dumps(row.to_json()))
    elif rows:
        for line in chat_table(rows, datetime.now(timezone.utc)):
            env.echo(line)
    else:
        env.say(f"no {'interactions' if everything else 'chats'} in queue {target.label}")


def say_if_empty(env: "Environment", watcher: "Watcher") -> None:
    """A queue with no chat in it is worth a word: an empty output alone looks like a failure."""
    if watcher.options.queue is not None and not watcher.router.chats:
        env.say(f"no chats in queue {watcher.options.queue.label}")


def snapshot_options(command_name: str, timeout: float, **chosen: Any) -> "WatchOptions":
    """A watch that ends once it has its snapshots: for transcript and chats."""
    from .watch import WatchOptions

    return WatchOptions(
        transport="poll",
        interval=0.2,
        snapshot_only=True,
        snapshot_timeout=timeout,
        give_up_after=timeout,
        deadline_option="--timeout",
        renewal_hint="set ICWS_PASSWORD or save the password with login --save-password, "
        f"so {command_name} can log in again by itself",
        **chosen,
    )


@command
def unsubscribe(env: "Environment", interaction: InteractionArg) -> None:
    """Remove the chat subscription (exit 0 also when there was none)."""
    from .client import Connection
    from .runtime import make_http

    iid = interaction_id(interaction)
    session = env.store.require()
    connection = Connection(make_http(session), session)
    removed = connection.unsubscribe_chat(iid)
    connection.unwatch_interaction(iid)
    if removed:
        env.echo(f"Removed the chat subscription for interaction {iid}.")
    else:
        env.echo(f"There was no chat subscription for interaction {iid}; nothing to remove.")


@command
def simulate(
    env: "Environment",
    port: Annotated[
        int, typer.Option(min=0, max=65535, metavar="PORT", help="TCP port (0 picks a free one).")
    ] = 8018,
    host: Annotated[
        str, typer.Option(metavar="ADDRESS", help="Loopback address to listen on.")
    ] = "127.0.0.1",
    speed: Annotated[
        float,
        finite("Play the scripted chats this many times faster.", minimum=0.01, metavar="FACTOR"),
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
    load: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="N",
            help="Keep N synthetic chats going in workgroup Load (about 100 ICWS messages a second per 500).",
        ),
    ] = 0,
) -> None:
    """Run the bundled ICWS simulator on loopback until Ctrl-C."""
    from .runtime import start_simulator, wait_for_interrupt

    server = start_simulator(host, port, speed, scenarios, messaging_version, load=load)
    try:
        sim = server.simulator
        user, password = next(iter(sim.users.items()))
        env.echo(f"ICWS simulator listening on {server.url}")
        env.echo(f"  user: {user}   password: {password}")
        for iid, scenario in sim.scenarios.items():
            env.echo(f"  interaction {iid}: {scenario.title}")
        if load:
            env.echo(f"  workgroup Load: {load} synthetic chats at once (the load generator)")
        env.echo(f"Log in with:  ICWS_PASSWORD={password} icwschat login --server {server.url} --user {user}")
        env.echo("Press Ctrl-C to stop.")
        wait_for_interrupt()
    finally:
        server.stop()


@command
def demo(
    env: "Environment",
    speed: Annotated[
        float,
        finite("Play the chat this many times faster.", minimum=0.01, metavar="FACTOR"),
    ] = 1.0,
    output: OutputOption = None,
    json_out: JsonEvents = False,
    raw: RawMessages = False,
    color: ColorOption = None,
    utc: UtcOption = False,
    tail: TailOption = None,
    since: SinceOption = None,
) -> None:
    """Start the simulator, log in to it and watch its busiest chat. Touches no stored session."""
    from .runtime import LoginRequest, choose_sink, handled_signals, make_http, start_simulator
    from .watch import Watcher, WatchOptions

    chosen, window = presentation(
        env, output, json_out=json_out, raw=raw, color=color, utc=utc, tail=tail, since=since
    )
    server = start_simulator("127.0.0.1", 0, speed, None, 2)
    try:
        sim = server.simulator
        user, password = next(iter(sim.users.items()))
        busiest = max((s for s in sim.scenarios.values() if s.is_chat and s.rights), key=lambda s: s.lines)
        session = LoginRequest(server.url, user, "icwschat demo").log_in(password)
        sink = choose_sink(env, chosen, window=window)
        options = WatchOptions(interaction_ids=(busiest.interaction_id,))
        with handled_signals():
            Watcher(lambda: make_http(session), session, options, sink).run()
    finally:
        server.stop()


class Shell(str, enum.Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@command
def completion(
    env: "Environment",
    shell: Annotated[Shell, typer.Argument(help="The shell to complete in.", metavar="bash|zsh|fish")],
) -> None:
    """Print the shell completion script: commands, options and their values.

    bash: icwschat completion bash > ~/.local/share/bash-completion/completions/icwschat
    zsh:  icwschat completion zsh > "${fpath[1]}/_icwschat"
    fish: icwschat completion fish > ~/.config/fish/completions/icwschat.fish
    """
    # typer (pinned below 0.29) answers completion requests itself, on every run, through
    # _ICWSCHAT_COMPLETE; its own scripts are the ones that speak that protocol.
    from typer._completion_shared import get_completion_script

    script = get_completion_script(prog_name="icwschat", complete_var=COMPLETE_VAR, shell=shell.value)
    env.stdout.write(script.strip() + "\n")


@command
def version(
    env: "Environment",
    json_out: Annotated[bool, typer.Option("--json", help="Print the versions as one JSON object.")] = False,
) -> None:
    """Print the versions of icwschat, Python and the libraries it runs on (for a bug report)."""
    import json
    import platform
    from importlib import metadata

    versions = {"icwschat": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in ("typer", "requests", "urllib3", "rich", "werkzeug", "orjson", "platformdirs", "keyring"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    if json_out:
        env.echo(json.dumps(versions))
    else:
        for name, value in versions.items():
            env.echo(f"{name + ':':<14}{value}")


COMPLETE_VAR = "_ICWSCHAT_COMPLETE"


def main() -> None:
    if COMPLETE_VAR in os.environ:
        # typer registers its shells' completion classes only for its own --install-completion option,
        # which icwschat replaces with the completion command; only a completion request pays for them.
        from typer._completion_classes import completion_init

        completion_init()
    app(prog_name="icwschat")
