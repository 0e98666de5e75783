"""The chat cache: ICWS messages in, state and contract events out. No I/O, no clock, no terminal.

Messages are first parsed into updates (:mod:`icwschat.updates`), which :meth:`ChatCache.apply_updates`
applies; ``apply`` and ``apply_all`` do both, and ``replay`` does the parsing in a second process.

Semantics follow the ICWS design principles: ``isDelta: false`` clears and replaces (members and transcript
separately), ``isDelta: true`` merges; members are keyed by (userId, interactionId); a duplicate add is a
change. A snapshot that arrives after the first one (a re-subscription) is reconciled with what was already
emitted, so no line is lost or repeated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import events as ev
from .events import Event
from .models import DISCONNECTED_STATES, ChatLine, LineFields, Member, MemberFields, chat_line, member
from .updates import Update, parse_message, parse_messages

_new = tuple.__new__
"""Builds an Event from all its fields in order, in C: a named tuple's own constructor is Python code, and
the two hot paths (a line said, a typing flip) build one event per message."""
MemberKey = tuple[str, str]
SNAPSHOT_PARTS = frozenset({"members", "contents"})


@dataclass(slots=True)
class Outcome:
    """What applying one message produced: events to emit, and parts of it that had to be skipped."""

    events: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class ChatCache:
    """The state of one subscribed chat as the client knows it."""

    def __init__(self, interaction_id: str) -> None:
        self.interaction_id = interaction_id
        self.members: dict[MemberKey, Member] = {}
        self.transcript: list[ChatLine] = []
        self.ended = False
        self.interaction_state: str | None = None
        self._snapshots_seen: set[str] = set()
        self._resync_pending: set[str] = set()

    @property
    def has_snapshot(self) -> bool:
        """True once the first snapshot of both members and transcript has been applied."""
        return self._snapshots_seen >= SNAPSHOT_PARTS

    @property
    def typing(self) -> list[Member]:
        return [m for m in self.members.values() if m.is_typing]

    def expect_resync(self) -> None:
        """A fresh subscription was made: its snapshot is to be reconciled, then ``resynced`` emitted.

        Before any snapshot there is nothing to reconcile: the next one is simply the first.
        """
        if self._snapshots_seen:
            self._resync_pending = set(SNAPSHOT_PARTS)

    def apply(self, message: Any, at: datetime) -> Outcome:
        """Apply one ICWS message; raises :class:`BadMessage` when nothing of it can be used."""
        problems: list[str] = []
        update = parse_message(message, self.interaction_id, problems)
        return self.apply_updates([update] if update is not None else [], at, problems)

    def apply_all(self, messages: Iterable[Any], at: datetime) -> Outcome:
        """Apply a batch in order; a message the cache cannot use is skipped and named in ``problems``."""
        updates, problems = parse_messages(messages, self.interaction_id)
        return self.apply_updates(updates, at, problems)

    def apply_updates(self, updates: Iterable[Update], at: datetime, problems: Iterable[str] = ()) -> Outcome:
        """Apply a batch already parsed (see :mod:`icwschat.updates`); ``problems`` are the parser's.

        When the chat ends within the batch, ``chat_ended`` is moved to the end of its events.
        """
        outcome = Outcome(problems=list(problems))
        ended_before = self.ended
        for update in updates:
            if update[0] == "members":
                self._apply_members(*update[1:], at, outcome)
            elif update[0] == "contents":
                self._apply_contents(*update[1:], at, outcome)
            elif update[0] == "state":
                self._apply_state(update[1], at, outcome)
            else:
                self._end(at, update[1], outcome)
        if self.ended and not ended_before:
            # The rest of the batch still counts (a resync snapshot queued behind the end may bring lost
            # lines), but chat_ended stays the last event, so a consumer can stop reading at it.
            events = outcome.events
            events.append(events.pop(next(i for i, e in enumerate(events) if e.kind == ev.CHAT_ENDED)))
        return outcome

    def _apply_members(
        self,
        delta: bool,
        added: list[MemberFields],
        changed: list[MemberFields],
        removed: list[MemberFields],
        at: datetime,
        outcome: Outcome,
    ) -> None:
        if delta and "members" in self._resync_pending:
            return  # queued before the new subscription, so already part of the snapshot on its way
        if delta:
            for fields in [*added, *changed]:
                self._upsert(member(*fields), at, outcome)
            for fields in removed:
                self._remove(member(*fields), at, outcome)
            return
        first = "members" not in self._snapshots_seen
        fresh: dict[MemberKey, Member] = {}
        for fields in [*added, *changed]:
            fresh[fields[:2]] = member(*fields)
        for key, old in list(self.members.items()):
            if key not in fresh:
                del self.members[key]
                outcome.events.append(Event(ev.MEMBER_LEFT, self.interaction_id, at, old))
        for new in fresh.values():
            if first:
                self.members[new.key] = new
                outcome.events.append(Event(ev.MEMBER_JOINED, self.interaction_id, at, new, history=True))
            else:
                self._upsert(new, at, outcome)
        self._snapshot_done("members", at, outcome)

    def _upsert(self, member: Member, at: datetime, outcome: Outcome) -> None:
        key = member.key
        old = self.members.get(key)
        self.members[key] = member
        if old is None:
            outcome.events.append(Event(ev.MEMBER_JOINED, self.interaction_id, at, member))
            return
        if old.display_name != member.display_name or old.type is not member.type:
            outcome.events.append(Event(ev.MEMBER_CHANGED, self.interaction_id, at, member, previous=old))
        if old.is_typing != member.is_typing:
            kind = ev.TYPING_STARTED if member.is_typing else ev.TYPING_STOPPED
            outcome.events.append(
                _new(Event, (kind, self.interaction_id, at, member, None, None, None, None))
            )

    def _remove(self, member: Member, at: datetime, outcome: Outcome) -> None:
        if member.key in self.members:
            gone = [self.members.pop(member.key)]
        else:
            # Fallback for servers whose removal names another interactionId: the user is gone either way.
            keys = [k for k in self.members if k[0] == member.user_id]
            gone = [self.members.pop(k) for k in keys]
        for old in gone:
            outcome.events.append(Event(ev.MEMBER_LEFT, self.interaction_id, at, old.typing(False)))

    def _apply_contents(self, delta: bool, lines: list[LineFields], at: datetime, outcome: Outcome) -> None:
        if delta and "contents" in self._resync_pending:
            return  # queued before the new subscription, so already part of the snapshot on its way
        added = list(map(chat_line, lines))
        if delta:
            self._append(added, at, outcome, history=False)
            return
        if "contents" not in self._snapshots_seen:
            self.transcript = []
            self._append(added, at, outcome, history=True)
        else:
            self._append(added[self._known_overlap(added) :], at, outcome, history=False)
        self._snapshot_done("contents", at, outcome)

    def _append(self, lines: list[ChatLine], at: datetime, outcome: Outcome, *, history: bool) -> None:
        """Append lines; each event shows the member as the cache knows it now (typing included)."""
        for line in lines:
            self.transcript.append(line)
            sender = line.member
            current = self.members.get(sender.key)
            if current is not None:
                sender = current if current.same_person(sender) else sender.typing(current.is_typing)
            outcome.events.append(
                _new(Event, (ev.MESSAGE, self.interaction_id, at, sender, None, line, history, None))
            )

    def _known_overlap(self, snapshot: list[ChatLine]) -> int:
        """How many leading lines of a later snapshot were already emitted.

        Lines have no ids, so the snapshot is aligned with the known transcript by position and content:
        the earliest position where the snapshot continues the known lines wins, which keeps two identical
        consecutive lines as two lines and copes with a server that trimmed old history.
        """
        known = [line.identity for line in self.transcript]
        fresh = [line.identity for line in snapshot]
        if not fresh:
            return 0
        for start in range(len(known)):
            if known[start] != fresh[0]:
                continue
            overlap = min(len(known) - start, len(fresh))
            if known[start : start + overlap] == fresh[:overlap]:
                return overlap
        return 0

    def _snapshot_done(self, part: str, at: datetime, outcome: Outcome) -> None:
        self._snapshots_seen.add(part)
        if part in self._resync_pending:
            self._resync_pending.discard(part)
            if not self._resync_pending:
                outcome.events.append(Event(ev.RESYNCED, self.interaction_id, at))

    def _apply_state(self, state: str, at: datetime, outcome: Outcome) -> None:
        self.interaction_state = state
        if state in DISCONNECTED_STATES:
            self._end(at, "disconnected", outcome)

    def _end(self, at: datetime, reason: str, outcome: Outcome) -> None:
        if not self.ended:
            self.ended = True
            outcome.events.append(Event(ev.CHAT_ENDED, self.interaction_id, at, reason=reason))
