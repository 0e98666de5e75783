"""The chat cache: ICWS messages in, state and contract events out. No I/O, no clock, no terminal.

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
from .models import (
    CONTENTS_TYPE,
    DISCONNECTED_STATES,
    INTERACTION_CHANGED_TYPE,
    INTERACTION_DEALLOCATED_TYPE,
    INTERACTION_LOST_RIGHTS_TYPE,
    MEMBERS_TYPE,
    BadMessage,
    ChatLine,
    Member,
    is_delta,
    message_type,
    parse_line,
    parse_list,
    parse_member,
)

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
        outcome = Outcome()
        self._apply(message, at, outcome)
        return outcome

    def apply_all(self, messages: Iterable[Any], at: datetime) -> Outcome:
        """Apply a batch in order; a message the cache cannot use is skipped and named in ``problems``.

        When the chat ends within the batch, ``chat_ended`` is moved to the end of its events.
        """
        outcome = Outcome()
        ended_before = self.ended
        for message in messages:
            try:
                self._apply(message, at, outcome)
            except ValueError as problem:
                outcome.problems.append(f"skipped a message: {problem}: {message!r:.300}")
        if self.ended and not ended_before:
            # The rest of the batch still counts (a resync snapshot queued behind the end may bring lost
            # lines), but chat_ended stays the last event, so a consumer can stop reading at it.
            events = outcome.events
            events.append(events.pop(next(i for i, e in enumerate(events) if e.kind == ev.CHAT_ENDED)))
        return outcome

    def _apply(self, message: Any, at: datetime, outcome: Outcome) -> None:
        kind = message_type(message)
        if kind == MEMBERS_TYPE and self._mine(message, "interactionId"):
            self._apply_members(message, at, outcome)
        elif kind == CONTENTS_TYPE and self._mine(message, "interactionId"):
            self._apply_contents(message, at, outcome)
        elif kind == INTERACTION_CHANGED_TYPE and self._mine(message, "interactionID"):
            self._apply_interaction(message, at, outcome)
        elif kind in (INTERACTION_DEALLOCATED_TYPE, INTERACTION_LOST_RIGHTS_TYPE) and self._mine(
            message, "interactionID"
        ):
            reason = "deallocated" if kind == INTERACTION_DEALLOCATED_TYPE else "lost_rights"
            self._end(at, reason, outcome)

    def _mine(self, message: dict[str, Any], id_field: str) -> bool:
        return message.get(id_field) == self.interaction_id

    def _parse_members(self, message: dict[str, Any], name: str, outcome: Outcome) -> list[Member]:
        members = []
        for item in parse_list(message, name):
            try:
                members.append(parse_member(item, default_interaction=self.interaction_id))
            except BadMessage as problem:
                outcome.problems.append(f"skipped a chat member: {problem}")
        return members

    def _apply_members(self, message: dict[str, Any], at: datetime, outcome: Outcome) -> None:
        delta = is_delta(message)
        added = self._parse_members(message, "membersAdded", outcome)
        changed = self._parse_members(message, "membersChanged", outcome)
        removed = self._parse_members(message, "membersRemoved", outcome)
        if delta and "members" in self._resync_pending:
            return  # queued before the new subscription, so already part of the snapshot on its way
        if delta:
            for member in [*added, *changed]:
                self._upsert(member, at, outcome)
            for member in removed:
                self._remove(member, at, outcome)
            return
        first = "members" not in self._snapshots_seen
        fresh: dict[MemberKey, Member] = {}
        for member in [*added, *changed]:
            fresh[member.key] = member
        for key, old in list(self.members.items()):
            if key not in fresh:
                del self.members[key]
                outcome.events.append(Event(ev.MEMBER_LEFT, self.interaction_id, at, old))
        for member in fresh.values():
            if first:
                self.members[member.key] = member
                outcome.events.append(Event(ev.MEMBER_JOINED, self.interaction_id, at, member, history=True))
            else:
                self._upsert(member, at, outcome)
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
            outcome.events.append(Event(kind, self.interaction_id, at, member))

    def _remove(self, member: Member, at: datetime, outcome: Outcome) -> None:
        if member.key in self.members:
            gone = [self.members.pop(member.key)]
        else:
            # Fallback for servers whose removal names another interactionId: the user is gone either way.
            keys = [k for k in self.members if k[0] == member.user_id]
            gone = [self.members.pop(k) for k in keys]
        for old in gone:
            outcome.events.append(Event(ev.MEMBER_LEFT, self.interaction_id, at, old.typing(False)))

    def _parse_lines(self, message: dict[str, Any], outcome: Outcome) -> list[ChatLine]:
        lines = []
        for item in parse_list(message, "messagesAdded"):
            try:
                lines.append(parse_line(item, default_interaction=self.interaction_id))
            except BadMessage as problem:
                outcome.problems.append(f"skipped a chat line: {problem}")
        return lines

    def _apply_contents(self, message: dict[str, Any], at: datetime, outcome: Outcome) -> None:
        delta = is_delta(message)
        lines = self._parse_lines(message, outcome)
        if delta and "contents" in self._resync_pending:
            return  # queued before the new subscription, so already part of the snapshot on its way
        if delta:
            self._append(lines, at, outcome, history=False)
            return
        if "contents" not in self._snapshots_seen:
            self.transcript = []
            self._append(lines, at, outcome, history=True)
        else:
            self._append(lines[self._known_overlap(lines) :], at, outcome, history=False)
        self._snapshot_done("contents", at, outcome)

    def _append(self, lines: list[ChatLine], at: datetime, outcome: Outcome, *, history: bool) -> None:
        """Append lines; each event shows the member as the cache knows it now (typing included)."""
        for line in lines:
            self.transcript.append(line)
            sender = line.member
            current = self.members.get(sender.key)
            if current is not None:
                sender = current if current.same_person(sender) else sender.typing(current.is_typing)
            outcome.events.append(Event(ev.MESSAGE, self.interaction_id, at, sender, None, line, history))

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

    def _apply_interaction(self, message: dict[str, Any], at: datetime, outcome: Outcome) -> None:
        attributes = message.get("attributes")
        if not isinstance(attributes, dict):
            if is_delta(message):
                return
            raise BadMessage("interactionChangedMessage has no attributes")
        state = attributes.get("Eic_State")
        if isinstance(state, str):
            self.interaction_state = state
            if state in DISCONNECTED_STATES:
                self._end(at, "disconnected", outcome)

    def _end(self, at: datetime, reason: str, outcome: Outcome) -> None:
        if not self.ended:
            self.ended = True
            outcome.events.append(Event(ev.CHAT_ENDED, self.interaction_id, at, reason=reason))
