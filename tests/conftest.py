"""Shared fixtures: an isolated state directory per test, a simulator on an ephemeral loopback port, and a
helper that runs the real CLI in a subprocess (real exit codes, real stdout/stderr, no traceback allowed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from icwschat.simulator import Simulator, SimulatorServer, load_scenarios

PASSWORD = "icws-sim"
USER = "agent.one"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("ICWSCHAT_HOME", str(home))
    monkeypatch.setenv("TZ", "UTC")
    for name in ("ICWS_PASSWORD", "ICWS_SERVER", "ICWS_USER", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    return home


def start_sim(speed: float = 20.0, host: str = "127.0.0.1", port: int = 0, **kw: Any) -> SimulatorServer:
    return SimulatorServer(Simulator(load_scenarios(), speed=speed, **kw), host=host, port=port).start()


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    server = start_sim()
    yield server
    server.stop()


@dataclass
class Result:
    code: int
    out: str
    err: str

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def spawn(*args: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen[str]:
    """Start the CLI in the background, for tests that act while it runs (signals, faults, a terminal)."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(
        [sys.executable, "-m", "icwschat", *args], text=True, env=env or cli_env(), cwd=ROOT, **popen
    )


def wait_for_subscriber(sim: SimulatorServer, iid: str, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + 15
    while not sim.simulator.subscribers(iid):
        assert time.monotonic() < deadline, "watch never subscribed"
        assert proc is None or proc.poll() is None, "watch exited before subscribing"
        time.sleep(0.02)


def icwschat(
    *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> Result:
    """Run the CLI as a user would; fail the test on any traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "icwschat", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or cli_env(),
        cwd=ROOT,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


def login(sim: SimulatorServer, *extra: str) -> Result:
    result = icwschat(
        "login", "--server", sim.url, "--user", USER, *extra, env=cli_env(ICWS_PASSWORD=PASSWORD)
    )
    assert result.code == 0, result.err
    return result


@pytest.fixture
def logged_in(sim: SimulatorServer) -> SimulatorServer:
    login(sim)
    return sim


def stored_session(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((home / "session.json").read_text())
    return data


@contextmanager
def logged_in_sim(speed: float) -> Iterator[SimulatorServer]:
    server = start_sim(speed=speed)
    try:
        login(server)
        yield server
    finally:
        server.stop()


@pytest.fixture
def slow_sim() -> Iterator[SimulatorServer]:
    """A logged-in simulator whose chats play at normal speed, for tests that act mid-chat."""
    with logged_in_sim(speed=1.0) as server:
        yield server


def shell(pipeline: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A shell pipeline of which the CLI is a part (``{cli}`` stands for it), as a user types it."""
    return subprocess.run(
        pipeline.format(cli=f"{sys.executable} -m icwschat"),
        shell=True,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        cwd=ROOT,
    )


def need_jq() -> None:
    """Skip without jq on a developer's machine; fail in CI, whose run installs it."""
    if shutil.which("jq") is None:
        if os.environ.get("CI"):
            pytest.fail("jq is missing: .ci/run installs it")
        pytest.skip("jq is not installed")
