"""The ICWS messages the simulator queues for sessions, built from plain values (icws-protocol.md 4.3, 5, 6).

Pure functions: no state, no clock, no HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from .faults import error_body
from .scenarios import ScriptMember

CHAT_NS = "urn:inin.com:interactions.chat"
MEMBERS_TYPE = f"{CHAT_NS}:chatMembersMessage"
CONTENTS_TYPE = f"{CHAT_NS}:chatContentsMessage"
FULL_MEMBER_TYPE = f"{CHAT_NS}:fullChatMember"
INTERACTION_CHANGED = "urn:inin.com:interactions:interactionChangedMessage"
INTERACTION_DEALLOCATED = "urn:inin.com:interactions:interactionDeallocatedMessage"
INTERACTION_MORPHED = "urn:inin.com:interactions:interactionMorphedMessage"
CONNECTION_STATE_CHANGE = "urn:inin.com:connection:connectionStateChangeMessage"
SUBSCRIPTION_STATE = "urn:inin.com:messaging:subscriptionStateMessage"
QUEUE_CONTENTS = "urn:inin.com:queues:queueContentsMessage"
CURRENT_USER = 2
"""``chatMemberType`` of the member who is the session's own user (icws-protocol.md 5.1, 6b)."""
FAULTED = 3
"""``subscriptionStateMessage`` state Faulted."""


def wire_time(when: float) -> str:
    """ICWS DateTime in the basic form real servers send: ``20201029T082018Z``."""
    return datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")


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


def subscription_faulted() -> dict[str, Any]:
    return {
        "__type": SUBSCRIPTION_STATE,
        "isDelta": True,
        "state": FAULTED,
        "error": error_body("The subscription has faulted."),
    }


# ---- chat messages -------------------------------------------------------------------------------------


def chat_member(iid: str, member: ScriptMember) -> dict[str, Any]:
    return {
        "userId": member.user_id,
        "displayName": member.display_name,
        "interactionId": iid,
        "chatMemberType": member.chat_member_type,
    }


def chat_text(iid: str, member: ScriptMember, text: str, timestamp: str, message_type: int) -> dict[str, Any]:
    return {
        "chatMember": chat_member(iid, member),
        "text": text,
        "timestamp": timestamp,
        "messageType": message_type,
    }


def members_message(
    iid: str,
    typing: set[str],
    *,
    added: Iterable[ScriptMember] = (),
    changed: Iterable[ScriptMember] = (),
    removed: Iterable[ScriptMember] = (),
    delta: bool = True,
) -> dict[str, Any]:
    """A chatMembersMessage; ``typing`` holds the script ids of the members typing now."""

    def full(member: ScriptMember) -> dict[str, Any]:
        return {"__type": FULL_MEMBER_TYPE, **chat_member(iid, member), "isTyping": member.id in typing}

    return {
        "__type": MEMBERS_TYPE,
        "isDelta": delta,
        "interactionId": iid,
        "membersAdded": [full(m) for m in added],
        "membersChanged": [full(m) for m in changed],
        "membersRemoved": [full(m) for m in removed],
    }


def contents_message(iid: str, lines: list[dict[str, Any]], *, delta: bool) -> dict[str, Any]:
    return {"__type": CONTENTS_TYPE, "isDelta": delta, "interactionId": iid, "messagesAdded": lines}


def member_users(message: dict[str, Any]) -> set[str]:
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


# ---- interaction messages ------------------------------------------------------------------------------


def interaction_changed(iid: str, attributes: dict[str, str], *, delta: bool) -> dict[str, Any]:
    return {"__type": INTERACTION_CHANGED, "isDelta": delta, "interactionID": iid, "attributes": attributes}


def interaction_deallocated(iid: str) -> dict[str, Any]:
    return {"__type": INTERACTION_DEALLOCATED, "isDelta": True, "interactionID": iid}


def interaction_morphed(old_iid: str, new_iid: str) -> dict[str, Any]:
    return {
        "__type": INTERACTION_MORPHED,
        "isDelta": True,
        "interactionID": old_iid,
        "newInteractionID": new_iid,
    }


# ---- queue messages ------------------------------------------------------------------------------------


def queue_entry(iid: str, attributes: dict[str, str]) -> dict[str, Any]:
    """One element of ``interactionsAdded`` / ``interactionsChanged``."""
    return {"interactionId": iid, "attributes": attributes}


def queue_contents(
    subscription_id: str,
    *,
    delta: bool,
    added: list[dict[str, Any]] | None = None,
    changed: list[dict[str, Any]] | None = None,
    removed: list[str] | None = None,
    limit_exceeded: bool | None = None,
) -> dict[str, Any]:
    """A queueContentsMessage (icws-protocol.md 6a). Every list is optional on the wire: a delta carries only
    the ones it has, a snapshot always ``interactionsAdded``; ``queueResultLimitExceeded`` only where a
    limit applies."""
    message: dict[str, Any] = {"__type": QUEUE_CONTENTS, "isDelta": delta, "subscriptionId": subscription_id}
    if added or not delta:
        message["interactionsAdded"] = added or []
    if changed:
        message["interactionsChanged"] = changed
    if removed:
        message["interactionsRemoved"] = removed
    if limit_exceeded is not None:
        message["queueResultLimitExceeded"] = limit_exceeded
    return message
