"""The Support workgroup's life: a scripted chat arrives every so often, for ever, each with a new id; it
waits (``Eic_State`` O), an agent picks it up (``Eic_UserName``, C), they talk, one of them ends it (E or I),
and it leaves the queue a little later. A phone call sits in the same workgroup all along.

Everything runs on the simulator's ticker, in script seconds (divided by its speed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .queues import SUPPORT
from .scenarios import Step, chat_scenario, display_name

if TYPE_CHECKING:
    from .state import Simulator

SUPPORT_EVERY = 15.0
"""Script seconds between two chats arriving in Support."""
LINGER = 3.0
"""Script seconds an ended Support chat stays in the queue."""
PICKUP_AT = 4.0
LINE_GAP = 3.0
AGENTS = ("agent.two", "agent.three")


@dataclass(frozen=True, slots=True)
class Dialogue:
    customer: str
    lines: tuple[tuple[str, str], ...]
    """(member id, text): the customer's first line comes before an agent picks the chat up."""
    ended_by: str
    """``customer`` (the chat ends in E) or ``agent`` (I)."""


DIALOGUES = (
    Dialogue(
        "Priya",
        (
            ("customer", "Hi, my last invoice shows the same charge twice."),
            ("agent", "Hello Priya, sorry about that. Could you give me the invoice number?"),
            ("customer", "It is INV-20931."),
            ("agent", "Thank you. I can see the duplicate; I have refunded it, it takes 3-5 days."),
            ("customer", "Great, thanks a lot!"),
        ),
        "customer",
    ),
    Dialogue(
        "Tomasz",
        (
            ("customer", "My router keeps dropping the connection every evening."),
            ("agent", "Hi Tomasz. Does the light on the front turn red when it happens?"),
            ("customer", "Yes, red for a minute, then green again."),
            ("agent", "That is a known firmware issue. I have pushed an update to your router tonight."),
            ("agent", "Is there anything else I can do for you?"),
            ("customer", "No, that's all."),
        ),
        "agent",
    ),
    Dialogue(
        "Ana",
        (
            ("customer", "Can I change the delivery address of order 5521?"),
            ("agent", "Hi Ana, yes, as long as it has not shipped. What is the new address?"),
            ("customer", "12 Rua das Flores, Porto."),
            ("agent", "Done: order 5521 now goes to 12 Rua das Flores, Porto."),
            ("customer", "Perfect, bye!"),
        ),
        "customer",
    ),
)


def support_script(dialogue: Dialogue, agent: str) -> tuple[Step, ...]:
    """The chat's timed steps: the first line, the pick-up, the talk (typing before each line), the end."""
    (first_member, first_text), *talk = dialogue.lines
    steps = [
        Step(1.0, "say", member=first_member, text=first_text),
        Step(PICKUP_AT, "pickup", member="agent"),
        Step(PICKUP_AT, "say", member="system", text=f"{display_name(agent)} has joined the conversation."),
    ]
    at = PICKUP_AT
    for member, text in talk:
        steps += [
            Step(at + 1.0, "typing", member=member, on=True),
            Step(at + LINE_GAP, "say", member=member, text=text),
            Step(at + LINE_GAP, "typing", member=member, on=False),
        ]
        at += LINE_GAP
    leaver = dialogue.ended_by
    name = display_name(agent) if leaver == "agent" else dialogue.customer
    steps += [
        Step(at + 1.0, "leave", member=leaver),
        Step(at + 1.0, "say", member="system", text=f"{name} has left the conversation."),
        Step(at + 1.5, "end", state="I" if leaver == "agent" else "E"),
    ]
    return tuple(steps)


class SupportCycle:
    """Starts the call, then one chat after another, ``every`` script seconds, for as long as the
    simulator runs."""

    def __init__(self, sim: Simulator, every: float) -> None:
        self.sim = sim
        self.every = every
        self.arrived = 0

    def start(self) -> None:
        call = chat_scenario(self.sim.new_interaction_id(), "Morgan", agent=AGENTS[-1], kind="call")
        self.sim.admit(call, SUPPORT, state="C", agent=call.member("agent").user_id)
        self._arrive()

    def _arrive(self) -> None:
        dialogue = DIALOGUES[self.arrived % len(DIALOGUES)]
        agent = AGENTS[self.arrived % len(AGENTS)]
        iid = self.sim.new_interaction_id()
        script = support_script(dialogue, agent)
        self.sim.admit(
            chat_scenario(iid, dialogue.customer, agent=agent, script=script), SUPPORT, linger=LINGER
        )
        self.arrived += 1
        self.sim.at(self.sim.clock() + self.every / self.sim.speed, self._arrive)
