"""``replay``: a capture written by ``watch --raw`` fed through the same pipeline as a live watch, offline.

A long capture is parsed in a second process while this one applies and writes what is already parsed:
parsing is half the work of a replay and needs nothing from the cache, and parsed batches (plain tuples,
see :mod:`icwschat.updates`) unpickle several times faster than JSON parses.
"""

from __future__ import annotations

import gc
import itertools
import logging
import marshal
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import IO, Any, NamedTuple

from .errors import InteractionUnavailable, UsageError
from .jsonio import loads, loads_all
from .pipeline import Pipeline
from .router import Router
from .sinks import Sink, WatchInfo
from .updates import Update, parse_message, parse_messages, skipped

log = logging.getLogger("icwschat.replay")

BATCH = 512
"""Lines per pipeline batch: large enough that one write carries many events, small enough to stream."""
REPEATS_KEPT = 1024
"""Member changes remembered by their line: two for each member of a chat (typing, and not)."""
REPEAT_LENGTH = 4096
"""The longest line remembered: a typing flip takes a few hundred bytes, and a capture's lines may be long."""


@dataclass
class ReplayReport:
    messages: int = 0
    bad_lines: list[int] = field(default_factory=list)
    """Line numbers (from 1) that held no JSON; a capture cut short by a killed watch ends in one."""


class ParsedBatch(NamedTuple):
    """Up to ``BATCH`` lines of a capture, parsed."""

    messages: int
    updates: list[Update]
    problems: list[str]
    bad_lines: list[int]


def parse_capture(capture: Iterable[bytes]) -> Iterator[ParsedBatch]:
    """The capture parsed, a batch per ``BATCH`` lines; blank lines are skipped, and lines that hold no
    JSON numbered (from 1) in ``bad_lines``.

    A member change repeats byte for byte: a typing flip, half of a chat's messages, says the same every
    time that member starts or stops typing. Its update is remembered by its line, and the line is not
    read again (see :class:`_Repeats`).
    """
    lines = iter(capture)
    repeats = _Repeats()
    first = 1
    while chunk := list(itertools.islice(lines, BATCH)):
        try:
            updates, problems = repeats.parse(chunk)
        except ValueError:  # a line holds no JSON, or none at all: read the batch line by line
            bad: list[int] = []
            messages = list(_readable(chunk, first, bad))
            yield ParsedBatch(len(messages), *parse_messages(messages), bad)
        else:
            yield ParsedBatch(len(chunk), updates, problems, [])
        first += len(chunk)


def _readable(chunk: list[bytes], first: int, bad: list[int]) -> Iterator[Any]:
    for number, line in enumerate(chunk, first):
        try:
            yield loads(line)
        except ValueError:
            if line.strip():
                bad.append(number)
                log.debug("line %d of the capture is not JSON: %.200r", number, line)


class _Repeats(dict[bytes, Update]):
    """Member changes by their line. Only those: chat lines carry a timestamp and never repeat, and would
    only crowd them out. At most :data:`REPEATS_KEPT`, then forgotten all at once, and read again."""

    def parse(self, lines: list[bytes]) -> tuple[list[Update], list[str]]:
        """The updates of ``lines``; raises ``ValueError`` if one of them holds no JSON."""
        remembered = list(map(self.get, lines))
        fresh = [line for line, update in zip(lines, remembered, strict=True) if update is None]
        messages = iter(loads_all(fresh))  # one pass for the whole batch: nearly every capture is all JSON
        updates: list[Update] = []
        problems: list[str] = []
        for line, update in zip(lines, remembered, strict=True):
            if update is None:
                message = next(messages)
                known = len(problems)
                try:
                    update = parse_message(message, problems)
                except ValueError as problem:
                    problems.append(skipped(problem, message))
                    continue
                if update is None:
                    continue
                if update[0] == "members" and len(problems) == known and len(line) <= REPEAT_LENGTH:
                    if len(self) >= REPEATS_KEPT:
                        self.clear()
                    self[line] = update
            updates.append(update)
        return updates, problems


def replay(
    capture: IO[bytes],
    name: str,
    sink: Sink,
    interaction_id: str | None = None,
    *,
    parallel: bool | None = None,
) -> ReplayReport:
    """Play ``capture`` into ``sink``. ``parallel`` parses in a second process; by default it does when the
    capture is a file descriptor, this machine has a second core and this process has one thread (a fork
    copies only the calling thread, and a lock another one held would stay locked in the child)."""
    if parallel is None:
        parallel = (
            _has_fileno(capture)
            and _cores() > 1
            and threading.active_count() == 1
            and "fork" in multiprocessing.get_all_start_methods()
        )
    report = ReplayReport()
    parsing = _parsed_in_worker(capture) if parallel else nullcontext(parse_capture(capture))
    picked = (interaction_id,) if interaction_id is not None else ()
    # Without --interaction, every chat the capture names is played, and the queue it came from if any.
    router = Router(picked, adopt=interaction_id is None)
    pipeline = Pipeline(router, sink)
    with parsing as batches:
        sink.started(WatchInfo(picked, name, "", "replay"))
        # Parsing, applying and writing make no reference cycles: what a batch drops, reference counting
        # frees. The collector's passes over each batch's new objects were a tenth of this process's work.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for batch in batches:
                report.messages += batch.messages
                report.bad_lines += batch.bad_lines
                pipeline.apply_parsed(batch.updates, batch.problems)
                if router.ended:
                    break  # like watch, stop after the batch in which the chat ended
                # What the caches hold now stays until the end: frozen, the collector does not walk it as
                # young objects once it runs again (unfrozen, it is the oldest generation).
                gc.freeze()
            if interaction_id is not None and not _appears(router):
                raise InteractionUnavailable(f"interaction {interaction_id} does not appear in {name}")
            if interaction_id is None and not router.chats and router.queue is None:
                raise UsageError(
                    f"{name} holds no ICWS chat messages",
                    hint="record one with: icwschat watch INTERACTION_ID --raw > capture.ndjson",
                )
            sink.status(f"replayed {report.messages} messages", trouble=False)
        finally:
            gc.unfreeze()
            if collecting:
                gc.enable()
            sink.close()
    return report


def _appears(router: Router) -> bool:
    return any(chat.cache.members or chat.cache.transcript or chat.cache.ended for chat in router)


def _has_fileno(stream: IO[bytes]) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False
    return True


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextmanager
def _parsed_in_worker(capture: IO[bytes]) -> Iterator[Iterator[ParsedBatch]]:
    """:func:`parse_capture` run in a child process, its batches as they arrive; the child ends with it."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    # A descriptor of the child's own: multiprocessing closes standard input in every child it starts.
    source = os.dup(capture.fileno())
    worker = context.Process(
        target=_parse_and_send,
        args=(source, sender, receiver),
        name="icwschat-parse",
        daemon=True,
    )
    try:
        worker.start()
    finally:
        os.close(source)
        sender.close()
    try:
        yield _received(receiver)
    finally:
        receiver.close()
        worker.terminate()  # done, or no longer wanted (the chat ended, an error, Ctrl-C)
        worker.join()


def _received(receiver: Connection) -> Iterator[ParsedBatch]:
    while True:
        try:
            item = marshal.loads(receiver.recv_bytes())
        except EOFError:
            raise RuntimeError("the process parsing the capture ended without a word") from None
        if item is None:
            return
        if isinstance(item, bytes):
            raise pickle.loads(item)
        yield ParsedBatch(*item)


def _parse_and_send(source: int, sender: Connection, receiver: Connection) -> None:
    """The child: parse the capture and send each batch, then None; an error is sent in place of None.

    Batches go as :mod:`marshal` data: updates are made of what marshal writes (tuples, lists, strings,
    numbers, dicts of strings), which it writes and reads a fifth faster than pickle, and this process and
    its parent are the same Python. An error goes pickled, as bytes.
    """
    receiver.close()  # the fork's copy: while it is open, a parent that stops reading never breaks the pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to answer; it ends this process
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    gc.disable()  # parsing makes no reference cycles: what it drops, reference counting frees
    try:
        try:
            with open(source, "rb") as capture:
                for batch in parse_capture(capture):
                    sender.send_bytes(marshal.dumps(tuple(batch)))
        except Exception as problem:  # noqa: BLE001 - any of them is the parent's to report
            sender.send_bytes(marshal.dumps(pickle.dumps(problem)))
        else:
            sender.send_bytes(marshal.dumps(None))
    except BrokenPipeError:
        pass  # the parent stopped reading: the chat ended, or it is going away
