"""Chat values and tolerant parsing of ICWS JSON into them.

The server is trusted for structure only as far as the protocol promises; anything else (wrong types,
missing fields, unknown ``__type``) becomes a :class:`BadMessage` that the caller logs and skips.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, NamedTuple

MEMBERS_TYPE = "urn:inin.com:interactions.chat:chatMembersMessage"
CONTENTS_TYPE = "urn:inin.com:interactions.chat:chatContentsMessage"
INTERACTION_CHANGED_TYPE = "urn:inin.com:interactions:interactionChangedMessage"
INTERACTION_DEALLOCATED_TYPE = "urn:inin.com:interactions:interactionDeallocatedMessage"
INTERACTION_LOST_RIGHTS_TYPE = "urn:inin.com:interactions:interactionLostRightsMessage"
INTERACTION_MORPHED_TYPE = "urn:inin.com:interactions:interactionMorphedMessage"
CONNECTION_STATE_TYPE = "urn:inin.com:connection:connectionStateChangeMessage"
SUBSCRIPTION_STATE_TYPE = "urn:inin.com:messaging:subscriptionStateMessage"
QUEUE_CONTENTS_TYPE = "urn:inin.com:queues:queueContentsMessage"
QUEUE_STATE_TYPE = "urn:inin.com:queues:queueSubscriptionStateMessage"
SUBSCRIPTION_FAULTED = 3
"""``subscriptionStateMessage`` state Faulted (0 None, 1 Normal, 2 Suspended): the subscription delivers
nothing more until it is made again."""
CONNECTION_DOWN = 2
"""``connectionState`` / ``newConnectionState`` down (0 none, 1 up)."""
DISCONNECTED_STATES = frozenset({"E", "I"})
"""``Eic_State`` letters for an interaction disconnected externally / internally."""
STATE_WORDS = {
    "A": "alerting",
    "C": "connected",
    "H": "held",
    "M": "voicemail",
    "O": "offering",
    "R": "awaiting answer",
    "P": "parked",
    "S": "dialing",
    "E": "disconnected",
    "I": "disconnected",
}
"""A word for each ``Eic_State`` letter seen in a real queue consumer (icws-protocol.md 6a); other letters
are shown as sent."""


class BadMessage(ValueError):
    """An ICWS message this client cannot use; skipped, never fatal."""


class MemberType(Enum):
    """ICWS ``chatMemberType``, named as the contract's events name it."""

    NONE = 0
    SYSTEM = 1
    CURRENT_USER = 2
    INTERNAL = 3
    EXTERNAL = 4

    @property
    def label(self) -> str:
        return _LABELS[self.value]

    @classmethod
    def parse(cls, value: Any) -> MemberType:
        # Exactly int: bools (True == 1) and other number types are no member type.
        return _MEMBER_TYPES.get(value, cls.NONE) if type(value) is int else cls.NONE


_MEMBER_TYPES = {kind.value: kind for kind in MemberType}
_LABELS = {kind.value: kind.name.lower() for kind in MemberType}


@dataclass(frozen=True, slots=True)
class Member:
    """A chat participant; (user_id, interaction_id) is its identity."""

    user_id: str
    interaction_id: str
    display_name: str
    type: MemberType
    is_typing: bool = False
    key: tuple[str, str] = field(init=False, repr=False, compare=False)
    """(user_id, interaction_id): the identity by which the cache keeps members."""
    _json: dict[str, Any] = field(init=False, repr=False, compare=False)
    """Built once, like ``key``: members are shared (see :func:`member`) and appear in nearly every event."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.user_id, self.interaction_id))
        json = {
            "userId": self.user_id,
            "interactionId": self.interaction_id,
            "displayName": self.display_name,
            "type": self.type.label,
            "isTyping": self.is_typing,
        }
        object.__setattr__(self, "_json", json)

    def same_person(self, other: Member) -> bool:
        """Same identity, name and type: what a transcript line shows, typing aside."""
        return self is other or (
            self.user_id == other.user_id
            and self.interaction_id == other.interaction_id
            and self.display_name == other.display_name
            and self.type is other.type
        )

    def typing(self, is_typing: bool) -> Member:
        return member(self.user_id, self.interaction_id, self.display_name, self.type.value, is_typing)

    def to_json(self) -> dict[str, Any]:
        return self._json.copy()


class ChatLine(NamedTuple):
    """One line of the transcript. ICWS gives lines no id; identity is position plus these fields.

    A named tuple rather than a frozen dataclass: as immutable, and built several times faster, which
    matters at one per chat line.
    """

    member: Member
    text: str
    stamp: str
    """When it was said, in the contract's form (see :func:`canonical_timestamp`): one string per instant."""
    message_type: str = "text"

    @property
    def timestamp(self) -> datetime:
        return parse_timestamp(self.stamp)

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return (self.member.user_id, self.member.interaction_id, self.stamp, self.text)


_BASIC = re.compile(r"^(\d{4})(\d{2})(\d{2})T?(\d{2})(\d{2})(?:(\d{2})(?:[.,](\d+))?)?Z$")
_EXTENDED = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(Z|[+-]\d{2}:?\d{2})$"
)


def parse_timestamp(value: Any) -> datetime:
    """ICWS DateTime in the basic (``20201029T082018Z``) or extended ISO 8601 form, as aware UTC."""
    if not isinstance(value, str):
        raise BadMessage(f"timestamp is not a string: {value!r:.80}")
    text = value.strip()
    match = _BASIC.match(text) or _EXTENDED.match(text)
    if not match:
        raise BadMessage(f"timestamp is not ISO 8601: {value!r:.80}")
    year, month, day, hour, minute = (int(g) for g in match.groups()[:5])
    second = int(match.group(6) or 0)
    micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
    try:
        stamp = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone.utc)
    except ValueError as exc:
        raise BadMessage(f"timestamp is out of range: {value!r:.80}") from exc
    offset = match.group(8) if match.re is _EXTENDED else "Z"
    if offset and offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        shift = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        try:
            stamp -= timedelta(minutes=shift)
        except OverflowError as exc:
            raise BadMessage(f"timestamp is out of range: {value!r:.80}") from exc
    return stamp


@functools.lru_cache(maxsize=4096)
def format_timestamp(value: datetime) -> str:
    """Extended ISO 8601 UTC with ``Z``; fractional seconds only when there are any."""
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    if value.microsecond:
        return value.isoformat(timespec="microseconds")[:-6].rstrip("0") + "Z"
    return value.isoformat(timespec="seconds")[:-6] + "Z"


_BASIC_UTC = re.compile(r"[0-9]{8}T(?:[01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]Z")
"""The basic form every CIC server sends, whole seconds in UTC, with hour, minute and second in range."""
_SECONDS = frozenset(f"{second:02d}Z" for second in range(60))
_MINUTES: dict[str, str] = {}
"""``YYYYMMDDTHHMM`` of the basic forms seen, checked, as ``YYYY-MM-DDTHH:MM:``. The lines of a chat share a
few minutes, so once a line's minute is known, its second is all that is left to check."""
MINUTES_KEPT = 1024


def _iso_minute(basic: str) -> str:
    """``YYYYMMDDTHHMM`` as ``YYYY-MM-DDTHH:MM:``, the date checked against the calendar, and remembered."""
    try:
        datetime(int(basic[:4]), int(basic[4:6]), int(basic[6:8]))
    except ValueError as exc:
        raise BadMessage(f"timestamp is out of range: {basic!r}") from exc
    if len(_MINUTES) >= MINUTES_KEPT:
        _MINUTES.clear()
    iso = _MINUTES[basic] = f"{basic[:4]}-{basic[4:6]}-{basic[6:8]}T{basic[9:11]}:{basic[11:13]}:"
    return iso


def canonical_timestamp(value: Any) -> str:
    """An ICWS DateTime as :func:`format_timestamp` writes it: ``format_timestamp(parse_timestamp(value))``.

    The basic form is rewritten as text, without a ``datetime`` in between: this runs for every chat line,
    and is most of what a replay costs per line otherwise. A known minute and a second in range is that
    form (what :data:`_BASIC_UTC` matches), found without the regular expression, which costs more.
    """
    if type(value) is str:
        minute = _MINUTES.get(value[:13])
        if minute is not None and (second := value[13:]) in _SECONDS:
            return minute + second
        if _BASIC_UTC.fullmatch(value):
            return _iso_minute(value[:13]) + value[13:]
    return format_timestamp(parse_timestamp(value))


@functools.lru_cache(maxsize=1024)
def member(
    user_id: str, interaction_id: str, display_name: str, chat_member_type: int | None, is_typing: bool
) -> Member:
    """One shared object per distinct member state: a chat repeats the same few members in every message,
    so sharing them saves a construction per message and keeps a long transcript small.

    Keyed by the wire's ``chatMemberType`` rather than the enum, whose hash is Python code: one look-up
    per member of every message. Unhashable wire values must not reach it.
    """
    return Member(user_id, interaction_id, display_name, MemberType.parse(chat_member_type), is_typing)


MemberFields = tuple[str, str, str, int | None, bool]
"""A member as plain data, the arguments of :func:`member`: parsed members cross a process boundary
(``replay``) as tuples of strings, which unpickle several times faster than objects."""
LineFields = tuple[MemberFields, str, str, str]
"""A chat line as plain data: sender, text, stamp and message type, as :class:`ChatLine` holds them."""


def parse_member(data: Any, default_interaction: str) -> MemberFields:
    """A ``fullChatMember`` or ``chatMember``; a missing member interactionId falls back to the chat's."""
    if not isinstance(data, dict):
        raise BadMessage("chat member is not an object")
    user_id = data.get("userId")
    if not isinstance(user_id, str):
        raise BadMessage("userId is missing or not a string")
    interaction = data.get("interactionId")
    name = data.get("displayName")
    kind = data.get("chatMemberType")
    fields = (
        user_id,
        interaction if isinstance(interaction, str) and interaction else default_interaction,
        name if isinstance(name, str) else user_id,
        kind if type(kind) is int else None,
        data.get("isTyping") is True,
    )
    if len(_FIELDS) >= MEMBERS_KEPT:
        _FIELDS.clear()
    return _FIELDS.setdefault(fields, fields)


MEMBERS_KEPT = 1024
_FIELDS: dict[MemberFields, MemberFields] = {}
"""One object per distinct member, as :func:`member` keeps: a batch of updates that names a member again
and again then marshals (or pickles) it once, and its strings are hashed once where it is unpacked."""


def parse_line(data: Any, default_interaction: str) -> LineFields:
    if not isinstance(data, dict):
        raise BadMessage("chat text is not an object")
    text = data.get("text")
    if text is None:
        text = ""  # the model allows a null text
    if not isinstance(text, str):
        raise BadMessage("chat text is not a string")
    kind = data.get("messageType")
    return (
        parse_member(data.get("chatMember"), default_interaction),
        text,
        canonical_timestamp(data.get("timestamp")),
        "file" if kind == 1 else "text",
    )


def chat_line(fields: LineFields) -> ChatLine:
    sender, text, stamp, message_type = fields
    # tuple.__new__ runs in C; ChatLine's own constructor is Python code, and this runs for every line.
    return tuple.__new__(ChatLine, (member(*sender), text, stamp, message_type))


def parse_list(data: dict[str, Any], name: str) -> list[Any]:
    """A message's array property; a missing one is empty, a wrong type is an error."""
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadMessage(f"{name} is not an array")
    return value


def message_type(message: Any) -> str:
    if not isinstance(message, dict):
        raise BadMessage("message is not a JSON object")
    kind = message.get("__type")
    if not isinstance(kind, str):
        raise BadMessage("message has no __type")
    return kind


def is_delta(message: dict[str, Any]) -> bool:
    value = message.get("isDelta")
    if not isinstance(value, bool):
        raise BadMessage("isDelta is missing or not a boolean")
    return value
