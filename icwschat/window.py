"""The history window: ``--tail N`` and ``--since DURATION|TIME``, a pure filter over a batch of events.

History is the lines of a chat's first snapshot (``message`` events with ``history: true``); the cache
emits all of them in the batch that applies that snapshot, so one batch at a time is enough to keep the
last N of them. Live lines, members and every other event always pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from . import events as ev
from .events import Event
from .models import ChatLine

_DURATION = re.compile(r"(\d{1,9})([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SINCE_HELP = "a duration such as 90s, 10m, 2h, 1d or 1w, or an ISO 8601 time such as 2026-11-29T14:05"


def parse_since(text: str, now: datetime) -> datetime:
    """The moment ``--since`` names: ``now`` less a duration, or an ISO 8601 time (local when it has no
    zone); ``ValueError`` for anything else."""
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if match:
        seconds = int(match[1]) * _UNITS[match[2]]
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:  # further back than datetime goes: every line is newer
            return datetime.min.replace(tzinfo=timezone.utc)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not {SINCE_HELP}") from None
    if moment.tzinfo is None:
        try:
            moment = moment.astimezone()  # the local zone, as a user typing a time means it
        except (OverflowError, OSError):
            moment = moment.replace(tzinfo=timezone.utc)
    return moment


@dataclass(frozen=True, slots=True)
class Window:
    """Which history lines to show: those at or after ``since``, and of those the last ``tail``."""

    tail: int | None = None
    since: datetime | None = None

    @property
    def everything(self) -> bool:
        return self.tail is None and self.since is None

    def keep(self, history: Sequence[ChatLine]) -> list[ChatLine]:
        """The history lines (in order) this window shows."""
        return [history[index] for index in self._kept(history)]

    def _kept(self, history: Sequence[ChatLine]) -> list[int]:
        since = self.since
        kept = [index for index, line in enumerate(history) if since is None or line.timestamp >= since]
        if self.tail is not None:
            kept = kept[len(kept) - self.tail :] if self.tail else []
        return kept

    def filter(self, events: list[Event]) -> list[Event]:
        """The batch without the history lines outside the window, each chat's counted on its own."""
        if self.everything:
            return events
        history: dict[str, list[tuple[int, ChatLine]]] = {}
        for index, event in enumerate(events):
            if event.kind == ev.MESSAGE and event.history and event.line is not None:
                history.setdefault(event.interaction_id, []).append((index, event.line))
        dropped: set[int] = set()
        for found in history.values():
            kept = self._kept([line for _, line in found])
            dropped.update(found[i][0] for i in set(range(len(found))) - set(kept))
        return [event for index, event in enumerate(events) if index not in dropped]


EVERYTHING = Window()
"""No ``--tail``, no ``--since``: all the history."""
