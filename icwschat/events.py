"""The contract's events: the one place that decides how they look as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from .models import ChatLine, Member, format_timestamp

MESSAGE = "message"
MEMBER_JOINED = "member_joined"
MEMBER_LEFT = "member_left"
MEMBER_CHANGED = "member_changed"
TYPING_STARTED = "typing_started"
TYPING_STOPPED = "typing_stopped"
RESYNCED = "resynced"
CHAT_ENDED = "chat_ended"
CHAT_ADDED = "chat_added"
CHAT_CHANGED = "chat_changed"
CHAT_REMOVED = "chat_removed"


class Event(NamedTuple):
    """Something a user of ``watch`` should hear about, observed at ``at``.

    For a ``message``, ``line`` is the line as sent and ``member`` its sender as the cache knows them at
    that moment (typing included). A named tuple: immutable and cheap to build, one per message.
    """

    kind: str
    interaction_id: str
    at: datetime
    member: Member | None = None
    previous: Member | None = None
    line: ChatLine | None = None
    history: bool | None = None
    reason: str | None = None
    queue: str | None = None
    """The queue a chat entered or left (``chat_added``, ``chat_removed``), as the user named it."""
    attributes: dict[str, str] | None = None
    """The queue's attributes of the chat: all of them (``chat_added``), or those that changed."""

    def to_json(self) -> dict[str, Any]:
        # Fields unpacked at once: each named field read is a descriptor call, and this runs for every event.
        kind, interaction_id, at, member, previous, line, history, reason, queue, attributes = self
        data: dict[str, Any]
        # One dict display for the commonest event: several times cheaper than growing a dict key by key.
        if line is not None:
            sender, text, stamp, message_type = line
            data = {
                "event": kind,
                "interactionId": interaction_id,
                "at": format_timestamp(at),
                "member": (member or sender).to_json(),
                "text": text,
                "timestamp": stamp,
                "messageType": message_type,
            }
        else:
            data = {"event": kind, "interactionId": interaction_id, "at": format_timestamp(at)}
            if member is not None:
                data["member"] = member.to_json()
        if previous is not None:
            data["previous"] = previous.to_json()
        if history is not None:
            data["history"] = history
        if reason is not None:
            data["reason"] = reason
        if queue is not None:
            data["queue"] = queue
        if attributes is not None:
            data["attributes"] = dict(attributes)
        return data
