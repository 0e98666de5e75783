"""Following one chat: network in a feed thread, cache and sinks in the caller's thread.

The feed owns every request: it subscribes, reads the message queue through a transport, retries transient
failures with capped exponential backoff and full jitter, and logs in again when the session is gone. It hands
batches to the caller through a queue, so the caller's thread stays free for signals and terminal resizes,
and the pure cache is only ever touched from one thread.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .cache import ChatCache
from .client import HTTP, Connection
from .errors import AuthenticationError, ICWSError, ProtocolError, ServerUnavailable, SessionGone
from .models import CONNECTION_STATE_TYPE
from .pipeline import Pipeline
from .session import Session
from .sinks import Sink, WatchInfo
from .transport import choose

log = logging.getLogger("icwschat.watch")

INTERACTION_ATTRIBUTES = ["Eic_State", "Eic_RemoteName"]
CLEANUP_TIMEOUT = (3.0, 5.0)
IDLE_TICK = 0.25
"""How often the caller's thread wakes when nothing arrives, to notice a resized terminal."""


@dataclass(frozen=True, slots=True)
class WatchOptions:
    interaction_id: str
    transport: str = "auto"
    interval: float = 1.0
    keep_subscription: bool = False
    give_up_after: float = 300.0
    snapshot_only: bool = False
    """``transcript``: stop as soon as the first snapshot (members and contents) has been applied."""
    snapshot_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class _Batch:
    messages: list[Any]


@dataclass(frozen=True, slots=True)
class _Status:
    text: str
    trouble: bool


@dataclass(frozen=True, slots=True)
class _Resubscribing:
    pass


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_Item = _Batch | _Status | _Resubscribing | _Failed


class Backoff:
    """Capped exponential backoff with full jitter, and a deadline measured from the first failure."""

    def __init__(
        self,
        give_up_after: float,
        *,
        base: float = 0.5,
        cap: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.give_up_after = give_up_after
        self.base = base
        self.cap = cap
        self.clock = clock
        self.rng = rng or random.Random()
        self.attempt = 0
        self.failing_since: float | None = None

    def reset(self) -> None:
        self.attempt = 0
        self.failing_since = None

    def next_delay(self, error: ServerUnavailable) -> float:
        """Seconds to wait before the next attempt; raises ``error`` (reworded) past the deadline."""
        now = self.clock()
        if self.failing_since is None:
            self.failing_since = now
        left = self.failing_since + self.give_up_after - now
        if left <= 0:
            raise ServerUnavailable(
                f"gave up after {self.give_up_after:g} s of failures: {error.message}",
                status=error.status,
                error_id=error.error_id,
                error_code=error.error_code,
                server_message=error.server_message,
                hint="check that the server is up; --give-up-after sets how long to keep trying",
            ) from error
        self.attempt += 1
        delay = self.rng.uniform(0, min(self.cap, self.base * 2**self.attempt))
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return min(delay, left)


class Feed(threading.Thread):
    """The network side of a watch; everything it learns goes into ``out``."""

    def __init__(
        self,
        http: HTTP,
        session: Session,
        options: WatchOptions,
        out: queue.Queue[_Item],
        relogin: Callable[[], Session] | None,
        on_session: Callable[[Session], None],
    ) -> None:
        super().__init__(name="icwschat-feed", daemon=True)
        self.http = http
        self.connection = Connection(http, session)
        self.options = options
        self.out = out
        self.relogin = relogin
        self.on_session = on_session
        self.stop = threading.Event()
        self.transport_name = choose(options.transport, self.connection, options.interval, self.stop).name
        self.backoff = Backoff(options.give_up_after)
        self._last_status: _Status | None = None

    @property
    def session(self) -> Session:
        return self.connection.session

    def run(self) -> None:
        try:
            self._follow()
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, which decides the exit
            self.out.put(_Failed(error))

    def _follow(self) -> None:
        iid = self.options.interaction_id
        subscribed = needs_login = False
        while not self.stop.is_set():
            try:
                if needs_login:
                    self._log_in_again()
                    needs_login, subscribed = False, False
                if not subscribed:
                    self.connection.subscribe_chat(iid)
                    self._watch_interaction(iid)
                    subscribed = True
                self._read()
            except SessionGone as gone:
                if self.relogin is None:
                    raise AuthenticationError(
                        "session expired; run icwschat login",
                        hint="set ICWS_PASSWORD (or use --password-stdin) so watch can log in again itself",
                    ) from gone
                log.debug("session gone (%s); logging in again", gone.details())
                self._tell(_Status("session expired; logging in again", trouble=True))
                needs_login = True
            except ServerUnavailable as error:
                if isinstance(error, ProtocolError) and subscribed:
                    # A reply or event that was not JSON may have carried messages the server has already
                    # dequeued: subscribing again brings a snapshot, which the cache reconciles.
                    subscribed = False
                    self.out.put(_Resubscribing())
                delay = self.backoff.next_delay(error)
                text = f"reconnecting (attempt {self.backoff.attempt}, next in {delay:.1f} s)"
                log.debug("%s after: %s %s", text, error.message, error.details())
                self._tell(_Status(text, trouble=True))
                self.stop.wait(delay)

    def _read(self) -> None:
        transport = choose(
            self.options.transport,
            self.connection,
            self.options.interval,
            self.stop,
            give_up_after=self.options.give_up_after,
        )
        for batch in transport.batches():
            self._tell(_Status("connected", trouble=False))
            if batch is None:
                continue  # a stream that opens and then delivers nothing must not end the backoff
            self.backoff.reset()
            if batch:
                self.out.put(_Batch(batch))
            if any(_connection_down(message) for message in batch):
                raise SessionGone("the server says the session's connection is down")

    def _tell(self, status: _Status) -> None:
        """Pass on a status only when it changes: one per poll would redraw an idle view every second."""
        if status != self._last_status:
            self._last_status = status
            self.out.put(status)

    def _log_in_again(self) -> None:
        assert self.relogin is not None
        session = self.relogin()
        self.connection = Connection(self.http, session)
        self.on_session(session)
        self.out.put(_Resubscribing())

    def _watch_interaction(self, iid: str) -> None:
        """Ask for ``Eic_State`` so the end of the chat is seen; a server that refuses only loses that."""
        try:
            self.connection.watch_interaction(iid, INTERACTION_ATTRIBUTES)
        except (SessionGone, ServerUnavailable):
            raise
        except ICWSError as error:
            log.debug("cannot watch interaction %s (%s); the end of the chat may go unseen", iid, error)


def _connection_down(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("__type") == CONNECTION_STATE_TYPE
        and message.get("newConnectionState") == 2
    )


class Watcher:
    """Runs one watch (or one ``transcript``) to its end and cleans up behind it."""

    def __init__(
        self,
        http_factory: Callable[[], HTTP],
        session: Session,
        options: WatchOptions,
        sink: Sink,
        *,
        relogin: Callable[[], Session] | None = None,
        on_session: Callable[[Session], None] = lambda session: None,
    ) -> None:
        self.http_factory = http_factory
        self.options = options
        self.sink = sink
        self.cache = ChatCache(options.interaction_id)
        self.pipeline = Pipeline(self.cache, sink)
        self.queue: queue.Queue[_Item] = queue.Queue()
        self.feed = Feed(http_factory(), session, options, self.queue, relogin, on_session)

    def info(self) -> WatchInfo:
        session = self.feed.session
        return WatchInfo(self.options.interaction_id, session.server, session.user, self.feed.transport_name)

    def run(self) -> int:
        """Exit status 0 when the chat ended (or the snapshot was taken); raises for everything else."""
        self.sink.started(self.info())
        self.feed.start()
        try:
            self._consume()
        finally:
            self.feed.stop.set()
            self.sink.close()
            self._clean_up()
        return 0

    def _consume(self) -> None:
        snapshot_deadline = time.monotonic() + self.options.snapshot_timeout
        while True:
            # Checked on every item, not only when idle: empty polls keep the queue busy.
            if self.options.snapshot_only and time.monotonic() > snapshot_deadline:
                raise ServerUnavailable(
                    f"no snapshot of interaction {self.options.interaction_id} arrived within "
                    f"{self.options.snapshot_timeout:g} s",
                    hint="the server accepted the subscription but sent nothing; try again",
                )
            try:
                item = self.queue.get(timeout=IDLE_TICK)
            except queue.Empty:
                self.sink.idle()
                continue
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, _Status):
                self.sink.status(item.text, trouble=item.trouble)
            elif isinstance(item, _Resubscribing):
                self.cache.expect_resync()
            elif self._apply(item.messages):
                return

    def _apply(self, messages: list[Any]) -> bool:
        """Apply a batch; True when the watch is complete."""
        self.pipeline.apply(messages)
        return self.cache.ended or (self.options.snapshot_only and self.cache.has_snapshot)

    def _clean_up(self) -> None:
        """Remove what this watch created on the server: best effort, bounded in time."""
        if self.options.keep_subscription:
            return
        iid = self.options.interaction_id
        http = self.http_factory()
        connection = Connection(http, self.feed.session)
        try:
            connection.unsubscribe_chat(iid, timeout=CLEANUP_TIMEOUT)
            connection.unwatch_interaction(iid, timeout=CLEANUP_TIMEOUT)
        except ICWSError as error:
            log.debug("could not remove the subscription for %s: %s %s", iid, error, error.details())
        finally:
            http.close()
