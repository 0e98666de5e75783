"""Every recipe in examples/ runs against the simulator and gives what the README promises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, cli_env, need_jq

from icwschat.simulator import SimulatorServer

EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    need_jq()
    bin_dir = str(Path(sys.executable).parent)
    env = cli_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        ["sh", str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )


def test_messages_as_text(logged_in: SimulatorServer) -> None:
    proc = run_example("messages-as-text.sh", "1002")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "HelpBot: Welcome! How can I help?",
        "Max: I forgot my password",
        "HelpBot: Connecting you to an agent…",
        "Agent One: Hi Max, I have sent a reset link to your e-mail address.",
        "Max: Got it, thanks! 👍",
    ]


def test_typing_events(logged_in: SimulatorServer) -> None:
    proc = run_example("typing-events.sh", "1002")
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(e["event"], e["member"]["displayName"]) for e in events] == [
        ("typing_started", "Agent One"),
        ("typing_stopped", "Agent One"),
    ]


def test_save_transcript(logged_in: SimulatorServer, tmp_path: Path) -> None:
    target = tmp_path / "transcript.ndjson"
    proc = run_example("save-transcript.sh", "1001", str(target))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in target.read_text().splitlines()]
    assert [e["event"] for e in events].count("message") == 4


def test_every_example_script_is_tested() -> None:
    tested = {"messages-as-text.sh", "typing-events.sh", "save-transcript.sh", "record-and-replay.sh"}
    tested.add("ship-queue.sh")  # in test_queues_e2e.py, beside the other tests of following a queue
    assert {p.name for p in EXAMPLES.glob("*.sh")} == tested


def test_record_and_replay(logged_in: SimulatorServer, tmp_path: Path) -> None:
    capture = tmp_path / "chat.ndjson"
    proc = run_example("record-and-replay.sh", "1002", str(capture))
    assert proc.returncode == 0, proc.stderr
    counts = [line.split(None, 1) for line in proc.stdout.splitlines()]
    assert counts == [["2", "HelpBot"], ["2", "Max"], ["1", "Agent One"]]
    assert capture.read_text(encoding="utf-8").count("chatContentsMessage") >= 5


TERMINAL_ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""What a terminal acts on: C0 controls but tab and newline, DEL, C1, and the bidi formatting characters."""


@pytest.mark.parametrize("name", ["messages-as-text.sh", "typing-events.sh", "record-and-replay.sh"])
def test_recipes_are_safe_on_a_terminal_for_the_hostile_chat(
    logged_in: SimulatorServer, tmp_path: Path, name: str
) -> None:
    """Chat 1001 carries escape sequences, OSC titles and hyperlinks, C1 and bidi overrides in names and
    text: whatever a recipe prints for it may go straight to a terminal."""
    proc = run_example(name, "1001", str(tmp_path / "chat.ndjson"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert not TERMINAL_ACTIVE.search(proc.stdout), repr(TERMINAL_ACTIVE.search(proc.stdout))
