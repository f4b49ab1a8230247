"""dsqlkit.psycopg2 against the local endpoint: connect, refusals, the threaded pool with max lifetime."""

from __future__ import annotations

import psycopg2
import pytest

import dsqlkit.psycopg2 as dsql
from dsqlkit import dsql as spec
from dsqlkit import stats


def test_connect_query_and_tls(dsql_connect_kwargs):
    conn = dsql.connect(**dsql_connect_kwargs)
    try:
        assert isinstance(conn, psycopg2.extensions.connection)
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        assert conn.info.ssl_in_use
        cur.execute("SHOW application_name")
        assert cur.fetchone()[0].startswith("dsqlkit-psycopg2/")
        assert "X-Amz-Signature" not in conn.dsn
    finally:
        conn.close()


def test_wrong_ca_fails(kwargs_without_ca):
    with pytest.raises(psycopg2.OperationalError, match="certificate"):
        dsql.connect(**kwargs_without_ca, connect_retry=None)


def test_wrong_credentials_not_retried(kwargs_wrong_secret):
    stats.reset()
    with pytest.raises(psycopg2.OperationalError) as info:
        dsql.connect(**kwargs_wrong_secret)
    assert spec.ACCESS_DENIED.message in str(info.value)
    assert stats.snapshot()["connect_retries"] == 0
    assert "X-Amz-Signature" not in str(info.value)


def test_pool_run_transaction_and_recycle(dsql_connect_kwargs):
    with dsql.AuroraDSQLThreadedConnectionPool(
        1, 2, max_lifetime=0.05, **dsql_connect_kwargs
    ) as pool:

        def work(conn):
            cur = conn.cursor()
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            cur.execute("SELECT pg_sleep(0.06)")  # outlive the 50 ms max_lifetime
            return pid

        first = pool.run_transaction(work)
        # It came back past max_lifetime: closed, so the next one is a new backend.
        assert pool.run_transaction(work) != first


def test_pool_keeps_young_connections(dsql_connect_kwargs):
    with dsql.AuroraDSQLThreadedConnectionPool(1, 2, **dsql_connect_kwargs) as pool:
        conn = pool.getconn()
        pool.putconn(conn)
        assert pool.getconn() is conn
