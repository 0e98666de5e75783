"""The load generator: a number of synthetic chats kept going at once in workgroup Load, for measuring a
client at scale against real HTTP.

Each chat arrives (``Eic_State`` O), is picked up, then its customer and agent take turns, a line every
``line_every`` script seconds on average, the agent typing before each of their lines; after a random number
of lines it ends and a new chat arrives in its place, so the number of live chats stays the same. Every line
ends in `` @<time.time()>`` of the moment it was queued for subscribers, so a benchmark can measure latency.

No thread per chat: every chat's next event sits in the simulator's one heap of due times. With the
defaults, 500 chats make about 100 ICWS messages a second (a customer line is one message, an agent line
three: typing on, the line, typing off).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .queues import LOAD
from .scenarios import chat_scenario

if TYPE_CHECKING:
    from .state import Simulator

LINE_EVERY = 10.0
"""Script seconds between two lines of one chat, on average (each gap is 0.5 to 1.5 times this)."""
LINES = (20, 60)
"""The fewest and most lines of one chat."""
TYPING_AHEAD = 0.3
"""The agent starts typing this part of the gap before their line."""
LINGER = 3.0
"""Script seconds an ended chat stays in the queue."""
AGENTS = 40


@dataclass(eq=False)
class _Chat:
    iid: str
    lines: int
    said: int = 0
    typing_for: float = 0.0
    """Script seconds between the agent starting to type and their line."""

    @property
    def speaker(self) -> str:
        """Who says the next line: the customer first, then the agent, in turn."""
        return "agent" if self.said % 2 else "customer"


class LoadGenerator:
    """Keeps ``chats`` synthetic chats live in workgroup Load; made by :meth:`Simulator.start_load`."""

    def __init__(
        self,
        sim: Simulator,
        chats: int,
        *,
        line_every: float = LINE_EVERY,
        lines: tuple[int, int] = LINES,
        seed: int | None = None,
    ) -> None:
        if chats < 0 or line_every <= 0 or not 1 <= lines[0] <= lines[1]:
            raise ValueError("expected chats >= 0, line_every > 0 and 1 <= fewest <= most lines")
        self.sim = sim
        self.target = chats
        self.line_every = line_every
        self.lines = lines
        self.rng = random.Random(seed)
        self.live: dict[str, _Chat] = {}
        """The chats not ended yet, by id."""
        self.arrived = 0
        self.said = 0
        """Lines said so far, by every chat."""
        self.stopped = False

    def start(self) -> None:
        with self.sim.changed:
            for _ in range(self.target):
                self._arrive()

    def stop(self) -> None:
        """No more lines or chats; those live stay as they are."""
        with self.sim.changed:
            self.stopped = True

    def live_chats(self) -> list[str]:
        with self.sim.changed:
            return list(self.live)

    def _arrive(self) -> None:
        self.arrived += 1
        iid = self.sim.new_interaction_id()
        agent = f"load.agent.{self.arrived % AGENTS + 1}"
        scenario = chat_scenario(iid, f"Customer {self.arrived}", agent=agent)
        self.sim.admit(scenario, LOAD, linger=LINGER)
        chat = _Chat(iid, self.rng.randint(*self.lines))
        self.live[iid] = chat
        self._after(self._gap() / 2, chat, self._pick_up)

    def _pick_up(self, chat: _Chat) -> None:
        self.sim.pick_up(chat.iid)
        self._next_line(chat)

    def _next_line(self, chat: _Chat) -> None:
        gap = self._gap()
        if chat.speaker == "agent":
            chat.typing_for = gap * TYPING_AHEAD
            self._after(gap - chat.typing_for, chat, self._start_typing)
        else:
            self._after(gap, chat, self._say)

    def _start_typing(self, chat: _Chat) -> None:
        self.sim.typing(chat.iid, "agent", True)
        self._after(chat.typing_for, chat, self._say)

    def _say(self, chat: _Chat) -> None:
        speaker = chat.speaker
        chat.said += 1
        self.said += 1
        self.sim.say(chat.iid, speaker, f"{speaker} line #{chat.said} of {chat.iid} @{time.time():.6f}")
        if speaker == "agent":
            self.sim.typing(chat.iid, "agent", False)
        if chat.said < chat.lines:
            self._next_line(chat)
            return
        self.sim.end_chat(chat.iid, "I" if speaker == "agent" else "E")
        del self.live[chat.iid]
        self._arrive()

    def _gap(self) -> float:
        return self.line_every * self.rng.uniform(0.5, 1.5)

    def _after(self, script_seconds: float, chat: _Chat, step: Callable[[_Chat], None]) -> None:
        def run() -> None:
            if self.stopped:
                return
            if chat.iid not in self.sim.interactions:  # a test morphed it away: another takes its place
                del self.live[chat.iid]
                self._arrive()
                return
            step(chat)

        self.sim.at(self.sim.clock() + script_seconds / self.sim.speed, run)
