"""ICWS messages in, updates out: what of each message concerns the chat, checked and as plain data.

Parsing is the first half of the pipeline and needs nothing but the interaction id, so ``replay`` can run it
in a second process. Updates are tuples of strings, numbers and tuples for that reason: they pickle and
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

MembersUpdate = tuple[Literal["members"], bool, list[MemberFields], list[MemberFields], list[MemberFields]]
"""A chatMembersMessage: isDelta, then the members added, changed and removed."""
ContentsUpdate = tuple[Literal["contents"], bool, list[LineFields]]
"""A chatContentsMessage: isDelta, then the lines added."""
StateUpdate = tuple[Literal["state"], str]
"""An interactionChangedMessage that names the interaction's ``Eic_State``."""
EndUpdate = tuple[Literal["ended"], str]
"""The interaction is gone (deallocated) or out of reach (lost rights): the reason, as events name it."""
MorphUpdate = tuple[Literal["morphed"], str]
"""The interaction has a new id (interactionMorphedMessage): the new id."""
FaultUpdate = tuple[Literal["faulted"]]
"""The chat subscription faulted (subscriptionStateMessage state 3) and must be made again."""
Update = MembersUpdate | ContentsUpdate | StateUpdate | EndUpdate | MorphUpdate | FaultUpdate

_Parsed = TypeVar("_Parsed", MemberFields, LineFields)
_ENDINGS = {INTERACTION_DEALLOCATED_TYPE: "deallocated", INTERACTION_LOST_RIGHTS_TYPE: "lost_rights"}


def parse_messages(messages: Iterable[Any], interaction_id: str) -> tuple[list[Update], list[str]]:
    """The updates of ``messages`` for ``interaction_id``, and what had to be skipped, in words.

    Messages for other interactions and of other types are no update and no problem. After a morph, the
    messages that follow it are read for the interaction's new id.
    """
    updates: list[Update] = []
    problems: list[str] = []
    for message in messages:
        try:
            update = parse_message(message, interaction_id, problems)
        except ValueError as problem:
            problems.append(f"skipped a message: {problem}: {message!r:.300}")
        else:
            if update is not None:
                updates.append(update)
                if update[0] == "morphed":
                    interaction_id = update[1]
    return updates, problems


def followed(updates: Iterable[Update], interaction_id: str) -> str:
    """The interaction's id after ``updates``: the last morph's new id, else ``interaction_id``; the id to
    parse the next batch for."""
    for update in updates:
        if update[0] == "morphed":
            interaction_id = update[1]
    return interaction_id


def parse_message(message: Any, interaction_id: str, problems: list[str]) -> Update | None:
    """One message's update; raises :class:`BadMessage` when nothing of it can be used, and names the
    parts it skipped (one bad member of several, say) in ``problems``."""
    kind = message_type(message)
    if kind in (MEMBERS_TYPE, CONTENTS_TYPE):
        if message.get("interactionId") != interaction_id:
            return None
        delta = is_delta(message)
        if kind == CONTENTS_TYPE:
            return (
                "contents",
                delta,
                _parsed(message, "messagesAdded", parse_line, "chat line", interaction_id, problems),
            )
        return (
            "members",
            delta,
            _parsed(message, "membersAdded", parse_member, "chat member", interaction_id, problems),
            _parsed(message, "membersChanged", parse_member, "chat member", interaction_id, problems),
            _parsed(message, "membersRemoved", parse_member, "chat member", interaction_id, problems),
        )
    if kind == SUBSCRIPTION_STATE_TYPE:
        return _subscription_state(message, interaction_id)
    if message.get("interactionID") != interaction_id:  # the interaction messages spell it with a capital D
        return None
    if kind == INTERACTION_MORPHED_TYPE:
        new_id = message.get("newInteractionID")
        if not isinstance(new_id, str) or not new_id:
            raise BadMessage("interactionMorphedMessage has no newInteractionID")
        return ("morphed", new_id) if new_id != interaction_id else None
    if kind == INTERACTION_CHANGED_TYPE:
        attributes = message.get("attributes")
        if not isinstance(attributes, dict):
            if is_delta(message):
                return None
            raise BadMessage("interactionChangedMessage has no attributes")
        state = attributes.get("Eic_State")
        return ("state", state) if isinstance(state, str) else None
    reason = _ENDINGS.get(kind)
    return ("ended", reason) if reason is not None else None


def _subscription_state(message: dict[str, Any], interaction_id: str) -> FaultUpdate | None:
    """Faulted is the one state that needs doing something: subscribing again.

    Which subscription a state message is about is UNCONFIRMED (the protocol reference lists only
    ``state`` and ``error``): one that names another interaction is not about this chat; one that names none
    may be, and subscribing again costs no more than a snapshot.
    """
    named = [message[name] for name in ("interactionId", "interactionID") if name in message]
    if any(name != interaction_id for name in named):
        return None
    state = message.get("state")
    return ("faulted",) if type(state) is int and state == SUBSCRIPTION_FAULTED else None


def _parsed(
    message: dict[str, Any],
    name: str,
    parse: Callable[..., _Parsed],
    what: str,
    interaction_id: str,
    problems: list[str],
) -> list[_Parsed]:
    """The items of the array ``name`` that ``parse`` accepts; the others are named in ``problems``."""
    parsed = []
    for item in parse_list(message, name):
        try:
            parsed.append(parse(item, default_interaction=interaction_id))
        except BadMessage as problem:
            problems.append(f"skipped a {what}: {problem}")
    return parsed
