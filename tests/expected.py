"""What a scripted chat must look like as contract events, derived from the scenario file alone."""

from __future__ import annotations

from typing import Any

from icwschat.simulator.scenarios import Scenario


def expected_events(scenario: Scenario) -> list[tuple[str, str, str]]:
    """(event, member display name, text) for every event the script implies, in order."""
    names = {m.id: m.display_name for m in scenario.members}
    present = [m.id for m in scenario.members if m.present]
    typing: set[str] = set()
    out: list[tuple[str, str, str]] = [("member_joined", names[m], "") for m in present]
    out += [("message", names[line.member], line.text) for line in scenario.history]
    for step in scenario.script:
        if step.op == "say":
            out.append(("message", names[step.member], step.text))
        elif step.op == "typing" and (step.member in typing) != step.on:
            (typing.add if step.on else typing.discard)(step.member)
            out.append(("typing_started" if step.on else "typing_stopped", names[step.member], ""))
        elif step.op == "join":
            out.append(("member_joined", names[step.member], ""))
        elif step.op == "leave":
            typing.discard(step.member)
            out.append(("member_left", names[step.member], ""))
        elif step.op == "rename":
            names[step.member] = step.display_name
            out.append(("member_changed", step.display_name, ""))
        elif step.op == "end":
            out.append(("chat_ended", "", ""))
    return out


def project(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["event"], e.get("member", {}).get("displayName", ""), e.get("text", "")) for e in events]
