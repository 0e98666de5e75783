"""Chat values and tolerant parsing of ICWS JSON into them.

The server is trusted for structure only as far as the protocol promises; anything else (wrong types,
missing fields, unknown ``__type``) becomes a :class:`BadMessage` that the caller logs and skips.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

MEMBERS_TYPE = "urn:inin.com:interactions.chat:chatMembersMessage"
CONTENTS_TYPE = "urn:inin.com:interactions.chat:chatContentsMessage"
INTERACTION_CHANGED_TYPE = "urn:inin.com:interactions:interactionChangedMessage"
INTERACTION_DEALLOCATED_TYPE = "urn:inin.com:interactions:interactionDeallocatedMessage"
INTERACTION_LOST_RIGHTS_TYPE = "urn:inin.com:interactions:interactionLostRightsMessage"
CONNECTION_STATE_TYPE = "urn:inin.com:connection:connectionStateChangeMessage"
DISCONNECTED_STATES = frozenset({"E", "I"})
"""``Eic_State`` letters for an interaction disconnected externally / internally."""


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
        return self.name.lower()

    @classmethod
    def parse(cls, value: Any) -> MemberType:
        if isinstance(value, bool) or not isinstance(value, int):
            return cls.NONE
        try:
            return cls(value)
        except ValueError:
            return cls.NONE


@dataclass(frozen=True, slots=True)
class Member:
    """A chat participant; (user_id, interaction_id) is its identity."""

    user_id: str
    interaction_id: str
    display_name: str
    type: MemberType
    is_typing: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.user_id, self.interaction_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "interactionId": self.interaction_id,
            "displayName": self.display_name,
            "type": self.type.label,
            "isTyping": self.is_typing,
        }


@dataclass(frozen=True, slots=True)
class ChatLine:
    """One line of the transcript. ICWS gives lines no id; identity is position plus these fields."""

    member: Member
    text: str
    timestamp: datetime
    message_type: str = "text"

    @property
    def identity(self) -> tuple[str, str, datetime, str]:
        return (self.member.user_id, self.member.interaction_id, self.timestamp, self.text)


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


def format_timestamp(value: datetime) -> str:
    """Extended ISO 8601 UTC with ``Z``; fractional seconds only when there are any."""
    utc = value.astimezone(timezone.utc)
    text = f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}"
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def _string(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise BadMessage(f"{name} is missing or not a string")
    return value


def parse_member(data: Any, *, default_interaction: str) -> Member:
    """A ``fullChatMember`` or ``chatMember``; a missing member interactionId falls back to the chat's."""
    if not isinstance(data, dict):
        raise BadMessage("chat member is not an object")
    user_id = _string(data, "userId")
    interaction = data.get("interactionId")
    name = data.get("displayName")
    typing = data.get("isTyping")
    return Member(
        user_id=user_id,
        interaction_id=interaction if isinstance(interaction, str) and interaction else default_interaction,
        display_name=name if isinstance(name, str) else user_id,
        type=MemberType.parse(data.get("chatMemberType")),
        is_typing=typing is True,
    )


def parse_line(data: Any, *, default_interaction: str) -> ChatLine:
    if not isinstance(data, dict):
        raise BadMessage("chat text is not an object")
    text = data.get("text")
    if text is None:
        text = ""  # the model allows a null text
    if not isinstance(text, str):
        raise BadMessage("chat text is not a string")
    kind = data.get("messageType")
    return ChatLine(
        member=parse_member(data.get("chatMember"), default_interaction=default_interaction),
        text=text,
        timestamp=parse_timestamp(data.get("timestamp")),
        message_type="file" if kind == 1 else "text",
    )


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
