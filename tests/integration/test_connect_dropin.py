"""The official connector's documented usage, unchanged but for the import, against the local endpoint.

Every test runs with the exports ``dsqlkit local`` prints (``dsql_environ``: AWS keys and region,
``PGSSLROOTCERT``) and passes no TLS argument: the driver's own configuration (libpq's
environment, asyncpg's ``ssl=``) must be respected, as the official connector respects it.
"""

from __future__ import annotations

import ssl

import asyncpg
import psycopg
import psycopg2
import psycopg_pool
import pytest

import dsqlkit.asyncpg
import dsqlkit.psycopg
import dsqlkit.psycopg2
from dsqlkit import dsql as spec


@pytest.fixture
def config(dsql_endpoint, dsql_environ):
    """The official README's ``config``: host, user (region from AWS_REGION), nothing about TLS."""
    return {"host": dsql_endpoint.host, "port": dsql_endpoint.port, "user": spec.ADMIN_USER}


@pytest.fixture
def cluster_id(dsql_endpoint):
    return dsql_endpoint.hostname.split(".", 1)[0]


def test_psycopg_with_host_and_pgsslrootcert(config):
    with dsqlkit.psycopg.connect(**config) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (spec.ADMIN_USER,)
        assert conn.pgconn.ssl_in_use
        # libpq read PGSSLROOTCERT itself: dsqlkit did not override it with the system store.
        assert conn.info.get_parameters().get("sslrootcert") != "system"


def test_psycopg2_with_host_and_pgsslrootcert(config):
    conn = dsqlkit.psycopg2.connect(**config)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        assert conn.info.ssl_in_use
    finally:
        conn.close()


async def test_asyncpg_with_host_and_pgsslrootcert(config):
    conn = await dsqlkit.asyncpg.connect(**config)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


def test_psycopg_with_cluster_id(config, cluster_id, dsql_environ):
    # The cluster's DSQL name is not in DNS here: hostaddr= says where it is (as /etc/hosts would).
    kwargs = {**config, "host": cluster_id, "hostaddr": "127.0.0.1"}
    config = {**config, "region": dsql_environ["AWS_REGION"]}
    with dsqlkit.psycopg.connect(**kwargs) as conn:
        assert conn.info.host == f"{cluster_id}.dsql.{config['region']}.on.aws"
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_psycopg2_with_dsn(dsql_endpoint, dsql_environ):
    conn = dsqlkit.psycopg2.connect(
        f"postgresql://admin@{dsql_endpoint.host}:{dsql_endpoint.port}/postgres"
    )
    try:
        assert conn.get_dsn_parameters()["user"] == spec.ADMIN_USER
    finally:
        conn.close()


async def test_asyncpg_with_dsn(dsql_endpoint, dsql_environ):
    dsn = f"postgresql://{dsql_endpoint.host}:{dsql_endpoint.port}/postgres?user=admin"
    conn = await dsqlkit.asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT current_user") == spec.ADMIN_USER
    finally:
        await conn.close()


def test_psycopg_pool_with_connection_class(config):
    with (
        psycopg_pool.ConnectionPool(
            "", connection_class=dsqlkit.psycopg.DSQLConnection, kwargs=config, min_size=1
        ) as pool,
        pool.connection() as conn,
    ):
        assert isinstance(conn, psycopg.Connection)
        assert conn.execute("SELECT 2").fetchone() == (2,)


async def test_psycopg_async_pool_with_connection_class(config):
    async with (
        psycopg_pool.AsyncConnectionPool(
            "", connection_class=dsqlkit.psycopg.DSQLAsyncConnection, kwargs=config, min_size=1
        ) as pool,
        pool.connection() as conn,
    ):
        assert await (await conn.execute("SELECT 3")).fetchone() == (3,)


async def test_asyncpg_pool_with_callers_ssl_context(config, dsql_environ):
    # A context the caller built offers no ALPN: it is negotiated with SSLRequest, not direct TLS.
    context = ssl.create_default_context(cafile=dsql_environ["PGSSLROOTCERT"])
    async with await dsqlkit.asyncpg.create_pool(**config, ssl=context, max_size=2) as pool:
        assert await pool.fetchval("SELECT 4") == 4
    conn = await dsqlkit.asyncpg.connect(**config, ssl=context)
    try:
        assert await conn.fetchval("SELECT 5") == 5
    finally:
        await conn.close()


async def test_asyncpg_callers_context_with_direct_tls_when_asked(config, dsql_environ):
    context = ssl.create_default_context(cafile=dsql_environ["PGSSLROOTCERT"])
    context.set_alpn_protocols([spec.ALPN_PROTOCOL])
    conn = await dsqlkit.asyncpg.connect(**config, ssl=context, direct_tls=True)
    try:
        ssl_object = conn._transport.get_extra_info("ssl_object")  # no public accessor
        assert ssl_object.selected_alpn_protocol() == spec.ALPN_PROTOCOL
    finally:
        await conn.close()


def test_explicit_argument_wins_over_the_environment(config, dsql_endpoint, monkeypatch):
    monkeypatch.setenv("PGSSLROOTCERT", "/nonexistent/ca.pem")
    with pytest.raises(psycopg.OperationalError, match="nonexistent"):
        dsqlkit.psycopg.connect(**config, connect_retry=None)
    with dsqlkit.psycopg.connect(**config, sslrootcert=str(dsql_endpoint.ca_file)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_without_any_configuration_the_system_store_refuses(config, monkeypatch):
    monkeypatch.delenv("PGSSLROOTCERT")
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        dsqlkit.psycopg2.connect(**config, connect_retry=None)


async def test_asyncpg_environment_mode_is_honoured(config, monkeypatch):
    monkeypatch.setenv("PGSSLMODE", "verify-ca")
    monkeypatch.setenv("PGSSLROOTCERT", "/nonexistent/ca.pem")
    with pytest.raises(FileNotFoundError):
        await dsqlkit.asyncpg.connect(**config, connect_retry=None)
    with pytest.raises(asyncpg.PostgresError, match=r"(?i)ssl|tls|encrypt"):
        await dsqlkit.asyncpg.connect(**config, sslmode="disable", connect_retry=None)
