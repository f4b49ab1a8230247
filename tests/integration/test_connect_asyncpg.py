"""dsqlkit.asyncpg against the local endpoint: direct TLS with ALPN, refusals, pools with max lifetime."""

from __future__ import annotations

import asyncpg
import pytest

import dsqlkit.asyncpg as dsql
from dsqlkit import dsql as spec
from dsqlkit import stats


async def test_connect_query_direct_tls(dsql_connect_kwargs):
    conn = await dsql.connect(**dsql_connect_kwargs)
    try:
        assert isinstance(conn, asyncpg.Connection)
        assert await conn.fetchval("SELECT 1") == 1
        name = await conn.fetchval("SHOW application_name")
        assert name.startswith("dsqlkit-asyncpg/")
        ssl_object = conn._transport.get_extra_info("ssl_object")  # no public accessor
        assert ssl_object is not None
        assert ssl_object.selected_alpn_protocol() == spec.ALPN_PROTOCOL
    finally:
        await conn.close()


async def test_connect_with_sslrequest(dsql_connect_kwargs):
    conn = await dsql.connect(**dsql_connect_kwargs, direct_tls=False)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_wrong_ca_fails(kwargs_without_ca):
    with pytest.raises(Exception, match=r"(?i)certificate"):
        await dsql.connect(**kwargs_without_ca, connect_retry=None)


async def test_wrong_credentials_not_retried(kwargs_wrong_secret):
    stats.reset()
    with pytest.raises(Exception, match=spec.ACCESS_DENIED.message) as info:
        await dsql.connect(**kwargs_wrong_secret)
    assert stats.snapshot()["connect_retries"] == 0
    assert "X-Amz-Signature" not in str(info.value)


async def test_pool_run_transaction_and_recycle(dsql_connect_kwargs):
    pool = await dsql.create_pool(**dsql_connect_kwargs, min_size=1, max_size=2, max_lifetime=0.05)
    async with pool:
        assert await pool.run_transaction(lambda conn: conn.fetchval("SELECT 6")) == 6
        async with pool.acquire() as conn:
            first = conn.get_server_pid()
            await conn.execute("SELECT pg_sleep(0.06)")  # outlive the 50 ms max_lifetime
        # Past max_lifetime when released: closed; the next acquire gets a new backend.
        async with pool.acquire() as conn:
            assert conn.get_server_pid() != first


async def test_pool_keeps_young_connections(dsql_connect_kwargs):
    async with await dsql.create_pool(**dsql_connect_kwargs, min_size=1, max_size=1) as pool:
        async with pool.acquire() as conn:
            first = conn.get_server_pid()
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == first
