"""The new-connection token bucket: burst, refill order, configuration (no sleeping to pass)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dsqlkit import ratelimit, stats
from dsqlkit.ratelimit import TokenBucket


class Clock:
    """Monotonic seconds that move only when the test says so (injected into the bucket)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_is_free_then_waits_grow_by_one_interval():
    clock = Clock()
    bucket = TokenBucket(rate=1, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    # Each caller owns the slot after the previous one: 1 s, 2 s, 3 s.
    assert [bucket.reserve() for _ in range(3)] == [1.0, 2.0, 3.0]


def test_refill_is_rate_times_elapsed_and_capped_at_burst():
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=2, clock=clock)
    assert [bucket.reserve(), bucket.reserve()] == [0.0, 0.0]
    clock.now += 0.1  # one token back
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.1)
    clock.now += 3600  # a long pause saves up no more than the burst
    assert [bucket.reserve(), bucket.reserve()] == [0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)


def test_waits_are_counted():
    stats.reset()
    bucket = TokenBucket(rate=1000, burst=1, clock=Clock())
    bucket.reserve()
    bucket.reserve()
    snap = stats.snapshot()
    assert snap["ratelimit_waits"] == 1
    assert snap["ratelimit_wait_seconds"] == pytest.approx(0.001)


def test_threads_get_distinct_slots():
    bucket = TokenBucket(rate=1, burst=1, clock=Clock())  # reserve() only: nothing sleeps
    waits: list[float] = []
    lock = threading.Lock()

    def take():
        wait = bucket.reserve()
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 20 takers on a 1-token bucket at 1/s, time standing still: slots 0, 1, ..., 19 s, none shared.
    assert sorted(waits) == [float(n) for n in range(20)]


async def test_async_acquire_awaits_without_blocking_the_loop():
    bucket = TokenBucket(rate=20, burst=1, clock=Clock())
    await bucket.aacquire()  # the burst: no wait
    ran_meanwhile = asyncio.Event()

    async def other_task() -> None:
        ran_meanwhile.set()

    task = asyncio.create_task(other_task())
    await bucket.aacquire()  # waits 50 ms by awaiting: the other task runs meanwhile
    assert ran_meanwhile.is_set()
    await task


def test_sync_acquire_sleeps_for_the_reserved_wait(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(ratelimit.time, "sleep", slept.append)  # the sleep itself: recorded
    bucket = TokenBucket(rate=4, burst=1, clock=Clock())
    bucket.acquire()
    bucket.acquire()
    assert slept == [0.25]


def test_configure_and_resolve():
    try:
        limiter = ratelimit.configure(rate=20)
        assert limiter is not None and limiter.burst == 20
        assert ratelimit.resolve(ratelimit.DEFAULT) is limiter
        own = TokenBucket(5, 1)
        assert ratelimit.resolve(own) is own
        assert ratelimit.resolve(None) is None
        assert ratelimit.configure(None) is None
        assert ratelimit.resolve(ratelimit.DEFAULT) is None
    finally:
        ratelimit.configure()
    assert ratelimit.current() is not None
    assert ratelimit.current().rate == ratelimit.DEFAULT_RATE


def test_bad_settings_are_explained():
    with pytest.raises(ValueError, match="rate must be a positive"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, 0)
    with pytest.raises(TypeError, match="rate_limit must be"):
        ratelimit.resolve(5)  # type: ignore[arg-type]


def test_suspended_turns_the_process_limiter_off_and_restores_it():
    before = ratelimit.current()
    with ratelimit.suspended():
        assert ratelimit.current() is None
        assert ratelimit.resolve(ratelimit.DEFAULT) is None
    assert ratelimit.current() is before
    with pytest.raises(RuntimeError), ratelimit.suspended():
        raise RuntimeError("the limiter comes back even when the block fails")
    assert ratelimit.current() is before
