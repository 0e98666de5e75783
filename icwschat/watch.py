"""Following chats: the network in two threads, the router and sinks in the caller's thread.

The feed reads the session's message queue through a transport, retries transient failures with capped
exponential backoff and jitter, and logs in again when the session is gone. Its subscriber makes and removes
subscriptions beside it, so a chat entering a followed queue is subscribed at once, without ending a read
that may be waiting on a quiet event stream. Both hand what they learn to the caller through a queue, so the
caller's thread stays free for signals and terminal resizes, and the pure router (with the chats' caches) is
only ever touched from one thread. The router says which chats it wants subscribed; the caller passes that on.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .client import HTTP, Connection
from .errors import (
    AuthenticationError,
    ICWSError,
    InteractionUnavailable,
    ProtocolError,
    ServerUnavailable,
    SessionGone,
    Terminated,
)
from .models import CONNECTION_DOWN, CONNECTION_STATE_TYPE
from .pipeline import Pipeline
from .router import Queue, Router
from .session import Session
from .sinks import Sink, WatchInfo
from .textsafe import inert
from .transport import choose, transport_name

log = logging.getLogger("icwschat.watch")

INTERACTION_ATTRIBUTES = ["Eic_State", "Eic_RemoteName"]
QUEUE_SUBSCRIPTION = "queue subscription"
CLEANUP_BUDGET = 5.0
"""Seconds the clean-up on exit may take in all, whatever the server does; what it could not remove by then
is named on stderr and left."""
CLEANUP_PER_SUBSCRIPTION = 0.005
CLEANUP_CAP = 30.0
CLEANUP_TIMEOUT = (3.0, 5.0)
CLEANUP_WORKERS = 16
NAMED_LEFT = 3
LOCK_WAIT = 2.0
"""Seconds the clean-up waits for a subscribe request in flight before removing the rest without it."""
"""Subscriptions left on the server that are named one by one on exit; the rest are counted."""
IDLE_TICK = 0.25
"""How often the caller's thread wakes when nothing arrives, to notice a resized terminal."""
SESSION_HELD = 60.0
"""Seconds a new session must last for its loss to count as news rather than one more failed renewal: a
server that ends every session at once is logged in to with growing delays, not again and again."""
CONTENTS_GRACE = 2.0
"""``transcript``: seconds to wait for a contents snapshot after the members snapshot. A server sends both
for one subscription together; one that sends none (a chat with no lines yet) must not stall the command."""


@dataclass(frozen=True, slots=True)
class WatchOptions:
    interaction_ids: tuple[str, ...] = ()
    queue: Queue | None = None
    """``watch --queue``: every chat of this queue, as long as the watch runs."""
    follow_chats: bool = True
    """False: only the queue's contents (``icwschat chats``), no chat subscriptions."""
    transport: str = "auto"
    interval: float = 1.0
    keep_subscription: bool = False
    give_up_after: float = 300.0
    snapshot_only: bool = False
    """``transcript``: stop as soon as the first snapshot (members and contents) has been applied."""
    snapshot_timeout: float = 30.0
    deadline_option: str = "--give-up-after"
    """The option that set ``give_up_after``, named when the watch gives up (``transcript``: --timeout)."""
    renewal_hint: str = (
        "set ICWS_PASSWORD, use --password-stdin, or save the password with login --save-password, "
        "so watch can log in again by itself"
    )
    """What to do so the session is renewed by itself; only ``watch`` has --password-stdin."""


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


@dataclass(frozen=True, slots=True)
class _Refused:
    """A queued interaction's chat subscription was refused (``status``, None for no answer)."""

    interaction_id: str
    status: int | None


_Item = _Batch | _Status | _Resubscribing | _Failed | _Refused


class Backoff:
    """Capped exponential backoff with jitter, and a deadline measured from the first failure.

    ``spread`` is the share of each delay left to chance: 1 is full jitter (anywhere up to the ceiling),
    0.5 keeps at least half of it.
    """

    def __init__(
        self,
        give_up_after: float,
        *,
        deadline_option: str = "--give-up-after",
        base: float = 0.5,
        cap: float = 30.0,
        spread: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.give_up_after = give_up_after
        self.deadline_option = deadline_option
        self.base = base
        self.cap = cap
        self.spread = spread
        self.clock = clock
        self.rng = rng or random.Random()
        self.attempt = 0
        self.failing_since: float | None = None

    def reset(self) -> None:
        self.attempt = 0
        self.failing_since = None

    def next_delay(self, error: ICWSError) -> float:
        """Seconds to wait before the next attempt, at least the server's Retry-After but never past the
        deadline; past it, raises :class:`ServerUnavailable` (exit 5) naming ``error``."""
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
                hint=f"check that the server is up; {self.deadline_option} sets how long to keep trying",
            ) from error
        self.attempt += 1
        ceiling = min(self.cap, self.base * 2.0**self.attempt)
        delay = ceiling * (1 - self.spread * self.rng.random())
        if isinstance(error, ServerUnavailable) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return min(delay, left)


class Subscriber(threading.Thread):
    """Makes and removes the subscriptions the router wants, on the feed's current session.

    ``made`` holds what may exist on the server: a subscription is counted before its PUT (one that got no
    answer may still have been made) and dropped once removed, or once the server refused to make it; the
    clean-up on exit removes what is left. ``lock`` is held around every request, so the clean-up's DELETE
    cannot overtake a PUT in flight, and nothing is sent once ``halted``.
    """

    def __init__(self, http: HTTP, session: Session, options: WatchOptions, feed: Feed) -> None:
        super().__init__(name="icwschat-subscriber", daemon=True)
        self.http = http
        self.connection = Connection(http, session)
        self.options = options
        self.feed = feed
        self.lock = threading.Lock()
        self.work = threading.Condition()
        self.halted = False
        self.wanted: frozenset[str] = frozenset(options.interaction_ids)
        self.again: set[str] = set()
        self.queue_again = options.queue is not None
        self._made: set[str] = set()
        """Chats whose subscription may exist on the server (:meth:`made`); changed only under
        ``_made_lock``, which no request ever holds, so another thread can read it at any time."""
        self._made_lock = threading.Lock()
        self._changed = False
        """Set by :meth:`want` and :meth:`renewed`: the work in hand may no longer be what is wanted."""
        self.queue_made = False
        self.in_flight: str | None = None
        """The chat (or :data:`QUEUE_SUBSCRIPTION`) whose PUT holds ``lock`` now."""
        self.lost: SessionGone | None = None
        """Set when the session went away under a request: nothing more is tried until :meth:`renewed`."""
        self.backoff = Backoff(options.give_up_after, deadline_option=options.deadline_option)
        self.started_up = threading.Event()
        """Set once the first subscriptions are made (or have failed): a read before them could only wait
        (a whole poll interval, for ``transcript``)."""

    def want(self, chats: frozenset[str], again: set[str], queue_again: bool) -> None:
        """The chats to hold a subscription from now on, those to subscribe again (they faulted), and
        whether the queue's subscription must be made again. Called from the caller's thread."""
        with self.work:
            self.wanted = chats
            self.again |= again
            self.queue_again |= queue_again
            self._changed = True
            self.work.notify()

    def renewed(self, session: Session) -> None:
        """A new session (or one whose messages may have been lost): everything is to be made again."""
        with self.work:
            self.connection = Connection(self.http, session)
            self.again |= self.made()
            self._changed = True
            self.queue_again = self.options.queue is not None
            self.lost = None
            self.work.notify()

    def halt(self) -> None:
        """Nothing more is sent; a request in flight completes (the clean-up waits for it on ``lock``)."""
        with self.work:
            self.halted = True
            self.work.notify()

    def run(self) -> None:
        try:
            while self._next():
                pass
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, which decides the exit
            self.feed.out.put(_Failed(error))
        finally:
            self.started_up.set()
            self.http.close()

    def made(self) -> frozenset[str]:
        with self._made_lock:
            return frozenset(self._made)

    def _count(self, iid: str, made: bool) -> None:
        with self._made_lock:
            if made:
                self._made.add(iid)
            else:
                self._made.discard(iid)

    def _next(self) -> bool:
        """Do the work in hand, waiting for some; False once halted.

        The work is worked out once (a queue's thousands of chats are subscribed in one pass, not each after
        a look at all of them) and followed until the router changes its mind. A request to subscribe again
        is taken off the list as its request starts, not when it ends: one made meanwhile (a chat left its
        queue and came back during the PUT) asks for a snapshot of its own.
        """
        with self.work:
            while not self.halted and (self.lost is not None or not self._pending()):
                self.started_up.set()
                self.work.wait()
            if self.halted:
                return False
            connection = self.connection
            made = self.made()
            work: list[tuple[str, str]] = [("queue", "")] if self.queue_again else []
            self.queue_again = False
            work += [("drop", iid) for iid in sorted(made - self.wanted)]
            work += [("subscribe", iid) for iid in sorted((self.wanted - made) | (self.again & self.wanted))]
            self._changed = False
        for action, iid in work:
            with self.work:
                if self.halted or self._changed or self.lost is not None:
                    if action == "queue":
                        self.queue_again = True
                    return not self.halted
                if action == "subscribe":
                    self.again.discard(iid)
            if not self._do(connection, action, iid):
                return True
        return True

    def _do(self, connection: Connection, action: str, iid: str) -> bool:
        """One request; False when it failed (the rest of the work waits for the next pass)."""
        try:
            if action == "queue":
                self._subscribe_queue(connection)
            elif action == "drop":
                self._drop(connection, iid)
            else:
                self._subscribe(connection, iid)
        except SessionGone as lost:
            with self.work:
                if connection is not self.connection:
                    return False  # the old session's; the feed has logged in again since
                self.lost = lost
            self.feed.session_lost(lost)
            return False
        except ServerUnavailable as error:
            with self.work:  # tried again after the backoff, whether or not the server made it
                if action == "queue":
                    self.queue_again = True
                elif action == "subscribe":
                    self.again.add(iid)
            delay = self.backoff.next_delay(error)
            text = f"subscribing (attempt {self.backoff.attempt}, next in {delay:.1f} s)"
            log.debug("%s after: %s %s", text, error.message, error.details())
            self.feed.tell(_Status(text, trouble=True))
            with self.work:
                self.work.wait_for(lambda: self.halted, delay)
            return False
        self.backoff.reset()
        return True

    def _pending(self) -> bool:
        made = self.made()
        return self.queue_again or made != self.wanted or bool(self.again & self.wanted)

    def _subscribe_queue(self, connection: Connection) -> None:
        queue = self.options.queue
        assert queue is not None
        with self.lock, self._flying(QUEUE_SUBSCRIPTION):
            if self.halted:
                return
            known, self.queue_made = self.queue_made, True
            try:
                connection.subscribe_queue(queue.subscription_id, queue.body(), queue.label)
            except ICWSError as refused:
                if refused.status is not None and not known:
                    self.queue_made = False
                raise

    @contextlib.contextmanager
    def _flying(self, name: str) -> Iterator[None]:
        self.in_flight = name
        try:
            yield
        finally:
            self.in_flight = None

    def _subscribe(self, connection: Connection, iid: str) -> None:
        """Subscribe to the chat (and, followed by id, watch the interaction so its end is seen)."""
        with self.lock, self._flying(iid):
            if self.halted:
                return
            known = iid in self._made
            self._count(iid, True)
            try:
                connection.subscribe_chat(iid)
            except InteractionUnavailable as refused:
                if refused.status is not None and not known:
                    self._count(iid, False)  # the server answered, and made nothing to remove later
                if self.options.queue is None:
                    raise
                log.debug(
                    "interaction %s is skipped, its chat subscription refused (not a chat, or out of reach): "
                    "%s %s",
                    iid,
                    refused,
                    refused.details(),
                )
                self.feed.out.put(_Refused(iid, refused.status))
                self._refused(iid)
                return
            except ICWSError as refused:
                if refused.status is not None and not known:
                    self._count(iid, False)
                raise
            if self.options.queue is None:
                self._watch_interaction(connection, iid)

    def _refused(self, iid: str) -> None:
        with self.work:
            self.wanted -= {iid}  # not to be tried again until the router asks anew

    def _drop(self, connection: Connection, iid: str) -> None:
        """Best effort: a subscription that stays is tried again by the clean-up on exit."""
        with self.lock:
            if self.halted:
                return
            try:
                connection.unsubscribe_chat(iid)
                if self.options.queue is None:
                    connection.unwatch_interaction(iid)
            except (SessionGone, ServerUnavailable):
                raise
            except ICWSError as error:
                log.debug("could not remove the subscription for %s: %s %s", iid, error, error.details())
            self._count(iid, False)

    def _watch_interaction(self, connection: Connection, iid: str) -> None:
        """Ask for ``Eic_State`` so the end of the chat is seen; a server that refuses only loses that."""
        try:
            connection.watch_interaction(iid, INTERACTION_ATTRIBUTES)
        except (SessionGone, ServerUnavailable):
            raise
        except ICWSError as error:
            log.debug("cannot watch interaction %s (%s); the end of the chat may go unseen", iid, error)


class Feed(threading.Thread):
    """The network side of a watch: reads the message queue; everything it learns goes into ``out``.

    Two backoffs: ``backoff`` for reading (reset by every batch read) and ``renewal`` for logging in
    again, which only a session that has held for :data:`SESSION_HELD` resets, so a server that ends each
    new session at once (or answers every call with 401) cannot make a login storm.

    ``stop`` ends the current read (the transports watch it); ``halted`` ends the feed.
    """

    def __init__(
        self,
        http_factory: Callable[[], HTTP],
        session: Session,
        options: WatchOptions,
        out: queue.Queue[_Item],
        relogin: Callable[[], Session] | None,
        on_session: Callable[[Session], None],
    ) -> None:
        super().__init__(name="icwschat-feed", daemon=True)
        self.http = http_factory()
        self.connection = Connection(self.http, session)
        self.options = options
        self.out = out
        self.relogin = relogin
        self.on_session = on_session
        self.stop = threading.Event()
        self.halted = threading.Event()
        self.transport_name = transport_name(options.transport, self.connection)
        self.backoff = Backoff(options.give_up_after, deadline_option=options.deadline_option)
        self.renewal = Backoff(
            options.give_up_after, deadline_option=options.deadline_option, base=2.0, spread=0.5
        )
        self.subscriber = Subscriber(http_factory(), session, options, self)
        self._lost: SessionGone | None = None
        self._logged_in_at: float | None = None
        self._last_status: _Status | None = None
        self._status_lock = threading.Lock()

    @property
    def session(self) -> Session:
        return self.connection.session

    def start(self) -> None:
        self.subscriber.start()
        super().start()

    def halt(self) -> None:
        """End the feed and its subscriber (from another thread); a request in flight still completes."""
        self.halted.set()
        self.stop.set()
        self.subscriber.halt()

    def session_lost(self, gone: SessionGone) -> None:
        """The subscriber found the session gone: the read in progress ends and the session is renewed."""
        self._lost = gone
        self.stop.set()

    def run(self) -> None:
        try:
            self._follow()
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, which decides the exit
            self.out.put(_Failed(error))
        finally:
            self.http.close()

    def _follow(self) -> None:
        while not self.subscriber.started_up.wait(IDLE_TICK):
            if self.halted.is_set():
                return
        renewing = False
        while self._resume():
            try:
                if renewing:
                    self._log_in_again()
                    renewing = False
                self._raise_if_lost()
                self._read()
                self._raise_if_lost()
            except SessionGone as gone:
                if renewing:
                    self._back_off(
                        self.renewal, _reworded(gone, "logging in again was refused"), "logging in again"
                    )
                else:
                    self._session_lost(gone)
                    renewing = True
            except ServerUnavailable as error:
                if renewing:
                    self._back_off(self.renewal, error, "logging in again")
                    continue
                if isinstance(error, ProtocolError):
                    # A reply or event that was not JSON may have carried messages the server has already
                    # dequeued: subscribing again brings snapshots, which the caches reconcile.
                    self.out.put(_Resubscribing())
                    self.subscriber.renewed(self.session)
                self._back_off(self.backoff, error, "reconnecting")

    def _raise_if_lost(self) -> None:
        lost, self._lost = self._lost, None
        if lost is not None:
            raise lost

    def _resume(self) -> bool:
        """Ready ``stop`` for the next read; False once the feed is halted.

        ``halt`` sets ``halted`` before ``stop``, so a halt that comes after this check still ends the read.
        """
        self.stop.clear()
        if self._lost is not None:
            self.stop.set()  # lost while the last read ended: the next one is not begun
        return not self.halted.is_set()

    def _read(self) -> None:
        transport = choose(
            self.options.transport,
            self.connection,
            self.options.interval,
            self.stop,
            give_up_after=self.options.give_up_after,
        )
        for batch in transport.batches():
            self.tell(_Status("connected", trouble=False))
            if batch is None:
                continue  # a stream that opens and then delivers nothing must not end the backoff
            self.backoff.reset()
            if batch:
                self.out.put(_Batch(batch))
            if any(_connection_down(message) for message in batch):
                raise SessionGone("the server says the session's connection is down")

    def tell(self, status: _Status) -> None:
        """Pass on a status only when it changes: one per poll would redraw an idle view every second."""
        with self._status_lock:  # the subscriber tells its troubles too
            if status != self._last_status:
                self._last_status = status
                self.out.put(status)

    def _back_off(self, backoff: Backoff, error: ICWSError, doing: str) -> None:
        """Wait ``backoff``'s next delay after ``error`` (or give up), telling the user what it is doing."""
        delay = backoff.next_delay(error)
        text = f"{doing} (attempt {backoff.attempt}, next in {delay:.1f} s)"
        log.debug("%s after: %s %s", text, error.message, error.details())
        self.tell(_Status(text, trouble=True))
        self.halted.wait(delay)

    def _session_lost(self, gone: SessionGone) -> None:
        """Renew the session: at once after one that held, after the renewal backoff after one that did not;
        never when the server asked not to reconnect, or without a password to log in with (exit 3)."""
        if self.relogin is None:
            raise AuthenticationError(
                "session expired; run icwschat login",
                hint=self.options.renewal_hint,
            ) from gone
        self._refuse_if_logged_off()
        held = self._logged_in_at is None or time.monotonic() - self._logged_in_at >= SESSION_HELD
        if held:
            log.debug("session gone (%s); logging in again", gone.details())
            self.renewal.reset()
            self.tell(_Status("session expired; logging in again", trouble=True))
        else:
            self._back_off(
                self.renewal, _reworded(gone, "the server ended the new session at once"), "logging in again"
            )

    def _refuse_if_logged_off(self) -> None:
        """``GET /connection``: a server that logged this session off may say so there (shouldReconnect)."""
        try:
            state = self.connection.connection_state()
        except ICWSError as error:  # a 401 most of the time: nothing more to learn there
            log.debug("connection check after a lost session: %s %s", error.message, error.details())
            return
        _refuse_reconnect(state, "connectionState")

    def _log_in_again(self) -> None:
        assert self.relogin is not None
        session = self.relogin()
        self._logged_in_at = time.monotonic()
        self.connection = Connection(self.http, session)
        self._lost = None  # what the subscriber saw of the old session is answered by this new one
        self.on_session(session)
        # In this order: the caller expects new snapshots before the subscriber's requests can bring them.
        self.out.put(_Resubscribing())
        self.subscriber.renewed(session)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """A second Ctrl-C or SIGTERM during the clean-up would cut it short and leave subscriptions on the
    server without a word; the clean-up is bounded in time, so they wait for it (and are then dropped: the
    watch is ending already). Only the main thread may set handlers; elsewhere nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum)) for sig in HELD_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            log.debug("signals %s waited for the clean-up", held)


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def cleanup_budget(subscriptions: int) -> float:
    """Seconds the clean-up on exit may take: :data:`CLEANUP_BUDGET`, and a little more for each of a
    queue's many subscriptions (15 s for 2,000), never more than :data:`CLEANUP_CAP`."""
    return min(CLEANUP_CAP, CLEANUP_BUDGET + CLEANUP_PER_SUBSCRIPTION * subscriptions)


def _reworded(gone: SessionGone, text: str) -> SessionGone:
    """``gone`` with words that say what failed, for the give-up message; the server's words are kept."""
    return SessionGone(
        text,
        status=gone.status,
        error_id=gone.error_id,
        error_code=gone.error_code,
        server_message=gone.server_message,
    )


def _refuse_reconnect(state: dict[str, Any], key: str) -> None:
    """Raise :class:`AuthenticationError` (exit 3) when ``state`` is down and says not to reconnect (an
    administrator logged the user off, another login replaced this one): logging in again would fight it.

    The server's reason is kept as data (``server_message``), for the output layer to show inert.
    """
    if state.get(key) == CONNECTION_DOWN and state.get("shouldReconnect") is False:
        reason = state.get("reason")
        raise AuthenticationError(
            "the server ended the session and asked not to reconnect",
            server_message=reason if isinstance(reason, str) and reason else None,
            hint="log in again with icwschat login once the server allows it",
        )


def _connection_down(message: Any) -> bool:
    """Whether ``message`` says the session's connection is down; raises :class:`AuthenticationError`
    instead when it also says not to reconnect, so no renewal is even tried."""
    if not isinstance(message, dict) or message.get("__type") != CONNECTION_STATE_TYPE:
        return False
    _refuse_reconnect(message, "newConnectionState")
    return bool(message.get("newConnectionState") == CONNECTION_DOWN)


def _warn(text: str) -> None:
    """For a watcher given no way to speak (``demo``): with no handler configured, logging prints a
    warning's text alone on stderr. The text may quote the server (an id a morph brought)."""
    log.warning("icwschat: %s", inert(text))


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
        warn: Callable[[str], None] = _warn,
    ) -> None:
        self.http_factory = http_factory
        self.options = options
        self.sink = sink
        self.warn = warn
        self.router = Router(options.interaction_ids, queue=options.queue, follow_chats=options.follow_chats)
        self.pipeline = Pipeline(self.router, sink)
        self.queue: queue.Queue[_Item] = queue.Queue()
        self.feed = Feed(http_factory, session, options, self.queue, relogin, on_session)
        self._members_at: float | None = None
        self._warned_limit = False
        self._wanted = self.router.wanted()
        """What the subscriber was last told to hold (it starts with the ids followed)."""

    def info(self) -> WatchInfo:
        session = self.feed.session
        queue = self.options.queue.label if self.options.queue is not None else None
        return WatchInfo(
            self.options.interaction_ids, session.server, session.user, self.feed.transport_name, queue
        )

    def run(self) -> None:
        """Returns when the chats ended (or the snapshots were taken); raises for everything else."""
        self.sink.started(self.info())
        self.feed.start()
        try:
            self._consume()
        finally:
            self.feed.halt()
            self.sink.close()
            with _signals_held():
                self._clean_up()

    def _consume(self) -> None:
        snapshot_deadline = time.monotonic() + self.options.snapshot_timeout
        trouble = False
        while not self._complete():
            Terminated.check()
            # Checked on every item, not only when idle: empty polls keep the queue busy. While requests
            # fail, their backoff gives up in time, and says why better than this would.
            if self.options.snapshot_only and not trouble and time.monotonic() > snapshot_deadline:
                raise ServerUnavailable(
                    f"no snapshot of {self.info().subject} arrived within "
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
                trouble = item.trouble
                self.sink.status(item.text, trouble=item.trouble)
            elif isinstance(item, _Resubscribing):
                self.router.expect_resync()
            elif isinstance(item, _Refused):
                ended = self.router.refused(item.interaction_id, item.status, self.pipeline.clock())
                if ended:
                    self.sink.update(ended, self.router)
            else:
                self._apply(item.messages)

    def _apply(self, messages: list[Any]) -> None:
        self.pipeline.apply(messages)
        if self.router.limit_exceeded and not self._warned_limit:
            self._warned_limit = True
            self.sink.notice(
                f"the server lists only part of {self.info().subject} (queueResultLimitExceeded): "
                "those beyond its limit are left out"
            )
        again, queue_again = self.router.take_resubscribes()
        wanted = self.router.wanted()
        if wanted is not self._wanted or again or queue_again:
            self._wanted = wanted
            self.feed.subscriber.want(wanted, again, queue_again)

    def _complete(self) -> bool:
        """The chats ended; or, for ``transcript``, their snapshots are in (members snapshots alone once
        :data:`CONTENTS_GRACE` has passed without contents ones)."""
        router = self.router
        if (router.ended and router.chats) or (self.options.snapshot_only and router.has_snapshot):
            return True
        if not (self.options.snapshot_only and router.has_members_snapshots):
            return False
        if self._members_at is None:
            self._members_at = time.monotonic()
        return time.monotonic() - self._members_at >= CONTENTS_GRACE

    def _clean_up(self) -> None:
        """Remove what this watch created on the server, within :func:`cleanup_budget` in all.

        A subscribe still in flight is waited for first: a DELETE sent before its PUT is answered may reach
        the server first and leave the subscription in place.
        """
        if self.options.keep_subscription:
            return
        subscriber = self.feed.subscriber
        made_before = subscriber.made()
        budget = cleanup_budget(len(made_before))
        deadline = time.monotonic() + budget
        if len(made_before) > NAMED_LEFT * 10:
            self.warn(f"removing {len(made_before)} subscriptions (at most {budget:g} s)")
        # A subscribe still in flight is waited for a moment: its PUT may reach the server after a DELETE
        # sent now. One that hangs is left (and named); everything else is removed all the same.
        held = subscriber.lock.acquire(timeout=LOCK_WAIT)
        try:
            flying = None if held else subscriber.in_flight
            made = sorted(subscriber.made() - {flying})
            queue_made = subscriber.queue_made and flying != QUEUE_SUBSCRIPTION
            left = self._remove(made, queue_made, deadline)
        finally:
            if held:
                subscriber.lock.release()
        if flying is not None:
            why = f"the request that makes it had no answer within {LOCK_WAIT:g} s"
            queue = self.options.queue
            if flying == QUEUE_SUBSCRIPTION and queue is not None:
                self._left([(QUEUE_SUBSCRIPTION, queue.label, why)], "may be left on the server")
            else:
                self._left([("chat subscription", flying, why)], "may be left on the server")
        self._left(left, "could not be removed")

    def _left(self, left: list[tuple[str, str, str]], verb: str) -> None:
        """Say what was left on the server: each of the first few, then how many more."""
        for kind, name, why in left[:NAMED_LEFT]:
            if kind == QUEUE_SUBSCRIPTION:
                self.warn(f"the {kind} for {name} {verb} ({why}); it ends with the session")
                continue
            self.warn(
                f"the {kind} for interaction {name} {verb} ({why}); "
                f"remove it with: icwschat unsubscribe {name}"
            )
        if len(left) > NAMED_LEFT:
            self.warn(
                f"{len(left) - NAMED_LEFT} more subscriptions {verb}; they end with the session "
                "(icwschat logout ends it now)"
            )

    def _remove(self, ids: list[str], queue_made: bool, deadline: float) -> list[tuple[str, str, str]]:
        """DELETE the queue subscription, then the chat subscriptions and interaction watches of ``ids``, in
        threads of their own (up to :data:`CLEANUP_WORKERS`, so a queue's hundreds of chats fit the budget),
        given until ``deadline`` in all (a server trickling its reply defeats any per-read timeout); what
        was not removed, with why."""
        session = self.feed.session
        queue = self.options.queue
        wanted: list[tuple[str, str]] = []
        if queue is not None and queue_made:
            wanted.append((QUEUE_SUBSCRIPTION, queue.label))
        kinds = ["chat subscription"] + (["interaction watch"] if queue is None else [])
        wanted += [(kind, iid) for iid in ids for kind in kinds]
        done: list[tuple[str, str]] = []
        failed: dict[tuple[str, str], str] = {}

        def remove_all(share: list[tuple[str, str]]) -> None:
            http = self.http_factory()
            connection = Connection(http, session)
            removals: dict[str, Callable[..., object]] = {
                "chat subscription": connection.unsubscribe_chat,
                "interaction watch": connection.unwatch_interaction,
            }
            if queue is not None:
                removals[QUEUE_SUBSCRIPTION] = lambda label, timeout: connection.unsubscribe_queue(
                    queue.subscription_id, label, timeout=timeout
                )
            try:
                for kind, name in share:
                    try:
                        removals[kind](name, timeout=CLEANUP_TIMEOUT)
                    except SessionGone:
                        pass  # a session that is gone took its subscriptions with it
                    except ICWSError as error:
                        log.debug("could not remove the %s for %s: %s %s", kind, name, error, error.details())
                        failed[(kind, name)] = error.message
                        continue
                    done.append((kind, name))
            finally:
                http.close()

        count = min(CLEANUP_WORKERS, len(wanted))
        workers = [
            threading.Thread(
                target=remove_all, args=(wanted[n::count],), name="icwschat-cleanup", daemon=True
            )
            for n in range(count)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        removed = set(done)
        no_answer = "no answer in time"
        return [
            (kind, name, failed.get((kind, name), no_answer))
            for kind, name in wanted
            if (kind, name) not in removed
        ]
