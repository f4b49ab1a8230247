"""The new-connection token bucket: burst, refill order, configuration (no sleeping to pass)."""

from __future__ import annotations

import threading

import pytest

from dsqlkit import ratelimit, stats
from dsqlkit.ratelimit import TokenBucket


def test_burst_is_free_then_waits_grow_by_one_interval():
    # A slow rate, so that a loaded machine's pauses (well under a second) cannot matter.
    bucket = TokenBucket(rate=1, burst=3)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    waits = [bucket.reserve() for _ in range(3)]
    # Each caller owns the slot after the previous one: ~1 s, ~2 s, ~3 s.
    for n, wait in enumerate(waits, start=1):
        assert n - 0.5 < wait <= n


def test_waits_are_counted():
    stats.reset()
    bucket = TokenBucket(rate=1000, burst=1)
    bucket.reserve()
    bucket.reserve()
    snap = stats.snapshot()
    assert snap["ratelimit_waits"] == 1
    assert 0 < snap["ratelimit_wait_seconds"] <= 0.001


def test_threads_get_distinct_slots():
    bucket = TokenBucket(rate=1, burst=1)  # reserve() only: nothing sleeps
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
    waits.sort()
    # 20 takers on a 1-token bucket at 1/s: the n-th waits about n seconds, none shares a slot.
    assert waits[0] == 0.0
    for n, wait in enumerate(waits):
        assert n - 0.5 < wait <= n


async def test_async_acquire_awaits():
    bucket = TokenBucket(rate=1000, burst=1)
    await bucket.aacquire()
    await bucket.aacquire()  # waits ~1 ms without blocking the loop


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
