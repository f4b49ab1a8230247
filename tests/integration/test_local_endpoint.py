"""LocalEndpoint, sync and async: real PostgreSQL, real TLS (verify-full), real tokens, raw drivers."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg
import psycopg
import psycopg2
import pytest

import dsqlkit.asyncpg
import dsqlkit.psycopg
import dsqlkit.psycopg2
from dsqlkit import dsql as spec
from dsqlkit.local import LocalEndpoint, Quotas


def _select_one_psycopg2(ep: LocalEndpoint) -> int:
    conn = psycopg2.connect(
        host=ep.host,
        port=ep.port,
        user=spec.ADMIN_USER,
        dbname=spec.DATABASE,
        password=ep.token(),
        sslmode="verify-full",
        sslrootcert=str(ep.ca_file),
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_sync_endpoint_serves_raw_drivers_and_cleans_up(port_is_free, process_alive):
    with LocalEndpoint(region="eu-west-1", quotas=Quotas(max_rows_per_transaction=10)) as ep:
        assert ep.region == "eu-west-1"
        assert ep.hostname == ep.config.dsql_hostname
        assert _select_one_psycopg2(ep) == 1
        with psycopg.connect(ep.dsn()) as conn:
            assert conn.info.server_version // 10_000 == int(spec.SERVER_VERSION.split(".")[0])
            assert conn.pgconn.ssl_in_use
        port, pid, data_dir = ep.port, ep.backend.pid, ep.data_dir
        assert pid is not None and process_alive(pid)
        assert not port_is_free(port)
    assert not ep.is_running
    assert not process_alive(pid), "PostgreSQL left running after stop()"
    assert port_is_free(port), "port not released after stop()"
    assert not data_dir.exists(), "ephemeral data left behind"


async def test_async_endpoint_serves_raw_drivers_and_cleans_up(port_is_free, process_alive):
    async with LocalEndpoint() as ep:
        conn = await asyncpg.connect(**ep.asyncpg_kwargs())
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
        async with await psycopg.AsyncConnection.connect(ep.dsn()) as aconn:
            cur = await aconn.execute("SELECT current_user")
            assert (await cur.fetchone())[0] == spec.ADMIN_USER
        port, pid = ep.port, ep.backend.pid
        with pytest.raises(RuntimeError, match="a-prefixed"):
            ep.kill_backend()  # sync twin on an async endpoint: a clear error, not a deadlock
    assert not process_alive(pid)
    assert port_is_free(port)


def test_kill_and_restart_backend(dsql_endpoint_factory):
    ep = dsql_endpoint_factory()
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE survivor (id int PRIMARY KEY)")
        conn.execute("INSERT INTO survivor VALUES (1)")
    ep.kill_backend()
    with pytest.raises(psycopg.OperationalError), psycopg.connect(ep.dsn()) as conn:
        conn.execute("SELECT 1")
    ep.restart_backend()
    with psycopg.connect(ep.dsn()) as conn:
        assert conn.execute("SELECT id FROM survivor").fetchall() == [(1,)]


def test_token_for_other_host_is_refused(dsql_endpoint):
    # The token is bound to the host name it was signed for (SNI decides which one is checked).
    with pytest.raises(psycopg.OperationalError, match="access denied"):
        psycopg.connect(
            host=dsql_endpoint.host,
            port=dsql_endpoint.port,
            user=spec.ADMIN_USER,
            dbname=spec.DATABASE,
            password=dsql_endpoint.token(host=dsql_endpoint.hostname),
            sslmode="verify-full",
            sslrootcert=str(dsql_endpoint.ca_file),
        )


def test_verify_full_with_dsql_hostname(dsql_endpoint):
    # The certificate also names <cluster-id>.dsql.<region>.on.aws: hostaddr keeps SNI and checks.
    ep = dsql_endpoint
    with psycopg.connect(
        host=ep.hostname,
        hostaddr="127.0.0.1",
        port=ep.port,
        user=spec.ADMIN_USER,
        dbname=spec.DATABASE,
        password=ep.token(host=ep.hostname),
        sslmode="verify-full",
        sslrootcert=str(ep.ca_file),
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_dsqlkit_drivers_with_fixture_kwargs(dsql_connect_kwargs):
    with dsqlkit.psycopg.connect(**dsql_connect_kwargs) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    conn2 = dsqlkit.psycopg2.connect(**dsql_connect_kwargs)
    try:
        with conn2.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        conn2.close()


async def test_dsqlkit_asyncpg_with_fixture_kwargs(dsql_connect_kwargs):
    conn = await dsqlkit.asyncpg.connect(**dsql_connect_kwargs)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


def test_environment_is_set_and_restored(dsql_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_SESSION_TOKEN", "real-session-token")
    monkeypatch.delenv("PGSSLROOTCERT", raising=False)
    with dsql_endpoint.use_environment() as environ:
        assert os.environ["AWS_ACCESS_KEY_ID"] == dsql_endpoint.credentials.access_key
        assert os.environ["PGSSLROOTCERT"] == str(dsql_endpoint.ca_file)
        assert "AWS_SESSION_TOKEN" not in os.environ
        assert environ == dsql_endpoint.environ()
    assert os.environ["AWS_SESSION_TOKEN"] == "real-session-token"
    assert "PGSSLROOTCERT" not in os.environ


def test_secrets_stay_out_of_reprs(dsql_endpoint):
    secret = dsql_endpoint.credentials.secret_key
    token = dsql_endpoint.token()
    for text in (repr(dsql_endpoint), repr(dsql_endpoint.credentials), str(dsql_endpoint.stats())):
        assert secret not in text
        assert token not in text


def test_reset_drops_what_tests_created(dsql_endpoint):
    with psycopg.connect(dsql_endpoint.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE leftover (id int PRIMARY KEY)")
        conn.execute("CREATE VIEW leftover_view AS SELECT id FROM leftover")
    dsql_endpoint.reset()
    with psycopg.connect(dsql_endpoint.dsn()) as conn:
        count = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public'"
        ).fetchone()
        assert count == (0,)


def test_clean_database_fixture(dsql_clean_database):
    with psycopg.connect(dsql_clean_database.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE only_once (id int PRIMARY KEY)")  # fails if not cleaned


def test_clean_database_fixture_again(dsql_clean_database):
    test_clean_database_fixture(dsql_clean_database)


def test_bad_options_are_clear_errors():
    with pytest.raises(TypeError, match=r"unknown option.*max_rows.*EndpointConfig"):
        LocalEndpoint(max_rows=3)
    with pytest.raises(RuntimeError, match=r"not running.*with LocalEndpoint"):
        _ = LocalEndpoint().port


def test_stop_without_start_is_a_no_op():
    ep = LocalEndpoint()
    ep.stop()
    assert "stopped" in repr(ep)


def test_plugin_and_package_import_start_nothing():
    # The pytest11 entry point loads in every user's pytest run: it must not pull in the server.
    code = (
        "import sys, dsqlkit.pytest_plugin, dsqlkit.local;"
        "heavy = {'dsqlkit.local.server', 'dsqlkit.local.backend.postgres', 'asyncpg'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
