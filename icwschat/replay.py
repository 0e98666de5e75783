"""``replay``: a capture written by ``watch --raw`` fed through the same pipeline as a live watch, offline."""

from __future__ import annotations

import gc
import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from .cache import ChatCache
from .errors import InteractionUnavailable, UsageError
from .jsonio import loads, loads_all
from .pipeline import Pipeline
from .sinks import Sink, WatchInfo

log = logging.getLogger("icwschat.replay")

BATCH = 512
"""Lines per pipeline batch: large enough that one write carries many events, small enough to stream."""


@dataclass
class ReplayReport:
    messages: int = 0
    bad_lines: list[int] = field(default_factory=list)
    """Line numbers (from 1) that held no JSON; a capture cut short by a killed watch ends in one."""


def read_capture(lines: Iterable[bytes], report: ReplayReport) -> Iterator[list[Any]]:
    """The capture's JSON values, a batch per ``BATCH`` lines; blank lines are skipped, unreadable ones
    counted in ``report``."""
    lines = iter(lines)
    first = 1
    while chunk := list(itertools.islice(lines, BATCH)):
        try:
            yield loads_all(chunk)  # one pass for the whole batch: nearly every capture is all JSON
        except ValueError:
            yield list(_readable(chunk, first, report))
        first += len(chunk)


def _readable(chunk: list[bytes], first: int, report: ReplayReport) -> Iterator[Any]:
    for number, line in enumerate(chunk, first):
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
    batches = read_capture(capture, report)
    leading: list[list[Any]] = []
    if interaction_id is None:
        for batch in batches:
            leading.append(batch)
            interaction_id = next(filter(None, map(interaction_of, batch)), None)
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
        for batch in itertools.chain(leading, batches):
            report.messages += len(batch)
            pipeline.apply(batch)
            if cache.ended:
                break  # like watch, stop after the batch in which the chat ended
            # What the cache holds now stays until the end: freezing it spares every later collection a
            # walk over the whole transcript (a sixth of a long replay's time otherwise).
            gc.freeze()
        if not cache.members and not cache.transcript and not cache.ended:
            raise InteractionUnavailable(f"interaction {interaction_id} does not appear in {name}")
        sink.status(f"replayed {report.messages} messages", trouble=False)
    finally:
        gc.unfreeze()
        sink.close()
    return report
