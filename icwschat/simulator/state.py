"""The simulator's state and the public operations on it: users and sessions with their message queues,
interactions (scripted chats and others) and the subscriptions to them.

Every operation holds one lock, through the :attr:`Simulator.changed` condition (readers of a session's
messages wait on it). One ticker thread plays whatever falls due (chat scripts) from a heap of due times, so
the cost of a tick does not grow with the number of interactions.
"""

from __future__ import annotations

import base64
import collections
import functools
import heapq
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import messages as msg
from .faults import (
    ACCESS_DENIED,
    DROP_REASON,
    INVALID_PROPERTY,
    KNOBS,
    Faults,
    ICWSFault,
    KnobError,
    error_body,
    invalid_property,
    not_found,
    read_knobs,
)
from .load import LINE_EVERY, LINES, LoadGenerator
from .queues import LOAD, RESTRICTED, SUPPORT, SYSTEM, USER, WORKGROUP, Queue, QueueId, QueueSubscription
from .scenarios import END_STATES, Scenario, ScriptMember, Step, chat_scenario
from .support import SUPPORT_EVERY, SupportCycle

log = logging.getLogger("icwschat.simulator")

FIRST_MADE_UP_ID = 3000001
"""The ids of interactions the simulator makes up count from here; scenario files use smaller ones."""
RETAIN_SECONDS = 60.0
"""How long a made-up interaction that has left its queues can still be subscribed to, before it is gone."""
CALL_STATE_STRINGS = {"C": "Connected", "E": "Disconnected", "I": "Disconnected"}
"""``Eic_CallStateString`` for an ``Eic_State``; the wording of other states is not known, so it is empty."""


@dataclass(eq=False)
class SimSession:
    session_id: str
    user: str
    csrf: str
    cookie_value: str
    language: str
    queue: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    """The messages waiting for the session's next poll or event stream."""
    chats: set[str] = field(default_factory=set)
    faulted: set[str] = field(default_factory=set)
    """Chat subscriptions the server faulted: they deliver nothing until subscribed again."""
    watches: dict[str, list[str]] = field(default_factory=dict)
    queue_subscriptions: dict[str, QueueSubscription] = field(default_factory=dict)
    down: dict[str, Any] | None = None
    """The connectionStateChangeMessage that ended this session, until the server forgets it."""


@dataclass(eq=False)
class Interaction:
    """One interaction: its script (for a chat), its attributes and, for a chat, what the chat holds now."""

    scenario: Scenario
    interaction_id: str
    """Its id now: the scenario's, until the interaction morphs."""
    attributes: dict[str, str]
    """``Eic_*`` attribute values, as queue subscriptions and interaction watches report them."""
    members: dict[str, ScriptMember] = field(default_factory=dict)
    """Present chat members by script id, in join order."""
    typing: set[str] = field(default_factory=set)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    started_at: float | None = None
    """When its script's clock started; None: not yet."""
    next_step: int = 0
    linger: float | None = None
    """Script seconds it stays in its queues once ended, before it goes for good; None: it stays."""

    @property
    def state(self) -> str:
        return self.attributes["Eic_State"]

    def member(self, member_id: str) -> ScriptMember:
        return self.members.get(member_id) or self.scenario.member(member_id)


@dataclass(order=True, frozen=True, slots=True)
class _Due:
    when: float
    order: int
    """Ties go first come, first played."""
    action: Callable[[], object] = field(compare=False)


def remote_name(scenario: Scenario) -> str:
    """Who the interaction is with: its first external member, else its title."""
    external = [m for m in scenario.members if m.chat_member_type == 4]
    return external[0].display_name if external else scenario.title


class Simulator:
    """An ICWS server's state: users, sessions with their message queues, and scripted interactions."""

    def __init__(
        self,
        scenarios: dict[str, Scenario],
        *,
        users: dict[str, str] | None = None,
        speed: float = 1.0,
        messaging_version: int = 2,
        alternate_hosts: list[str] | None = None,
        clock: Callable[[], float] = time.time,
        support_every: float | None = SUPPORT_EVERY,
    ) -> None:
        """``support_every``: script seconds between chats arriving in the Support workgroup (None: no
        Support cycle; the workgroup is there, empty, for tests to fill)."""
        self.scenarios = scenarios
        self.users = users or {"agent.one": "icws-sim"}
        self.speed = speed
        self.messaging_version = messaging_version
        self.alternate_hosts = alternate_hosts or []
        self.clock = clock
        self.faults = Faults()
        self.sessions: dict[str, SimSession] = {}
        lock = threading.RLock()
        self.changed = threading.Condition(lock)
        """The one lock, and the condition readers of session queues wait on."""
        self._wake = threading.Condition(lock)
        """The ticker's own condition on the same lock: new due times wake it, messages do not."""
        self._due: list[_Due] = []
        self._order = itertools.count()
        self.closing = False
        self.logins = 0
        self.polls = 0
        self.polls_in_flight = 0
        self.most_polls_in_flight = 0
        """The most short polls ever answered at once: more than 1 means a client let its polls overlap."""
        self._next_session = 29113001
        self._next_interaction = itertools.count(FIRST_MADE_UP_ID)
        self.interactions: dict[str, Interaction] = {}
        """The interactions by their current id (a morph moves one); ``scenarios`` keeps the files' ids."""
        self.queues: dict[QueueId, Queue] = {}
        for user in self.users:
            self._open_queue(QueueId(SYSTEM, user), frozenset({user}))
            self._open_queue(QueueId(USER, user), frozenset({user}))
        self._open_queue(SUPPORT, None)
        self._open_queue(RESTRICTED, frozenset())
        owner = next(iter(self.users))
        now = self.clock()
        for scenario in scenarios.values():
            started = now - max((line.ago for line in scenario.history), default=0.0)
            interaction = self._add(scenario, state="C", started=started)
            # What the user may not see is on a queue they may not see either.
            mine = (QueueId(USER, owner), QueueId(SYSTEM, owner))
            for queue_id in mine if scenario.rights else (RESTRICTED,):
                self._enter(interaction, queue_id)
        if support_every is not None:
            SupportCycle(self, support_every).start()
        self._ticker = threading.Thread(target=self._tick_forever, name="sim-script", daemon=True)
        self._ticker.start()

    @property
    def chats(self) -> dict[str, Interaction]:
        """The chat interactions by their current id."""
        return {iid: i for iid, i in self.interactions.items() if i.scenario.is_chat}

    def _open_queue(self, queue_id: QueueId, viewers: frozenset[str] | None) -> None:
        self.queues.setdefault(queue_id, Queue(queue_id, viewers))

    def _add(
        self,
        scenario: Scenario,
        *,
        state: str,
        started: float,
        agent: str = "",
        workgroup: str = "",
        linger: float | None = None,
    ) -> Interaction:
        iid = scenario.interaction_id
        # An attribute with no value yet (no agent, not connected) is an empty string, not left out: what a
        # real server sends then is UNCONFIRMED, and a client must cope with "" either way.
        attributes = {
            "Eic_InteractionId": iid,
            "Eic_ObjectType": scenario.kind.capitalize(),
            "Eic_State": state,
            "Eic_CallStateString": CALL_STATE_STRINGS.get(state, ""),
            "Eic_RemoteName": remote_name(scenario),
            "Eic_UserName": agent,
            "Eic_WorkgroupName": workgroup,
            "Eic_InitiationTime": msg.wire_time(started),
            "Eic_ConnectTime": msg.wire_time(started) if state == "C" else "",
        }
        interaction = Interaction(scenario=scenario, interaction_id=iid, attributes=attributes, linger=linger)
        now = self.clock()
        for member in scenario.members:
            if member.present:
                interaction.members[member.id] = member
        for line in scenario.history:
            interaction.transcript.append(
                self._line(interaction, line.member, line.text, now - line.ago, line.message_type)
            )
        self.interactions[iid] = interaction
        return interaction

    # ---- sessions -------------------------------------------------------------------------------------

    def open_session(self, user: str, password: str, application: str, language: str) -> SimSession:
        """Log ``user`` in: a new session, or the 400 of bad credentials."""
        if self.users.get(user) != password:
            raise ICWSFault(
                400,
                error_body(
                    "The authentication process failed.",
                    "error.request.connection.authenticationFailure",
                    -2147221503,
                ),
            )
        with self.changed:
            sid = str(self._next_session)
            self._next_session += 1000
            token = f"{user}|{application}|{uuid.uuid4()}|127.0.0.1"
            session = SimSession(
                session_id=sid,
                user=user,
                csrf=base64.b64encode(token.encode()).decode(),
                cookie_value=f"{uuid.uuid4()}|languageId={language}",
                language=language,
            )
            self.sessions[sid] = session
            self.logins += 1
        return session

    def session(self, session_id: str) -> SimSession | None:
        with self.changed:
            return self.sessions.get(session_id)

    def close_session(self, session: SimSession) -> None:
        """Log the session out: it and all its subscriptions are gone."""
        with self.changed:
            self.sessions.pop(session.session_id, None)
            self.changed.notify_all()

    def expire_sessions(self) -> None:
        """Forget every session, as a server restart or an idle timeout would."""
        with self.changed:
            self.inject("expireSessions", len(self.sessions))
            self.sessions.clear()
            self.changed.notify_all()

    def drop_session(
        self, session_id: str, *, should_reconnect: bool = True, reason: str = DROP_REASON
    ) -> None:
        """Tell the session its connection is down (connectionStateChangeMessage), then forget it."""
        with self.changed:
            session = self.sessions.get(session_id)
            if session is None or session.down is not None:
                return
            session.down = msg.connection_down(reason, should_reconnect=should_reconnect)
            session.queue.append(session.down)
            self.inject("dropSessions")
            self.changed.notify_all()
        forget = threading.Timer(0.5, self._forget, args=(session,))
        forget.daemon = True
        forget.start()

    def drop_sessions(self, *, should_reconnect: bool = True, reason: str = DROP_REASON) -> None:
        with self.changed:
            for session_id in list(self.sessions):
                self.drop_session(session_id, should_reconnect=should_reconnect, reason=reason)

    def _forget(self, session: SimSession) -> None:
        with self.changed:
            if self.sessions.get(session.session_id) is session:
                del self.sessions[session.session_id]
            self.changed.notify_all()

    def _is_current(self, session: SimSession) -> bool:
        return not self.closing and self.sessions.get(session.session_id) is session

    # ---- the message queue ----------------------------------------------------------------------------

    @contextmanager
    def counting_poll(self) -> Iterator[None]:
        """Count a short poll while it is answered (see :attr:`most_polls_in_flight`)."""
        with self.changed:
            self.polls += 1
            self.polls_in_flight += 1
            self.most_polls_in_flight = max(self.most_polls_in_flight, self.polls_in_flight)
        try:
            yield
        finally:
            with self.changed:
                self.polls_in_flight -= 1

    def poll(self, session: SimSession) -> tuple[str | None, list[dict[str, Any]]]:
        """Answer a short poll: the fault to answer it with (``downEveryPoll`` or one of the
        ``pollFailures``; None for none) and the messages it takes from the session's queue."""
        faults = self.faults
        with self.changed:
            if faults.down_every_poll:
                self.inject("downEveryPoll")
                return "downEveryPoll", []
            fault = faults.poll_failures.popleft() if faults.poll_failures else None
            if fault in ("500", "503", "429", "down", "truncated"):
                self.inject("pollFailures")
                return fault, []
            messages = self._take(session)
            if fault == "truncated-dequeued":
                if messages:
                    self.inject("pollFailures")
                    return fault, messages
                faults.poll_failures.appendleft(fault)  # nothing to lose yet: wait for messages
            return None, messages

    def stream_opened(self) -> bool:
        """Whether a new event stream is to say the connection is down and close (``downEveryPoll``)."""
        with self.changed:
            if self.faults.down_every_poll:
                self.inject("downEveryPoll")
            return self.faults.down_every_poll

    def wait_for_messages(self, session: SimSession, timeout: float) -> bool:
        """Wait until the session has messages or ``timeout`` passes; False when the session is over (logged
        out, forgotten, or the server closing): its stream should send what is left and end."""
        with self.changed:
            self.changed.wait_for(lambda: session.queue or not self._is_current(session), timeout)
            return self._is_current(session)

    def take_messages(self, session: SimSession) -> list[dict[str, Any]]:
        with self.changed:
            return self._take(session)

    def _take(self, session: SimSession) -> list[dict[str, Any]]:
        messages = list(session.queue)
        session.queue.clear()
        return messages

    def stream_sent(self, session: SimSession, sent: int, unsent: list[dict[str, Any]]) -> bool:
        """After an event stream sent its ``sent``-th event: whether to close it now (``dropStreamsAfter``),
        in which case ``unsent`` goes back to the front of the session's queue."""
        with self.changed:
            limit = self.faults.drop_streams_after
            if limit is None or sent < limit:
                return False
            session.queue.extendleft(reversed(unsent))
            self.inject("dropStreamsAfter")
            return True

    def corrupt_next_event(self) -> bool:
        """Whether the next event is to be sent corrupted (``corruptEvents``); counts it down."""
        with self.changed:
            if self.faults.corrupt_events <= 0:
                return False
            self.faults.corrupt_events -= 1
            self.inject("corruptEvents")
            return True

    # ---- subscriptions --------------------------------------------------------------------------------

    def interaction(self, iid: str, *, chat: bool) -> Interaction:
        """The interaction a subscription names, or the error a server answers: 404 unknown, 403 no
        rights, 400 not a chat (when a chat is needed)."""
        with self.changed:
            interaction = self.interactions.get(iid)
        if interaction is None:
            raise not_found("The interaction does not exist.")
        if not interaction.scenario.rights:
            raise ICWSFault(403, error_body("You do not have rights to the interaction.", ACCESS_DENIED))
        if chat and not interaction.scenario.is_chat:
            raise ICWSFault(400, error_body("The interaction is not a chat interaction.", INVALID_PROPERTY))
        return interaction

    def subscribe_chat(self, session: SimSession, iid: str) -> None:
        """A chat subscription: from now on the chat's messages, starting with its snapshot."""
        self.interaction(iid, chat=True)
        faults = self.faults
        if faults.subscribe_delay:
            self.inject("subscribeDelay")
            time.sleep(faults.subscribe_delay)
        with self.changed:
            chat = self.interactions.get(iid)
            if chat is None:  # morphed while this PUT waited
                raise not_found("The interaction does not exist.")
            if chat.started_at is None:
                self._start(chat)
            session.faulted.discard(iid)
            session.chats.add(iid)
            if faults.withhold_snapshots:
                self.inject("withholdSnapshots")
                return
            members = msg.members_message(iid, chat.typing, added=chat.members.values(), delta=False)
            session.queue.append(msg.as_seen_by(members, session.user))
            if faults.withhold_contents:
                self.inject("withholdContents")
            else:
                contents = msg.contents_message(iid, list(chat.transcript), delta=False)
                session.queue.append(msg.as_seen_by(contents, session.user))
            self.changed.notify_all()

    def unsubscribe_chat(self, session: SimSession, iid: str) -> None:
        self.interaction(iid, chat=True)
        with self.changed:
            if iid not in session.chats and iid not in session.faulted:
                raise not_found("There is no chat subscription for this interaction.")
            session.chats.discard(iid)
            session.faulted.discard(iid)

    def watch_interaction(self, session: SimSession, iid: str, names: list[str]) -> None:
        """An interaction watch: these attributes now (a snapshot), then whenever they change."""
        interaction = self.interaction(iid, chat=False)
        with self.changed:
            session.watches[iid] = names
            values = {k: v for k, v in interaction.attributes.items() if k in names}
            session.queue.append(msg.interaction_changed(iid, values, delta=False))
            self.changed.notify_all()

    def unwatch_interaction(self, session: SimSession, iid: str) -> None:
        self.interaction(iid, chat=False)
        with self.changed:
            session.watches.pop(iid, None)

    def subscribers(self, interaction_id: str) -> list[str]:
        """The sessions subscribed to this chat."""
        with self.changed:
            return [s.session_id for s in self.sessions.values() if interaction_id in s.chats]

    def subscribe_queue(
        self,
        session: SimSession,
        subscription_id: str,
        queue_ids: list[QueueId],
        attribute_names: list[str],
        limit: int | None = None,
    ) -> None:
        """A queue subscription (a new one, or one that replaces the session's of that id): a snapshot of the
        interactions in the queues now, then deltas as they enter, change and leave. 400 for a queue that
        does not exist or that the session's user may not see: UNCONFIRMED, but the official library lists
        no 403 or 404 for queue subscriptions (icws-protocol.md 6a), so a client must take a 400 as either."""
        with self.changed:
            for queue_id in queue_ids:
                queue = self.queues.get(queue_id)
                if queue is None:
                    raise invalid_property("queueIds", f"There is no queue {queue_id}.")
                if not queue.visible_to(session.user):
                    raise invalid_property(
                        "queueIds", f"You do not have rights to the queue {queue_id}.", ACCESS_DENIED
                    )
            imposed = self.faults.queue_result_limit
            if imposed is not None:
                self.inject("queueResultLimit")
                limit = imposed if limit is None else min(limit, imposed)
            subscription = QueueSubscription(
                subscription_id, tuple(dict.fromkeys(queue_ids)), frozenset(attribute_names), limit
            )
            session.queue_subscriptions[subscription_id] = subscription
            everyone = self._in_queues(subscription)
            shown = subscription.fill(everyone)
            snapshot = msg.queue_contents(
                subscription_id,
                delta=False,
                added=[self._queue_entry(subscription, iid) for iid in shown],
                limit_exceeded=None if limit is None else len(everyone) > len(shown),
            )
            self._send_queue(session, snapshot)

    def unsubscribe_queue(self, session: SimSession, subscription_id: str) -> None:
        with self.changed:
            if session.queue_subscriptions.pop(subscription_id, None) is None:
                raise not_found(f"There is no queue subscription {subscription_id}.")

    def queue_subscribers(self, queue_id: QueueId) -> list[str]:
        """The sessions with a queue subscription that includes this queue."""
        with self.changed:
            return [session.session_id for session, _ in self._subscriptions_to(queue_id)]

    def queue_contents(self, queue_id: QueueId) -> list[str]:
        """The ids of the interactions in the queue, in the order they entered."""
        with self.changed:
            return list(self.queues[queue_id].interactions)

    # ---- faults and inspection (the knobs tests turn) -------------------------------------------------

    def inject(self, knob: str, times: int = 1) -> None:
        """Count faults injected by ``knob`` (its camelCase name)."""
        assert knob in KNOBS, knob
        with self.changed:
            self.faults.injected[knob] += times

    def set_faults(self, body: Any) -> None:
        """Apply a ``POST /_sim/faults`` body; every key is read before any takes effect (KnobError)."""
        fields, calls = read_knobs(body)
        with self.changed:
            for name, value in fields:
                setattr(self.faults, name, value)
            for method, args, kwargs in calls:
                getattr(self, method)(*args, **kwargs)
            self.changed.notify_all()

    def deallocate(self, interaction_id: str) -> None:
        with self.changed:
            for session in self.sessions.values():
                if interaction_id in session.chats or interaction_id in session.watches:
                    session.queue.append(msg.interaction_deallocated(interaction_id))
                    self.inject("deallocate")
            self.changed.notify_all()

    def morph(self, old_iid: str, new_iid: str) -> None:
        """The interaction gets a new id: every session subscribed to or watching it is told so, and from
        now on it lives under the new id only (the old one answers 404).

        Whether a real server carries existing subscriptions over to the new id is UNCONFIRMED. This one
        does not: a client must subscribe to the new id (which brings a snapshot, as every subscribe does).
        """
        with self.changed:
            if old_iid not in self.interactions:
                raise KnobError(f"no interaction {old_iid}")
            if new_iid in self.interactions:
                raise KnobError(f"interaction {new_iid} exists already")
            queues = [q for q in self.queues.values() if old_iid in q.interactions]
            for queue in queues:
                self._leave(old_iid, queue.queue_id)
            interaction = self.interactions.pop(old_iid)
            self.interactions[new_iid] = interaction
            interaction.interaction_id = new_iid
            interaction.attributes["Eic_InteractionId"] = new_iid
            # New line objects: the old ones may still sit, unsent, in session queues.
            interaction.transcript = [
                {**line, "chatMember": {**line["chatMember"], "interactionId": new_iid}}
                for line in interaction.transcript
            ]
            message = msg.interaction_morphed(old_iid, new_iid)
            for session in self.sessions.values():
                if old_iid in session.chats or old_iid in session.watches or old_iid in session.faulted:
                    session.queue.append(message)
                session.chats.discard(old_iid)
                session.faulted.discard(old_iid)
                session.watches.pop(old_iid, None)
            for queue in queues:
                self._enter(interaction, queue.queue_id)
            self.inject("morph")
            self.changed.notify_all()

    def fault_subscriptions(self) -> None:
        """Fault every chat subscription: each session holding some is told once (subscriptionStateMessage
        Faulted) and gets nothing more for those chats until it subscribes to them again."""
        with self.changed:
            for session in self.sessions.values():
                if not session.chats:
                    continue
                session.faulted |= session.chats
                session.chats.clear()
                session.queue.append(msg.subscription_faulted())
                self.inject("faultSubscriptions")
            self.changed.notify_all()

    def describe(self) -> dict[str, Any]:
        """What ``GET /_sim/state`` shows: sessions, chats, polls, faults injected."""
        with self.changed:
            return {
                "sessions": {
                    sid: {
                        "user": s.user,
                        "chats": sorted(s.chats),
                        "faulted": sorted(s.faulted),
                        "queued": len(s.queue),
                        "down": s.down is not None,
                        "queueSubscriptions": sorted(s.queue_subscriptions),
                    }
                    for sid, s in self.sessions.items()
                },
                "chats": {
                    iid: {"state": c.state, "lines": len(c.transcript), "members": len(c.members)}
                    for iid, c in self.chats.items()
                },
                "queues": {str(q.queue_id): list(q.interactions) for q in self.queues.values()},
                "polls": {"answered": self.polls, "mostAtOnce": self.most_polls_in_flight},
                "faults": dict(self.faults.injected),
            }

    # ---- chats now (for tests) ------------------------------------------------------------------------

    def say(self, interaction_id: str, member_id: str, text: str) -> None:
        """Add a chat line now, outside the script (for latency and load tests)."""
        with self.changed:
            chat = self.interactions[interaction_id]
            self._play(chat, Step(0.0, "say", member=member_id, text=text))

    def typing(self, interaction_id: str, member_id: str, on: bool) -> None:
        """A member starts (``on``) or stops typing, now."""
        with self.changed:
            self._play(self.interactions[interaction_id], Step(0.0, "typing", member=member_id, on=on))

    # ---- queues now (for tests, the Support cycle and the load generator) -----------------------------

    def new_interaction_id(self) -> str:
        """An interaction id never used here before: digits, like the scenario files' ids."""
        with self.changed:
            while (iid := str(next(self._next_interaction))) in self.interactions:
                pass
            return iid

    def admit(
        self,
        scenario: Scenario,
        queue_id: QueueId,
        *,
        state: str = "O",
        agent: str = "",
        linger: float | None = None,
    ) -> str:
        """A new interaction enters ``queue_id`` now, its script (if any) starting now; its id.

        ``state`` and ``agent`` are its first ``Eic_State`` and ``Eic_UserName``; ``linger`` (script seconds)
        makes it leave its queues that long after it ends, and be gone :data:`RETAIN_SECONDS` later."""
        with self.changed:
            if scenario.interaction_id in self.interactions:
                raise ValueError(f"interaction {scenario.interaction_id} exists already")
            workgroup = queue_id.name if queue_id.queue_type == WORKGROUP else ""
            interaction = self._add(
                scenario, state=state, started=self.clock(), agent=agent, workgroup=workgroup, linger=linger
            )
            self._enter(interaction, queue_id)
            if scenario.script:
                self._start(interaction)
            return interaction.interaction_id

    def add_interaction(
        self, queue_id: QueueId, *, kind: str = "chat", remote_name: str = "Casey", state: str = "O"
    ) -> str:
        """A new interaction, with no script, enters the queue now; its id. A chat's member ids (for
        :meth:`say`, :meth:`typing`) are ``system``, ``customer`` and ``agent`` (agent.two, who joins on
        :meth:`pick_up`); ``kind`` other than ``chat`` makes an interaction that is not a chat."""
        scenario = chat_scenario(self.new_interaction_id(), remote_name, kind=kind)
        return self.admit(scenario, queue_id, state=state)

    def enqueue(self, interaction_id: str, queue_id: QueueId) -> None:
        """An existing interaction enters a queue now (again, perhaps)."""
        with self.changed:
            self._enter(self.interactions[interaction_id], queue_id)

    def dequeue(self, interaction_id: str, queue_id: QueueId) -> None:
        """The interaction leaves the queue now; it still exists."""
        with self.changed:
            self._leave(interaction_id, queue_id)

    def set_attributes(self, interaction_id: str, attributes: dict[str, str]) -> None:
        """Change attributes now: queue subscriptions and interaction watches hear of those they asked for."""
        with self.changed:
            self._change(self.interactions[interaction_id], dict(attributes))

    def pick_up(self, interaction_id: str, member_id: str = "agent") -> None:
        """An agent takes the chat now: joins (the IC System says so, when it is a member), ``Eic_UserName``
        is theirs, ``Eic_State`` C."""
        with self.changed:
            chat = self.interactions[interaction_id]
            self._play(chat, Step(0.0, "pickup", member=member_id))
            self._system_says(chat, f"{chat.member(member_id).display_name} has joined the conversation.")

    def end_chat(self, interaction_id: str, state: str = "E") -> None:
        """End the chat now as a script would: the external members leave (the IC System says so, when it
        is a member), then ``Eic_State`` becomes ``state`` (E: the customer ended it, I: the agent did)."""
        if state not in END_STATES:
            raise ValueError(f"an ended interaction's state is one of {', '.join(END_STATES)}")
        with self.changed:
            chat = self.interactions[interaction_id]
            for member in [m for m in chat.members.values() if m.chat_member_type == 4]:
                self._play(chat, Step(0.0, "leave", member=member.id))
                self._system_says(chat, f"{member.display_name} has left the conversation.")
            self._play(chat, Step(0.0, "end", state=state))

    def _system_says(self, chat: Interaction, text: str) -> None:
        if any(member.id == "system" for member in chat.scenario.members):
            self._play(chat, Step(0.0, "say", member="system", text=text))

    def start_load(
        self,
        chats: int,
        *,
        line_every: float = LINE_EVERY,
        lines: tuple[int, int] = LINES,
        seed: int | None = None,
    ) -> LoadGenerator:
        """From now on keep ``chats`` synthetic chats live in workgroup Load, each saying a line every
        ``line_every`` script seconds on average and ending after ``lines`` (fewest, most) lines, when a new
        one takes its place. Every line ends in `` @<time.time()>`` of its queueing (see :mod:`.load`)."""
        with self.changed:
            self._open_queue(LOAD, None)
            generator = LoadGenerator(self, chats, line_every=line_every, lines=lines, seed=seed)
            generator.start()
        return generator

    # ---- the ticker -----------------------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], object]) -> None:
        """Run ``action`` on the ticker thread, holding the lock, once the clock reaches ``when``."""
        with self.changed:
            due = _Due(when, next(self._order), action)
            heapq.heappush(self._due, due)
            if self._due[0] is due:
                self._wake.notify()

    def close(self) -> None:
        with self.changed:
            self.closing = True
            self.changed.notify_all()
            self._wake.notify()

    def _tick_forever(self) -> None:
        with self.changed:
            while not self.closing:
                while self._due and self._due[0].when <= self.clock() and not self.closing:
                    heapq.heappop(self._due).action()
                self._wake.wait(timeout=self._due[0].when - self.clock() if self._due else None)

    def _start(self, interaction: Interaction) -> None:
        """Start the interaction's script clock now."""
        interaction.started_at = self.clock()
        self._advance(interaction)

    def _advance(self, interaction: Interaction) -> None:
        """Play every step of the script that is due, then wait for the next one."""
        if (
            self.interactions.get(interaction.interaction_id) is not interaction
            or interaction.started_at is None
        ):
            return  # gone (deallocated for good) since this was scheduled
        script = interaction.scenario.script
        now = self.clock()
        while interaction.next_step < len(script):
            step = script[interaction.next_step]
            due = interaction.started_at + step.at / self.speed
            if due > now:
                self.at(due, functools.partial(self._advance, interaction))
                return
            interaction.next_step += 1
            self._play(interaction, step)

    def _play(self, chat: Interaction, step: Step) -> None:
        iid = chat.interaction_id
        if step.op == "say":
            line = self._line(chat, step.member, step.text, self.clock(), step.message_type)
            chat.transcript.append(line)
            self._fan_out(iid, msg.contents_message(iid, [line], delta=True))
        elif step.op == "typing":
            (chat.typing.add if step.on else chat.typing.discard)(step.member)
            self._fan_out(iid, msg.members_message(iid, chat.typing, changed=[chat.member(step.member)]))
        elif step.op == "join":
            member = chat.scenario.member(step.member)
            chat.members[member.id] = member
            self._fan_out(iid, msg.members_message(iid, chat.typing, added=[member]))
        elif step.op == "rename":
            old = chat.member(step.member)
            renamed = ScriptMember(old.id, old.user_id, step.display_name, old.chat_member_type, True)
            chat.members[old.id] = renamed
            # ICWS reports a display-name change as a second add of the same (userId, interactionId).
            self._fan_out(iid, msg.members_message(iid, chat.typing, added=[renamed]))
        elif step.op == "leave":
            member = chat.member(step.member)
            chat.members.pop(step.member, None)
            chat.typing.discard(step.member)
            self._fan_out(iid, msg.members_message(iid, chat.typing, removed=[member]))
        elif step.op == "pickup":
            member = chat.scenario.member(step.member)
            chat.members[member.id] = member
            self._fan_out(iid, msg.members_message(iid, chat.typing, added=[member]))
            connected = msg.wire_time(self.clock())
            self._change(
                chat, {"Eic_UserName": member.user_id, "Eic_State": "C", "Eic_ConnectTime": connected}
            )
        elif step.op == "end":
            self._change(chat, {"Eic_State": step.state})

    def _line(
        self, chat: Interaction, member_id: str, text: str, when: float, message_type: int
    ) -> dict[str, Any]:
        return msg.chat_text(
            chat.interaction_id, chat.member(member_id), text, msg.wire_time(when), message_type
        )

    # ---- fan-out --------------------------------------------------------------------------------------

    def _fan_out(self, iid: str, message: dict[str, Any]) -> None:
        """Queue a chat message for every subscriber; only a subscriber who is one of its members gets a
        copy of their own (CurrentUser), made once per such user."""
        members = msg.member_users(message)
        views: dict[str, dict[str, Any]] = {}
        for session in self.sessions.values():
            if iid not in session.chats:
                continue
            if session.user in members:
                if session.user not in views:
                    views[session.user] = msg.as_seen_by(message, session.user)
                session.queue.append(views[session.user])
            else:
                session.queue.append(message)
        self.changed.notify_all()

    def _change(self, interaction: Interaction, changes: dict[str, str]) -> None:
        """Set attributes; every watch of the interaction is told of the ones it asked for that changed."""
        if "Eic_State" in changes:
            changes = {**changes, "Eic_CallStateString": CALL_STATE_STRINGS.get(changes["Eic_State"], "")}
        changed = {k: v for k, v in changes.items() if interaction.attributes.get(k) != v}
        interaction.attributes.update(changed)
        iid = interaction.interaction_id
        for session in self.sessions.values():
            if iid in session.watches:
                wanted = {k: v for k, v in changed.items() if k in session.watches[iid]}
                if wanted:
                    session.queue.append(msg.interaction_changed(iid, wanted, delta=True))
            for subscription in session.queue_subscriptions.values():
                picked = subscription.pick(changed)
                if iid in subscription.shown and picked:
                    entry = msg.queue_entry(iid, picked)
                    self._send_queue(
                        session, msg.queue_contents(subscription.subscription_id, delta=True, changed=[entry])
                    )
        if changed.get("Eic_State") in END_STATES and interaction.linger is not None:
            self.at(
                self.clock() + interaction.linger / self.speed, functools.partial(self._retire, interaction)
            )
        self.changed.notify_all()

    def _enter(self, interaction: Interaction, queue_id: QueueId) -> None:
        """The interaction enters a queue: subscriptions to it with room left are told."""
        iid = interaction.interaction_id
        queue = self.queues[queue_id]
        if iid in queue.interactions:
            return
        queue.interactions[iid] = None
        for session, subscription in self._subscriptions_to(queue_id):
            if subscription.fill([iid]):
                entry = self._queue_entry(subscription, iid)
                self._send_queue(
                    session, msg.queue_contents(subscription.subscription_id, delta=True, added=[entry])
                )

    def _leave(self, iid: str, queue_id: QueueId) -> None:
        """The interaction leaves a queue: subscriptions that showed it, and have it in no other of their
        queues, are told; one with a limit shows the next interaction in its place."""
        queue = self.queues[queue_id]
        if iid not in queue.interactions:
            return
        del queue.interactions[iid]
        for session, subscription in self._subscriptions_to(queue_id):
            if iid not in subscription.shown or iid in self._in_queues(subscription):
                continue
            del subscription.shown[iid]
            moved_up = (
                subscription.fill(self._in_queues(subscription)) if subscription.limit is not None else []
            )
            message = msg.queue_contents(
                subscription.subscription_id,
                delta=True,
                added=[self._queue_entry(subscription, other) for other in moved_up],
                removed=[iid],
            )
            self._send_queue(session, message)

    def _retire(self, interaction: Interaction) -> None:
        """A made-up interaction that has ended leaves its queues, and is gone a while later."""
        if not self._exists(interaction):
            return
        for queue_id in list(self.queues):
            self._leave(interaction.interaction_id, queue_id)
        self.at(self.clock() + RETAIN_SECONDS, functools.partial(self._vanish, interaction))

    def _vanish(self, interaction: Interaction) -> None:
        """The interaction is deallocated: whoever still follows it is told; from now on its id is unknown."""
        if not self._exists(interaction):
            return
        iid = interaction.interaction_id
        for queue_id in self.queues:
            self._leave(iid, queue_id)
        for session in self.sessions.values():
            if iid in session.chats or iid in session.watches or iid in session.faulted:
                session.queue.append(msg.interaction_deallocated(iid))
            session.chats.discard(iid)
            session.faulted.discard(iid)
            session.watches.pop(iid, None)
        del self.interactions[iid]
        self.changed.notify_all()

    def _exists(self, interaction: Interaction) -> bool:
        return self.interactions.get(interaction.interaction_id) is interaction

    def _subscriptions_to(self, queue_id: QueueId) -> Iterator[tuple[SimSession, QueueSubscription]]:
        for session in self.sessions.values():
            for subscription in session.queue_subscriptions.values():
                if queue_id in subscription.queue_ids:
                    yield session, subscription

    def _in_queues(self, subscription: QueueSubscription) -> list[str]:
        """The interactions in any of the subscription's queues, each once, in queue order."""
        return list(dict.fromkeys(iid for q in subscription.queue_ids for iid in self.queues[q].interactions))

    def _queue_entry(self, subscription: QueueSubscription, iid: str) -> dict[str, Any]:
        return msg.queue_entry(iid, subscription.pick(self.interactions[iid].attributes))

    def _send_queue(self, session: SimSession, message: dict[str, Any]) -> None:
        if self.faults.omit_object_type:
            entries = [*message.get("interactionsAdded", ()), *message.get("interactionsChanged", ())]
            omitted = [
                entry for entry in entries if entry["attributes"].pop("Eic_ObjectType", None) is not None
            ]
            if omitted:
                self.inject("omitObjectType")
        session.queue.append(message)
        self.changed.notify_all()
