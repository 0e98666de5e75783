"""The process's surroundings as one object: streams, whether they are terminals, colour, state directory,
profile, debug, and the one way text reaches the user.

Commands, renderers and sinks receive it; nothing deep in the code reads ``sys.stdout`` or ``os.environ``, so
tests build an ``Environment`` (and read what it wrote) instead of patching globals. Every line of text
written through :meth:`Environment.echo` and :meth:`Environment.say` passes through
:func:`icwschat.textsafe.inert`: messages quote server text (error bodies, host names, user ids, media
types), and none of it may act on a terminal.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

from .session import DEFAULT_PROFILE, SessionStore, profile_store, state_dir
from .textsafe import inert


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


_DUMB_TERMS = frozenset({"dumb", "unknown"})
"""The TERM values rich, too, takes for a terminal without escape sequences."""


def _stream(stream: TextIO | None) -> TextIO:
    """The stream, or /dev/null in its place when the shell started us with it closed (``>&-``)."""
    if stream is not None:
        return stream
    return open(os.devnull, "r+", encoding="utf-8")  # kept open for the life of the process


@dataclass
class Environment:
    stdout: TextIO = field(default_factory=lambda: _stream(sys.stdout))
    stderr: TextIO = field(default_factory=lambda: _stream(sys.stderr))
    stdin: TextIO = field(default_factory=lambda: _stream(sys.stdin))
    stdout_isatty: bool = field(default_factory=lambda: _stream(sys.stdout).isatty())
    stdin_isatty: bool = field(default_factory=lambda: _stream(sys.stdin).isatty())
    no_color: bool = field(default_factory=lambda: bool(os.environ.get("NO_COLOR")))
    force_color: bool = field(default_factory=lambda: _flag("FORCE_COLOR"))
    color: str | None = None
    """``--color auto|always|never``; when not given, ``NO_COLOR`` means never, else ``FORCE_COLOR``
    always."""
    utc: bool = False
    """``--utc``: times in text output in UTC rather than the local zone."""
    dumb_terminal: bool = field(
        default_factory=lambda: os.environ.get("TERM", "").lower() in ("dumb", "unknown")
    )
    """``TERM=dumb``: a terminal that understands no escape sequence, colour included."""
    state_dir: Path = field(default_factory=state_dir)
    password: str | None = field(default_factory=lambda: os.environ.get("ICWS_PASSWORD") or None, repr=False)
    debug: bool = field(default_factory=lambda: _flag("ICWSCHAT_DEBUG"))
    """``--debug`` (before or after the command) or ``ICWSCHAT_DEBUG=1``: log requests, show tracebacks."""
    profile: str = field(default_factory=lambda: os.environ.get("ICWSCHAT_PROFILE") or DEFAULT_PROFILE)
    """``--profile`` (before or after the command) or ``ICWSCHAT_PROFILE``: whose server, user and session."""

    @property
    def use_color(self) -> bool:
        """Whether results on stdout may carry colour: ``auto`` colours a terminal, but not a dumb one."""
        choice = self.color or ("never" if self.no_color else "always" if self.force_color else "auto")
        return choice == "always" or (choice == "auto" and self.stdout_isatty and not self.dumb_terminal)

    @property
    def stdout_bytes(self) -> IO[bytes]:
        return self.stdout.buffer

    @property
    def store(self) -> SessionStore:
        """The profile's store; ``UsageError`` for a name no profile may have."""
        return profile_store(self.state_dir, self.profile)

    def echo(self, text: str) -> None:
        """A line of results on stdout, made inert (it may quote the server)."""
        self.stdout.write(inert(text) + "\n")
        self.stdout.flush()

    def say(self, text: str, *, prefix: str = "icwschat: ") -> None:
        """A notice on stderr, made inert (it may quote the server)."""
        self.stderr.write(prefix + inert(text) + "\n")
        self.stderr.flush()
