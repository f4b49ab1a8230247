"""dsqlkit.psycopg against the local endpoint: TLS, tokens, refusals, pools (real drivers, real TLS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import psycopg_pool
import pytest

import dsqlkit.psycopg as dsql
from dsqlkit import dsql as spec
from dsqlkit import stats

#: Held longer than the pools' 50 ms max_lifetime in the recycle tests (the server waits).
OUTLIVE_LIFETIME = "SELECT pg_sleep(0.06)"


def test_connect_query_and_tls(dsql_connect_kwargs):
    with dsql.connect(**dsql_connect_kwargs) as conn:
        assert isinstance(conn, psycopg.Connection)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.pgconn.ssl_in_use
        name = conn.execute("SHOW application_name").fetchone()[0]
        assert name.startswith("dsqlkit-psycopg/")
        # libpq 18 fails rather than fall back when direct TLS is refused: it was used.
        assert conn.info.get_parameters().get("sslnegotiation") == "direct"


def test_orm_prefix_kept(dsql_connect_kwargs):
    with dsql.connect(**dsql_connect_kwargs, application_name="sqlalchemy") as conn:
        name = conn.execute("SHOW application_name").fetchone()[0]
        assert name.startswith("sqlalchemy:dsqlkit-psycopg/")


async def test_connect_async(dsql_connect_kwargs):
    conn = await dsql.connect_async(**dsql_connect_kwargs)
    async with conn:
        assert isinstance(conn, psycopg.AsyncConnection)
        cur = await conn.execute("SELECT 2")
        assert await cur.fetchone() == (2,)


def test_wrong_ca_fails(kwargs_without_ca):
    # Without the endpoint's CA, the default (the system CAs) must not trust the local cert.
    with pytest.raises(psycopg.OperationalError, match="certificate"):
        dsql.connect(**kwargs_without_ca, connect_retry=None)


def test_wrong_credentials_not_retried_and_token_hidden(kwargs_wrong_secret):
    stats.reset()
    with pytest.raises(psycopg.OperationalError) as info:
        dsql.connect(**kwargs_wrong_secret)
    assert spec.ACCESS_DENIED.message in str(info.value)
    snap = stats.snapshot()
    assert snap["connect_retries"] == 0
    assert snap["connect_failures"] == {spec.ACCESS_DENIED.sqlstate: 1}
    assert "X-Amz-Signature" not in str(info.value) and "X-Amz-Signature" not in repr(info.value)


def test_stats_count_connections_and_tokens(dsql_connect_kwargs):
    stats.reset()
    dsql.connect(**dsql_connect_kwargs).close()
    snap = stats.snapshot()
    assert snap["connections_opened"] == 1 and snap["token_count"] == 1
    assert snap["token_seconds"] > 0


def test_pool_run_transaction_and_recycle(dsql_connect_kwargs):
    pool = dsql.create_pool(kwargs=dsql_connect_kwargs, min_size=1, max_size=2, max_lifetime=0.05)
    with pool:
        assert pool.run_transaction(lambda conn: conn.execute("SELECT 3").fetchone()) == (3,)
        with pool.connection() as conn:
            first = conn.info.backend_pid
            conn.execute(OUTLIVE_LIFETIME)
        # The connection outlived max_lifetime when it came back: the pool replaced it.
        with pool.connection() as conn:
            assert conn.info.backend_pid != first


async def test_async_pool(dsql_connect_kwargs):
    async with dsql.create_async_pool(kwargs=dsql_connect_kwargs, min_size=1, max_size=2) as pool:

        async def work(conn):
            cur = await conn.execute("SELECT 4")
            return await cur.fetchone()

        assert await pool.run_transaction(work) == (4,)


def test_connection_class_for_plain_psycopg_pool(dsql_connect_kwargs):
    with (
        psycopg_pool.ConnectionPool(
            kwargs=dsql_connect_kwargs, connection_class=dsql.DSQLConnection, min_size=1, open=True
        ) as pool,
        pool.connection() as conn,
    ):
        assert conn.execute("SELECT 5").fetchone() == (5,)


def test_pool_refuses_foreign_connection_class(dsql_connect_kwargs):
    with pytest.raises(TypeError, match="connection_class"):
        dsql.create_pool(kwargs=dsql_connect_kwargs, connection_class=psycopg.Connection)


def test_connect_does_not_import_botocore(dsql_connect_kwargs, dsql_environ):
    code = (
        "import json, sys, dsqlkit.psycopg as d\n"
        "conn = d.connect(**json.loads(sys.argv[1]))\n"
        "conn.execute('SELECT 1'); conn.close()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))))\n"
    )
    env = {**os.environ, **dsql_environ}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(dsql_connect_kwargs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
