"""The chat cache: ICWS messages in, state and contract events out. No I/O, no clock, no terminal.

Messages are first parsed into updates (:mod:`icwschat.updates`), which :meth:`ChatCache.apply_updates`
applies; ``apply`` and ``apply_all`` do both, and ``replay`` does the parsing in a second process.

Semantics follow the ICWS design principles: ``isDelta: false`` clears and replaces (members and transcript
separately), ``isDelta: true`` merges; members are keyed by (userId, interactionId); a duplicate add is a
change. A snapshot that arrives after the first one (a re-subscription) is reconciled with what was already
emitted, so no line is lost or repeated.

A cache stands for one subscription: until its snapshot has arrived, deltas are ignored, because the ones
queued ahead of it (from an earlier subscription on the same session, say a watcher killed with ``kill -9``)
are already part of it; an interaction state queued there waits for that snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from . import events as ev
from .events import Event
from .models import DISCONNECTED_STATES, ChatLine, LineFields, Member, MemberFields, chat_line, member
from .updates import Update, parse_message, parse_messages

_new = tuple.__new__
"""Builds an Event from all its fields in order, in C: a named tuple's own constructor is Python code, and
the two hot paths (a line said, a typing flip) build one event per message."""
MemberKey = tuple[str, str]
SNAPSHOT_PARTS = frozenset({"members", "contents"})
_Item = TypeVar("_Item")


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
        self.needs_subscribe = False
        """Set when the subscription must be made again (it faulted, or the interaction has a new id); the
        watcher clears it once it has asked for that."""
        self._snapshots_seen: set[str] = set()
        self._awaiting: set[str] = set(SNAPSHOT_PARTS)
        """Parts whose snapshot from the latest subscription has not arrived: their deltas are stale."""
        self._resyncing = False
        self._deferred_state: str | None = None
        """An interaction state that arrived before any snapshot of the latest subscription."""

    @property
    def has_snapshot(self) -> bool:
        """True once the first snapshot of both members and transcript has been applied."""
        return self._snapshots_seen >= SNAPSHOT_PARTS

    @property
    def has_members_snapshot(self) -> bool:
        return "members" in self._snapshots_seen

    @property
    def typing(self) -> list[Member]:
        return [m for m in self.members.values() if m.is_typing]

    def expect_resync(self) -> None:
        """A fresh subscription was made: its snapshot is to be reconciled, then ``resynced`` emitted.

        Before any snapshot there is nothing to reconcile: the next one is simply the first.
        """
        self._awaiting = set(SNAPSHOT_PARTS)
        self._resyncing = bool(self._snapshots_seen)

    def apply(self, message: Any, at: datetime) -> Outcome:
        """Apply one ICWS message; raises :class:`BadMessage` when nothing of it can be used."""
        problems: list[str] = []
        update = parse_message(message, problems)
        return self.apply_updates([update] if update is not None else [], at, problems)

    def apply_all(self, messages: Iterable[Any], at: datetime) -> Outcome:
        """Apply a batch in order; a message the cache cannot use is skipped and named in ``problems``."""
        updates, problems = parse_messages(messages)
        return self.apply_updates(updates, at, problems)

    def apply_updates(self, updates: Iterable[Update], at: datetime, problems: Iterable[str] = ()) -> Outcome:
        """Apply a batch already parsed (see :mod:`icwschat.updates`); ``problems`` are the parser's.

        Updates about other interactions (and queues) are not this chat's and are passed over; a fault that
        names no subscription may be this chat's. When the chat ends within the batch, ``chat_ended`` is
        moved to the end of its events.
        """
        outcome = Outcome(problems=list(problems))
        ended_before = self.ended
        for update in updates:
            if update[1] != self.interaction_id and (update[0] != "faulted" or update[1] is not None):
                continue
            # Items by index, not *update[2:]: a slice and an unpacking call cost more than the dispatch.
            if update[0] == "contents":
                self._apply_contents(update[2], update[3], at, outcome)
            elif update[0] == "members":
                self._apply_members(update[2], update[3], update[4], update[5], at, outcome)
            elif update[0] == "state":
                self._apply_state(update[2], at, outcome)
            elif update[0] == "ended":
                self._end(at, update[2], outcome)
            elif update[0] == "morphed":
                self._morph(update[2])
            elif update[0] == "faulted":
                self.needs_subscribe = True
                self.expect_resync()
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
        if delta and self._awaiting and self._stale("members", at, outcome):  # no call once in sync
            return
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
                _new(Event, (kind, self.interaction_id, at, member, None, None, None, None, None, None))
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
        if delta and self._awaiting and self._stale("contents", at, outcome):  # no call once in sync
            return
        added = [chat_line(fields) for fields in lines]
        if delta:
            self._append(added, at, outcome, history=False)
            return
        if "contents" not in self._snapshots_seen:
            self.transcript = []
            self._append(added, at, outcome, history=True)
        else:
            self._append(added[self._known_overlap(added) :], at, outcome, history=False)
        self._snapshot_done("contents", at, outcome)

    def _stale(self, part: str, at: datetime, outcome: Outcome) -> bool:
        """Whether a delta of ``part`` was queued before the latest subscription's snapshot of it.

        Before any of that subscription's snapshots, it was: the snapshot on its way holds it. Once the other
        part's snapshot has arrived, it was not: a queue keeps its order, so the delta came after the
        subscription, and the server sent no snapshot of this part (whether a chat with no lines yet gets a
        contents snapshot is unknown), which is then taken as done.
        """
        if part not in self._awaiting:
            return False
        if self._awaiting >= SNAPSHOT_PARTS:
            return True
        self._snapshot_done(part, at, outcome)
        return False

    def _append(self, lines: list[ChatLine], at: datetime, outcome: Outcome, *, history: bool) -> None:
        """Append lines; each event shows the member as the cache knows it now (typing included)."""
        for line in lines:
            self.transcript.append(line)
            sender = line.member
            current = self.members.get(sender.key)
            if current is not None and current is not sender:  # members are shared: most often it is
                sender = current if current.same_person(sender) else sender.typing(current.is_typing)
            outcome.events.append(
                _new(
                    Event,
                    (ev.MESSAGE, self.interaction_id, at, sender, None, line, history, None, None, None),
                )
            )

    def _known_overlap(self, snapshot: list[ChatLine]) -> int:
        """How many leading lines of a later snapshot were already emitted.

        Lines have no ids, so the snapshot is aligned with the known transcript by position and content:
        the earliest position where the snapshot continues the known lines wins, which keeps two identical
        consecutive lines as two lines and copes with a server that trimmed old history.
        """
        return overlap([line.identity for line in self.transcript], [line.identity for line in snapshot])

    def _snapshot_done(self, part: str, at: datetime, outcome: Outcome) -> None:
        self._snapshots_seen.add(part)
        if part in self._awaiting:
            self._awaiting.discard(part)
            if not self._awaiting and self._resyncing:
                self._resyncing = False
                outcome.events.append(Event(ev.RESYNCED, self.interaction_id, at))
            if not self._awaiting and self._deferred_state is not None:
                state, self._deferred_state = self._deferred_state, None
                self._apply_state(state, at, outcome)

    def _morph(self, new_id: str) -> None:
        """Follow the interaction to its new id: what is known is kept, under the new id, so the new
        subscription's snapshot (which names the new id) is reconciled with it, not repeated."""
        old_id = self.interaction_id

        def moved(who: Member) -> Member:
            if who.interaction_id != old_id:
                return who
            return member(who.user_id, new_id, who.display_name, who.type.value, who.is_typing)

        self.interaction_id = new_id
        self.members = {m.key: m for m in map(moved, self.members.values())}
        self.transcript = [line._replace(member=moved(line.member)) for line in self.transcript]
        self.needs_subscribe = True
        self.expect_resync()

    def _apply_state(self, state: str, at: datetime, outcome: Outcome) -> None:
        if self._awaiting >= SNAPSHOT_PARTS:
            # Queued ahead of the subscription's snapshot, like a stale delta: an "ended" taken now would end
            # the watch before the snapshot shows the chat, so it waits for that snapshot.
            self._deferred_state = state
        elif state in DISCONNECTED_STATES:
            self._end(at, "disconnected", outcome)

    def _end(self, at: datetime, reason: str, outcome: Outcome) -> None:
        if not self.ended:
            self.ended = True
            outcome.events.append(Event(ev.CHAT_ENDED, self.interaction_id, at, reason=reason))


def overlap(known: Sequence[_Item], fresh: Sequence[_Item]) -> int:
    """How many leading items of ``fresh`` ``known`` already holds, ``fresh`` aligned at the earliest
    position of ``known`` that it continues: all of ``fresh`` where it lies wholly inside ``known``, else
    the longest end of ``known`` that ``fresh`` begins with, else 0.

    Knuth-Morris-Pratt, so linear in ``len(known) + len(fresh)`` however many items are alike (trying each
    position in turn costs ``len(known) * len(fresh)`` on a transcript of identical lines). A whole match
    always starts before a partial one, and the first whole match found is the earliest, so the scan can
    stop there; with none, the match left at the end of ``known`` is the longest partial one.
    """
    if not fresh:
        return 0
    # border[i]: the length of the longest proper prefix of fresh[: i + 1] that also ends it.
    border = [0] * len(fresh)
    length = 0
    for i in range(1, len(fresh)):
        while length and fresh[i] != fresh[length]:
            length = border[length - 1]
        if fresh[i] == fresh[length]:
            length += 1
        border[i] = length
    matched = 0
    for item in known:
        while matched and item != fresh[matched]:
            matched = border[matched - 1]
        if item == fresh[matched]:
            matched += 1
            if matched == len(fresh):
                return matched
    return matched
