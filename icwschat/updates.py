"""ICWS messages in, updates out: what of each message concerns the chat, checked and as plain data.

Parsing is the first half of the pipeline and needs nothing but the messages, so ``replay`` can run it in a
second process; every update names the interaction (or queue subscription) it is about, and the router
decides where it goes. Updates are tuples of strings, numbers and tuples for that reason: they pickle and
unpickle several times faster than objects. The cache (the second half) applies them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

from .models import (
    CONTENTS_TYPE,
    INTERACTION_CHANGED_TYPE,
    INTERACTION_DEALLOCATED_TYPE,
    INTERACTION_LOST_RIGHTS_TYPE,
    INTERACTION_MORPHED_TYPE,
    MEMBERS_TYPE,
    QUEUE_CONTENTS_TYPE,
    QUEUE_STATE_TYPE,
    SUBSCRIPTION_FAULTED,
    SUBSCRIPTION_STATE_TYPE,
    BadMessage,
    LineFields,
    MemberFields,
    is_delta,
    message_type,
    parse_line,
    parse_list,
    parse_member,
)

MembersUpdate = tuple[
    Literal["members"], str, bool, list[MemberFields], list[MemberFields], list[MemberFields]
]
"""A chatMembersMessage: the interaction, isDelta, then the members added, changed and removed."""
ContentsUpdate = tuple[Literal["contents"], str, bool, list[LineFields]]
"""A chatContentsMessage: the interaction, isDelta, then the lines added."""
StateUpdate = tuple[Literal["state"], str, str]
"""An interactionChangedMessage (or a queue's attributes) that names the interaction's ``Eic_State``."""
EndUpdate = tuple[Literal["ended"], str, str]
"""The interaction is gone (deallocated) or out of reach (lost rights): the reason, as events name it."""
MorphUpdate = tuple[Literal["morphed"], str, str]
"""The interaction has a new id (interactionMorphedMessage): the old id, then the new one."""
FaultUpdate = tuple[Literal["faulted"], str | None]
"""A subscription faulted (subscriptionStateMessage state 3) and must be made again: the interaction or
queue subscription it names, or None when it names none (then it may be any of them)."""
Attributes = dict[str, str]
QueueUpdate = tuple[
    Literal["queue"], str, bool, list[tuple[str, Attributes]], list[tuple[str, Attributes]], list[str], bool
]
"""A queueContentsMessage: the subscription id, isDelta, the interactions added and changed (id and
attributes), the ids removed, and whether the server left some out (queueResultLimitExceeded)."""
ChatUpdate = MembersUpdate | ContentsUpdate | StateUpdate | EndUpdate | MorphUpdate
"""An update about one interaction, whose id is its second item: what the router hands to a chat's cache."""
Update = ChatUpdate | FaultUpdate | QueueUpdate

_Parsed = TypeVar("_Parsed", MemberFields, LineFields)
_ENDINGS = {INTERACTION_DEALLOCATED_TYPE: "deallocated", INTERACTION_LOST_RIGHTS_TYPE: "lost_rights"}


def parse_messages(messages: Iterable[Any]) -> tuple[list[Update], list[str]]:
    """The updates of ``messages`` for every interaction, and what had to be skipped, in words.

    Messages of other types are no update and no problem; which interactions matter is the router's call.
    """
    updates: list[Update] = []
    problems: list[str] = []
    for message in messages:
        try:
            update = parse_message(message, problems)
        except ValueError as problem:
            problems.append(skipped(problem, message))
        else:
            if update is not None:
                updates.append(update)
    return updates, problems


def skipped(problem: ValueError, message: Any) -> str:
    """What :func:`parse_messages` says of a message :func:`parse_message` refused."""
    return f"skipped a message: {problem}: {message!r:.300}"


def parse_message(message: Any, problems: list[str]) -> Update | None:
    """One message's update; raises :class:`BadMessage` when nothing of it can be used, and names the
    parts it skipped (one bad member of several, say) in ``problems``."""
    # Nearly every message is a chat line or a member change (a typing flip): their checks are written out
    # here rather than called (message_type, _id, is_delta), as a call costs more than what it checks.
    kind = message.get("__type") if type(message) is dict else None
    if type(kind) is not str:
        kind = message_type(message)  # raises, unless a dict of another type than dict has a __type
    if kind in (CONTENTS_TYPE, MEMBERS_TYPE):
        iid = message.get("interactionId")
        if not isinstance(iid, str) or not iid:
            raise BadMessage(f"{kind.rpartition(':')[2]} has no interactionId")
        delta = message.get("isDelta")
        if delta is not True and delta is not False:
            raise BadMessage("isDelta is missing or not a boolean")
        if kind == CONTENTS_TYPE:
            return (
                "contents",
                iid,
                delta,
                _parsed(message, "messagesAdded", parse_line, "chat line", iid, problems),
            )
        return (
            "members",
            iid,
            delta,
            _parsed(message, "membersAdded", parse_member, "chat member", iid, problems),
            _parsed(message, "membersChanged", parse_member, "chat member", iid, problems),
            _parsed(message, "membersRemoved", parse_member, "chat member", iid, problems),
        )
    if kind == QUEUE_CONTENTS_TYPE:
        return _queue_contents(message, problems)
    if kind in (SUBSCRIPTION_STATE_TYPE, QUEUE_STATE_TYPE):
        return _subscription_state(message)
    if kind not in _INTERACTION_TYPES:
        return None
    iid = _id(message, "interactionID")  # the interaction messages spell it with a capital D
    if kind == INTERACTION_MORPHED_TYPE:
        new_id = message.get("newInteractionID")
        if not isinstance(new_id, str) or not new_id:
            raise BadMessage("interactionMorphedMessage has no newInteractionID")
        return ("morphed", iid, new_id) if new_id != iid else None
    if kind == INTERACTION_CHANGED_TYPE:
        attributes = message.get("attributes")
        if not isinstance(attributes, dict):
            if is_delta(message):
                return None
            raise BadMessage("interactionChangedMessage has no attributes")
        state = attributes.get("Eic_State")
        return ("state", iid, state) if isinstance(state, str) else None
    return ("ended", iid, _ENDINGS[kind])


_INTERACTION_TYPES = frozenset({INTERACTION_CHANGED_TYPE, INTERACTION_MORPHED_TYPE, *_ENDINGS})


def _id(message: dict[str, Any], name: str) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value:
        raise BadMessage(f"{message_type(message).rpartition(':')[2]} has no {name}")
    return value


def _subscription_state(message: dict[str, Any]) -> FaultUpdate | None:
    """Faulted is the one state that needs doing something: subscribing again.

    Which subscription a state message is about is UNCONFIRMED (the protocol reference lists only
    ``state`` and ``error``): it may name an interaction or a queue subscription, or nothing, and then it
    may be about any of them; subscribing again costs no more than a snapshot. The states of a
    ``queueSubscriptionStateMessage`` are UNCONFIRMED too: taken to be the messaging ones (3 Faulted).
    """
    state = message.get("state")
    if type(state) is not int or state != SUBSCRIPTION_FAULTED:
        return None
    named = next(
        (message[name] for name in ("interactionId", "interactionID", "subscriptionId") if name in message),
        None,
    )
    return ("faulted", named if isinstance(named, str) else None)


def _queue_contents(message: dict[str, Any], problems: list[str]) -> QueueUpdate:
    subscription = _id(message, "subscriptionId")
    removed = []
    for item in parse_list(message, "interactionsRemoved"):
        # Three consumers agree the removed are plain id strings; an object with an id is taken too.
        iid = item.get("interactionId") if isinstance(item, dict) else item
        if isinstance(iid, str) and iid:
            removed.append(iid)
        else:
            problems.append(f"skipped a removed interaction: {item!r:.80}")
    return (
        "queue",
        subscription,
        is_delta(message),
        _queued(message, "interactionsAdded", problems),
        _queued(message, "interactionsChanged", problems),
        removed,
        message.get("queueResultLimitExceeded") is True,
    )


def _queued(message: dict[str, Any], name: str, problems: list[str]) -> list[tuple[str, Attributes]]:
    """The interactions of a queue message's array ``name``: id and string attributes (others dropped)."""
    queued = []
    for item in parse_list(message, name):
        iid = item.get("interactionId") if isinstance(item, dict) else None
        if not isinstance(iid, str) or not iid:
            problems.append(f"skipped a queued interaction with no interactionId: {item!r:.80}")
            continue
        attributes = item.get("attributes")
        values = attributes if isinstance(attributes, dict) else {}
        queued.append((iid, {k: v for k, v in values.items() if isinstance(k, str) and isinstance(v, str)}))
    return queued


def _parsed(
    message: dict[str, Any],
    name: str,
    parse: Callable[[Any, str], _Parsed],
    what: str,
    interaction_id: str,
    problems: list[str],
) -> list[_Parsed]:
    """The items of the array ``name`` that ``parse`` accepts; the others are named in ``problems``."""
    items = message.get(name)  # parse_list, written out: this runs three times for every member change
    if not isinstance(items, list):
        if items is None:
            return []
        raise BadMessage(f"{name} is not an array")
    parsed = []
    for item in items:
        try:
            parsed.append(parse(item, interaction_id))
        except BadMessage as problem:
            problems.append(f"skipped a {what}: {problem}")
    return parsed
