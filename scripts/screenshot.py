"""The README's picture of the live view: the demo chat (the simulator's scenario 1001) as ``icwschat watch``
shows it a few seconds in, exported as SVG by rich itself.

    python scripts/screenshot.py            # writes docs/live-view.svg
    python scripts/screenshot.py --check    # exits 1 when docs/live-view.svg is not what the view draws now

The scenario's messages are fed through the real router and view into a recording console of a fixed size,
with fixed times, so the picture changes only when the view does.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from icwschat.render import FrameSink
from icwschat.router import Router
from icwschat.simulator import load_scenarios
from icwschat.simulator.scenarios import Scenario, ScriptMember
from icwschat.sinks import Clock, WatchInfo
from icwschat.updates import parse_messages

PICTURE = Path(__file__).resolve().parent.parent / "docs" / "live-view.svg"
CHAT = "1001"
USER = "agent.one"
"""Who watches: the simulator's user, shown as "you", as the simulator sends that member to its own user."""
START = datetime(2026, 11, 29, 9, 30, tzinfo=timezone.utc)
UNTIL = 8.0
"""Seconds into the scenario's script: the supervisor has joined, the customer was renamed and is typing."""
WIDTH, HEIGHT = 100, 30
MEMBERS = "urn:inin.com:interactions.chat:chatMembersMessage"
CONTENTS = "urn:inin.com:interactions.chat:chatContentsMessage"


def member(who: ScriptMember, *, name: str | None = None, typing: bool = False) -> dict[str, Any]:
    return {
        "__type": "urn:inin.com:interactions.chat:fullChatMember",
        "userId": who.user_id,
        "displayName": name or who.display_name,
        "interactionId": CHAT,
        "chatMemberType": 2 if who.user_id == USER else who.chat_member_type,
        "isTyping": typing,
    }


def said(who: dict[str, Any], text: str, when: datetime, message_type: int) -> dict[str, Any]:
    sender = {key: who[key] for key in ("userId", "displayName", "interactionId", "chatMemberType")}
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    return {"chatMember": sender, "text": text, "timestamp": stamp, "messageType": message_type}


def batches(scenario: Scenario) -> list[tuple[datetime, dict[str, Any]]]:
    """The ICWS messages of the scenario up to :data:`UNTIL`, each with when it arrives."""
    present = {m.id: member(m) for m in scenario.members if m.present}
    everyone = {m.id: m for m in scenario.members}
    history = [
        said(member(everyone[line.member]), line.text, START - timedelta(seconds=line.ago), line.message_type)
        for line in scenario.history
    ]
    messages = [
        (
            START,
            {"__type": MEMBERS, "isDelta": False, "interactionId": CHAT, "membersAdded": [*present.values()]},
        ),
        (START, {"__type": CONTENTS, "isDelta": False, "interactionId": CHAT, "messagesAdded": history}),
    ]
    for step in scenario.script:
        if step.at > UNTIL:
            break
        when = START + timedelta(seconds=step.at)
        key = "membersChanged"
        if step.op == "say":
            line = said(
                present.get(step.member) or member(everyone[step.member]), step.text, when, step.message_type
            )
            messages.append(
                (when, {"__type": CONTENTS, "isDelta": True, "interactionId": CHAT, "messagesAdded": [line]})
            )
            continue
        if step.op == "join":
            present[step.member] = member(everyone[step.member])
            key = "membersAdded"
        elif step.op == "leave":
            key = "membersRemoved"
        elif step.op == "typing":
            present[step.member] = {**present[step.member], "isTyping": step.on}
        elif step.op == "rename":
            present[step.member] = {**present[step.member], "displayName": step.display_name}
        changed = present.pop(step.member) if step.op == "leave" else present[step.member]
        messages.append((when, {"__type": MEMBERS, "isDelta": True, "interactionId": CHAT, key: [changed]}))
    return messages


def render() -> str:
    """The picture as SVG text."""
    os.environ["TZ"] = "UTC"  # the times shown are the scenario's, wherever this runs
    time.tzset()
    console = Console(
        file=io.StringIO(),
        width=WIDTH,
        height=HEIGHT,
        record=True,
        force_terminal=True,
        color_system="truecolor",
        legacy_windows=False,
        _environ={},
    )
    clock = Clock(now=lambda: START + timedelta(seconds=UNTIL))
    sink = FrameSink(console, clock)
    sink.started(WatchInfo((CHAT,), "https://ic.example.com:8019", USER, "sse"))
    sink.status("connected", trouble=False)
    router = Router([CHAT])
    for when, message in batches(load_scenarios()[CHAT]):
        updates, problems = parse_messages([message])
        sink.update(router.apply_updates(updates, when, problems).events, router)
    sink.close()
    return console.export_svg(title=f"icwschat watch {CHAT}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the picture is current")
    args = parser.parse_args()
    svg = render()
    if args.check:
        if not PICTURE.exists() or PICTURE.read_text(encoding="utf-8") != svg:
            print(f"{PICTURE.name} is not current: run python scripts/screenshot.py", file=sys.stderr)
            return 1
        return 0
    PICTURE.parent.mkdir(exist_ok=True)
    PICTURE.write_text(svg, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
