"""ReusableConnection across an endpoint whose connections live 1 second: a loop of units of work
running past several lifetimes never fails, for every driver; a plain connection does fail."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import dsqlkit.psycopg as dsql_psycopg
from dsqlkit.local import LocalEndpoint, Quotas
from dsqlkit.serverless import DEFAULT_MAX_AGE, ReusableConnection

LIFETIME = 1.0
MAX_AGE = 0.6
RUN_FOR = 3.5 * LIFETIME
UNIT = "SELECT pg_sleep(0.02)"  # a unit of work that takes a little server time


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(quotas=Quotas(connection_lifetime_seconds=LIFETIME)) as ep:
        yield ep


@pytest.fixture
def kwargs(endpoint: LocalEndpoint) -> Iterator[dict[str, Any]]:
    with endpoint.use_environment():
        yield endpoint.connect_kwargs()


def backend_pid_sync(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute(UNIT)
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    conn.commit()
    return pid


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_sync_job_outlives_several_connection_lifetimes(kwargs, driver):
    db = ReusableConnection(driver, max_age=MAX_AGE, margin=0.1, **kwargs)
    pids = set()
    deadline = time.monotonic() + RUN_FOR
    while time.monotonic() < deadline:  # a long job: one unit of work after another
        with db.connection() as conn:
            pids.add(backend_pid_sync(conn))
    db.close()
    assert db.connections_opened >= 4  # replaced before each lifetime ran out
    assert len(pids) == db.connections_opened


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg_async"])
async def test_async_job_outlives_several_connection_lifetimes(kwargs, driver):
    db = ReusableConnection(driver, max_age=MAX_AGE, margin=0.1, **kwargs)
    pids = set()
    deadline = time.monotonic() + RUN_FOR
    while time.monotonic() < deadline:
        async with db.aconnection() as conn:
            if driver == "asyncpg":
                await conn.execute(UNIT)
                pids.add(await conn.fetchval("SELECT pg_backend_pid()"))
            else:
                await conn.execute(UNIT)
                pids.add((await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0])
                await conn.commit()
    await db.aclose()
    assert db.connections_opened >= 4
    assert len(pids) == db.connections_opened


def test_a_connection_kept_without_it_hits_the_lifetime_cap(kwargs):
    # The server ends it with spec.LIFETIME_EXCEEDED; a statement racing the close may see only
    # the closed socket, so the check is that the connection is gone, not the message.
    with dsql_psycopg.connect(**kwargs, autocommit=True) as conn:
        deadline = time.monotonic() + RUN_FOR
        with pytest.raises(psycopg.OperationalError):
            while time.monotonic() < deadline:
                conn.execute(UNIT)
        assert conn.closed or conn.broken


def test_never_replaced_while_held(kwargs):
    db = ReusableConnection("psycopg", max_age=0.3, margin=0, autocommit=True, **kwargs)
    with db.connection() as conn:
        first = conn
        while db.age <= db.max_age:  # hold it past max_age (still inside the server's lifetime)
            conn.execute(UNIT)
        assert db.get() is first and db.connections_opened == 1
        conn.execute("SELECT 1")
    with db.connection() as conn:
        assert conn is not first and first.closed  # replaced at the next hand-out
    db.close()


def test_left_open_transaction_is_rolled_back_and_broken_one_replaced(kwargs):
    db = ReusableConnection("psycopg", max_age=DEFAULT_MAX_AGE, **kwargs)
    conn = db.get()
    conn.execute("CREATE TABLE IF NOT EXISTS reuse_probe (id int PRIMARY KEY)")
    conn.commit()
    conn.execute("INSERT INTO reuse_probe VALUES (1)")  # left uncommitted
    again = db.get()
    assert again is conn and again.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert again.execute("SELECT count(*) FROM reuse_probe WHERE id = 1").fetchone() == (0,)
    again.rollback()
    conn.close()  # broken or closed: replaced without a round trip
    fresh = db.get()
    assert fresh is not conn and db.connections_opened == 2
    fresh.execute("DROP TABLE reuse_probe")
    fresh.commit()
    db.close()


def test_failed_use_is_pinged_and_kept_when_healthy(kwargs):
    db = ReusableConnection("psycopg", autocommit=True, **kwargs)
    with pytest.raises(psycopg.errors.DivisionByZero), db.connection() as conn:
        conn.execute("SELECT 1 / 0")
    with db.connection() as again:
        assert again is conn
    assert db.connections_opened == 1
    db.close()


# --- async twins of the sync checks: rollback, ping, replacement, its log ----------------------


async def _afetch(conn: Any, sql: str) -> Any:
    """One value, for asyncpg and psycopg async alike."""
    if hasattr(conn, "fetchval"):
        return await conn.fetchval(sql)
    return (await (await conn.execute(sql)).fetchone())[0]


def _in_transaction(conn: Any) -> bool:
    if hasattr(conn, "is_in_transaction"):
        return conn.is_in_transaction()
    return conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg_async"])
async def test_async_left_open_transaction_is_rolled_back_and_closed_one_replaced(
    kwargs, driver, caplog
):
    db = ReusableConnection(driver, max_age=DEFAULT_MAX_AGE, **kwargs)
    conn = await db.aget()
    if driver == "asyncpg":
        await conn.execute("BEGIN")
    await _afetch(conn, "SELECT 1")  # psycopg: opens a transaction by itself; left open
    assert _in_transaction(conn)
    again = await db.aget()
    assert again is conn and not _in_transaction(again)  # rolled back, same connection
    await conn.close()  # closed: replaced without a round trip
    with caplog.at_level(logging.DEBUG, logger="dsqlkit"):
        fresh = await db.aget()
    assert fresh is not conn and db.connections_opened == 2
    assert "reusable connection replaced (2 opened)" in caplog.text
    await db.aclose()


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg_async"])
async def test_async_failed_use_is_pinged_and_kept_when_healthy(kwargs, driver):
    db = ReusableConnection(driver, **kwargs)
    with pytest.raises(Exception, match="division by zero"):
        async with db.aconnection() as conn:
            await _afetch(conn, "SELECT 1 / 0")
    assert db._suspect  # the next hand-out pings first
    async with db.aconnection() as again:
        assert again is conn and not db._suspect  # the ping passed: kept
        assert await _afetch(again, "SELECT 7") == 7
    assert db.connections_opened == 1
    await db.aclose()


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg_async"])
async def test_async_failed_check_replaces_the_connection(kwargs, driver):
    db = ReusableConnection(driver, **kwargs)
    async with db.aconnection() as conn:
        pid = await _afetch(conn, "SELECT pg_backend_pid()")
    with pytest.raises(Exception, match="division by zero"):
        async with db.aconnection() as same:
            assert same is conn
            await _afetch(same, "SELECT 1 / 0")
    # The server ends the session meanwhile (what a network cut or the lifetime cap does): the
    # check at the next hand-out (ping, or rollback of psycopg's failed transaction) fails.
    await _terminate(kwargs, pid)
    async with db.aconnection() as fresh:
        assert fresh is not conn and await _afetch(fresh, "SELECT 8") == 8
    assert db.connections_opened == 2
    await db.aclose()


async def _terminate(kwargs: dict[str, Any], pid: int) -> None:
    """End backend ``pid`` from another session, as DSQL ends a connection."""
    import dsqlkit.asyncpg as dsql_asyncpg

    other = await dsql_asyncpg.connect(**kwargs)
    try:
        await other.execute(f"SELECT pg_terminate_backend({int(pid)})")
    finally:
        await other.close()


def test_misuse_is_refused_clearly(kwargs):
    db = ReusableConnection("psycopg", **kwargs)
    with (
        db.connection(),
        pytest.raises(RuntimeError, match="in use by another caller"),
        db.connection(),
    ):
        pass
    with pytest.raises(TypeError, match="async"):
        ReusableConnection("asyncpg", **kwargs).get()
    with pytest.raises(ValueError, match="unknown driver"):
        ReusableConnection("mysql")
    with pytest.raises(ValueError, match="margin"):
        ReusableConnection("psycopg", max_age=10, margin=10)
    db.close()
