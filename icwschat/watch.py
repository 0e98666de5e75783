"""Following one chat: network in a feed thread, cache and sinks in the caller's thread.

The feed owns every request: it subscribes, reads the message queue through a transport, retries transient
failures with capped exponential backoff and jitter, and logs in again when the session is gone. It hands
batches to the caller through a queue, so the caller's thread stays free for signals and terminal resizes,
and the pure cache is only ever touched from one thread. When the cache learns that the subscription must be
made again (it faulted, or the interaction has a new id), the caller asks the feed to do it.
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
from .errors import (
    AuthenticationError,
    ICWSError,
    ProtocolError,
    ServerUnavailable,
    SessionGone,
    Terminated,
)
from .models import CONNECTION_DOWN, CONNECTION_STATE_TYPE
from .pipeline import Pipeline
from .session import Session
from .sinks import Sink, WatchInfo
from .textsafe import inert
from .transport import choose

log = logging.getLogger("icwschat.watch")

INTERACTION_ATTRIBUTES = ["Eic_State", "Eic_RemoteName"]
CLEANUP_BUDGET = 5.0
"""Seconds the clean-up on exit may take in all, whatever the server does; what it could not remove by then
is named on stderr and left."""
CLEANUP_TIMEOUT = (3.0, 5.0)
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
    interaction_id: str
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


_Item = _Batch | _Status | _Resubscribing | _Failed


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


class Feed(threading.Thread):
    """The network side of a watch; everything it learns goes into ``out``.

    Two backoffs: ``backoff`` for reading (reset by every batch read) and ``renewal`` for logging in
    again, which only a session that has held for :data:`SESSION_HELD` resets, so a server that ends each
    new session at once (or answers every call with 401) cannot make a login storm.

    ``stop`` ends the current read (the transports watch it); ``halted`` ends the feed.
    """

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
        self.halted = threading.Event()
        self.transport_name = choose(options.transport, self.connection, options.interval, self.stop).name
        self.backoff = Backoff(options.give_up_after, deadline_option=options.deadline_option)
        self.renewal = Backoff(
            options.give_up_after, deadline_option=options.deadline_option, base=2.0, spread=0.5
        )
        self.interaction_id = options.interaction_id
        self.subscriptions: frozenset[str] = frozenset()
        """Interactions whose subscriptions may exist on the server; replaced, never changed in place, so
        another thread can read it at any time."""
        self.subscription_lock = threading.Lock()
        """Held while subscriptions are made or removed, so the clean-up's DELETE cannot overtake a PUT."""
        self._wanted: str | None = None
        self._logged_in_at: float | None = None
        self._last_status: _Status | None = None

    @property
    def session(self) -> Session:
        return self.connection.session

    def halt(self) -> None:
        """End the feed (from another thread); a request in flight still completes."""
        self.halted.set()
        self.stop.set()

    def resubscribe(self, interaction_id: str) -> None:
        """Subscribe to ``interaction_id`` (again) as soon as the current read stops, and drop the
        subscriptions of any other interaction (the one a morph left behind). Called from another thread."""
        self._wanted = interaction_id
        self.stop.set()

    def run(self) -> None:
        try:
            self._follow()
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, which decides the exit
            self.out.put(_Failed(error))
        finally:
            self.http.close()

    def _follow(self) -> None:
        subscribed = renewing = False
        while self._resume():
            try:
                if renewing:
                    self._log_in_again()
                    renewing = subscribed = False
                wanted, self._wanted = self._wanted, None
                if wanted is not None:
                    self.interaction_id, subscribed = wanted, False
                if not subscribed:
                    if not self._subscribe():
                        return
                    subscribed = True
                self._read()
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
                if isinstance(error, ProtocolError) and subscribed:
                    # A reply or event that was not JSON may have carried messages the server has already
                    # dequeued: subscribing again brings a snapshot, which the cache reconciles.
                    subscribed = False
                    self.out.put(_Resubscribing())
                self._back_off(self.backoff, error, "reconnecting")

    def _resume(self) -> bool:
        """Ready ``stop`` for the next read; False once the feed is halted.

        ``halt`` sets ``halted`` before ``stop``, so a halt that comes after this check still ends the read.
        """
        self.stop.clear()
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

    def _back_off(self, backoff: Backoff, error: ICWSError, doing: str) -> None:
        """Wait ``backoff``'s next delay after ``error`` (or give up), telling the user what it is doing."""
        delay = backoff.next_delay(error)
        text = f"{doing} (attempt {backoff.attempt}, next in {delay:.1f} s)"
        log.debug("%s after: %s %s", text, error.message, error.details())
        self._tell(_Status(text, trouble=True))
        self.halted.wait(delay)  # a request to subscribe again must not cut a backoff short

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
            self._tell(_Status("session expired; logging in again", trouble=True))
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
        self.on_session(session)
        self.out.put(_Resubscribing())

    def _subscribe(self) -> bool:
        """Subscribe to the chat and watch the interaction, then drop any other interaction's subscriptions;
        False (and nothing sent) once the feed is halted, so no PUT can follow the clean-up's DELETE."""
        with self.subscription_lock:
            if self.halted.is_set():
                return False
            iid = self.interaction_id
            known = iid in self.subscriptions
            self.subscriptions |= {iid}  # before the PUT: one with no answer may still have made it
            try:
                self.connection.subscribe_chat(iid)
            except ICWSError as refused:
                if refused.status is not None and not known:
                    self.subscriptions -= {iid}  # the server answered, and made nothing to remove later
                raise
            self._watch_interaction(iid)
            for old in sorted(self.subscriptions - {iid}):
                self._drop(old)
        return True

    def _drop(self, iid: str) -> None:
        """Best effort: a subscription that stays is tried again by the clean-up on exit."""
        try:
            self.connection.unsubscribe_chat(iid)
            self.connection.unwatch_interaction(iid)
        except ICWSError as error:
            log.debug("could not remove the subscription for %s yet: %s %s", iid, error, error.details())
        else:
            self.subscriptions -= {iid}

    def _watch_interaction(self, iid: str) -> None:
        """Ask for ``Eic_State`` so the end of the chat is seen; a server that refuses only loses that."""
        try:
            self.connection.watch_interaction(iid, INTERACTION_ATTRIBUTES)
        except (SessionGone, ServerUnavailable):
            raise
        except ICWSError as error:
            log.debug("cannot watch interaction %s (%s); the end of the chat may go unseen", iid, error)


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
        self.cache = ChatCache(options.interaction_id)
        self.pipeline = Pipeline(self.cache, sink)
        self.queue: queue.Queue[_Item] = queue.Queue()
        self.feed = Feed(http_factory(), session, options, self.queue, relogin, on_session)
        self._members_at: float | None = None

    def info(self) -> WatchInfo:
        session = self.feed.session
        return WatchInfo(self.options.interaction_id, session.server, session.user, self.feed.transport_name)

    def run(self) -> None:
        """Returns when the chat ended (or the snapshot was taken); raises for everything else."""
        self.sink.started(self.info())
        self.feed.start()
        try:
            self._consume()
        finally:
            self.feed.halt()
            self.sink.close()
            self._clean_up()

    def _consume(self) -> None:
        snapshot_deadline = time.monotonic() + self.options.snapshot_timeout
        while not self._complete():
            Terminated.check()
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
            else:
                self._apply(item.messages)

    def _apply(self, messages: list[Any]) -> None:
        self.pipeline.apply(messages)
        if self.cache.needs_subscribe:
            self.cache.needs_subscribe = False
            self.feed.resubscribe(self.cache.interaction_id)

    def _complete(self) -> bool:
        """The chat ended; or, for ``transcript``, its snapshot is in (a members snapshot alone once
        :data:`CONTENTS_GRACE` has passed without a contents one)."""
        if self.cache.ended or (self.options.snapshot_only and self.cache.has_snapshot):
            return True
        if not (self.options.snapshot_only and self.cache.has_members_snapshot):
            return False
        if self._members_at is None:
            self._members_at = time.monotonic()
        return time.monotonic() - self._members_at >= CONTENTS_GRACE

    def _clean_up(self) -> None:
        """Remove what this watch created on the server, within :data:`CLEANUP_BUDGET` in all.

        A subscribe still in flight is waited for first: a DELETE sent before its PUT is answered may reach
        the server first and leave the subscription in place.
        """
        if self.options.keep_subscription:
            return
        deadline = time.monotonic() + CLEANUP_BUDGET
        lock = self.feed.subscription_lock
        if not lock.acquire(timeout=CLEANUP_BUDGET):
            iid = self.feed.interaction_id
            self.warn(
                f"the chat subscription for interaction {iid} may be left on the server: the request "
                f"that makes it had no answer within {CLEANUP_BUDGET:g} s; remove it with: "
                f"icwschat unsubscribe {iid}"
            )
            return
        try:
            left = self._remove(sorted(self.feed.subscriptions), deadline)
        finally:
            lock.release()
        for kind, iid, why in left:
            self.warn(
                f"could not remove the {kind} for interaction {iid} ({why}); "
                f"remove it with: icwschat unsubscribe {iid}"
            )

    def _remove(self, ids: list[str], deadline: float) -> list[tuple[str, str, str]]:
        """DELETE the chat subscriptions and interaction watches of ``ids`` in a thread of their own, given
        until ``deadline`` in all (a server trickling its reply defeats any per-read timeout); what was not
        removed, with why."""
        session = self.feed.session
        done: list[tuple[str, str]] = []
        failed: dict[tuple[str, str], str] = {}

        def remove_all() -> None:
            http = self.http_factory()
            connection = Connection(http, session)
            removals = (
                ("chat subscription", connection.unsubscribe_chat),
                ("interaction watch", connection.unwatch_interaction),
            )
            try:
                for iid in ids:
                    for kind, remove in removals:
                        try:
                            remove(iid, timeout=CLEANUP_TIMEOUT)
                        except SessionGone:
                            pass  # a session that is gone took its subscriptions with it
                        except ICWSError as error:
                            log.debug(
                                "could not remove the %s for %s: %s %s", kind, iid, error, error.details()
                            )
                            failed[(kind, iid)] = error.message
                            continue
                        done.append((kind, iid))
            finally:
                http.close()

        worker = threading.Thread(target=remove_all, name="icwschat-cleanup", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        removed = set(done)
        no_answer = f"no answer within {CLEANUP_BUDGET:g} s"
        return [
            (kind, iid, failed.get((kind, iid), no_answer))
            for iid in ids
            for kind in ("chat subscription", "interaction watch")
            if (kind, iid) not in removed
        ]
