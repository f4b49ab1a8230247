"""The endpoint reports DSQL's PostgreSQL version (16.x) everywhere, not its backend's (18.x).

Through psycopg2 (simple protocol), psycopg 3 with ``prepare=True`` and asyncpg (extended
protocol, prepared statements re-run from their caches), and SQLAlchemy's engine start, which reads
``select pg_catalog.version()``.
"""

from __future__ import annotations

from typing import Any

import pytest

import dsqlkit.sqlalchemy as dsa
from dsqlkit import dsql as spec
from tests.conformance.conftest import Client

VERSION_PREFIX = f"PostgreSQL {spec.SERVER_VERSION} on "
VERSION_INFO = tuple(int(part) for part in spec.SERVER_VERSION.split("."))

#: (statement, the one row it answers)
ANSWERS = [
    ("SHOW server_version", (spec.SERVER_VERSION,)),
    ("SHOW server_version_num", (spec.SERVER_VERSION_NUM,)),
    ("SELECT current_setting('server_version')", (spec.SERVER_VERSION,)),
    ("SELECT current_setting('server_version_num', true)::int", (int(spec.SERVER_VERSION_NUM),)),
    ("SELECT pg_catalog.current_setting('SERVER_VERSION', false)", (spec.SERVER_VERSION,)),
]


@pytest.mark.parametrize("sql", ["SELECT version()", "select pg_catalog.version()"])
def test_version_function(client: Client, sql: str) -> None:
    for _ in range(2):  # the second run reuses the driver's prepared statement
        ((version,),) = client.run(sql)
        assert version.startswith(VERSION_PREFIX), version


@pytest.mark.parametrize(("sql", "row"), ANSWERS)
def test_version_settings(client: Client, sql: str, row: tuple[Any, ...]) -> None:
    for _ in range(2):
        assert client.run(sql) == [row]


def test_version_inside_a_transaction(client: Client) -> None:
    client.run("BEGIN")
    ((version,),) = client.run("SELECT version()")
    assert client.run("SHOW server_version") == [(spec.SERVER_VERSION,)]
    client.run("COMMIT")
    assert version.startswith(VERSION_PREFIX)


def test_other_settings_untouched(client: Client) -> None:
    assert client.run("SHOW transaction_isolation") == [("repeatable read",)]
    assert client.run("SELECT current_setting('TimeZone')") == [("UTC",)]


def test_psycopg2_column_names_and_tags(dsql_endpoint: Any) -> None:
    import psycopg2

    with psycopg2.connect(dsql_endpoint.dsn()) as conn, conn.cursor() as cur:
        assert conn.server_version == int(spec.SERVER_VERSION_NUM)
        cur.execute("SHOW server_version_num")
        assert (cur.description[0].name, cur.statusmessage) == ("server_version_num", "SHOW")
        cur.execute("SELECT version(), %s::int AS n", (7,))
        assert [c.name for c in cur.description] == ["version", "n"]
        assert cur.statusmessage == "SELECT 1"
        row = cur.fetchone()
        assert row is not None and row[1] == 7


def test_psycopg_prepared_with_parameters(dsql_endpoint: Any) -> None:
    import psycopg

    with psycopg.connect(dsql_endpoint.dsn(), autocommit=True) as conn:
        assert conn.info.server_version == int(spec.SERVER_VERSION_NUM)
        for n in range(3):  # Parse once, then Bind alone
            cur = conn.execute("SELECT version(), %s::int AS n", (n,), prepare=True)
            version, got = cur.fetchone() or ("", -1)
            assert version.startswith(VERSION_PREFIX) and got == n
            assert [c.name for c in cur.description or ()] == ["version", "n"]
        for _ in range(2):
            cur = conn.execute("SHOW server_version", prepare=True)
            assert cur.fetchall() == [(spec.SERVER_VERSION,)]
            assert (cur.statusmessage, (cur.description or [])[0].name) == (
                "SHOW",
                "server_version",
            )


async def test_asyncpg_prepared_with_parameters(dsql_endpoint: Any) -> None:
    import asyncpg

    conn = await asyncpg.connect(**dsql_endpoint.asyncpg_kwargs())
    try:
        # asyncpg reads "16.15" (PostgreSQL 10+ numbering) as major 16, micro 15.
        server = conn.get_server_version()
        assert (server.major, server.micro) == VERSION_INFO
        statement = await conn.prepare(
            "SELECT current_setting('server_version_num')::int AS num, $1::text AS t"
        )
        for text in ("a", "b"):
            row = await statement.fetchrow(text)
            assert row is not None
            assert dict(row) == {"num": int(spec.SERVER_VERSION_NUM), "t": text}
        for _ in range(2):  # the second from asyncpg's statement cache
            assert (await conn.fetchval("SELECT version()")).startswith(VERSION_PREFIX)
    finally:
        await conn.close()


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_sqlalchemy_engine_sees_dsql_version(
    dsql_connect_kwargs: dict[str, Any], driver: str
) -> None:
    engine = dsa.create_engine(driver=driver, **dsql_connect_kwargs)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        assert engine.dialect.server_version_info == VERSION_INFO
    finally:
        engine.dispose()


async def test_sqlalchemy_async_engine_sees_dsql_version(
    dsql_connect_kwargs: dict[str, Any],
) -> None:
    engine = dsa.create_async_engine(driver="asyncpg", **dsql_connect_kwargs)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
        assert engine.dialect.server_version_info == VERSION_INFO
    finally:
        await engine.dispose()
