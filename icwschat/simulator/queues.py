"""Interaction queues and queue subscriptions (icws-protocol.md 6a): who is in which queue, who may see it,
and what each subscription has shown its session so far. Plain data; the state module drives it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SYSTEM, USER, WORKGROUP, STATION = 0, 1, 2, 3
"""ICWS ``queueType`` values."""
QUEUE_TYPES = {SYSTEM: "system", USER: "user", WORKGROUP: "workgroup", STATION: "station"}


@dataclass(frozen=True, slots=True)
class QueueId:
    """A queue as ICWS names it: ``{"queueType": 2, "queueName": "Support"}``."""

    queue_type: int
    name: str

    def __str__(self) -> str:
        return f"{QUEUE_TYPES.get(self.queue_type, self.queue_type)}:{self.name}"


SUPPORT = QueueId(WORKGROUP, "Support")
"""The workgroup the simulator's scripted chats arrive in, one after another, for ever."""
LOAD = QueueId(WORKGROUP, "Load")
"""The workgroup of the load generator's synthetic chats."""
RESTRICTED = QueueId(WORKGROUP, "Billing")
"""A workgroup no user may see; bundled scenarios without rights live there."""


@dataclass(eq=False)
class Queue:
    queue_id: QueueId
    viewers: frozenset[str] | None
    """The users who may subscribe to it; None: every user."""
    interactions: dict[str, None] = field(default_factory=dict)
    """Interaction ids in the order they entered."""

    def visible_to(self, user: str) -> bool:
        return self.viewers is None or user in self.viewers


@dataclass(eq=False)
class QueueSubscription:
    """One ``PUT …/subscriptions/queues/{subscriptionId}``: what it asked for and what it has shown."""

    subscription_id: str
    queue_ids: tuple[QueueId, ...]
    attribute_names: frozenset[str]
    limit: int | None
    shown: dict[str, None] = field(default_factory=dict)
    """The interactions its session has been told about (added and not removed since), in order."""

    def pick(self, attributes: Mapping[str, str]) -> dict[str, str]:
        """The attributes it asked for, of those given; names the server does not know are left out."""
        return {name: value for name, value in attributes.items() if name in self.attribute_names}

    def has_room(self) -> bool:
        return self.limit is None or len(self.shown) < self.limit

    def fill(self, candidates: Iterable[str]) -> list[str]:
        """Show the first candidates not shown yet, while the limit allows; the ones newly shown."""
        added: list[str] = []
        for iid in candidates:
            if not self.has_room():
                break
            if iid not in self.shown:
                self.shown[iid] = None
                added.append(iid)
        return added
