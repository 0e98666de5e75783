"""B7: one ``watch --queue`` process following hundreds of concurrent chats over SSE, fed by the simulator's
load generator over real HTTP. Each synthetic line carries the moment the simulator queued it
(``... line #N of ID @<time.time()>``), so latency is measured from queueing to the NDJSON line being read.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .suite import (
    ROOT,
    SCENARIOS,
    Background,
    Result,
    Sizes,
    cli_env,
    icwschat_command,
    log_in,
    ms,
    percentile,
)

LOAD_QUEUE = "workgroup:Load"
STAMPED = re.compile(r" line #(\d+) of (\S+) @(\d+\.\d+)$")


@dataclass
class Seen:
    """What the watcher wrote, tallied as it is read."""

    chats_added: int = 0
    subscribed: set[str] = field(default_factory=set)
    """Chats whose subscription's snapshot has come (a member joined, as every snapshot says)."""
    latencies: list[float] = field(default_factory=list)
    numbers: dict[str, list[int]] = field(default_factory=dict)
    """Each chat's line numbers, in the order they came (live lines only)."""


class QueueWatch(Background):
    def __init__(self, home: Path) -> None:
        command = [*icwschat_command(), "watch", "--queue", LOAD_QUEUE, "--json", "--transport", "sse"]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=cli_env(home), cwd=ROOT, bufsize=0)
        self.seen = Seen()
        self.measuring = threading.Event()
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.time()
            event: dict[str, Any] = json.loads(line)
            if event["event"] == "chat_added":
                self.seen.chats_added += 1
            elif event["event"] == "member_joined":
                self.seen.subscribed.add(event["interactionId"])
            if event["event"] != "message" or event.get("history"):
                continue
            match = STAMPED.search(event["text"])
            if match is None:
                continue
            self.seen.numbers.setdefault(event["interactionId"], []).append(int(match[1]))
            if self.measuring.is_set():
                self.seen.latencies.append(now - float(match[3]))


def resident_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


def repeated_and_missing(numbers: dict[str, list[int]]) -> tuple[int, int]:
    """Lines seen twice, and lines missing between the first and last line seen of each chat."""
    repeated = missing = 0
    for said in numbers.values():
        repeated += len(said) - len(set(said))
        missing += (max(said) - min(said) + 1) - len(set(said))
    return repeated, missing


def follow_load(chats: int, seconds: float, work: Path) -> dict[str, Any]:
    """Follow ``chats`` synthetic chats for ``seconds`` once all are subscribed; the figures."""
    from icwschat.simulator import Simulator, SimulatorServer, load_scenarios

    server = SimulatorServer(Simulator(load_scenarios(SCENARIOS)), port=0).start()
    home = work / f"b7-{chats}"
    try:
        log_in(server, home)
        load = server.simulator.start_load(chats, seed=7)
        watch = QueueWatch(home)
        try:
            # Measured once every chat of the start is subscribed: subscribing is a one-off cost.
            deadline = time.monotonic() + 60 + chats / 20
            while len(watch.seen.subscribed) < chats and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)
            watch.measuring.set()
            cpu_before, started = watch.cpu_seconds(), time.monotonic()
            rss = 0
            while time.monotonic() - started < seconds:
                time.sleep(1.0)
                rss = max(rss, resident_kib(watch.proc.pid))
            cpu = watch.cpu_seconds() - cpu_before
            elapsed = time.monotonic() - started
        finally:
            watch.stop()
        load.stop()
    finally:
        server.stop()
    repeated, missing = repeated_and_missing(watch.seen.numbers)
    latencies = watch.seen.latencies
    return {
        "chats": chats,
        "lines_measured": len(latencies),
        "lines_per_second": round(len(latencies) / elapsed, 1),
        "latency_p50_ms": ms(percentile(latencies, 50)) if latencies else None,
        "latency_p99_ms": ms(percentile(latencies, 99)) if latencies else None,
        "cpu_share_of_one_core": round(cpu / elapsed, 3),
        "rss_mb": round(rss / 1024, 1),
        "lines_repeated": repeated,
        "lines_missing": missing,
    }


def b7_scale(sizes: Sizes, work: Path) -> Result:
    what = "watch --queue over SSE, the simulator's load generator (about 100 ICWS messages/s per 500 chats)"
    goal = "500 chats: every line once, p99 <= 50 ms, <= 15% of one core, RSS <= 200 MB"
    runs = [follow_load(chats, sizes.scale_seconds, work) for chats in sizes.scale_chats]
    first = runs[0]
    met = (
        first["lines_repeated"] == 0
        and first["lines_missing"] == 0
        and first["latency_p99_ms"] is not None
        and first["latency_p99_ms"] <= 50
        and first["cpu_share_of_one_core"] <= 0.15
        and first["rss_mb"] <= 200
    )
    summary = "; ".join(
        f"{run['chats']} chats: p99 {run['latency_p99_ms']} ms, CPU {run['cpu_share_of_one_core']:.0%}, "
        f"{run['rss_mb']} MB, {run['lines_repeated']} repeated, {run['lines_missing']} missing"
        for run in runs
    )
    return Result("B7", what, goal, met, summary, {"runs": runs})
