"""The driver registry: one name per driver, every operation in one row, lookup by object."""

from __future__ import annotations

import asyncpg
import psycopg
import psycopg2.extensions
import psycopg2.pool
import psycopg_pool
import pytest

import dsqlkit.asyncpg
import dsqlkit.psycopg
import dsqlkit.psycopg2
from dsqlkit import _driver, _private, drivers


def test_one_name_per_driver():
    assert drivers.NAMES == ("psycopg2", "psycopg", "psycopg_async", "asyncpg")
    for name in drivers.NAMES:
        ops = drivers.get(name)
        assert ops.name == name
        assert ops.is_async == (name in ("psycopg_async", "asyncpg"))
    with pytest.raises(ValueError, match="unknown driver 'psycopg-async'"):
        drivers.get("psycopg-async")


def test_rows_point_at_the_public_connect_functions():
    assert drivers.get("psycopg").connect is dsqlkit.psycopg.connect
    assert drivers.get("psycopg_async").connect is dsqlkit.psycopg.connect_async
    assert drivers.get("psycopg2").connect is dsqlkit.psycopg2.connect
    assert drivers.get("asyncpg").connect is dsqlkit.asyncpg.connect
    assert drivers.get("psycopg_async").transaction is dsqlkit.psycopg.atransaction


def test_lookup_by_object_without_connecting():
    # Objects made without a server: a pool that is not opened, classes' own instances.
    sync_pool = psycopg_pool.ConnectionPool("", open=False)
    async_pool = psycopg_pool.AsyncConnectionPool("", open=False)
    assert drivers.of(sync_pool).name == "psycopg"
    assert drivers.of(async_pool).name == "psycopg_async"
    assert (
        drivers.of(dsqlkit.psycopg.create_pool("localhost", kwargs={"region": "us-east-1"})).name
        == "psycopg"
    )
    with pytest.raises(TypeError, match="expected a psycopg, psycopg2 or asyncpg"):
        drivers.of("postgresql://localhost")


def test_lookup_by_connection(dsql_connect_kwargs):
    with psycopg.connect(**_raw(dsql_connect_kwargs)) as conn:
        ops = drivers.of(conn)
        assert ops.name == "psycopg" and ops.is_connection(conn) and ops.state(conn) == "idle"
        conn.execute("SELECT 1")
        assert ops.state(conn) == "open-transaction"
        ops.rollback(conn)
        assert ops.state(conn) == "idle"
    assert ops.state(conn) == "closed"
    conn2 = dsqlkit.psycopg2.connect(**dsql_connect_kwargs)
    ops2 = drivers.of(conn2)
    assert ops2.name == "psycopg2" and ops2.state(conn2) == "idle"
    ops2.ping(conn2)
    assert ops2.state(conn2) == "idle"  # the ping leaves no transaction open
    ops2.discard(conn2)
    assert ops2.state(conn2) == "closed"


def _raw(kwargs):
    plan = _driver.plan("psycopg", None, dict(kwargs))
    return {**_driver.libpq_kwargs(plan, psycopg.pq.version()), "password": plan.tokens.token()}


async def test_lookup_by_async_connection(dsql_connect_kwargs):
    conn = await dsqlkit.asyncpg.connect(**dsql_connect_kwargs)
    ops = drivers.of(conn)
    assert ops.name == "asyncpg" and ops.paramstyle == "numeric"
    await ops.ping(conn)
    async with ops.borrow(conn) as same:
        assert same is conn
    await ops.discard(conn)
    assert ops.state(conn) == "closed"


def test_private_attributes_the_pools_rely_on_are_present():
    # The installed drivers still have them (pyproject bounds the versions)...
    _private.require(psycopg2.pool.AbstractConnectionPool, ("_connect",), "psycopg2")
    _private.require(asyncpg.Pool, ("_acquire",), "asyncpg")
    _private.require(asyncpg.pool.PoolConnectionProxy, ("_con",), "asyncpg")
    # ...and a release that moved one is refused loudly, naming the driver and the fix.
    with pytest.raises(ImportError, match=r"asyncpg release has no Pool\._gone.*pyproject\.toml"):
        _private.require(asyncpg.Pool, ("_gone",), "asyncpg")


def test_asyncpg_pool_defaults_agree_with_the_core():
    assert dsqlkit.asyncpg._POOL_MAX_LIFETIME == _driver.POOL_MAX_LIFETIME
    assert dsqlkit.asyncpg._POOL_MAX_IDLE == _driver.POOL_MAX_IDLE


def test_psycopg2_connection_class_is_the_drivers():
    assert dsqlkit.psycopg2.Connection is psycopg2.extensions.connection
