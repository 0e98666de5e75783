"""Messages in, events out: the one path every ICWS message takes, live (``watch``) or recorded (``replay``).

The pipeline shows each batch to the sink as received (``--raw``), parses it (:mod:`icwschat.updates`),
routes it to the chats' caches (:mod:`icwschat.router`) and hands the events of a whole batch to the sink at
once, so a sink can write a batch with one system call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from .router import Router
from .sinks import Sink
from .updates import Update, parse_messages

log = logging.getLogger("icwschat.pipeline")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Pipeline:
    def __init__(self, router: Router, sink: Sink, clock: Callable[[], datetime] = utc_now) -> None:
        self.router = router
        self.sink = sink
        self.clock = clock

    def apply(self, messages: list[Any]) -> None:
        """Apply a batch in order; a message the cache cannot use is logged and skipped."""
        self.sink.raw(messages)
        self.apply_parsed(*parse_messages(messages))

    def apply_parsed(self, updates: list[Update], problems: list[str]) -> None:
        """The second half of :meth:`apply`, for messages parsed elsewhere (``replay`` parses in a second
        process), with the parser's problems."""
        outcome = self.router.apply_updates(updates, self.clock(), problems)
        for problem in outcome.problems:
            log.debug("%s", problem)
        self.sink.update(outcome.events, self.router)
