"""Small builders for ICWS chat messages, as the protocol reference shapes them."""

from __future__ import annotations

from typing import Any

from icwschat.cache import ChatCache
from icwschat.router import Chat, Router

IID = "1001"


def member(
    user: str, name: str | None = None, kind: int = 4, typing: bool = False, iid: str = IID
) -> dict[str, Any]:
    return {
        "__type": "urn:inin.com:interactions.chat:fullChatMember",
        "userId": user,
        "displayName": name or user,
        "interactionId": iid,
        "chatMemberType": kind,
        "isTyping": typing,
    }


def members_msg(
    *,
    delta: bool = True,
    added: list[dict[str, Any]] | None = None,
    changed: list[dict[str, Any]] | None = None,
    removed: list[dict[str, Any]] | None = None,
    iid: str = IID,
) -> dict[str, Any]:
    return {
        "__type": "urn:inin.com:interactions.chat:chatMembersMessage",
        "isDelta": delta,
        "interactionId": iid,
        "membersAdded": added or [],
        "membersChanged": changed or [],
        "membersRemoved": removed or [],
    }


def line(
    user: str, text: str, stamp: str = "20201029T082018Z", kind: int = 4, iid: str = IID
) -> dict[str, Any]:
    return {
        "chatMember": {"userId": user, "displayName": user, "interactionId": iid, "chatMemberType": kind},
        "text": text,
        "timestamp": stamp,
        "messageType": 0,
    }


def contents_msg(*lines: dict[str, Any], delta: bool = True, iid: str = IID) -> dict[str, Any]:
    return {
        "__type": "urn:inin.com:interactions.chat:chatContentsMessage",
        "isDelta": delta,
        "interactionId": iid,
        "messagesAdded": list(lines),
    }


def routed(cache: ChatCache) -> Router:
    """A router that follows just ``cache``'s chat, as sinks are shown chats."""
    router = Router()
    router.chats[cache.interaction_id] = Chat(cache, cache.interaction_id)
    return router
