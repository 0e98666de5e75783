"""Messages in, events out: the one path every ICWS message takes, live (``watch``) or recorded (``replay``).

The pipeline shows each batch to the sink as received (``--raw``), applies it to the cache and hands the
events of a whole batch to the sink at once, so a sink can write a batch with one system call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from .cache import ChatCache
from .sinks import Sink

log = logging.getLogger("icwschat.pipeline")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Pipeline:
    def __init__(self, cache: ChatCache, sink: Sink, clock: Callable[[], datetime] = utc_now) -> None:
        self.cache = cache
        self.sink = sink
        self.clock = clock

    def apply(self, messages: list[Any]) -> None:
        """Apply a batch in order; a message the cache cannot use is logged and skipped."""
        self.sink.raw(messages)
        outcome = self.cache.apply_all(messages, self.clock())
        for problem in outcome.problems:
            log.debug("%s", problem)
        self.sink.update(outcome.events, self.cache)
