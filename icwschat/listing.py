"""``icwschat chats``: a queue's interactions as rows, for a table or JSON. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from unicodedata import combining, east_asian_width

from .models import STATE_WORDS, BadMessage, parse_timestamp
from .router import CHAT_OBJECT_TYPE, OTHER_OBJECT_TYPES
from .textsafe import inert
from .updates import Attributes


@dataclass(frozen=True, slots=True)
class Queued:
    """One interaction of a queue, as the queue subscription describes it."""

    interaction_id: str
    queue: str
    attributes: Attributes

    @property
    def is_chat(self) -> bool | None:
        """True for a chat, False for another kind, None when the server's word is missing or unknown."""
        kind = self.attributes.get("Eic_ObjectType")
        if kind == CHAT_OBJECT_TYPE:
            return True
        return False if kind in OTHER_OBJECT_TYPES else None

    def to_json(self) -> dict[str, Any]:
        return {
            "interactionId": self.interaction_id,
            "queue": self.queue,
            "state": state_word(self.attributes.get("Eic_State")),
            "attributes": dict(self.attributes),
        }


def listed(queued: dict[str, Attributes], queue: str, *, everything: bool) -> list[Queued]:
    """The queue's chats (``everything``: all its interactions), in the server's order. One of unsaid or
    unknown kind is listed as a chat: telling would take a subscription per interaction."""
    rows = [Queued(iid, queue, attributes) for iid, attributes in queued.items()]
    return rows if everything else [row for row in rows if row.is_chat is not False]


def state_word(letter: str | None) -> str | None:
    return None if letter is None else STATE_WORDS.get(letter, letter)


def age(attributes: Attributes, now: datetime) -> str:
    """How long ago the interaction began (``Eic_InitiationTime``), in the largest whole unit: ``3m``."""
    try:
        began = parse_timestamp(attributes.get("Eic_InitiationTime"))
    except BadMessage:
        return "-"
    seconds = max(0, int((now - began).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def chat_table(rows: list[Queued], now: datetime) -> list[str]:
    header = ("ID", "STATE", "CUSTOMER", "AGENT", "WORKGROUP", "AGE")
    cells = [
        (
            row.interaction_id,
            state_word(row.attributes.get("Eic_State")),
            row.attributes.get("Eic_RemoteName"),
            row.attributes.get("Eic_UserName"),
            row.attributes.get("Eic_WorkgroupName"),
            age(row.attributes, now),
        )
        for row in rows
    ]
    return aligned(header, cells)


def cell_len(text: str) -> int:
    """Columns of a terminal, not characters: a CJK name or an emoji takes two, a combining mark none."""
    return sum(0 if combining(c) else 2 if east_asian_width(c) in "WF" else 1 for c in text)


def aligned(
    header: Sequence[str], rows: Sequence[Sequence[str | None]], marks: Sequence[str] | None = None
) -> list[str]:
    """Rows as aligned columns under ``header``, server text made inert, ``-`` for what is missing;
    ``marks`` (one per row) go before each row."""
    shown = [tuple(header), *(tuple(inert(value or "-", multiline=False) for value in row) for row in rows)]
    widths = [max(cell_len(row[i]) for row in shown) for i in range(len(header))]
    prefixes = ["  ", *marks] if marks is not None else [""] * len(shown)
    return [
        (
            prefix
            + "  ".join(
                cell + " " * (width - cell_len(cell)) for cell, width in zip(row, widths, strict=True)
            )
        ).rstrip()
        for prefix, row in zip(prefixes, shown, strict=True)
    ]
