"""``replay``: a capture written by ``watch --raw`` fed through the same pipeline as a live watch, offline."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from .cache import ChatCache
from .errors import InteractionUnavailable, UsageError
from .jsonio import loads
from .pipeline import Pipeline
from .sinks import Sink, WatchInfo

log = logging.getLogger("icwschat.replay")

BATCH = 512
"""Messages per pipeline batch: large enough that one write carries many events, small enough to stream."""


@dataclass
class ReplayReport:
    messages: int = 0
    bad_lines: list[int] = field(default_factory=list)
    """Line numbers (from 1) that held no JSON; a capture cut short by a killed watch ends in one."""


def read_capture(lines: Iterable[bytes], report: ReplayReport) -> Iterator[Any]:
    """Each line's JSON value; blank lines are skipped, unreadable ones counted in ``report``."""
    for number, line in enumerate(lines, 1):
        try:
            yield loads(line)
        except ValueError:
            if line.strip():
                report.bad_lines.append(number)
                log.debug("line %d of the capture is not JSON: %.200r", number, line)


def interaction_of(message: Any) -> str | None:
    if isinstance(message, dict):
        for name in ("interactionId", "interactionID"):
            value = message.get(name)
            if isinstance(value, str) and value:
                return value
    return None


def replay(capture: IO[bytes], name: str, sink: Sink, interaction_id: str | None = None) -> ReplayReport:
    """Play ``capture`` into ``sink``; the interaction is the first one the capture names unless given."""
    report = ReplayReport()
    messages = read_capture(capture, report)
    leading: list[Any] = []
    if interaction_id is None:
        for message in messages:
            leading.append(message)
            interaction_id = interaction_of(message)
            if interaction_id is not None:
                break
        else:
            raise UsageError(
                f"{name} holds no ICWS chat messages",
                hint="record one with: icwschat watch INTERACTION_ID --raw > capture.ndjson",
            )
    cache = ChatCache(interaction_id)
    pipeline = Pipeline(cache, sink)
    sink.started(WatchInfo(interaction_id, name, "", "replay"))
    try:
        stream = itertools.chain(leading, messages)
        while not cache.ended and (batch := list(itertools.islice(stream, BATCH))):
            report.messages += len(batch)
            pipeline.apply(batch)  # like watch, stop after the batch in which the chat ended
        if not cache.members and not cache.transcript and not cache.ended:
            raise InteractionUnavailable(f"interaction {interaction_id} does not appear in {name}")
        sink.status(f"replayed {report.messages} messages", trouble=False)
    finally:
        sink.close()
    return report
