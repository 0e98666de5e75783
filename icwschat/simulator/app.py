"""The simulator's state and its WSGI application (werkzeug routing, requests and responses)."""

from __future__ import annotations

import base64
import collections
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

from .scenarios import Scenario, ScriptMember, Step

log = logging.getLogger("icwschat.simulator")

MEDIA_TYPE = "application/vnd.inin.icws+json"
CHAT_NS = "urn:inin.com:interactions.chat"
MEMBERS_TYPE = f"{CHAT_NS}:chatMembersMessage"
CONTENTS_TYPE = f"{CHAT_NS}:chatContentsMessage"
FULL_MEMBER_TYPE = f"{CHAT_NS}:fullChatMember"
INTERACTION_CHANGED = "urn:inin.com:interactions:interactionChangedMessage"
INTERACTION_DEALLOCATED = "urn:inin.com:interactions:interactionDeallocatedMessage"
CONNECTION_STATE_CHANGE = "urn:inin.com:connection:connectionStateChangeMessage"
AUTH_TYPE = "urn:inin.com:connection:icAuthConnectionRequestSettings"
WWW_AUTHENTICATE = 'ICWS realm="ICWS" location="/ICWS/connection"'
KEEPALIVE_SECONDS = 5.0
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


def wire_time(when: float) -> str:
    """ICWS DateTime in the basic form real servers send: ``20201029T082018Z``."""
    return datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")


@dataclass
class Faults:
    """Knobs tests (and ``/_sim/faults``) turn to make the server misbehave."""

    login_alternates: list[str] | None = None
    """When set, logins answer 503 with this ``alternateHostList``."""
    poll_failures: collections.deque[str] = field(default_factory=collections.deque)
    """Each poll takes one: ``500``, ``503``, ``truncated`` (200 with half a JSON body; the queue is kept)
    or ``truncated-dequeued`` (the same, but the messages are gone, as when a reply is cut in transit)."""
    delay: float = 0.0
    """Seconds added before every reply."""
    drop_streams_after: int | None = None
    """Close every event stream after this many events."""
    corrupt_events: int = 0
    """Send this many of the next stream events with data that is not JSON; their messages are lost."""
    withhold_snapshots: bool = False
    """Accept chat subscriptions but never send their first snapshot, as a server in trouble might."""


@dataclass
class SimSession:
    session_id: str
    user: str
    csrf: str
    cookie_value: str
    language: str
    queue: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    chats: set[str] = field(default_factory=set)
    watches: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ChatState:
    scenario: Scenario
    members: dict[str, ScriptMember] = field(default_factory=dict)
    """Present members by script id, in join order."""
    typing: set[str] = field(default_factory=set)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    state: str = "C"
    started_at: float | None = None
    next_step: int = 0


class ICWSFault(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _error(message: str, error_id: str | None = None, error_code: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if error_id:
        body["errorId"] = error_id
    if error_code is not None:
        body["errorCode"] = error_code
    return body


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
        chat = ChatState(scenario=scenario)
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

    def expire_sessions(self) -> None:
        """Forget every session, as a server restart or an idle timeout would."""
        with self.changed:
            self.sessions.clear()
            self.changed.notify_all()

    def drop_session(self, session_id: str) -> None:
        """Tell the session its connection is down (connectionStateChangeMessage), then forget it."""
        with self.changed:
            session = self.sessions.get(session_id)
            if session is None:
                return
            session.queue.append(
                {
                    "__type": CONNECTION_STATE_CHANGE,
                    "isDelta": True,
                    "previousConnectionState": 1,
                    "newConnectionState": 2,
                    "reason": "The session was ended by the server.",
                    "shouldReconnect": True,
                }
            )
            self.changed.notify_all()
        threading.Timer(0.5, self._forget, args=(session_id,)).start()

    def _forget(self, session_id: str) -> None:
        with self.changed:
            self.sessions.pop(session_id, None)
            self.changed.notify_all()

    def deallocate(self, interaction_id: str) -> None:
        with self.changed:
            for session in self.sessions.values():
                if interaction_id in session.chats or interaction_id in session.watches:
                    session.queue.append(
                        {"__type": INTERACTION_DEALLOCATED, "isDelta": True, "interactionID": interaction_id}
                    )
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
        iid = scenario.interaction_id
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
            "interactionId": chat.scenario.interaction_id,
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
                "interactionId": chat.scenario.interaction_id,
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
            "interactionId": chat.scenario.interaction_id,
            "membersAdded": [self._full_member(chat, m) for m in added or []],
            "membersChanged": [self._full_member(chat, m) for m in changed or []],
            "membersRemoved": [self._full_member(chat, m) for m in removed or []],
        }

    def _contents(self, iid: str, lines: list[dict[str, Any]], *, delta: bool) -> dict[str, Any]:
        return {"__type": CONTENTS_TYPE, "isDelta": delta, "interactionId": iid, "messagesAdded": lines}

    def _fan_out(self, iid: str, message: dict[str, Any]) -> None:
        for session in self.sessions.values():
            if iid in session.chats:
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
        if self.sim.faults.delay:
            time.sleep(self.sim.faults.delay)
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
            handler: Callable[..., Response] = getattr(self, f"on_{endpoint}")
            return handler(request, **args)
        except ICWSFault as fault:
            return self.json(fault.body, fault.status, fault.headers)
        except MethodNotAllowed:
            return self.json(
                _error("The HTTP method is not allowed.", "error.request.accessDenied.httpMethodNotAllowed"),
                405,
            )
        except NotFound:
            return self.json(_error("The resource does not exist.", "error.request.unsupported"), 404)
        except HTTPException as exc:
            return self.json(_error(exc.description or "Bad request"), exc.code or 400)

    @staticmethod
    def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(body), status=status, headers=headers, content_type=MEDIA_TYPE)

    # ---- session checks -------------------------------------------------------------------------------

    def session(self, request: Request, sid: str, *, csrf: bool = True) -> SimSession:
        unauthorized = {"WWW-Authenticate": WWW_AUTHENTICATE}
        session = self.sim.sessions.get(sid)
        if session is None:
            raise ICWSFault(401, _error("This request requires a session ID!", error_code=1), unauthorized)
        if request.cookies.get(f"icws_{sid}") != session.cookie_value:
            raise ICWSFault(
                401,
                _error(
                    "The session cookie is missing or invalid.",
                    "error.request.connection.authenticationFailure",
                    -2147221499,
                ),
                unauthorized,
            )
        if csrf and request.headers.get("ININ-ICWS-CSRF-Token") != session.csrf:
            raise ICWSFault(
                401,
                _error("An authentication token was expected in the request, but not found.", error_code=2),
                unauthorized,
            )
        return session

    # ---- connection -----------------------------------------------------------------------------------

    def on_login(self, request: Request) -> Response:
        language = request.headers.get("Accept-Language")
        if not language:
            raise ICWSFault(
                400, _error("The Accept-Language header is required.", "error.request.missingHeader")
            )
        faults = self.sim.faults
        if faults.login_alternates is not None:
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
                _error(
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
        raise ICWSFault(404, _error(f"The feature {feature} is not supported."))

    def on_connection(self, request: Request, sid: str) -> Response:
        session = self.session(request, sid)
        if request.method == "DELETE":
            with self.sim.changed:
                self.sim.sessions.pop(session.session_id, None)
                self.sim.changed.notify_all()
            return Response(status=200)
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
        with self.sim.changed:
            fault = self.sim.faults.poll_failures.popleft() if self.sim.faults.poll_failures else None
            if fault == "500":
                raise ICWSFault(500, _error("An unexpected error occurred.", error_code=-2147467259))
            if fault == "503":
                raise ICWSFault(503, _error("The server is unavailable.", "error.server.unavailable"))
            if fault == "truncated":
                return Response('[{"__type":"urn:inin.com:', status=200, content_type=MEDIA_TYPE)
            messages = list(session.queue)
            session.queue.clear()
            if fault == "truncated-dequeued":
                if messages:
                    return Response(json.dumps(messages)[:20], status=200, content_type=MEDIA_TYPE)
                self.sim.faults.poll_failures.appendleft(fault)  # nothing to lose yet: wait for messages
        return self.json(messages)

    def event_stream(self, session: SimSession, sock: socket.socket | None) -> Iterator[bytes]:
        sent = 0
        yield b": stream open\n\n"
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
                    return

    def _maybe_corrupt(self, event: bytes) -> bytes:
        with self.sim.changed:
            if self.sim.faults.corrupt_events <= 0:
                return event
            self.sim.faults.corrupt_events -= 1
        return b"data: " + event[6:26] + b"\n\n"

    @staticmethod
    def sse(message: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(message).encode() + b"\n\n"

    # ---- subscriptions --------------------------------------------------------------------------------

    def interaction(self, iid: str, *, chat: bool) -> Scenario:
        scenario = self.sim.scenarios.get(iid)
        if scenario is None:
            raise ICWSFault(404, _error("The interaction does not exist.", "error.request.notFound"))
        if not scenario.rights:
            raise ICWSFault(
                403, _error("You do not have rights to the interaction.", "error.request.accessDenied")
            )
        if chat and not scenario.is_chat:
            raise ICWSFault(
                400,
                _error(
                    "The interaction is not a chat interaction.",
                    "error.request.invalidRepresentation.invalidProperty",
                ),
            )
        return scenario

    def on_chat_subscription(self, request: Request, sid: str, iid: str) -> Response:
        session = self.session(request, sid)
        self.interaction(iid, chat=True)
        with self.sim.changed:
            if request.method == "DELETE":
                if iid not in session.chats:
                    raise ICWSFault(
                        404,
                        _error(
                            "There is no chat subscription for this interaction.", "error.request.notFound"
                        ),
                    )
                session.chats.discard(iid)
                return Response(status=204)
            chat = self.sim.chats[iid]
            if chat.started_at is None:
                chat.started_at = self.sim.clock()
            session.chats.add(iid)
            if not self.sim.faults.withhold_snapshots:
                session.queue.append(self.sim._members(chat, added=list(chat.members.values()), delta=False))
                session.queue.append(self.sim._contents(iid, list(chat.transcript), delta=False))
                self.sim.changed.notify_all()
        return Response(status=200)

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
        body = request.get_json(force=True, silent=True) or {}
        faults = self.sim.faults
        if "loginAlternates" in body:
            faults.login_alternates = body["loginAlternates"]
        if "pollFailures" in body:
            faults.poll_failures.extend(str(f) for f in body["pollFailures"])
        if "delay" in body:
            faults.delay = float(body["delay"])
        if "dropStreamsAfter" in body:
            faults.drop_streams_after = body["dropStreamsAfter"]
        if "corruptEvents" in body:
            faults.corrupt_events = int(body["corruptEvents"])
        if "withholdSnapshots" in body:
            faults.withhold_snapshots = bool(body["withholdSnapshots"])
        if body.get("expireSessions"):
            self.sim.expire_sessions()
        if "deallocate" in body:
            self.sim.deallocate(str(body["deallocate"]))
        return self.json({"ok": True})

    def on_sim_state(self, request: Request) -> Response:
        with self.sim.changed:
            return self.json(
                {
                    "sessions": {
                        sid: {"user": s.user, "chats": sorted(s.chats), "queued": len(s.queue)}
                        for sid, s in self.sim.sessions.items()
                    },
                    "chats": {
                        iid: {"state": c.state, "lines": len(c.transcript), "members": len(c.members)}
                        for iid, c in self.sim.chats.items()
                    },
                    "polls": {"answered": self.sim.polls, "mostAtOnce": self.sim.most_polls_in_flight},
                }
            )
