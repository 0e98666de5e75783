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
    not_found,
    read_knobs,
)
from .scenarios import Scenario, ScriptMember, Step

log = logging.getLogger("icwschat.simulator")

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
    ) -> None:
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
        self.interactions: dict[str, Interaction] = {}
        """The interactions by their current id (a morph moves one); ``scenarios`` keeps the files' ids."""
        now = self.clock()
        for scenario in scenarios.values():
            self._add(scenario, self._initial_attributes(scenario, now))
        self._ticker = threading.Thread(target=self._tick_forever, name="sim-script", daemon=True)
        self._ticker.start()

    @property
    def chats(self) -> dict[str, Interaction]:
        """The chat interactions by their current id."""
        return {iid: i for iid, i in self.interactions.items() if i.scenario.is_chat}

    def _initial_attributes(self, scenario: Scenario, now: float) -> dict[str, str]:
        started = msg.wire_time(now - max((line.ago for line in scenario.history), default=0.0))
        return {
            "Eic_ObjectType": scenario.kind.capitalize(),
            "Eic_State": "C",
            "Eic_RemoteName": remote_name(scenario),
            "Eic_UserName": "",
            "Eic_WorkgroupName": "",
            "Eic_InitiationTime": started,
            "Eic_ConnectTime": started,
        }

    def _add(self, scenario: Scenario, attributes: dict[str, str]) -> Interaction:
        iid = scenario.interaction_id
        attributes = {**attributes, "Eic_InteractionId": iid}
        attributes["Eic_CallStateString"] = CALL_STATE_STRINGS.get(attributes["Eic_State"], "")
        interaction = Interaction(scenario=scenario, interaction_id=iid, attributes=attributes)
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
                    }
                    for sid, s in self.sessions.items()
                },
                "chats": {
                    iid: {"state": c.state, "lines": len(c.transcript), "members": len(c.members)}
                    for iid, c in self.chats.items()
                },
                "polls": {"answered": self.polls, "mostAtOnce": self.most_polls_in_flight},
                "faults": dict(self.faults.injected),
            }

    # ---- chats now (for tests) ------------------------------------------------------------------------

    def say(self, interaction_id: str, member_id: str, text: str) -> None:
        """Add a chat line now, outside the script (for latency and load tests)."""
        with self.changed:
            chat = self.interactions[interaction_id]
            self._play(chat, Step(0.0, "say", member=member_id, text=text))

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
        elif step.op == "end":
            self._change(chat, {"Eic_State": "E"})

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
        self.changed.notify_all()
