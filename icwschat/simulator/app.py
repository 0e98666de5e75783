"""The simulator's state and its WSGI application (werkzeug routing, requests and responses)."""

from __future__ import annotations

import base64
import collections
import functools
import json
import logging
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .faults import (
    DROP_REASON,
    FAULT_KNOBS,
    LOGIN_BODIES,
    WWW_AUTHENTICATE,
    Faults,
    ICWSFault,
    KnobError,
    error_body,
    read_drop,
    read_fault,
    read_flag,
    read_id,
    read_morph,
    status_fault,
)
from .scenarios import Scenario, ScriptMember, Step

log = logging.getLogger("icwschat.simulator")

MEDIA_TYPE = "application/vnd.inin.icws+json"
CHAT_NS = "urn:inin.com:interactions.chat"
MEMBERS_TYPE = f"{CHAT_NS}:chatMembersMessage"
CONTENTS_TYPE = f"{CHAT_NS}:chatContentsMessage"
FULL_MEMBER_TYPE = f"{CHAT_NS}:fullChatMember"
INTERACTION_CHANGED = "urn:inin.com:interactions:interactionChangedMessage"
INTERACTION_DEALLOCATED = "urn:inin.com:interactions:interactionDeallocatedMessage"
INTERACTION_MORPHED = "urn:inin.com:interactions:interactionMorphedMessage"
CONNECTION_STATE_CHANGE = "urn:inin.com:connection:connectionStateChangeMessage"
SUBSCRIPTION_STATE = "urn:inin.com:messaging:subscriptionStateMessage"
AUTH_TYPE = "urn:inin.com:connection:icAuthConnectionRequestSettings"
CURRENT_USER = 2
"""``chatMemberType`` of the member who is the session's own user (icws-protocol.md 5.1, 6b)."""
FAULTED = 3
"""``subscriptionStateMessage`` state Faulted."""
KEEPALIVE_SECONDS = 5.0
LOOP_REASON = "The server is restarting."
VERSION = {
    "majorVersion": "2015",
    "minorVersion": "1",
    "su": "0",
    "build": "icwschat-simulator",
    "productId": "ICWS simulator",
    "codebaseId": "icwschat",
    "productReleaseDisplayString": "2015 R1 (icwschat simulator)",
    "productPatchDisplayString": "",
}


def _peer_closed(sock: socket.socket | None) -> bool:
    """True when the client has closed its side: readable, yet nothing to read."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _member_users(message: dict[str, Any]) -> set[str]:
    """The userIds of the chat members a members or contents message names."""
    members = [*message.get("membersAdded", ()), *message.get("membersChanged", ())]
    members += message.get("membersRemoved", ())
    members += [line["chatMember"] for line in message.get("messagesAdded", ())]
    return {member["userId"] for member in members}


def _as_current(member: dict[str, Any], user: str) -> dict[str, Any]:
    return {**member, "chatMemberType": CURRENT_USER} if member["userId"] == user else member


def as_seen_by(message: dict[str, Any], user: str) -> dict[str, Any]:
    """A chat message as ``user``'s session receives it: their own member is CurrentUser, whatever its type
    for everyone else (icws-protocol.md 6b). A copy: the message itself may be shared."""
    view = dict(message)
    for key in ("membersAdded", "membersChanged", "membersRemoved"):
        if key in message:
            view[key] = [_as_current(member, user) for member in message[key]]
    if "messagesAdded" in message:
        view["messagesAdded"] = [
            {**line, "chatMember": _as_current(line["chatMember"], user)} for line in message["messagesAdded"]
        ]
    return view


def connection_down(reason: str, *, should_reconnect: bool) -> dict[str, Any]:
    """The connectionStateChangeMessage of a connection going from up (1) to down (2)."""
    return {
        "__type": CONNECTION_STATE_CHANGE,
        "isDelta": True,
        "previousConnectionState": 1,
        "newConnectionState": 2,
        "reason": reason,
        "shouldReconnect": should_reconnect,
    }


def no_such_interaction() -> ICWSFault:
    return ICWSFault(404, error_body("The interaction does not exist.", "error.request.notFound"))


def wire_time(when: float) -> str:
    """ICWS DateTime in the basic form real servers send: ``20201029T082018Z``."""
    return datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")


@dataclass
class SimSession:
    session_id: str
    user: str
    csrf: str
    cookie_value: str
    language: str
    queue: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    chats: set[str] = field(default_factory=set)
    faulted: set[str] = field(default_factory=set)
    """Chat subscriptions the server faulted: they deliver nothing until subscribed again."""
    watches: dict[str, list[str]] = field(default_factory=dict)
    down: dict[str, Any] | None = None
    """The connectionStateChangeMessage that ended this session, until the server forgets it."""


@dataclass
class ChatState:
    scenario: Scenario
    interaction_id: str
    """The chat's id now: the scenario's, until the interaction morphs."""
    members: dict[str, ScriptMember] = field(default_factory=dict)
    """Present members by script id, in join order."""
    typing: set[str] = field(default_factory=set)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    state: str = "C"
    started_at: float | None = None
    next_step: int = 0


class Simulator:
    """An ICWS server's state: users, sessions with their message queues, and scripted chats."""

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
        self.interactions = dict(scenarios)
        """The interactions by their current id (a morph moves one); ``scenarios`` keeps the files' ids."""
        self.chats = {iid: self._fresh_chat(s) for iid, s in scenarios.items() if s.is_chat}
        self.changed = threading.Condition()
        self.closing = False
        self.logins = 0
        self.polls = 0
        self.polls_in_flight = 0
        self.most_polls_in_flight = 0
        """The most short polls ever answered at once: more than 1 means a client let its polls overlap."""
        self._next_session = 29113001
        self._ticker = threading.Thread(target=self._tick_forever, name="sim-script", daemon=True)
        self._ticker.start()

    def _fresh_chat(self, scenario: Scenario) -> ChatState:
        chat = ChatState(scenario=scenario, interaction_id=scenario.interaction_id)
        now = self.clock()
        for member in scenario.members:
            if member.present:
                chat.members[member.id] = member
        for line in scenario.history:
            chat.transcript.append(
                self._chat_text(chat, line.member, line.text, now - line.ago, line.message_type)
            )
        return chat

    # ---- faults and inspection (the knobs tests turn) -------------------------------------------------

    def inject(self, knob: str, times: int = 1) -> None:
        """Count faults injected by ``knob`` (its camelCase name)."""
        assert knob in KNOBS, knob
        with self.changed:
            self.faults.injected[knob] += times

    def set_faults(self, body: Any) -> None:
        """Apply a ``POST /_sim/faults`` body; every key is read before any takes effect."""
        if not isinstance(body, dict):
            raise KnobError("expected a JSON object of knobs")
        fields: list[tuple[str, Any]] = []
        actions: list[Callable[[], object]] = []
        for key, value in body.items():
            if key in FAULT_KNOBS:
                fields.append(read_fault(key, value))
            elif key in ACTIONS:
                try:
                    actions.append(ACTIONS[key](self, value))
                except KnobError as exc:
                    raise KnobError(f"{key}: {exc}") from None
            else:
                raise KnobError(f"unknown knob {key!r}; knobs: {', '.join(sorted(KNOBS))}")
        with self.changed:
            for name, value in fields:
                setattr(self.faults, name, value)
            for action in actions:
                action()
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
            session.down = connection_down(reason, should_reconnect=should_reconnect)
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

    def deallocate(self, interaction_id: str) -> None:
        with self.changed:
            for session in self.sessions.values():
                if interaction_id in session.chats or interaction_id in session.watches:
                    session.queue.append(
                        {"__type": INTERACTION_DEALLOCATED, "isDelta": True, "interactionID": interaction_id}
                    )
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
            self.interactions[new_iid] = self.interactions.pop(old_iid)
            chat = self.chats.pop(old_iid, None)
            if chat is not None:
                self.chats[new_iid] = chat
                chat.interaction_id = new_iid
                # New line objects: the old ones may still sit, unsent, in session queues.
                chat.transcript = [
                    {**line, "chatMember": {**line["chatMember"], "interactionId": new_iid}}
                    for line in chat.transcript
                ]
            message = {
                "__type": INTERACTION_MORPHED,
                "isDelta": True,
                "interactionID": old_iid,
                "newInteractionID": new_iid,
            }
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
                session.queue.append(
                    {
                        "__type": SUBSCRIPTION_STATE,
                        "isDelta": True,
                        "state": FAULTED,
                        "error": error_body("The subscription has faulted."),
                    }
                )
                self.inject("faultSubscriptions")
            self.changed.notify_all()

    def say(self, interaction_id: str, member_id: str, text: str) -> None:
        """Add a chat line now, outside the script (for latency and load tests)."""
        with self.changed:
            chat = self.chats[interaction_id]
            line = self._chat_text(chat, member_id, text, self.clock(), 0)
            chat.transcript.append(line)
            self._fan_out(interaction_id, self._contents(interaction_id, [line], delta=True))

    def subscribers(self, interaction_id: str) -> list[str]:
        with self.changed:
            return [s.session_id for s in self.sessions.values() if interaction_id in s.chats]

    # ---- the script clock -----------------------------------------------------------------------------

    def close(self) -> None:
        with self.changed:
            self.closing = True
            self.changed.notify_all()

    def _tick_forever(self) -> None:
        with self.changed:
            while not self.closing:
                wait = self._play_due_steps()
                self.changed.wait(timeout=wait)

    def _play_due_steps(self) -> float | None:
        """Apply every step whose time has come; seconds until the next one (None: nothing scheduled)."""
        now = self.clock()
        upcoming: list[float] = []
        for chat in self.chats.values():
            if chat.started_at is None:
                continue
            script = chat.scenario.script
            while chat.next_step < len(script):
                step = script[chat.next_step]
                due = chat.started_at + step.at / self.speed
                if due > now:
                    upcoming.append(due - now)
                    break
                chat.next_step += 1
                self._play(chat, step)
        return min(upcoming) if upcoming else None

    def _play(self, chat: ChatState, step: Step) -> None:
        scenario = chat.scenario
        iid = chat.interaction_id
        if step.op == "say":
            line = self._chat_text(chat, step.member, step.text, self.clock(), step.message_type)
            chat.transcript.append(line)
            self._fan_out(iid, self._contents(iid, [line], delta=True))
        elif step.op == "typing":
            (chat.typing.add if step.on else chat.typing.discard)(step.member)
            member = chat.members.get(step.member) or scenario.member(step.member)
            self._fan_out(iid, self._members(chat, changed=[member]))
        elif step.op == "join":
            member = scenario.member(step.member)
            chat.members[member.id] = member
            self._fan_out(iid, self._members(chat, added=[member]))
        elif step.op == "rename":
            old = chat.members.get(step.member) or scenario.member(step.member)
            renamed = ScriptMember(old.id, old.user_id, step.display_name, old.chat_member_type, True)
            chat.members[old.id] = renamed
            # ICWS reports a display-name change as a second add of the same (userId, interactionId).
            self._fan_out(iid, self._members(chat, added=[renamed]))
        elif step.op == "leave":
            member = (
                chat.members.pop(step.member) if step.member in chat.members else scenario.member(step.member)
            )
            chat.typing.discard(step.member)
            self._fan_out(iid, self._members(chat, removed=[member]))
        elif step.op == "end":
            chat.state = "E"
            self._fan_out_watch(iid, {"Eic_State": "E"})

    # ---- ICWS message bodies --------------------------------------------------------------------------

    def _full_member(self, chat: ChatState, member: ScriptMember) -> dict[str, Any]:
        return {
            "__type": FULL_MEMBER_TYPE,
            "userId": member.user_id,
            "displayName": member.display_name,
            "interactionId": chat.interaction_id,
            "chatMemberType": member.chat_member_type,
            "isTyping": member.id in chat.typing,
        }

    @staticmethod
    def _chat_text(
        chat: ChatState, member_id: str, text: str, when: float, message_type: int
    ) -> dict[str, Any]:
        member = chat.members.get(member_id) or chat.scenario.member(member_id)
        return {
            "chatMember": {
                "userId": member.user_id,
                "displayName": member.display_name,
                "interactionId": chat.interaction_id,
                "chatMemberType": member.chat_member_type,
            },
            "text": text,
            "timestamp": wire_time(when),
            "messageType": message_type,
        }

    def _members(
        self,
        chat: ChatState,
        *,
        added: list[ScriptMember] | None = None,
        changed: list[ScriptMember] | None = None,
        removed: list[ScriptMember] | None = None,
        delta: bool = True,
    ) -> dict[str, Any]:
        return {
            "__type": MEMBERS_TYPE,
            "isDelta": delta,
            "interactionId": chat.interaction_id,
            "membersAdded": [self._full_member(chat, m) for m in added or []],
            "membersChanged": [self._full_member(chat, m) for m in changed or []],
            "membersRemoved": [self._full_member(chat, m) for m in removed or []],
        }

    def _contents(self, iid: str, lines: list[dict[str, Any]], *, delta: bool) -> dict[str, Any]:
        return {"__type": CONTENTS_TYPE, "isDelta": delta, "interactionId": iid, "messagesAdded": lines}

    def _fan_out(self, iid: str, message: dict[str, Any]) -> None:
        """Queue a chat message for every subscriber; only a subscriber who is one of its members gets a
        copy of their own (CurrentUser), made once per such user."""
        members = _member_users(message)
        views: dict[str, dict[str, Any]] = {}
        for session in self.sessions.values():
            if iid not in session.chats:
                continue
            if session.user in members:
                if session.user not in views:
                    views[session.user] = as_seen_by(message, session.user)
                session.queue.append(views[session.user])
            else:
                session.queue.append(message)
        self.changed.notify_all()

    def _fan_out_watch(self, iid: str, attributes: dict[str, str]) -> None:
        for session in self.sessions.values():
            if iid in session.watches:
                wanted = {k: v for k, v in attributes.items() if k in session.watches[iid]}
                session.queue.append(
                    {
                        "__type": INTERACTION_CHANGED,
                        "isDelta": True,
                        "interactionID": iid,
                        "attributes": wanted,
                    }
                )
        self.changed.notify_all()

    # ---- HTTP ----------------------------------------------------------------------------------------

    def wsgi(self) -> Callable[..., Any]:
        """The WSGI application; accepts any path prefix before ``/icws`` (a reverse proxy's)."""
        return _App(self)


class _App:
    url_map = Map(
        [
            Rule("/icws/connection", methods=["POST"], endpoint="login"),
            Rule("/icws/connection/version", methods=["GET"], endpoint="version"),
            Rule("/icws/connection/features", methods=["GET"], endpoint="features"),
            Rule("/icws/connection/features/<feature>", methods=["GET"], endpoint="feature"),
            Rule("/icws/<sid>/connection", methods=["GET", "DELETE"], endpoint="connection"),
            Rule("/icws/<sid>/messaging/messages", methods=["GET"], endpoint="messages"),
            Rule(
                "/icws/<sid>/messaging/subscriptions/interactions/<iid>/chat",
                methods=["PUT", "DELETE"],
                endpoint="chat_subscription",
            ),
            Rule(
                "/icws/<sid>/messaging/subscriptions/interactions/<iid>",
                methods=["PUT", "DELETE"],
                endpoint="interaction_watch",
            ),
            Rule("/_sim/faults", methods=["POST"], endpoint="sim_faults"),
            Rule("/_sim/state", methods=["GET"], endpoint="sim_state"),
        ]
    )

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        at = path.find("/icws/")
        if at > 0:
            environ["PATH_INFO"] = path[at:]
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        polling = (
            request.method == "GET"
            and request.path.endswith("/messaging/messages")
            and "text/event-stream" not in request.headers.get("Accept", "")
        )
        if not polling:
            return self.answer(request)
        with self.sim.changed:
            self.sim.polls += 1
            self.sim.polls_in_flight += 1
            self.sim.most_polls_in_flight = max(self.sim.most_polls_in_flight, self.sim.polls_in_flight)
        try:
            return self.answer(request)
        finally:
            with self.sim.changed:
                self.sim.polls_in_flight -= 1

    def answer(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            if request.path.startswith("/icws/"):
                self.misbehave(request.path)
            endpoint, args = adapter.match()
            handler: Callable[..., Response] = getattr(self, f"on_{endpoint}")
            return handler(request, **args)
        except ICWSFault as fault:
            return self.json(fault.body, fault.status, fault.headers)
        except MethodNotAllowed:
            return self.json(
                error_body(
                    "The HTTP method is not allowed.", "error.request.accessDenied.httpMethodNotAllowed"
                ),
                405,
            )
        except NotFound:
            return self.json(error_body("The resource does not exist.", "error.request.unsupported"), 404)
        except HTTPException as exc:
            return self.json(error_body(exc.description or "Bad request"), exc.code or 400)

    def misbehave(self, path: str) -> None:
        """The faults every ICWS request may meet (not the simulator's own ``/_sim`` controls)."""
        faults = self.sim.faults
        if faults.delay:
            self.sim.inject("delay")
            time.sleep(faults.delay)
        if faults.call_status is not None and not path.startswith("/icws/connection"):
            self.sim.inject("callStatus")
            raise status_fault(faults.call_status, faults.retry_after)

    @staticmethod
    def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(body), status=status, headers=headers, content_type=MEDIA_TYPE)

    # ---- session checks -------------------------------------------------------------------------------

    def session(self, request: Request, sid: str, *, csrf: bool = True) -> SimSession:
        unauthorized = {"WWW-Authenticate": WWW_AUTHENTICATE}
        session = self.sim.sessions.get(sid)
        if session is None:
            raise ICWSFault(
                401, error_body("This request requires a session ID!", error_code=1), unauthorized
            )
        if request.cookies.get(f"icws_{sid}") != session.cookie_value:
            raise ICWSFault(
                401,
                error_body(
                    "The session cookie is missing or invalid.",
                    "error.request.connection.authenticationFailure",
                    -2147221499,
                ),
                unauthorized,
            )
        if csrf and request.headers.get("ININ-ICWS-CSRF-Token") != session.csrf:
            raise ICWSFault(
                401,
                error_body(
                    "An authentication token was expected in the request, but not found.", error_code=2
                ),
                unauthorized,
            )
        return session

    # ---- connection -----------------------------------------------------------------------------------

    def on_login(self, request: Request) -> Response:
        faults = self.sim.faults
        if faults.login_status is not None:
            self.sim.inject("loginStatus")
            raise status_fault(faults.login_status, faults.retry_after, LOGIN_BODIES)
        language = request.headers.get("Accept-Language")
        if not language:
            raise ICWSFault(
                400, error_body("The Accept-Language header is required.", "error.request.missingHeader")
            )
        if faults.login_alternates is not None:
            self.sim.inject("loginAlternates")
            raise ICWSFault(
                503,
                {
                    "alternateHostList": faults.login_alternates,
                    "errorId": "error.server.notAcceptingConnections",
                    "message": "This Session Manager is not currently accepting connections.",
                },
            )
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict) or body.get("__type") != AUTH_TYPE:
            raise ICWSFault(
                400,
                {
                    "__type": "urn:inin.com:common:missingPropertyError",
                    "propertyName": "__type",
                    "message": "The request body is not an icAuthConnectionRequestSettings.",
                },
            )
        for name in ("applicationName", "userID", "password"):
            if not isinstance(body.get(name), str):
                raise ICWSFault(
                    400,
                    {
                        "__type": "urn:inin.com:common:missingPropertyError",
                        "propertyName": name,
                        "message": f"The property {name} is required.",
                    },
                )
        user = body["userID"]
        if self.sim.users.get(user) != body["password"]:
            raise ICWSFault(
                400,
                error_body(
                    "The authentication process failed.",
                    "error.request.connection.authenticationFailure",
                    -2147221503,
                ),
            )
        with self.sim.changed:
            sid = str(self.sim._next_session)
            self.sim._next_session += 1000
            token = f"{user}|{body['applicationName']}|{uuid.uuid4()}|127.0.0.1"
            session = SimSession(
                session_id=sid,
                user=user,
                csrf=base64.b64encode(token.encode()).decode(),
                cookie_value=f"{uuid.uuid4()}|languageId={language}",
                language=language,
            )
            self.sim.sessions[sid] = session
            self.sim.logins += 1
        include = set(request.args.get("include", "").split(","))
        reply: dict[str, Any] = {
            "sessionId": sid,
            "csrfToken": session.csrf,
            "alternateHostList": self.sim.alternate_hosts,
            "icServer": "SIMCIC",
            "userID": user,
            "userDisplayName": user.replace(".", " ").title(),
            "daysUntilPasswordExpiration": 42,
        }
        if "features" in include:
            reply["features"] = self.feature_list()
        if "version" in include:
            reply["version"] = VERSION
        response = self.json(reply, 201)
        response.headers["ININ-ICWS-Session-ID"] = sid
        response.headers["ININ-ICWS-CSRF-Token"] = session.csrf
        response.headers["Location"] = f"/icws/{sid}/connection"
        response.headers["Set-Cookie"] = f"icws_{sid}={session.cookie_value}; Path=/icws/{sid}; HttpOnly"
        return response

    def feature_list(self) -> list[dict[str, Any]]:
        return [
            {"featureId": "connection", "version": 11},
            {"featureId": "messaging", "version": self.sim.messaging_version},
            {"featureId": "interactions", "version": 14},
        ]

    def on_version(self, request: Request) -> Response:
        return self.json(VERSION)

    def on_features(self, request: Request) -> Response:
        return self.json({"featureInfoList": self.feature_list()})

    def on_feature(self, request: Request, feature: str) -> Response:
        for item in self.feature_list():
            if item["featureId"] == feature:
                return self.json(item)
        raise ICWSFault(404, error_body(f"The feature {feature} is not supported."))

    def on_connection(self, request: Request, sid: str) -> Response:
        session = self.session(request, sid)
        if request.method == "DELETE":
            with self.sim.changed:
                self.sim.sessions.pop(session.session_id, None)
                self.sim.changed.notify_all()
            return Response(status=200)
        if session.down is not None:
            down = session.down
            return self.json(
                {"connectionState": 2, "reason": down["reason"], "shouldReconnect": down["shouldReconnect"]}
            )
        # What shouldReconnect says while the connection is up is not documented; only a down state's is used.
        return self.json({"connectionState": 1, "reason": "", "shouldReconnect": False})

    # ---- messaging ------------------------------------------------------------------------------------

    def on_messages(self, request: Request, sid: str) -> Response:
        session = self.session(request, sid, csrf=False)
        wants_stream = "text/event-stream" in request.headers.get("Accept", "")
        if wants_stream and self.sim.messaging_version >= 2:
            return Response(
                self.event_stream(session, request.environ.get("werkzeug.socket")),
                content_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
                direct_passthrough=True,
            )
        faults = self.sim.faults
        with self.sim.changed:
            if faults.down_every_poll:
                self.sim.inject("downEveryPoll")
                return self.json([connection_down(LOOP_REASON, should_reconnect=True)])
            fault = faults.poll_failures.popleft() if faults.poll_failures else None
            if fault in ("500", "503", "429"):
                self.sim.inject("pollFailures")
                raise status_fault(int(fault), faults.retry_after)
            if fault == "down":
                self.sim.inject("pollFailures")
                return self.json([connection_down(LOOP_REASON, should_reconnect=True)])
            if fault == "truncated":
                self.sim.inject("pollFailures")
                return Response('[{"__type":"urn:inin.com:', status=200, content_type=MEDIA_TYPE)
            messages = list(session.queue)
            session.queue.clear()
            if fault == "truncated-dequeued":
                if messages:
                    self.sim.inject("pollFailures")
                    return Response(json.dumps(messages)[:20], status=200, content_type=MEDIA_TYPE)
                faults.poll_failures.appendleft(fault)  # nothing to lose yet: wait for messages
        return self.json(messages)

    def event_stream(self, session: SimSession, sock: socket.socket | None) -> Iterator[bytes]:
        yield b": stream open\n\n"
        if self.sim.faults.down_every_poll:
            self.sim.inject("downEveryPoll")
            yield self.sse(connection_down(LOOP_REASON, should_reconnect=True))
            return
        sent = 0
        while True:
            with self.sim.changed:
                if not session.queue:
                    self.sim.changed.wait(timeout=KEEPALIVE_SECONDS)
                if _peer_closed(sock):
                    # A stream the client has left must not take messages meant for its next request;
                    # the server would otherwise find out only when writing them into the void.
                    return
                if self.sim.closing or self.sim.sessions.get(session.session_id) is not session:
                    batch = list(session.queue)
                    session.queue.clear()
                    yield b"".join(self.sse(m) for m in batch)
                    return
                batch = list(session.queue)
                session.queue.clear()
            if not batch:
                yield b":ping\n\n"
                continue
            for position, message in enumerate(batch, start=1):
                yield self._maybe_corrupt(self.sse(message))
                sent += 1
                limit = self.sim.faults.drop_streams_after
                if limit is not None and sent >= limit:
                    with self.sim.changed:
                        session.queue.extendleft(reversed(batch[position:]))
                        self.sim.inject("dropStreamsAfter")
                    return

    def _maybe_corrupt(self, event: bytes) -> bytes:
        with self.sim.changed:
            if self.sim.faults.corrupt_events <= 0:
                return event
            self.sim.faults.corrupt_events -= 1
            self.sim.inject("corruptEvents")
        return b"data: " + event[6:26] + b"\n\n"

    @staticmethod
    def sse(message: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(message).encode() + b"\n\n"

    # ---- subscriptions --------------------------------------------------------------------------------

    def interaction(self, iid: str, *, chat: bool) -> Scenario:
        scenario = self.sim.interactions.get(iid)
        if scenario is None:
            raise no_such_interaction()
        if not scenario.rights:
            raise ICWSFault(
                403, error_body("You do not have rights to the interaction.", "error.request.accessDenied")
            )
        if chat and not scenario.is_chat:
            raise ICWSFault(
                400,
                error_body(
                    "The interaction is not a chat interaction.",
                    "error.request.invalidRepresentation.invalidProperty",
                ),
            )
        return scenario

    def on_chat_subscription(self, request: Request, sid: str, iid: str) -> Response:
        session = self.session(request, sid)
        self.interaction(iid, chat=True)
        if request.method == "DELETE":
            return self.unsubscribe(session, iid)
        faults = self.sim.faults
        if faults.subscribe_delay:
            self.sim.inject("subscribeDelay")
            time.sleep(faults.subscribe_delay)
        with self.sim.changed:
            chat = self.sim.chats.get(iid)
            if chat is None:  # morphed while this PUT waited
                raise no_such_interaction()
            if chat.started_at is None:
                chat.started_at = self.sim.clock()
            session.faulted.discard(iid)
            session.chats.add(iid)
            if faults.withhold_snapshots:
                self.sim.inject("withholdSnapshots")
                return Response(status=200)
            members = self.sim._members(chat, added=list(chat.members.values()), delta=False)
            session.queue.append(as_seen_by(members, session.user))
            if faults.withhold_contents:
                self.sim.inject("withholdContents")
            else:
                contents = self.sim._contents(iid, list(chat.transcript), delta=False)
                session.queue.append(as_seen_by(contents, session.user))
            self.sim.changed.notify_all()
        return Response(status=200)

    def unsubscribe(self, session: SimSession, iid: str) -> Response:
        with self.sim.changed:
            if iid not in session.chats and iid not in session.faulted:
                raise ICWSFault(
                    404,
                    error_body(
                        "There is no chat subscription for this interaction.", "error.request.notFound"
                    ),
                )
            session.chats.discard(iid)
            session.faulted.discard(iid)
        return Response(status=204)

    def on_interaction_watch(self, request: Request, sid: str, iid: str) -> Response:
        session = self.session(request, sid)
        scenario = self.interaction(iid, chat=False)
        with self.sim.changed:
            if request.method == "DELETE":
                session.watches.pop(iid, None)
                return Response(status=204)
            body = request.get_json(force=True, silent=True)
            names = body.get("attributeNames") if isinstance(body, dict) else None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ICWSFault(
                    400,
                    {
                        "__type": "urn:inin.com:common:missingPropertyError",
                        "propertyName": "attributeNames",
                        "message": "The property attributeNames is required.",
                    },
                )
            session.watches[iid] = names
            chat = self.sim.chats.get(iid)
            values = {
                "Eic_State": chat.state if chat else "C",
                "Eic_RemoteName": scenario.title,
                "Eic_CallStateString": "Connected" if (chat is None or chat.state == "C") else "Disconnected",
            }
            session.queue.append(
                {
                    "__type": INTERACTION_CHANGED,
                    "isDelta": False,
                    "interactionID": iid,
                    "attributes": {k: v for k, v in values.items() if k in names},
                }
            )
            self.sim.changed.notify_all()
        return Response(status=204)

    # ---- simulator controls ---------------------------------------------------------------------------

    def on_sim_faults(self, request: Request) -> Response:
        try:
            self.sim.set_faults(request.get_json(force=True, silent=True))
        except KnobError as exc:
            raise ICWSFault(400, error_body(str(exc))) from None
        return self.json({"ok": True})

    def on_sim_state(self, request: Request) -> Response:
        with self.sim.changed:
            return self.json(
                {
                    "sessions": {
                        sid: {
                            "user": s.user,
                            "chats": sorted(s.chats),
                            "faulted": sorted(s.faulted),
                            "queued": len(s.queue),
                            "down": s.down is not None,
                        }
                        for sid, s in self.sim.sessions.items()
                    },
                    "chats": {
                        iid: {"state": c.state, "lines": len(c.transcript), "members": len(c.members)}
                        for iid, c in self.sim.chats.items()
                    },
                    "polls": {"answered": self.sim.polls, "mostAtOnce": self.sim.most_polls_in_flight},
                    "faults": dict(self.sim.faults.injected),
                }
            )


def _unless_off(on: bool, action: Callable[[], object]) -> Callable[[], object]:
    return action if on else (lambda: None)


ACTIONS: dict[str, Callable[[Simulator, Any], Callable[[], object]]] = {
    "expireSessions": lambda sim, value: _unless_off(read_flag(value), sim.expire_sessions),
    "faultSubscriptions": lambda sim, value: _unless_off(read_flag(value), sim.fault_subscriptions),
    "deallocate": lambda sim, value: functools.partial(sim.deallocate, read_id(value)),
    "dropSessions": lambda sim, value: functools.partial(sim.drop_sessions, **read_drop(value)),
    "morph": lambda sim, value: functools.partial(sim.morph, *read_morph(value)),
}
"""``POST /_sim/faults`` keys that act once rather than set a :class:`Faults` field: each reads its value
and returns the action, so a body with one bad key changes nothing."""
KNOBS = frozenset(FAULT_KNOBS) | frozenset(ACTIONS)
"""Every ``POST /_sim/faults`` key; also the keys of :attr:`Faults.injected`."""
