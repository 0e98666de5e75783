"""The router: one session's messages in, per-chat caches and events out. No I/O, no clock, no terminal.

A session has one message queue, however many chats it follows, so every message passes through here: the
router hands each update to the cache of the chat it names (a :class:`~icwschat.cache.ChatCache` stays
single-chat) and ignores what names a chat it does not follow. It also decides which chats are followed:

- the ids it was given (``watch ID ...``): each until it ends;
- the chats of a queue (``watch --queue``): a chat is followed from the moment the queue subscription says it
  is there (``chat_added``) until it leaves (``chat_removed``); the queue's own ``Eic_State`` tells when it
  ends, so no interaction watch per chat is needed;
- or every chat its messages name (``adopt``: ``replay`` of a capture of several chats).

What the network side must do about it, the router says as data: :meth:`Router.wanted` is the set of chats
that should hold a chat subscription now, :meth:`Router.take_resubscribes` what must be made again.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from . import events as ev
from .cache import ChatCache, Outcome
from .events import Event
from .models import DISCONNECTED_STATES
from .textsafe import inert
from .updates import Attributes, ChatUpdate, QueueUpdate, Update

QUEUE_TYPES = {"system": 0, "user": 1, "workgroup": 2, "station": 3}
"""ICWS ``queueType`` of each kind of queue, as ``QUEUE`` arguments name them (icws-protocol.md 6a)."""
SUBSCRIPTION_PREFIX = "icwschat:"
QUEUE_ATTRIBUTES = [
    "Eic_ObjectType",
    "Eic_State",
    "Eic_RemoteName",
    "Eic_UserName",
    "Eic_WorkgroupName",
    "Eic_InitiationTime",
]
"""What a queue subscription asks for: what tells a chat from other interactions and what the board shows."""
CHAT_OBJECT_TYPE = "Chat"
OTHER_OBJECT_TYPES = frozenset({"Call", "Callback", "Email", "Generic Object"})
"""Kinds of interaction that are plainly not chats, so not even tried. The spellings are UNCONFIRMED (the
protocol reference names only ``Chat``): a kind missing here is tried as a chat, which costs one refused
subscription; a chat is never skipped by a wrong guess, as no chat calls itself a call."""
DEPARTED_KEPT = 1000
"""Chats that left the queue whose transcripts are kept, so one that comes back is not shown again from
its first line; the oldest are forgotten first (a queue's churn must not grow memory without bound)."""
LABEL_DIGITS = 4


@dataclass(frozen=True, slots=True)
class Queue:
    """An ICWS queue as a ``QUEUE`` argument names it: ``workgroup:Support``."""

    kind: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}" if self.kind else self.name

    @property
    def subscription_id(self) -> str:
        """The client chooses a queue subscription's id. One per queue, so a restarted watcher replaces its
        predecessor's subscription rather than leaving it behind, and a capture says which queue it was."""
        return SUBSCRIPTION_PREFIX + self.label if self.kind else self.name

    def body(self) -> dict[str, object]:
        return {
            "queueIds": [{"queueType": QUEUE_TYPES[self.kind], "queueName": self.name}],
            "attributeNames": QUEUE_ATTRIBUTES,
        }


def parse_queue(text: str) -> Queue:
    """``KIND:NAME`` (``user``, ``workgroup``, ``station``, ``system``); ``ValueError`` otherwise."""
    kind, colon, name = text.partition(":")
    if not colon or kind not in QUEUE_TYPES or not name.strip():
        kinds = ", ".join(f"{kind}:NAME" for kind in QUEUE_TYPES)
        raise ValueError(f"{text!r} is not a queue: use one of {kinds}")
    return Queue(kind, name)


def queue_of_subscription(subscription_id: str) -> Queue:
    """The queue a subscription id names (a capture's, whoever made it): icwschat's own ids carry it; any
    other stands for a queue of that name, whose subscription id it stays."""
    if subscription_id.startswith(SUBSCRIPTION_PREFIX):
        with contextlib.suppress(ValueError):
            return parse_queue(subscription_id.removeprefix(SUBSCRIPTION_PREFIX))
    return Queue("", subscription_id)


@dataclass(slots=True)
class Chat:
    """One followed chat: its cache and what the board shows of it."""

    cache: ChatCache
    label: str
    """Short and stable for the run: the end of the id, long enough to tell it from the other chats."""
    queue: str | None = None
    attributes: Attributes = field(default_factory=dict)
    """The queue's attributes of the interaction (none for chats followed by id)."""
    last_activity: datetime | None = None
    history: bool = False
    """It was in the queue when the watch began (``chat_added`` says ``history: true``)."""
    announced: bool = True
    """Whether ``chat_added`` has been emitted; a chat whose kind the queue left unsaid is announced when
    its subscription proves it a chat (its first message)."""

    @property
    def interaction_id(self) -> str:
        return self.cache.interaction_id


class Router:
    """The chats of one session, by interaction id, in the order they were first followed."""

    def __init__(
        self,
        ids: Iterable[str] = (),
        *,
        queue: Queue | None = None,
        adopt: bool = False,
        follow_chats: bool = True,
    ) -> None:
        self.chats: dict[str, Chat] = {}
        self.queue = queue
        self.adopt = adopt
        self.follow_chats = follow_chats
        """False to learn only what is in the queue (``icwschat chats``), subscribing to no chat."""
        self.limit_exceeded = False
        """The queue's server left interactions out (``queueResultLimitExceeded``), at least once."""
        self.queued: dict[str, Attributes] = {}
        """Every interaction in the followed queue, chats or not, with its attributes."""
        self._departed: OrderedDict[str, Chat] = OrderedDict()
        self._refused: set[str] = set()
        """Queued interactions whose chat subscription was refused: not chats."""
        self._queue_awaiting = queue is not None
        """The latest queue subscription's snapshot has not arrived: its deltas are stale."""
        self._queue_seen = False
        self._resubscribe: set[str] = set()
        self._resubscribe_queue = False
        self._wanted: frozenset[str] | None = None
        for iid in ids:
            self._follow(iid)

    # ---- what the network side reads -----------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """Every chat followed has ended; never while following a queue, which new chats may enter."""
        return self.queue is None and bool(self.chats) and all(chat.cache.ended for chat in self)

    @property
    def has_snapshot(self) -> bool:
        """Every followed chat's first snapshot is in (and the queue's, when there is one); a chat that ended
        without one (it could not be subscribed) has none to wait for."""
        return (self.queue is None or self._queue_seen) and all(
            chat.cache.has_snapshot or chat.cache.ended for chat in self.chats.values()
        )

    @property
    def has_members_snapshots(self) -> bool:
        return (self.queue is None or self._queue_seen) and all(
            chat.cache.has_members_snapshot or chat.cache.ended for chat in self.chats.values()
        )

    def wanted(self) -> frozenset[str]:
        """The chats that should hold a chat subscription now: followed and not ended. The same object
        until that changes, so a caller can tell a change by identity, at no cost per message."""
        if self._wanted is None:
            self._wanted = frozenset(iid for iid, chat in self.chats.items() if not chat.cache.ended)
        return self._wanted

    def take_resubscribes(self) -> tuple[set[str], bool]:
        """The chats whose subscription must be made again (it faulted), and whether the queue's must."""
        chats, self._resubscribe = self._resubscribe, set()
        queue, self._resubscribe_queue = self._resubscribe_queue, False
        return {iid for iid in chats if iid in self.chats}, queue

    def expect_resync(self, ids: Iterable[str] | None = None) -> None:
        """Subscriptions are being made anew (``ids``, or all of them and the queue's after a new login):
        their snapshots are to be reconciled with what was already emitted."""
        if ids is None:
            self._queue_awaiting = self.queue is not None
            ids = list(self.chats)
        for iid in ids:
            if iid in self.chats:
                self.chats[iid].cache.expect_resync()

    def refused(self, iid: str, status: int | None, at: datetime) -> list[Event]:
        """The server refused a queued interaction's chat subscription. One of unsaid kind is then no chat,
        skipped without a word; a chat the queue announced is out of reach (gone since, or no rights to it),
        and ends as a chat that lost rights (403) or was deallocated does, never as an error."""
        self._refused.add(iid)
        chat = self.chats.get(iid)
        if chat is None:
            return []
        self._wanted = None
        if not chat.announced:
            del self.chats[iid]
            return []
        reason = "lost_rights" if status == 403 else "deallocated"
        return chat.cache.apply_updates([("ended", iid, reason)], at).events

    # ---- messages in, events out ---------------------------------------------------------------------

    def apply_updates(self, updates: Iterable[Update], at: datetime, problems: Iterable[str] = ()) -> Outcome:
        """Apply a batch already parsed; ``problems`` are the parser's. Each chat's events keep their order,
        and a chat that ends within the batch has ``chat_ended`` as its last event."""
        outcome = Outcome(problems=list(problems))
        run: list[ChatUpdate] = []
        target: Chat | None = None
        ended: set[str] = set()  # by their own messages; an end a queue tells of comes with no other events
        for update in updates:
            if update[0] == "queue":
                self._flush(target, run, at, outcome, ended)
                self._apply_queue(update, at, outcome)
                continue
            if update[0] == "faulted":
                self._flush(target, run, at, outcome, ended)
                self._fault(update[1])
                continue
            # A chat followed already, without a call: nearly every update is one.
            chat = self.chats.get(update[1]) or self._chat_for(update[1])
            if chat is None:
                continue
            if chat is not target:
                self._flush(target, run, at, outcome, ended)
                target = chat
            run.append(update)
            if update[0] == "morphed":
                self._flush(target, run, at, outcome, ended)
                self._rekey(update[1], update[2])
        self._flush(target, run, at, outcome, ended)
        if ended:
            _end_last(outcome.events, ended)
        return outcome

    def _chat_for(self, iid: str) -> Chat | None:
        chat = self.chats.get(iid)
        if chat is None and self.adopt and iid not in self._refused:
            chat = self._follow(iid)
        return chat

    def _flush(
        self, chat: Chat | None, run: list[ChatUpdate], at: datetime, outcome: Outcome, ended: set[str]
    ) -> None:
        if chat is None or not run:
            return
        was_ended = chat.cache.ended
        if not chat.announced:
            chat.announced = True
            outcome.events.append(self._added(chat, at))
        applied = chat.cache.apply_updates(run, at)
        run.clear()
        if chat.cache.ended and not was_ended:
            ended.add(chat.interaction_id)
            self._wanted = None
        if applied.events:
            chat.last_activity = at
        outcome.events.extend(applied.events)
        outcome.problems.extend(applied.problems)
        if chat.cache.needs_subscribe:
            chat.cache.needs_subscribe = False
            self._resubscribe.add(chat.interaction_id)

    def _rekey(self, old: str, new: str) -> None:
        """A morph: the chat now has another id, under which its subscription is made again."""
        chat = self.chats.pop(old, None)
        self._wanted = None
        if chat is not None:
            chat.cache.needs_subscribe = False  # the new id is wanted instead, which subscribes it
            self.chats[new] = chat
            if old in self.queued:
                self.queued[new] = self.queued.pop(old)

    def _fault(self, named: str | None) -> None:
        if named is None or (self.queue is not None and named == self.queue.subscription_id):
            self._resubscribe_queue = self.queue is not None
            if self.queue is not None:
                self._queue_awaiting = True
        if named is None:
            for chat in self.chats.values():
                chat.cache.expect_resync()
                self._resubscribe.add(chat.interaction_id)
        elif named in self.chats:
            self.chats[named].cache.expect_resync()
            self._resubscribe.add(named)

    def _follow(self, iid: str, *, queue: str | None = None, attributes: Attributes | None = None) -> Chat:
        chat = self._departed.pop(iid, None)
        if chat is None:
            chat = Chat(ChatCache(iid), self._label(iid))
        else:
            # Back in the queue: a new subscription's snapshot continues what was shown. Made anew even if
            # the old one was never removed (it left and came back between two requests), for its snapshot.
            chat.cache.expect_resync()
            self._resubscribe.add(iid)
        chat.queue = queue
        chat.attributes = dict(attributes or {})
        self.chats[iid] = chat
        self._wanted = None
        return chat

    def _label(self, iid: str) -> str:
        """The end of the id, long enough to differ from the other chats' labels; made inert, since ids come
        from the server and labels go to terminals as they are."""
        taken = {chat.label for chat in self.chats.values()}
        for length in range(LABEL_DIGITS, len(iid)):
            label = inert(iid[-length:], multiline=False)
            if label not in taken:
                return label
        return inert(iid, multiline=False)

    # ---- the queue -------------------------------------------------------------------------------------

    def _apply_queue(self, update: QueueUpdate, at: datetime, outcome: Outcome) -> None:
        _, subscription, delta, added, changed, removed, limited = update
        if self.queue is None:
            if not self.adopt:
                return
            self.queue = queue_of_subscription(subscription)  # a capture's queue, as it names it
            self._queue_awaiting = True
        elif subscription != self.queue.subscription_id:
            return
        if limited:
            self.limit_exceeded = True
        if delta and self._queue_awaiting:
            return  # queued before the latest subscription's snapshot, which holds it
        if not delta:
            self._queue_snapshot(added + changed, at, outcome)
            return
        for iid, attributes in added:
            self._enter(iid, attributes, at, outcome, history=False)
        for iid, attributes in changed:
            self._change(iid, attributes, at, outcome)
        for iid in removed:
            self._leave(iid, at, outcome)

    def _queue_snapshot(self, present: list[tuple[str, Attributes]], at: datetime, outcome: Outcome) -> None:
        """Replace what is known of the queue: the first snapshot is history; a later one (a new login, a
        fault) brings what changed while the subscription was away, as arrivals, changes and departures."""
        first = not self._queue_seen
        self._queue_seen = True
        self._queue_awaiting = False
        fresh = dict(present)
        for iid in [iid for iid in self.queued if iid not in fresh]:
            self._leave(iid, at, outcome)
        for iid, attributes in fresh.items():
            if iid in self.queued:
                self._change(iid, attributes, at, outcome)
            else:
                self._enter(iid, attributes, at, outcome, history=first)

    def _enter(
        self, iid: str, attributes: Attributes, at: datetime, outcome: Outcome, *, history: bool
    ) -> None:
        self.queued[iid] = dict(attributes)
        kind = attributes.get("Eic_ObjectType")
        if iid in self.chats or iid in self._refused or not self.follow_chats or kind in OTHER_OBJECT_TYPES:
            return
        queue = self.queue.label if self.queue is not None else None
        chat = self._follow(iid, queue=queue, attributes=attributes)
        chat.history = history
        if kind == CHAT_OBJECT_TYPE:
            outcome.events.append(self._added(chat, at))
        else:
            # The spelling of Eic_ObjectType is UNCONFIRMED: an interaction of another or no stated kind is
            # tried as a chat, and announced only once its subscription proves it one (see refused).
            chat.announced = False
        self._apply_state(chat, attributes, at, outcome)

    def _change(self, iid: str, attributes: Attributes, at: datetime, outcome: Outcome) -> None:
        known = self.queued.setdefault(iid, {})
        news = {name: value for name, value in attributes.items() if known.get(name) != value}
        known.update(news)
        chat = self.chats.get(iid)
        if chat is None or not news:
            return
        chat.attributes.update(news)
        if chat.announced:
            chat.last_activity = at
            outcome.events.append(Event(ev.CHAT_CHANGED, iid, at, attributes=news))
        self._apply_state(chat, news, at, outcome)

    def _apply_state(self, chat: Chat, attributes: Attributes, at: datetime, outcome: Outcome) -> None:
        state = attributes.get("Eic_State")
        if state in DISCONNECTED_STATES:
            self._wanted = None
            outcome.events.extend(
                chat.cache.apply_updates([("state", chat.interaction_id, state)], at).events
            )

    def _leave(self, iid: str, at: datetime, outcome: Outcome) -> None:
        self.queued.pop(iid, None)
        self._refused.discard(iid)
        chat = self.chats.pop(iid, None)
        if chat is None:
            return
        self._wanted = None
        if chat.announced:
            outcome.events.append(Event(ev.CHAT_REMOVED, iid, at, queue=chat.queue))
        self._departed[iid] = chat
        while len(self._departed) > DEPARTED_KEPT:
            self._departed.popitem(last=False)

    def _added(self, chat: Chat, at: datetime) -> Event:
        attributes = dict(chat.attributes)
        return Event(
            ev.CHAT_ADDED,
            chat.interaction_id,
            at,
            history=chat.history,
            queue=chat.queue,
            attributes=attributes,
        )

    def __iter__(self) -> Iterator[Chat]:
        return iter(self.chats.values())


def _end_last(events: list[Event], ended: set[str]) -> None:
    """Move each newly ended chat's ``chat_ended`` behind that chat's other events of the batch."""
    for iid in ended:
        at = next(
            (i for i, e in enumerate(events) if e.kind == ev.CHAT_ENDED and e.interaction_id == iid), None
        )
        if at is None:
            continue
        last = max(i for i, e in enumerate(events) if e.interaction_id == iid)
        if last > at:
            events.insert(last, events.pop(at))
