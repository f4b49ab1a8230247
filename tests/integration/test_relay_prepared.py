"""Prepared statements run again by Bind/Execute alone, and refusals inside one extended batch.

Real drivers against the session's local endpoint (dialect checks on): psycopg 3 with
``prepare=True`` and asyncpg's statement cache re-run named statements without a new Parse; the
endpoint must still apply the per-transaction rules to them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest

from dsqlkit import dsql as spec

_names = itertools.count()


@pytest.fixture
def conn(dsql_endpoint: Any) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsql_endpoint.dsn(), autocommit=True) as connection:
        yield connection


@pytest.fixture
def table(conn: psycopg.Connection[Any]) -> Iterator[str]:
    name = f"relay_prepared_{next(_names)}"
    conn.execute(f"CREATE TABLE {name} (a int)")
    yield name
    conn.rollback()
    conn.execute(f"DROP TABLE IF EXISTS {name}")


def _message(exc: BaseException) -> str:
    return str(exc).splitlines()[0]


def test_psycopg_prepared_dml_after_ddl_is_refused(
    conn: psycopg.Connection[Any], table: str
) -> None:
    insert = f"INSERT INTO {table} VALUES (%s)"
    conn.execute(insert, (1,), prepare=True)  # Parse of a named statement, in autocommit
    conn.execute("BEGIN")
    conn.execute(f"CREATE TABLE {table}_b (a int)")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
        conn.execute(insert, (2,), prepare=True)  # Bind/Execute only: no new Parse
    assert _message(refused.value) == spec.DDL_AND_DML.message
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    conn.execute("ROLLBACK")
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)


def test_psycopg_prepared_ddl_counts_once(conn: psycopg.Connection[Any], table: str) -> None:
    conn.execute("BEGIN")
    # Parse and Bind of a named statement in the same batch: one DDL, not two.
    conn.execute(f"ALTER TABLE {table} ADD COLUMN b int", prepare=True)
    conn.execute("COMMIT")
    assert conn.execute(f"SELECT b FROM {table}").fetchall() == []


def test_psycopg_prepared_dml_repeated_in_a_transaction_is_fine(
    conn: psycopg.Connection[Any], table: str
) -> None:
    insert = f"INSERT INTO {table} VALUES (%s)"
    with conn.transaction():
        for i in range(10):
            conn.execute(insert, (i,), prepare=True)
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (10,)


def test_asyncpg_statement_cache_is_checked(dsql_endpoint: Any, table: str) -> None:
    async def go() -> str:
        connection = await asyncpg.connect(**dsql_endpoint.asyncpg_kwargs())
        try:
            insert = f"INSERT INTO {table} VALUES ($1)"
            await connection.execute(insert, 1)  # prepared (Parse, Sync), then Bind/Execute
            async with connection.transaction():
                await connection.execute(insert, 2)  # Bind/Execute from the statement cache
            tr = connection.transaction()
            await tr.start()
            try:
                await connection.execute(f"CREATE TABLE {table}_d (a int)")
                with pytest.raises(asyncpg.FeatureNotSupportedError) as refused:
                    await connection.execute(insert, 3)
            finally:
                await tr.rollback()
            return str(refused.value)
        finally:
            await connection.close()

    assert asyncio.run(go()) == spec.DDL_AND_DML.message


def test_begin_in_the_same_batch_as_a_refused_parse_aborts_it(
    conn: psycopg.Connection[Any],
) -> None:
    with pytest.raises(psycopg.errors.FeatureNotSupported), conn.pipeline():
        conn.execute("BEGIN")
        conn.execute("VACUUM")  # refused at Parse, before any ReadyForQuery of the batch
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
        conn.execute("SELECT 1")
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT 1").fetchone() == (1,)
