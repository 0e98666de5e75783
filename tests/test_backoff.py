"""``Backoff``: capped exponential delays with jitter, a deadline from the first failure, Retry-After."""

from __future__ import annotations

import random

import pytest

from icwschat.errors import ExitCode, ServerBusy, ServerUnavailable, SessionGone, exit_code
from icwschat.watch import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Dice(random.Random):
    """Rolls the values it is given, in turn."""

    def __init__(self, *rolls: float) -> None:
        super().__init__(0)
        self.rolls = list(rolls)

    def random(self) -> float:
        return self.rolls.pop(0)


def down() -> ServerUnavailable:
    return ServerUnavailable("cannot reach the server")


def busy(seconds: float) -> ServerBusy:
    error = ServerBusy("the server is busy (429)", status=429)
    error.retry_after = seconds
    return error


@pytest.mark.parametrize("roll", [0.0, 0.25, 0.5, 0.999])
def test_full_jitter_stays_between_nothing_and_the_doubling_ceiling(roll: float) -> None:
    backoff = Backoff(300, base=0.5, cap=30, clock=Clock(), rng=Dice(*[roll] * 8))
    for attempt in range(1, 9):
        ceiling = min(30.0, 0.5 * 2**attempt)
        delay = backoff.next_delay(down())
        assert 0 < delay <= ceiling
        assert delay == pytest.approx(ceiling * (1 - roll))


def test_spread_keeps_a_floor_under_each_delay() -> None:
    backoff = Backoff(300, base=2, cap=30, spread=0.5, clock=Clock(), rng=Dice(0.999, 0.999, 0.0, 0.999))
    delays = [backoff.next_delay(down()) for _ in range(4)]
    assert delays[0] == pytest.approx(2.002)  # half of 4, and at most all of it
    assert delays[1] == pytest.approx(4.004)
    assert delays[2] == pytest.approx(16.0)
    assert delays[3] == pytest.approx(15.015)  # the cap, 30, halved at most


def test_the_cap_holds_however_long_it_fails() -> None:
    backoff = Backoff(10**9, base=0.5, cap=30, clock=Clock(), rng=Dice(*[0.0] * 200))
    assert max(backoff.next_delay(down()) for _ in range(200)) == 30


def test_past_the_deadline_it_gives_up_with_exit_5_naming_the_last_failure() -> None:
    clock = Clock()
    backoff = Backoff(10, clock=clock, rng=Dice(*[0.5] * 10))
    backoff.next_delay(down())
    clock.now += 9.9
    assert backoff.next_delay(down()) == pytest.approx(0.1)  # never past the deadline
    clock.now = 1010.0
    with pytest.raises(ServerUnavailable, match=r"gave up after 10 s of failures: cannot reach the server"):
        backoff.next_delay(down())


def test_a_lost_session_gives_up_like_any_failure_never_with_exit_3() -> None:
    clock = Clock()
    backoff = Backoff(5, clock=clock, rng=Dice(*[0.5] * 4))
    gone = SessionGone("the server ended the session again", status=401)
    backoff.next_delay(gone)
    clock.now += 6
    with pytest.raises(ServerUnavailable) as raised:
        backoff.next_delay(gone)
    assert exit_code(raised.value) == ExitCode.SERVER_UNAVAILABLE
    assert raised.value.status == 401


def test_retry_after_is_honoured_even_above_the_jittered_delay() -> None:
    backoff = Backoff(300, clock=Clock(), rng=Dice(0.999))
    assert backoff.next_delay(busy(7)) == 7


def test_retry_after_is_capped_by_the_time_left() -> None:
    clock = Clock()
    backoff = Backoff(10, clock=clock, rng=Dice(0.5, 0.5))
    backoff.next_delay(down())
    clock.now += 6
    assert backoff.next_delay(busy(3600)) == pytest.approx(4)


def test_a_busy_server_is_never_a_bug_or_bad_credentials() -> None:
    clock = Clock()
    backoff = Backoff(2, clock=clock, rng=Dice(0.5))
    backoff.next_delay(busy(1))
    clock.now += 2
    with pytest.raises(ServerUnavailable) as raised:
        backoff.next_delay(busy(1))
    assert exit_code(raised.value) == ExitCode.SERVER_UNAVAILABLE
    assert exit_code(busy(1)) == ExitCode.SERVER_UNAVAILABLE


def test_reset_starts_the_doubling_and_the_deadline_again() -> None:
    clock = Clock()
    backoff = Backoff(10, base=0.5, cap=30, clock=clock, rng=Dice(*[0.0] * 6))
    for _ in range(3):
        backoff.next_delay(down())
    clock.now += 9
    backoff.reset()
    assert (backoff.attempt, backoff.failing_since) == (0, None)
    clock.now += 5  # 14 s after the first failure, but the deadline counts from the one after the reset
    assert backoff.next_delay(down()) == 1.0
    assert backoff.failing_since == clock.now
