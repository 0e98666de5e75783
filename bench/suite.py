"""Benchmarks B1-B6 of BENCHMARKS.md (B7, a queue at scale, is in scale.py). Each returns a :class:`Result`;
figures are medians of several runs, and every comparison is measured side by side in the same run, because
these machines are shared and noisy.
"""

from __future__ import annotations

import io
import os
import queue
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .capture import messages, write_capture

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
QUIET_CHAT = "2001"
PASSWORD = "icws-sim"


@dataclass
class Result:
    id: str
    what: str
    goal: str
    met: bool | None
    """None when the benchmark could not run here (say why in ``note``)."""
    summary: str
    figures: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class Sizes:
    """How much work each benchmark does: the issue's sizes, or tiny ones for a smoke test."""

    replay_messages: int = 200_000
    replay_runs: int = 5
    latency_samples_sse: int = 200
    latency_samples_poll: int = 40
    poll_interval: float = 1.0
    frame_lines: tuple[int, ...] = (100, 10_000, 100_000)
    frames: int = 30
    startup_runs: int = 20
    idle_seconds: float = 60.0
    memory_messages: int = 200_002
    """Half of them text: the transcript ends with 100,000 lines."""
    scale_chats: tuple[int, ...] = (500, 2_000)
    scale_seconds: float = 60.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            replay_messages=2_000,
            replay_runs=1,
            latency_samples_sse=5,
            latency_samples_poll=3,
            poll_interval=0.2,
            frame_lines=(100, 1_000),
            frames=3,
            startup_runs=2,
            idle_seconds=2.0,
            memory_messages=2_002,
            scale_chats=(50,),
            scale_seconds=5.0,
        )


# ---- helpers -----------------------------------------------------------------------------------------


def icwschat_command() -> list[str]:
    """The console script a user runs, from the same environment as this interpreter."""
    script = Path(sys.executable).with_name("icwschat")
    return [str(script)] if script.exists() else [sys.executable, "-m", "icwschat"]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, ICWSCHAT_HOME=str(home), TZ="UTC", NO_COLOR="1")
    env.pop("ICWS_PASSWORD", None)
    env.update(extra)
    return env


def run_timed(command: list[str]) -> float:
    """Wall seconds of one run, with stdout discarded as ``> /dev/null`` would."""
    return run_measured(command)[0]


def run_measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all its processes) of one run, stdout discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


PEAK_RSS = """
import resource, subprocess, sys, time

def tree(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            children = [int(c) for c in handle.read().split()]
    except OSError:
        return []
    return [pid] + [p for child in children for p in tree(child)]

def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as handle:
            return next(int(l.split()[1]) for l in handle if l.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0

proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
peak = 0
while proc.poll() is None:
    peak = max(peak, sum(map(rss_kib, tree(proc.pid))))
    time.sleep(0.01)
assert proc.returncode == 0
print(max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
"""


def peak_rss_kib(command: list[str]) -> int:
    """Peak RSS of ``command`` and the processes it starts (replay parses in a second one), together.

    Sampled every 10 ms from /proc; pages a fork shares count once per process, so the figure errs high.
    It is taken from a small interpreter of its own: a child's peak counts the memory of the process that
    forked it, so measured straight from this one (which holds B3's 100,000-line caches) it would be this
    process's size, not the command's.
    """
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *command], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


@contextmanager
def simulator(scenarios: Path = SCENARIOS) -> Iterator[Any]:
    """The simulator serving the bench's never-ending quiet chat (or the chats in ``scenarios``)."""
    from icwschat.simulator import Simulator, SimulatorServer, load_scenarios

    server = SimulatorServer(Simulator(load_scenarios(scenarios)), port=0).start()
    try:
        yield server
    finally:
        server.stop()


def log_in(server: Any, home: Path) -> Path:
    """A session of its own in ``home``: one watcher per session, as icwschat insists."""
    login = [*icwschat_command(), "login", "--server", server.url, "--user", "agent.one"]
    subprocess.run(login, env=cli_env(home, ICWS_PASSWORD=PASSWORD), check=True, capture_output=True)
    return home


class Background:
    """A CLI process the benchmark lets run: its CPU so far, and a Ctrl-C to end it."""

    proc: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """User plus system CPU of the process so far, from /proc."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.proc.args!r} ended early, exit status {self.proc.returncode}")
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Watch(Background):
    """``icwschat watch --json`` in the background, every stdout line timestamped the moment it is read."""

    def __init__(self, home: Path, *args: str) -> None:
        command = [*icwschat_command(), "watch", QUIET_CHAT, "--json", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=cli_env(home), cwd=ROOT, bufsize=0)
        self.lines: queue.Queue[tuple[float, bytes]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.perf_counter(), line))

    def wait_for(self, needle: bytes, timeout: float = 15.0) -> float:
        """When the first line holding ``needle`` arrived."""
        deadline = time.monotonic() + timeout
        while True:
            arrived, line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if needle in line:
                return arrived


class TerminalWatch(Background):
    """``icwschat watch`` in its live view, on a 100x30 pseudo-terminal whose output is read and dropped."""

    def __init__(self, home: Path, *args: str) -> None:
        import fcntl
        import pty
        import struct
        import termios

        self.primary, secondary = pty.openpty()
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.proc = subprocess.Popen(
            [*icwschat_command(), "watch", QUIET_CHAT, *args],
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env=cli_env(home, TERM="xterm-256color"),
            cwd=ROOT,
            start_new_session=True,
        )
        os.close(secondary)
        self.shown = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.primary, 65536)
            except OSError:
                return
            if not data:
                return
            if b"Visitor" in data:
                self.shown.set()

    def wait_until_shown(self, timeout: float = 15.0) -> None:
        if not self.shown.wait(timeout):
            raise TimeoutError("the live view never showed the chat")


# ---- the benchmarks ------------------------------------------------------------------------------------


def b1_throughput(sizes: Sizes, work: Path) -> Result:
    what = "replay --json vs jq -c . on the same capture"
    goal = ">= 2x jq's messages per second"
    jq = shutil.which("jq")
    if jq is None:
        return Result("B1", what, goal, None, "not run", note="jq is not installed")
    count = sizes.replay_messages
    capture = write_capture(work / "b1-capture.ndjson", count)
    jq_times: list[float] = []
    replay_times: list[float] = []
    jq_cpu: list[float] = []
    replay_cpu: list[float] = []
    for _ in range(sizes.replay_runs):
        for command, times, cpu in (
            ([jq, "-c", ".", str(capture)], jq_times, jq_cpu),
            ([*icwschat_command(), "replay", str(capture), "--json"], replay_times, replay_cpu),
        ):
            wall, seconds = run_measured(command)
            times.append(wall)
            cpu.append(seconds)
    jq_rate, replay_rate = count / statistics.median(jq_times), count / statistics.median(replay_times)
    ratio = replay_rate / jq_rate
    # replay parses in a second process: its CPU time, against jq's, says what the speed costs.
    cpu_ratio = statistics.median(jq_cpu) / statistics.median(replay_cpu)
    return Result(
        "B1",
        what,
        goal,
        ratio >= 2,
        f"{ratio:.2f}x ({replay_rate:,.0f} vs {jq_rate:,.0f} msg/s; per CPU second {cpu_ratio:.2f}x)",
        {
            "messages": count,
            "capture_bytes": capture.stat().st_size,
            "replay_seconds": replay_times,
            "jq_seconds": jq_times,
            "replay_cpu_seconds": replay_cpu,
            "jq_cpu_seconds": jq_cpu,
            "cpu_ratio": round(cpu_ratio, 3),
            "replay_msgs_per_s": round(replay_rate),
            "jq_msgs_per_s": round(jq_rate),
            "ratio": round(ratio, 3),
        },
    )


def phases(samples: int, span: float) -> list[float]:
    """``samples`` delays spread evenly over ``span``, in a seeded random order.

    A line arrives at a random moment of the poll cycle; spreading the moments evenly instead of drawing
    them at random gives the same distribution with far less noise in the median.
    """
    spread = [(index + 0.5) * span / samples for index in range(samples)]
    random.Random(2).shuffle(spread)
    return spread


def wait_for_next_poll(sim: Any) -> None:
    """Return just after the simulator receives the watcher's next short poll: phase zero of its cycle."""
    seen = sim.polls
    deadline = time.monotonic() + 30
    while sim.polls == seen and time.monotonic() < deadline:
        time.sleep(0.0005)


def b2_latency(sizes: Sizes, work: Path) -> Result:
    what = "simulator queues a line -> its NDJSON line on stdout (loopback)"
    interval = sizes.poll_interval
    goal = f"SSE p99 <= 20 ms; poll p50 <= {ms(interval / 2) + 10:g} ms (interval {interval:g} s), no overlap"
    latencies: dict[str, list[float]] = {}
    with simulator() as server:
        sim = server.simulator
        home = log_in(server, work / "b2-home")
        for transport, samples in (("sse", sizes.latency_samples_sse), ("poll", sizes.latency_samples_poll)):
            watch = Watch(home, "--transport", transport, "--interval", str(interval))
            try:
                watch.wait_for(b'"member_joined"')
                found = []
                for index, phase in enumerate(phases(samples, interval if transport == "poll" else 0.02)):
                    if transport == "poll":
                        wait_for_next_poll(sim)
                    time.sleep(phase)
                    marker = f"bench-{transport}-{index}"
                    start = time.perf_counter()
                    sim.say(QUIET_CHAT, "visitor", marker)
                    found.append(watch.wait_for(marker.encode()) - start)
                latencies[transport] = found
            finally:
                watch.stop()
        overlap = sim.most_polls_in_flight
    sse, poll = latencies["sse"], latencies["poll"]
    sse_p99, poll_p50 = percentile(sse, 99), statistics.median(poll)
    met = sse_p99 <= 0.020 and poll_p50 <= interval / 2 + 0.010 and overlap <= 1
    return Result(
        "B2",
        what,
        goal,
        met,
        f"SSE p50 {ms(statistics.median(sse))} / p99 {ms(sse_p99)} ms; poll p50 {ms(poll_p50)} ms; "
        f"most polls at once {overlap}",
        {
            "sse_ms": {
                "p50": ms(statistics.median(sse)),
                "p99": ms(sse_p99),
                "max": ms(max(sse)),
                "n": len(sse),
            },
            "poll_ms": {"p50": ms(poll_p50), "p99": ms(percentile(poll, 99)), "n": len(poll)},
            "poll_interval_s": interval,
            "most_polls_in_flight": overlap,
        },
    )


BOARD_CHATS = 50


def retarget(batch: list[Any], iid: str) -> list[Any]:
    """The bench capture's messages, about interaction ``iid`` instead of its own."""
    import json

    from .capture import INTERACTION_ID

    return json.loads(json.dumps(batch).replace(f'"{INTERACTION_ID}"', f'"{iid}"'))  # type: ignore[no-any-return]


def followed(ids: list[str], lines: int) -> Any:
    """A router following ``ids``, ``lines`` lines in all shared out among them, 50 members each."""
    from datetime import datetime, timezone

    from icwschat.router import Router
    from icwschat.updates import parse_messages

    router = Router(ids)
    for iid in ids:
        batch = retarget(list(messages(lines // len(ids) + 2, members=50, text_share=1.0)), iid)
        router.apply_updates(*parse_messages(batch)[:1], datetime.now(timezone.utc))
    assert sum(len(chat.cache.transcript) for chat in router) == lines // len(ids) * len(ids)
    return router


def b3_frame_cost(sizes: Sizes, work: Path) -> Result:
    from datetime import datetime, timezone

    from rich.console import Console

    from icwschat.render import LiveSink
    from icwschat.sinks import WatchInfo
    from icwschat.updates import parse_messages

    from .capture import contents_message, make_members

    what = (
        "one live-view frame (a line printed above the footer, the footer redrawn), 100x40 terminal: "
        f"one chat of 50 members, and a board of {BOARD_CHATS} chats"
    )
    goal = "cost at the most lines <= 1.5x cost at 100"
    layouts = {"one chat": ["1001"], "board": [str(2001 + n) for n in range(BOARD_CHATS)]}
    views = {}
    for layout, ids in layouts.items():
        for lines in sizes.frame_lines:
            # A console each: views sharing one would be drawn as one, every footer in each frame.
            out = io.StringIO()
            console = Console(file=out, width=100, height=40, force_terminal=True, color_system="truecolor")
            sink = LiveSink(console, io.StringIO())
            sink.started(WatchInfo(tuple(ids), "http://127.0.0.1:8018", "agent.one", "sse"))
            sink.status("connected", trouble=False)
            views[layout, lines] = (sink, followed(ids, lines), out)
    speaker = make_members(1)[0]
    times: dict[tuple[str, int], list[float]] = {key: [] for key in views}
    for frame in range(sizes.frames):
        said = [
            {
                "chatMember": speaker,
                "text": f"frame {frame}",
                "timestamp": "20261129T100000Z",
                "messageType": 0,
            }
        ]
        for key, (sink, router, out) in views.items():  # the sizes take turns: a busy moment hits all
            message = retarget([contents_message(said, delta=True)], next(iter(router.chats)))
            events = router.apply_updates(*parse_messages(message)[:1], datetime.now(timezone.utc)).events
            out.seek(0)
            out.truncate()
            start = time.perf_counter()
            sink.update(events, router)
            sink.idle()  # a frame: the live view draws at most ten a second, what waits is drawn on a tick
            times[key].append(time.perf_counter() - start)
            assert f"frame {frame}" in out.getvalue()
    for sink, _, _ in views.values():
        sink.close()
    costs = {key: statistics.median(samples) for key, samples in times.items()}
    smallest, largest = min(sizes.frame_lines), max(sizes.frame_lines)
    ratios = {layout: costs[layout, largest] / costs[layout, smallest] for layout in layouts}
    return Result(
        "B3",
        what,
        goal,
        max(ratios.values()) <= 1.5,
        "; ".join(
            f"{layout} {ratios[layout]:.2f}x ({ms(costs[layout, largest])} ms at {largest:,} lines, "
            f"{ms(costs[layout, smallest])} ms at {smallest})"
            for layout in layouts
        ),
        {
            "frame_ms": {f"{layout}, {lines}": ms(cost) for (layout, lines), cost in costs.items()},
            "ratio": {layout: round(ratio, 3) for layout, ratio in ratios.items()},
        },
    )


def b4_startup(sizes: Sizes, work: Path) -> Result:
    what = "icwschat --help / --version vs python -c 'import typer'"
    goal = "<= 1.3x"
    # Measure the installed state: pip writes bytecode for installed packages, a source checkout may lack it.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "icwschat")], check=True)
    commands = {
        "import typer": [sys.executable, "-c", "import typer"],
        "--help": [*icwschat_command(), "--help"],
        "--version": [*icwschat_command(), "--version"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(sizes.startup_runs):
        for name, command in commands.items():
            times[name].append(run_timed(command))
    base = statistics.median(times["import typer"])
    ratios = {name: statistics.median(times[name]) / base for name in ("--help", "--version")}
    return Result(
        "B4",
        what,
        goal,
        max(ratios.values()) <= 1.3,
        f"--help {ratios['--help']:.2f}x, --version {ratios['--version']:.2f}x (typer {ms(base)} ms)",
        {
            "median_ms": {name: ms(statistics.median(v)) for name, v in times.items()},
            "ratios": {name: round(r, 3) for name, r in ratios.items()},
        },
    )


def quiet_board(work: Path) -> tuple[Path, list[str]]:
    """A scenario folder of :data:`BOARD_CHATS` copies of the quiet chat, and their ids."""
    import json

    folder = work / "b5-board-scenarios"
    folder.mkdir(exist_ok=True)
    quiet = json.loads((SCENARIOS / f"{QUIET_CHAT}-quiet.json").read_text(encoding="utf-8"))
    ids = [str(int(QUIET_CHAT) + n) for n in range(BOARD_CHATS)]
    for iid in ids:
        (folder / f"{iid}.json").write_text(json.dumps({**quiet, "interactionId": iid}), encoding="utf-8")
    return folder, ids


def wait_for_subscribers(server: Any, ids: list[str], count: int, timeout: float = 60.0) -> None:
    """Until every chat of ``ids`` has ``count`` subscribers: the watchers have taken their snapshots, and
    what follows is idle."""
    deadline = time.monotonic() + timeout
    while any(len(server.simulator.subscribers(iid)) < count for iid in ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the board's chats were not all subscribed within {timeout:g} s")
        time.sleep(0.1)
    time.sleep(1.0)  # their snapshots, on their way


def b5_idle(sizes: Sizes, work: Path) -> Result:
    what = (
        "CPU while watching a quiet chat: live view and --json, default interval; "
        f"and the live view of {BOARD_CHATS} quiet chats (a board)"
    )
    goal = "<= 0.6 s CPU per minute, polling and SSE"
    seconds = sizes.idle_seconds
    per_minute: dict[str, float] = {}
    folder, board = quiet_board(work)
    with simulator() as server, simulator(folder) as boards:
        # All at once, each on its own session: they are idle, and it saves minutes of wall time.
        watches: dict[str, Background] = {}
        for transport in ("poll", "sse"):
            live = TerminalWatch(log_in(server, work / f"b5-live-{transport}"), "--transport", transport)
            watches[f"live view, {transport}"] = live
            piped = Watch(log_in(server, work / f"b5-json-{transport}"), "--transport", transport)
            watches[f"--json, {transport}"] = piped
            home = log_in(boards, work / f"b5-board-{transport}")
            watches[f"board, {transport}"] = TerminalWatch(home, *board[1:], "--transport", transport)
        try:
            for watch in watches.values():
                if isinstance(watch, Watch):
                    watch.wait_for(b'"member_joined"')
                elif isinstance(watch, TerminalWatch):
                    watch.wait_until_shown()
            wait_for_subscribers(boards, board, count=2)
            before = {name: w.cpu_seconds() for name, w in watches.items()}
            time.sleep(seconds)
            for name, watch in watches.items():
                per_minute[name] = (watch.cpu_seconds() - before[name]) * 60 / seconds
        finally:
            for watch in watches.values():
                watch.stop()
    worst = max(per_minute, key=per_minute.__getitem__)
    return Result(
        "B5",
        what,
        goal,
        per_minute[worst] <= 0.6,
        ", ".join(f"{name} {cpu:.2f}" for name, cpu in per_minute.items()) + " s/min",
        {"cpu_s_per_min": {k: round(v, 3) for k, v in per_minute.items()}, "measured_s": seconds},
    )


def b6_memory(sizes: Sizes, work: Path) -> Result:
    what = "peak RSS of replay --json (both processes), capture leaving 100,000 lines in the transcript"
    goal = "<= 150 MB"
    count = sizes.memory_messages
    capture = write_capture(work / "b6-capture.ndjson", count)
    lines = (count - 2) // 2
    peak_kib = peak_rss_kib([*icwschat_command(), "replay", str(capture), "--json"])
    peak_mb = peak_kib * 1024 / 1e6
    return Result(
        "B6",
        what,
        goal,
        peak_mb <= 150,
        f"{peak_mb:.0f} MB for {lines:,} transcript lines",
        {"peak_rss_mb": round(peak_mb, 1), "transcript_lines": lines, "messages": count},
    )


BENCHMARKS: dict[str, Callable[[Sizes, Path], Result]] = {
    "B1": b1_throughput,
    "B2": b2_latency,
    "B3": b3_frame_cost,
    "B4": b4_startup,
    "B5": b5_idle,
    "B6": b6_memory,
}


def machine() -> dict[str, Any]:
    import platform
    from importlib.metadata import version

    cpu = next(
        (line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    jq = shutil.which("jq")
    jq_version = (
        subprocess.run([jq, "--version"], capture_output=True, text=True).stdout.strip() if jq else None
    )
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "jq": jq_version,
        "packages": {name: version(name) for name in ("typer", "rich", "requests", "orjson", "werkzeug")},
    }


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except OSError:
        return []


def print_table(results: list[Result], out: IO[str]) -> None:
    rows = [("id", "what", "result", "goal", "met")]
    for r in results:
        met = "n/a" if r.met is None else "yes" if r.met else "NO"
        rows.append((r.id, r.what, r.summary + (f" ({r.note})" if r.note else ""), r.goal, met))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for index, row in enumerate(rows):
        out.write("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |\n")
        if index == 0:
            out.write("|" + "|".join("-" * (w + 2) for w in widths) + "|\n")
