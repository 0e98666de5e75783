"""The subscriber: what the router wants subscribed, made and removed beside the reader, in any order."""

from __future__ import annotations

import queue
import threading
from types import SimpleNamespace
from typing import Any

from icwschat.router import Queue
from icwschat.watch import Subscriber, WatchOptions


class SlowServer:
    """A connection whose chat subscriptions answer only when the test says so; it counts every PUT."""

    def __init__(self) -> None:
        self.puts: list[str] = []
        self.deletes: list[str] = []
        self.answer = threading.Semaphore(0)
        self.asked = threading.Semaphore(0)

    def subscribe_queue(self, *args: Any) -> None:
        pass

    def subscribe_chat(self, iid: str) -> None:
        self.puts.append(iid)
        self.asked.release()
        assert self.answer.acquire(timeout=10)

    def unsubscribe_chat(self, iid: str, **kwargs: Any) -> bool:
        self.deletes.append(iid)
        return True


def subscriber(server: SlowServer) -> Subscriber:
    feed = SimpleNamespace(out=queue.Queue(), tell=lambda status: None, session_lost=lambda lost: None)
    options = WatchOptions(queue=Queue("workgroup", "Support"))
    worker = Subscriber(SimpleNamespace(close=lambda: None), None, options, feed)  # type: ignore[arg-type]
    worker.connection = server  # type: ignore[assignment]
    return worker


def test_a_chat_that_comes_back_during_its_put_is_subscribed_again() -> None:
    server = SlowServer()
    worker = subscriber(server)
    worker.start()
    try:
        worker.want(frozenset({"1001"}), set(), False)
        assert server.asked.acquire(timeout=10)
        # While the PUT is in flight the chat leaves its queue and comes back: the router asks for a new
        # snapshot, which the PUT in flight (made before) does not bring.
        worker.want(frozenset(), set(), False)
        worker.want(frozenset({"1001"}), {"1001"}, False)
        server.answer.release()
        assert server.asked.acquire(timeout=10), "no second PUT"
        server.answer.release()
        assert server.puts == ["1001", "1001"]
    finally:
        worker.halt()
        server.answer.release()
        worker.join(10)


def test_the_clean_up_budget_grows_a_little_with_many_subscriptions_and_is_capped() -> None:
    from icwschat.watch import cleanup_budget

    assert cleanup_budget(1) < 5.1
    assert cleanup_budget(2000) == 15.0
    assert cleanup_budget(10**6) == 30.0


def test_what_is_left_on_the_server_is_named_a_few_at_a_time() -> None:
    from icwschat.watch import Watcher

    said: list[str] = []
    left = [("chat subscription", str(iid), "no answer in time") for iid in range(1001, 1208)]
    Watcher._left(SimpleNamespace(warn=said.append), left, "could not be removed")  # type: ignore[arg-type]
    assert len(said) == 4
    assert said[0].startswith("the chat subscription for interaction 1001 could not be removed")
    assert said[-1] == (
        "204 more subscriptions could not be removed; they end with the session (icwschat logout ends it now)"
    )
