"""The process's surroundings as one object: streams, whether they are terminals, colour, state directory.

Renderers and sinks receive it; nothing deep in the code reads ``sys.stdout`` or ``os.environ``, so tests
build an ``Environment`` instead of patching globals.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

from .session import SessionStore, state_dir


@dataclass
class Environment:
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout_isatty: bool = field(default_factory=lambda: sys.stdout.isatty())
    stdin_isatty: bool = field(default_factory=lambda: sys.stdin.isatty())
    no_color: bool = field(default_factory=lambda: bool(os.environ.get("NO_COLOR")))
    state_dir: Path = field(default_factory=state_dir)
    password: str | None = field(default_factory=lambda: os.environ.get("ICWS_PASSWORD") or None, repr=False)

    @property
    def stdout_bytes(self) -> IO[bytes]:
        return self.stdout.buffer

    @property
    def store(self) -> SessionStore:
        return SessionStore(self.state_dir)
