"""A seeded generator of ``watch --raw`` captures, so every benchmark run measures the same work.

The messages have the shape the bundled simulator (and a CIC server) sends: one members snapshot and one
empty contents snapshot, then chat traffic of which ``text_share`` is lines of text and the rest member
changes (typing flips, the commonest member change in a real chat). Who speaks and what is random, from a
fixed seed.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

INTERACTION_ID = "1001"
CHAT_NS = "urn:inin.com:interactions.chat"
MEMBERS_TYPE = f"{CHAT_NS}:chatMembersMessage"
CONTENTS_TYPE = f"{CHAT_NS}:chatContentsMessage"
FULL_MEMBER_TYPE = f"{CHAT_NS}:fullChatMember"
START = 1_700_000_000
WORDS = [
    "order",
    "parcel",
    "refund",
    "invoice",
    "delivery",
    "address",
    "please",
    "thanks",
    "hello",
    "again",
    "tracking",
    "number",
    "weekend",
    "tomorrow",
    "warehouse",
    "colour",
    "size",
    "return",
    "label",
    "courier",
    "Grüße",
    "naïve",
    "東京",
    "✓",
    "🙂",
]


def make_members(count: int) -> list[dict[str, Any]]:
    """One system member, a fifth agents, the rest customers."""
    members = []
    for index in range(count):
        kind = 1 if index == 0 else 3 if index <= count // 5 else 4
        user = {1: "system", 3: f"agent.{index:02d}", 4: f"visitor-{index:04d}"}[kind]
        members.append(
            {
                "userId": user,
                "displayName": {1: "System", 3: f"Agent {index}", 4: f"Visitor {index}"}[kind],
                "interactionId": INTERACTION_ID,
                "chatMemberType": kind,
            }
        )
    return members


def full(member: dict[str, Any], typing: bool) -> dict[str, Any]:
    return {"__type": FULL_MEMBER_TYPE, **member, "isTyping": typing}


def members_message(added: list[Any], changed: list[Any], *, delta: bool) -> dict[str, Any]:
    return {
        "__type": MEMBERS_TYPE,
        "isDelta": delta,
        "interactionId": INTERACTION_ID,
        "membersAdded": added,
        "membersChanged": changed,
        "membersRemoved": [],
    }


def contents_message(lines: list[Any], *, delta: bool) -> dict[str, Any]:
    return {
        "__type": CONTENTS_TYPE,
        "isDelta": delta,
        "interactionId": INTERACTION_ID,
        "messagesAdded": lines,
    }


def wire_time(offset: int) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(START + offset))


def messages(count: int, *, members: int = 50, text_share: float = 0.5, seed: int = 5) -> Iterator[Any]:
    """``count`` ICWS messages: the two snapshots, then traffic in which exactly ``text_share`` is text."""
    rng = random.Random(seed)
    people = make_members(members)
    typing = [False] * members
    yield members_message([full(m, False) for m in people], [], delta=False)
    yield contents_message([], delta=False)
    for step in range(count - 2):
        who = rng.randrange(1, members)
        if int((step + 1) * text_share) == int(step * text_share):
            typing[who] = not typing[who]
            yield members_message([], [full(people[who], typing[who])], delta=True)
            continue
        words = rng.choices(WORDS, k=rng.randint(3, 30))
        if rng.random() < 0.05:
            words.insert(len(words) // 2, "\n")
        line = {
            "chatMember": people[who],
            "text": " ".join(words).replace(" \n ", "\n"),
            "timestamp": wire_time(step),
            "messageType": 0,
        }
        yield contents_message([line], delta=True)


def write_capture(path: Path, count: int, **options: Any) -> Path:
    """Write the capture as ``watch --raw`` would: compact JSON, one message per line, UTF-8."""
    with path.open("w", encoding="utf-8") as out:
        for message in messages(count, **options):
            out.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n")
    return path
