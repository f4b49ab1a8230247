"""dsqlkit.local.rules.quotas: the token bucket and the connection cap, on a fake clock (sans-I/O)."""

from __future__ import annotations

from dsqlkit import dsql as spec
from dsqlkit.local.config import Quotas
from dsqlkit.local.rules.quotas import ConnectionQuotas, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_burst_then_refill() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now = 0.1  # one token back
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.now = 100.0  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 3


def test_rate_refused_before_cap_and_not_counted() -> None:
    clock = Clock()
    gate = ConnectionQuotas(Quotas(connection_rate_per_second=1, connection_burst=1), clock)
    assert gate.admit() is None
    assert gate.admit() is spec.RATE_EXCEEDED
    assert gate.open == 1


def test_cap_and_release() -> None:
    gate = ConnectionQuotas(Quotas(max_connections=2), Clock())
    assert [gate.admit(), gate.admit()] == [None, None]
    assert gate.admit() is spec.TOO_MANY_CONNECTIONS
    gate.release()
    assert gate.admit() is None
    assert gate.open == 2
