"""The simulator's fault knobs and the ICWS error replies it answers with when one is turned.

Each knob is a :class:`Faults` field; its ``POST /_sim/faults`` key is the field name in camelCase, and the
field's metadata says how that key's JSON value is read. Nothing else lists the knobs, so the dataclass, the
HTTP API and the injected-fault counter cannot drift apart.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

WWW_AUTHENTICATE = 'ICWS realm="ICWS" location="/ICWS/connection"'
DROP_REASON = "The session was ended by the server."
POLL_FAILURES = ("500", "503", "429", "truncated", "truncated-dequeued", "down")
INVALID_PROPERTY = "error.request.invalidRepresentation.invalidProperty"
ACCESS_DENIED = "error.request.accessDenied"


class ICWSFault(Exception):
    """An ICWS error reply: status, ``urn:inin.com:common:error`` body, extra headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class KnobError(ValueError):
    """A ``POST /_sim/faults`` body the simulator cannot apply; names the key."""


def error_body(message: str, error_id: str | None = None, error_code: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if error_id:
        body["errorId"] = error_id
    if error_code is not None:
        body["errorCode"] = error_code
    return body


def missing_property(name: str, message: str | None = None) -> ICWSFault:
    """400 ``missingPropertyError`` (icws-protocol.md 7): a required body property is absent or empty."""
    return ICWSFault(
        400,
        {
            "__type": "urn:inin.com:common:missingPropertyError",
            "propertyName": name,
            "message": message or f"The property {name} is required.",
        },
    )


def invalid_property(name: str, message: str, error_id: str = INVALID_PROPERTY) -> ICWSFault:
    """400 ``invalidPropertyError`` (icws-protocol.md 7): a body property the server cannot use."""
    return ICWSFault(
        400,
        {
            "__type": "urn:inin.com:common:invalidPropertyError",
            "propertyName": name,
            "errorId": error_id,
            "message": message,
        },
    )


def not_found(message: str) -> ICWSFault:
    return ICWSFault(404, error_body(message, "error.request.notFound"))


# Bodies a real server is documented to send with these statuses (icws-protocol.md 3, 7); any other status
# gets a message only. No ICWS source shows a 429 body, so it carries no errorId.
_STATUS_BODIES: dict[int, dict[str, Any]] = {
    401: error_body("This request requires a session ID!", error_code=1),
    403: error_body("You do not have rights to this resource.", "error.request.accessDenied"),
    404: error_body("The resource does not exist.", "error.request.notFound"),
    410: error_body("This resource has been deprecated and removed from the API."),
    429: error_body("Too many requests; try again later."),
    500: error_body("An unexpected error occurred.", error_code=-2147467259),
    503: {
        "alternateHostList": [],
        "errorId": "error.server.unavailable",
        "message": "The server is unavailable.",
    },
}
LOGIN_BODIES: dict[int, dict[str, Any]] = {
    400: error_body(
        "The authentication process failed.", "error.request.connection.authenticationFailure", -2147221503
    ),
}
"""What a login answers instead, where it differs from a session call (a 400 is bad credentials)."""


def retry_after_header(seconds: float) -> str:
    """Whole seconds as HTTP's delta-seconds; a fraction is kept (``0.5``) for fast tests, though RFC 9110
    allows digits only, so a strict client may ignore it."""
    return f"{seconds:g}"


def status_fault(
    status: int, retry_after: float, bodies: Mapping[int, dict[str, Any]] = _STATUS_BODIES
) -> ICWSFault:
    """The reply a server in trouble gives with ``status``: the body ICWS sends with it, and the headers
    (``WWW-Authenticate`` with 401 as on every ICWS 401, ``Retry-After`` with 429)."""
    body = bodies.get(status) or _STATUS_BODIES.get(status) or error_body(_phrase(status))
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    if status == 429:
        headers["Retry-After"] = retry_after_header(retry_after)
    return ICWSFault(status, dict(body), headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "The request failed."


# ---- reading knob values (each returns the field's new value or raises KnobError) -------------------


def read_flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise KnobError("expected true or false")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise KnobError("expected a number of seconds >= 0")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise KnobError("expected a whole number >= 0")
    return value


def _optional_count(value: Any) -> int | None:
    return None if value is None else _count(value)


def _optional_status(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise KnobError("expected an HTTP error status (400-599) or null")
    return value


def _optional_hosts(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise KnobError("expected a list of host names or null")
    return value


def _poll_failures(value: Any) -> collections.deque[str]:
    if not isinstance(value, list) or not all(str(f) in POLL_FAILURES for f in value):
        raise KnobError(f"expected a list of {', '.join(POLL_FAILURES)}")
    return collections.deque(str(f) for f in value)


def read_id(value: Any) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
        raise KnobError("expected an interaction id")
    return str(value)


def read_drop(value: Any) -> dict[str, Any]:
    """``{"shouldReconnect": bool, "reason": str}``, both optional: what the down message says; as the
    keyword arguments of ``Simulator.drop_sessions``."""
    if not isinstance(value, dict) or not set(value) <= {"shouldReconnect", "reason"}:
        raise KnobError('expected {"shouldReconnect": true|false, "reason": "..."}')
    reason = value.get("reason", DROP_REASON)
    if not isinstance(reason, str):
        raise KnobError("reason: expected a string")
    return {"should_reconnect": read_flag(value.get("shouldReconnect", True)), "reason": reason}


def read_morph(value: Any) -> tuple[str, str]:
    """``{"from": old id, "to": new id}``."""
    if not isinstance(value, dict) or set(value) != {"from", "to"}:
        raise KnobError('expected {"from": "<interaction id>", "to": "<new interaction id>"}')
    return read_id(value["from"]), read_id(value["to"])


def _knob(read: Callable[[Any], Any]) -> dict[str, Any]:
    """Field metadata: how ``POST /_sim/faults`` reads the knob's value."""
    return {"read": read}


@dataclass
class Faults:
    """Knobs tests (and ``POST /_sim/faults``, keys in camelCase) turn to make the server misbehave.

    Every fault injected is counted in :attr:`injected` under its knob's camelCase name.
    """

    login_alternates: list[str] | None = field(default=None, metadata=_knob(_optional_hosts))
    """When set, logins answer 503 with this ``alternateHostList``."""
    login_status: int | None = field(default=None, metadata=_knob(_optional_status))
    """When set, every login answers this status with an ICWS error body."""
    call_status: int | None = field(default=None, metadata=_knob(_optional_status))
    """When set, every session call (any path under ``/icws/{sid}/``, polls and streams too) answers it."""
    retry_after: float = field(default=1.0, metadata=_knob(_seconds))
    """The ``Retry-After`` seconds sent with every 429."""
    poll_failures: collections.deque[str] = field(
        default_factory=collections.deque, metadata=_knob(_poll_failures)
    )
    """Each poll takes one: ``500``, ``503``, ``429``, ``truncated`` (200 with half a JSON body; the queue is
    kept), ``truncated-dequeued`` (the same, but the messages are gone, as when a reply is cut in transit) or
    ``down`` (200 with a connectionStateChangeMessage down, shouldReconnect true; session and queue kept)."""
    down_every_poll: bool = field(default=False, metadata=_knob(read_flag))
    """Every poll answers a down connectionStateChangeMessage, and every event stream sends one and closes:
    a server stuck in a loop. Sessions and queues are kept."""
    delay: float = field(default=0.0, metadata=_knob(_seconds))
    """Seconds added before every ``/icws`` reply."""
    drop_streams_after: int | None = field(default=None, metadata=_knob(_optional_count))
    """Close every event stream after this many events."""
    corrupt_events: int = field(default=0, metadata=_knob(_count))
    """Send this many of the next stream events with data that is not JSON; their messages are lost."""
    withhold_snapshots: bool = field(default=False, metadata=_knob(read_flag))
    """Accept chat subscriptions but never send their first snapshot, as a server in trouble might."""
    withhold_contents: bool = field(default=False, metadata=_knob(read_flag))
    """Chat subscriptions send the members snapshot but no contents snapshot; deltas still flow."""
    subscribe_delay: float = field(default=0.0, metadata=_knob(_seconds))
    """A chat subscription PUT waits this long before it registers the subscription and answers, so a DELETE
    sent meanwhile finds nothing to remove, as on a slow server."""
    queue_result_limit: int | None = field(default=None, metadata=_knob(_optional_count))
    """When set, every queue subscription shows at most this many interactions (less if it asks for less),
    with ``queueResultLimitExceeded: true`` when the queue holds more."""
    omit_object_type: bool = field(default=False, metadata=_knob(read_flag))
    """Queue messages leave out ``Eic_ObjectType``: a client must find out some other way what is a chat."""
    injected: collections.Counter[str] = field(default_factory=collections.Counter)
    """Faults injected so far, by knob name (camelCase): one per delayed reply, failed poll, stream closed
    early, corrupted event, dropped session, ..."""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


FAULT_KNOBS: dict[str, dataclasses.Field[Any]] = {
    camel(f.name): f for f in dataclasses.fields(Faults) if "read" in f.metadata
}
"""The settable fields of :class:`Faults`, by their ``POST /_sim/faults`` key."""


def read_fault(key: str, value: Any) -> tuple[str, Any]:
    """(field name, new value) for one ``POST /_sim/faults`` key that sets a :class:`Faults` field."""
    knob = FAULT_KNOBS[key]
    try:
        return knob.name, knob.metadata["read"](value)
    except KnobError as exc:
        raise KnobError(f"{key}: {exc}") from None


Call = tuple[str, tuple[Any, ...], dict[str, Any]]
"""A :class:`Simulator` method to call once, by name, with its arguments."""


def _if_on(method: str) -> Callable[[Any], Call | None]:
    return lambda value: (method, (), {}) if read_flag(value) else None


ACTIONS: dict[str, Callable[[Any], Call | None]] = {
    "expireSessions": _if_on("expire_sessions"),
    "faultSubscriptions": _if_on("fault_subscriptions"),
    "deallocate": lambda value: ("deallocate", (read_id(value),), {}),
    "dropSessions": lambda value: ("drop_sessions", (), read_drop(value)),
    "morph": lambda value: ("morph", read_morph(value), {}),
}
"""``POST /_sim/faults`` keys that act once rather than set a :class:`Faults` field: each reads its value
into the call to make (None: nothing to do)."""
KNOBS = frozenset(FAULT_KNOBS) | frozenset(ACTIONS)
"""Every ``POST /_sim/faults`` key; also the keys of :attr:`Faults.injected`."""


def read_knobs(body: Any) -> tuple[list[tuple[str, Any]], list[Call]]:
    """A whole ``POST /_sim/faults`` body, read before any of it takes effect, so that one bad key changes
    nothing: the :class:`Faults` fields to set and the calls to make. KnobError names the bad key."""
    if not isinstance(body, dict):
        raise KnobError("expected a JSON object of knobs")
    fields: list[tuple[str, Any]] = []
    calls: list[Call] = []
    for key, value in body.items():
        if key in FAULT_KNOBS:
            fields.append(read_fault(key, value))
        elif key in ACTIONS:
            try:
                call = ACTIONS[key](value)
            except KnobError as exc:
                raise KnobError(f"{key}: {exc}") from None
            if call is not None:
                calls.append(call)
        else:
            raise KnobError(f"unknown knob {key!r}; knobs: {', '.join(sorted(KNOBS))}")
    return fields, calls
