"""The simulator's WSGI application: werkzeug routing, reading requests and writing responses.

What a request does to the server is a public operation of :class:`~.state.Simulator`; this module checks
the session (cookie, CSRF token), reads bodies, and turns outcomes and :class:`ICWSFault` into HTTP.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .faults import (
    LOGIN_BODIES,
    WWW_AUTHENTICATE,
    ICWSFault,
    KnobError,
    error_body,
    invalid_property,
    missing_property,
    status_fault,
)
from .messages import connection_down
from .queues import QUEUE_TYPES, QueueId
from .state import SimSession, Simulator

MEDIA_TYPE = "application/vnd.inin.icws+json"
AUTH_TYPE = "urn:inin.com:connection:icAuthConnectionRequestSettings"
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


def sse(message: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(message).encode() + b"\n\n"


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type=MEDIA_TYPE)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_queue_ids(value: Any) -> list[QueueId]:
    """``queueIds``: required, at least one ``{"queueType": 0-3, "queueName": "..."}``."""
    if value is None or value == []:
        raise missing_property("queueIds")
    if not isinstance(value, list):
        raise invalid_property("queueIds", "The property queueIds must be a list of queue ids.")
    queue_ids: list[QueueId] = []
    for item in value:
        if not isinstance(item, dict):
            raise invalid_property("queueIds", "Every queue id must be an object.")
        queue_type, name = item.get("queueType"), item.get("queueName")
        if not _is_int(queue_type) or queue_type not in QUEUE_TYPES:
            kinds = ", ".join(f"{number} ({kind})" for number, kind in QUEUE_TYPES.items())
            raise invalid_property("queueIds", f"The queueType must be one of {kinds}.")
        if not name:
            raise missing_property("queueName")
        if not isinstance(name, str):
            raise invalid_property("queueIds", "The queueName must be a string.")
        queue_ids.append(QueueId(queue_type, name))
    return queue_ids


def read_attribute_names(value: Any) -> list[str]:
    """``attributeNames``: required, at least one name."""
    if value is None or value == []:
        raise missing_property("attributeNames")
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise invalid_property("attributeNames", "The property attributeNames must be a list of strings.")
    return value


def read_result_limit(value: Any) -> int | None:
    """``queueResultLimit`` (optional): ``{"limitCount": n, "resultOrder"?: ...}``; the order is not kept."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_property("queueResultLimit", "The property queueResultLimit must be an object.")
    count = value.get("limitCount")
    if count is None:
        raise missing_property("limitCount")
    if not _is_int(count) or count < 0:
        raise invalid_property("limitCount", "The limitCount must be a whole number >= 0.")
    limit: int = count
    return limit


class Routes:
    """The WSGI application of one :class:`Simulator`; accepts any path prefix before ``/icws`` (a reverse
    proxy's)."""

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
            Rule(
                "/icws/<sid>/messaging/subscriptions/queues/<subscription_id>",
                methods=["PUT", "DELETE"],
                endpoint="queue_subscription",
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
        with self.sim.counting_poll():
            return self.answer(request)

    def answer(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            if request.path.startswith("/icws/"):
                self.misbehave(request.path)
            endpoint, args = adapter.match()
            handler: Callable[..., Response] = getattr(self, f"on_{endpoint}")
            return handler(request, **args)
        except ICWSFault as fault:
            return reply(fault.body, fault.status, fault.headers)
        except MethodNotAllowed:
            return reply(
                error_body(
                    "The HTTP method is not allowed.", "error.request.accessDenied.httpMethodNotAllowed"
                ),
                405,
            )
        except NotFound:
            return reply(error_body("The resource does not exist.", "error.request.unsupported"), 404)
        except HTTPException as exc:
            return reply(error_body(exc.description or "Bad request"), exc.code or 400)

    def misbehave(self, path: str) -> None:
        """The faults every ICWS request may meet (not the simulator's own ``/_sim`` controls)."""
        faults = self.sim.faults
        if faults.delay:
            self.sim.inject("delay")
            time.sleep(faults.delay)
        if faults.call_status is not None and not path.startswith("/icws/connection"):
            self.sim.inject("callStatus")
            raise status_fault(faults.call_status, faults.retry_after)

    # ---- session checks -------------------------------------------------------------------------------

    def session(self, request: Request, sid: str, *, csrf: bool = True) -> SimSession:
        unauthorized = {"WWW-Authenticate": WWW_AUTHENTICATE}
        session = self.sim.session(sid)
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
            raise missing_property("__type", "The request body is not an icAuthConnectionRequestSettings.")
        for name in ("applicationName", "userID", "password"):
            if not isinstance(body.get(name), str):
                raise missing_property(name)
        user = body["userID"]
        session = self.sim.open_session(user, body["password"], body["applicationName"], language)
        sid = session.session_id
        include = set(request.args.get("include", "").split(","))
        answer: dict[str, Any] = {
            "sessionId": sid,
            "csrfToken": session.csrf,
            "alternateHostList": self.sim.alternate_hosts,
            "icServer": "SIMCIC",
            "userID": user,
            "userDisplayName": user.replace(".", " ").title(),
            "daysUntilPasswordExpiration": 42,
        }
        if "features" in include:
            answer["features"] = self.feature_list()
        if "version" in include:
            answer["version"] = VERSION
        response = reply(answer, 201)
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
        return reply(VERSION)

    def on_features(self, request: Request) -> Response:
        return reply({"featureInfoList": self.feature_list()})

    def on_feature(self, request: Request, feature: str) -> Response:
        for item in self.feature_list():
            if item["featureId"] == feature:
                return reply(item)
        raise ICWSFault(404, error_body(f"The feature {feature} is not supported."))

    def on_connection(self, request: Request, sid: str) -> Response:
        session = self.session(request, sid)
        if request.method == "DELETE":
            self.sim.close_session(session)
            return Response(status=200)
        down = session.down
        if down is not None:
            return reply(
                {"connectionState": 2, "reason": down["reason"], "shouldReconnect": down["shouldReconnect"]}
            )
        # What shouldReconnect says while the connection is up is not documented; only a down state's is used.
        return reply({"connectionState": 1, "reason": "", "shouldReconnect": False})

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
        fault, messages = self.sim.poll(session)
        if fault in ("500", "503", "429"):
            raise status_fault(int(fault), self.sim.faults.retry_after)
        if fault in ("down", "downEveryPoll"):
            return reply([connection_down(LOOP_REASON, should_reconnect=True)])
        if fault == "truncated":
            return Response('[{"__type":"urn:inin.com:', status=200, content_type=MEDIA_TYPE)
        if fault == "truncated-dequeued":
            return Response(json.dumps(messages)[:20], status=200, content_type=MEDIA_TYPE)
        return reply(messages)

    def event_stream(self, session: SimSession, sock: socket.socket | None) -> Iterator[bytes]:
        yield b": stream open\n\n"
        if self.sim.stream_opened():
            yield sse(connection_down(LOOP_REASON, should_reconnect=True))
            return
        sent = 0
        while True:
            live = self.sim.wait_for_messages(session, KEEPALIVE_SECONDS)
            if _peer_closed(sock):
                # A stream the client has left must not take messages meant for its next request;
                # the server would otherwise find out only when writing them into the void.
                return
            batch = self.sim.take_messages(session)
            if not live:
                yield b"".join(sse(m) for m in batch)
                return
            if not batch:
                yield b":ping\n\n"
                continue
            for position, message in enumerate(batch, start=1):
                event = sse(message)
                yield (b"data: " + event[6:26] + b"\n\n") if self.sim.corrupt_next_event() else event
                sent += 1
                if self.sim.stream_sent(session, sent, batch[position:]):
                    return

    # ---- subscriptions --------------------------------------------------------------------------------

    def on_chat_subscription(self, request: Request, sid: str, iid: str) -> Response:
        session = self.session(request, sid)
        if request.method == "DELETE":
            self.sim.unsubscribe_chat(session, iid)
            return Response(status=204)
        self.sim.subscribe_chat(session, iid)
        return Response(status=200)

    def on_interaction_watch(self, request: Request, sid: str, iid: str) -> Response:
        session = self.session(request, sid)
        self.sim.interaction(iid, chat=False)
        if request.method == "DELETE":
            self.sim.unwatch_interaction(session, iid)
            return Response(status=204)
        body = request.get_json(force=True, silent=True)
        names = body.get("attributeNames") if isinstance(body, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise missing_property("attributeNames")
        self.sim.watch_interaction(session, iid, names)
        return Response(status=204)

    def on_queue_subscription(self, request: Request, sid: str, subscription_id: str) -> Response:
        # 200 for PUT and 204 for DELETE are what one consumer expects (icws-protocol.md 6a; inferred).
        session = self.session(request, sid)
        if request.method == "DELETE":
            self.sim.unsubscribe_queue(session, subscription_id)
            return Response(status=204)
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise missing_property("queueIds", "The request body must be a queue subscription object.")
        self.sim.subscribe_queue(
            session,
            subscription_id,
            read_queue_ids(body.get("queueIds")),
            read_attribute_names(body.get("attributeNames")),
            read_result_limit(body.get("queueResultLimit")),
        )
        return Response(status=200)

    # ---- simulator controls ---------------------------------------------------------------------------

    def on_sim_faults(self, request: Request) -> Response:
        try:
            self.sim.set_faults(request.get_json(force=True, silent=True))
        except KnobError as exc:
            raise ICWSFault(400, error_body(str(exc))) from None
        return reply({"ok": True})

    def on_sim_state(self, request: Request) -> Response:
        return reply(self.sim.describe())
