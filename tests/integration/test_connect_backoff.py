"""Connect backoff and client-side rate limiting against an endpoint with a tiny connection quota."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

import dsqlkit.asyncpg as dsql_asyncpg
import dsqlkit.psycopg as dsql
from dsqlkit import dsql as spec
from dsqlkit import stats
from dsqlkit.local import Quotas
from dsqlkit.ratelimit import TokenBucket
from dsqlkit.retry import ConnectRetryConfig

#: Patient enough for 10 connects at 5/s whatever the jitter draws.
PATIENT = ConnectRetryConfig(max_attempts=30, base_delay_ms=50, max_delay_ms=400, max_total_s=30)


@pytest.fixture(scope="module")
def tiny_quota():
    from dsqlkit.local import LocalEndpoint

    with LocalEndpoint(quotas=Quotas(connection_rate_per_second=5, connection_burst=2)) as ep:
        yield ep


@pytest.fixture
def kwargs(tiny_quota):
    with tiny_quota.use_environment():
        yield tiny_quota.connect_kwargs()


def test_burst_fails_with_rate_exceeded_without_backoff(kwargs):
    opened = []
    with pytest.raises(psycopg.OperationalError, match=spec.RATE_EXCEEDED.message):
        for _ in range(10):
            opened.append(dsql.connect(**kwargs, connect_retry=None, rate_limit=None))
    for conn in opened:
        conn.close()
    assert len(opened) < 10


def test_burst_succeeds_with_backoff(kwargs):
    stats.reset()
    conns = [dsql.connect(**kwargs, connect_retry=PATIENT, rate_limit=None) for _ in range(10)]
    for conn in conns:
        conn.close()
    snap = stats.snapshot()
    assert snap["connections_opened"] == 10
    assert snap["connect_retries"] > 0
    assert snap["connect_failures"].get(spec.RATE_EXCEEDED.sqlstate, 0) == snap["connect_retries"]


async def test_async_burst_succeeds_with_backoff(kwargs):
    conns = await asyncio.gather(
        *(dsql_asyncpg.connect(**kwargs, connect_retry=PATIENT, rate_limit=None) for _ in range(6))
    )
    assert len(conns) == 6
    await asyncio.gather(*(conn.close() for conn in conns))


def test_client_rate_limit_stays_under_the_quota(kwargs):
    # The client's bucket (4/s after one) is slower than the server's (5/s): once the server's
    # bucket has a token, no connect is refused, so no retry is needed.
    limiter = TokenBucket(rate=4, burst=1)
    dsql.connect(**kwargs, connect_retry=PATIENT, rate_limit=limiter).close()  # drain backlog
    stats.reset()
    for _ in range(4):
        dsql.connect(**kwargs, connect_retry=None, rate_limit=limiter).close()
    snap = stats.snapshot()
    assert snap["connections_opened"] == 4
    assert snap["ratelimit_waits"] >= 3
