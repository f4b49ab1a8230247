"""What the official adapters' and connector's suites assert against real clusters, through the
drivers users run (issue 12): texts matched by substring or regex, and SQLSTATE classes.

The literals below are the words those suites match (``shared/dsql-behavior.md`` sections 1, 2,
6); the full texts come from :mod:`dsqlkit.dsql`, so a change there that drops DSQL's words fails.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import psycopg2
import pytest

import dsqlkit.asyncpg
from dsqlkit import dsql as spec
from dsqlkit.local import LocalEndpoint
from dsqlkit.local.config import EndpointConfig
from tests.security.tokens import signed_over

#: The official SQLAlchemy adapter's assertion on a bad explicit CACHE.
DSQL_CACHE_TEXT = re.compile(r"CACHE.*must be greater than or equal to.*65536.*or equal to 1")
BAD_CACHE = (
    "CREATE TABLE cache_t (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000) PRIMARY KEY)",
    "CREATE SEQUENCE cache_s CACHE 1000",
)
BAD_SEQUENCE_TYPE = (
    "CREATE SEQUENCE type_s AS integer CACHE 65536",
    "CREATE SEQUENCE type_s AS smallint CACHE 1",
    "CREATE SEQUENCE type_s AS decimal CACHE 65536",
)


# --- CACHE and sequence types: class 22, DataError to the drivers ---------------------------------


@pytest.mark.parametrize("sql", BAD_CACHE)
def test_bad_cache_is_a_data_error_psycopg(dsql_endpoint: LocalEndpoint, sql: str) -> None:
    with psycopg.connect(dsql_endpoint.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DataError) as caught:
            conn.execute(sql)
        assert caught.value.sqlstate == spec.DIALECT_REFUSALS["cache_value"].sqlstate
        assert DSQL_CACHE_TEXT.search(caught.value.diag.message_primary or "")
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("sql", BAD_CACHE)
def test_bad_cache_is_a_data_error_psycopg2(dsql_endpoint: LocalEndpoint, sql: str) -> None:
    conn = psycopg2.connect(dsql_endpoint.dsn())
    try:
        with pytest.raises(psycopg2.DataError) as caught, conn.cursor() as cur:
            cur.execute(sql)
        assert caught.value.pgcode == spec.DIALECT_REFUSALS["cache_value"].sqlstate
        assert DSQL_CACHE_TEXT.search(caught.value.diag.message_primary or "")
    finally:
        conn.close()


@pytest.mark.parametrize("sql", BAD_SEQUENCE_TYPE)
def test_sequence_type_must_be_bigint_asyncpg(dsql_endpoint: LocalEndpoint, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(**dsql_endpoint.asyncpg_kwargs())
        try:
            with pytest.raises(asyncpg.DataError) as caught:
                await conn.execute(sql)
            assert caught.value.sqlstate == spec.DIALECT_REFUSALS["sequence_type"].sqlstate
            assert "sequence type must be bigint" in caught.value.args[0]
        finally:
            await conn.close()

    asyncio.run(run())


def test_valid_cache_and_bigint_sequences_work(dsql_clean_database: LocalEndpoint) -> None:
    with psycopg.connect(dsql_clean_database.dsn(), autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE ok_s AS bigint CACHE 65536")
        conn.execute("CREATE SEQUENCE one_s CACHE 1")
        conn.execute(
            "CREATE TABLE ok_t (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 65536) PRIMARY KEY)"
        )
        rows = conn.execute("INSERT INTO ok_t DEFAULT VALUES RETURNING id").fetchall()
        assert conn.execute("SELECT nextval('ok_s'), nextval('one_s')").fetchone() == (1, 1)
        assert rows == [(1,)]


# --- Plaintext and token expiry: refusals before the session -------------------------------------


def test_plaintext_gets_ssl_is_mandatory_asyncpg(dsql_endpoint: LocalEndpoint) -> None:
    kwargs = dict(dsql_endpoint.asyncpg_kwargs(), ssl=False)
    with pytest.raises(asyncpg.PostgresError) as caught:
        asyncio.run(asyncpg.connect(**kwargs))
    assert caught.value.sqlstate == spec.SSL_MANDATORY.sqlstate
    assert caught.value.args[0] == spec.SSL_MANDATORY.message
    assert "SSL is mandatory" in caught.value.args[0]


def test_plaintext_gets_ssl_is_mandatory_psycopg(dsql_endpoint: LocalEndpoint) -> None:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(dsql_endpoint.dsn(), sslmode="disable")
    # libpq reports a startup refusal as text: "... FATAL:  <message>".
    assert spec.SSL_MANDATORY.message in str(caught.value)
    assert "SSL is mandatory" in str(caught.value)


def test_token_valid_for_over_a_week_is_refused_asyncpg(dsql_endpoint: LocalEndpoint) -> None:
    # Correctly signed by the endpoint's own identity: only the expiry is wrong.
    over_a_week = str(spec.TOKEN_MAX_EXPIRES + 1)
    token = signed_over(
        time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        expires=over_a_week,
        access_key=dsql_endpoint.credentials.access_key,
        secret=dsql_endpoint.credentials.secret_key,
        host=dsql_endpoint.host,
        region=dsql_endpoint.region,
    )
    assert f"X-Amz-Expires={over_a_week}&" in token
    kwargs = dict(dsql_endpoint.asyncpg_kwargs(), password=token)
    with pytest.raises(asyncpg.PostgresError) as caught:
        asyncio.run(asyncpg.connect(**kwargs))
    error = caught.value
    assert (error.sqlstate, error.args[0]) == (
        spec.ACCESS_DENIED.sqlstate,
        spec.ACCESS_DENIED.message,
    )
    assert error.hint == spec.HINT_EXPIRES_TOO_LONG  # type: ignore[attr-defined]
    assert "X-Amz-Expires must be less than a week (in seconds)" in error.hint  # type: ignore[attr-defined]


# --- sys.current_session_id() ---------------------------------------------------------------------


def session_id(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT sys.current_session_id()").fetchone()
    assert row is not None
    assert isinstance(row[0], str) and spec.SESSION_ID.match(row[0]), row
    return row[0]


def test_current_session_id_is_stable_and_per_session(dsql_endpoint: LocalEndpoint) -> None:
    with (
        psycopg.connect(dsql_endpoint.dsn(), autocommit=True) as first,
        psycopg.connect(dsql_endpoint.dsn(), autocommit=True) as second,
    ):
        mine = session_id(first)
        assert session_id(second) != mine
        # Stable across transactions, a rollback, RESET ALL and the session's own settings.
        first.execute("BEGIN")
        assert session_id(first) == mine
        first.execute("ROLLBACK")
        first.execute("SET TimeZone = 'Asia/Kolkata'")
        first.execute("SET extra_float_digits = -15")
        first.execute("RESET ALL")
        assert session_id(first) == mine


def test_current_session_id_asyncpg_pool(dsql_connect_kwargs: dict[str, Any]) -> None:
    """As the official Tortoise adapter's pool tests do: held connections are told apart."""

    async def run() -> set[str]:
        pool = await dsqlkit.asyncpg.create_pool(min_size=3, max_size=3, **dsql_connect_kwargs)
        try:
            held = [await pool.acquire() for _ in range(3)]
            ids = {await conn.fetchval("SELECT sys.current_session_id()") for conn in held}
            for conn in held:
                await pool.release(conn)
            return ids
        finally:
            await pool.close()

    assert len(asyncio.run(run())) == 3


@pytest.fixture
def pooled_endpoint(dsql_endpoint: LocalEndpoint) -> Iterator[LocalEndpoint]:
    """A second endpoint with the backend pool on, on the shared PostgreSQL."""
    config = EndpointConfig(trust_environment=False, backend_pool_size=2)
    with LocalEndpoint(config, backend=dsql_endpoint.backend) as endpoint:
        yield endpoint


def test_current_session_id_through_the_backend_pool(pooled_endpoint: LocalEndpoint) -> None:
    """The function keeps working across the pool's reset (DISCARD ALL), concurrent clients still
    differ, and a reused backend session keeps its id (the ledger row in docs/emulator.md)."""
    rounds = []
    for _ in range(2):
        with (
            psycopg.connect(pooled_endpoint.dsn(), autocommit=True) as a,
            psycopg.connect(pooled_endpoint.dsn(), autocommit=True) as b,
        ):
            ids = {session_id(a), session_id(b)}
        assert len(ids) == 2
        rounds.append(ids)
        # Parking is asynchronous (DISCARD ALL, then its answer): wait, bounded, for both.
        deadline = time.monotonic() + 15
        while pooled_endpoint.stats().backend_sessions_pooled < 2:
            assert time.monotonic() < deadline, "sessions were not parked"
            time.sleep(0.01)
    assert pooled_endpoint.stats().backend_sessions_reused >= 2
    assert rounds[0] == rounds[1]
