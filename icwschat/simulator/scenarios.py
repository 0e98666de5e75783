"""Scripted interactions, read from JSON files (see examples/scenarios/ for the format)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUNDLED = Path(__file__).with_name("scenarios")
MEMBER_TYPES = {"none": 0, "system": 1, "current_user": 2, "internal": 3, "external": 4}
OPS = {"say", "typing", "join", "leave", "rename", "pickup", "end"}
END_STATES = ("E", "I")
"""``Eic_State`` of an ended interaction: disconnected remotely (the customer) or locally (the agent)."""


class ScenarioError(ValueError):
    """A scenario file that cannot be played; names the file and the problem."""


@dataclass(frozen=True, slots=True)
class ScriptMember:
    id: str
    user_id: str
    display_name: str
    chat_member_type: int
    present: bool = True


@dataclass(frozen=True, slots=True)
class HistoryLine:
    member: str
    text: str
    ago: float
    message_type: int = 0


@dataclass(frozen=True, slots=True)
class Step:
    at: float
    op: str
    member: str = ""
    text: str = ""
    on: bool = False
    display_name: str = ""
    message_type: int = 0
    state: str = "E"
    """For ``end``: the ``Eic_State`` it ends in."""


@dataclass(frozen=True, slots=True)
class Scenario:
    interaction_id: str
    title: str
    kind: str = "chat"
    rights: bool = True
    members: tuple[ScriptMember, ...] = ()
    history: tuple[HistoryLine, ...] = ()
    script: tuple[Step, ...] = field(default=())

    @property
    def is_chat(self) -> bool:
        return self.kind == "chat"

    def member(self, member_id: str) -> ScriptMember:
        for member in self.members:
            if member.id == member_id:
                return member
        raise ScenarioError(f"interaction {self.interaction_id}: no member {member_id!r}")

    @property
    def lines(self) -> int:
        return len(self.history) + sum(1 for step in self.script if step.op == "say")


def _member(data: dict[str, Any]) -> ScriptMember:
    kind = data.get("type", "none")
    if kind not in MEMBER_TYPES:
        raise ScenarioError(f"member type {kind!r} is not one of {', '.join(MEMBER_TYPES)}")
    return ScriptMember(
        id=str(data["id"]),
        user_id=str(data["userId"]),
        display_name=str(data.get("displayName", data["userId"])),
        chat_member_type=MEMBER_TYPES[kind],
        present=bool(data.get("present", True)),
    )


def _step(data: dict[str, Any]) -> Step:
    op = data.get("op")
    if op not in OPS:
        raise ScenarioError(f"step op {op!r} is not one of {', '.join(sorted(OPS))}")
    state = str(data.get("state", "E"))
    if state not in END_STATES:
        raise ScenarioError(f"end state {state!r} is not one of {', '.join(END_STATES)}")
    return Step(
        at=float(data["at"]),
        op=op,
        member=str(data.get("member", "")),
        text=str(data.get("text", "")),
        on=bool(data.get("on", False)),
        display_name=str(data.get("displayName", "")),
        message_type=1 if data.get("messageType") == "file" else 0,
        state=state,
    )


def parse_scenario(data: dict[str, Any]) -> Scenario:
    scenario = Scenario(
        interaction_id=str(data["interactionId"]),
        title=str(data.get("title", "")),
        kind=str(data.get("kind", "chat")),
        rights=bool(data.get("rights", True)),
        members=tuple(_member(m) for m in data.get("members", [])),
        history=tuple(
            HistoryLine(
                member=str(h["member"]),
                text=str(h["text"]),
                ago=float(h.get("ago", 0)),
                message_type=1 if h.get("messageType") == "file" else 0,
            )
            for h in data.get("history", [])
        ),
        script=tuple(sorted((_step(s) for s in data.get("script", [])), key=lambda s: s.at)),
    )
    for step in scenario.script:
        if step.op != "end":
            scenario.member(step.member)
    for line in scenario.history:
        scenario.member(line.member)
    return scenario


def load_scenarios(directory: Path | None = None) -> dict[str, Scenario]:
    """Every ``*.json`` scenario in ``directory`` (default: the bundled ones), by interaction id."""
    folder = directory or BUNDLED
    scenarios: dict[str, Scenario] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            scenario = parse_scenario(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ScenarioError(f"{path.name}: {exc}") from exc
        if scenario.interaction_id in scenarios:
            raise ScenarioError(f"{path.name}: interaction {scenario.interaction_id} is defined twice")
        scenarios[scenario.interaction_id] = scenario
    if not scenarios:
        raise ScenarioError(f"no scenario files (*.json) in {folder}")
    return scenarios


def display_name(user_id: str) -> str:
    """The name a user id stands for here: ``agent.two`` is Agent Two."""
    return user_id.replace(".", " ").title()


def chat_scenario(
    iid: str, customer: str, *, agent: str = "agent.two", kind: str = "chat", script: tuple[Step, ...] = ()
) -> Scenario:
    """An interaction the simulator makes up: the IC System and a customer, who has just joined, and an agent
    who is not there yet (member ids ``system``, ``customer``, ``agent``)."""
    members = (
        ScriptMember("system", "IC System", "IC System", MEMBER_TYPES["system"]),
        ScriptMember("customer", f"visitor-{iid}", customer, MEMBER_TYPES["external"]),
        ScriptMember("agent", agent, display_name(agent), MEMBER_TYPES["internal"], present=False),
    )
    joined = (HistoryLine("system", f"{customer} has joined the conversation.", 0.0),)
    return Scenario(
        interaction_id=iid,
        title=f"{customer} ({kind})",
        kind=kind,
        members=members,
        history=joined if kind == "chat" else (),
        script=script,
    )
