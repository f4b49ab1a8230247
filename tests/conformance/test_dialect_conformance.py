"""Every dialect and session rule of dsql-behavior.md (sections 4 and 6), through real drivers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dsqlkit import dsql as spec
from dsqlkit.local.config import Quotas
from tests.conformance.conftest import Client, Failure, connect
from tests.unit.test_dialect import REFUSED


@pytest.mark.parametrize(("sql", "error"), REFUSED, ids=[sql[:50] for sql, _ in REFUSED])
def test_refused_outside_a_transaction_keeps_the_session(
    client: Client, sql: str, error: spec.DsqlError
) -> None:
    client.expect(sql, error)
    assert client.run("SELECT 1") == [(1,)]


@pytest.mark.parametrize(
    "sql", ["TRUNCATE t", "SAVEPOINT s", "SET statement_timeout = 1", "SELECT pg_advisory_lock(1)"]
)
def test_refused_inside_a_transaction_aborts_it(client: Client, sql: str) -> None:
    client.run("BEGIN")
    with pytest.raises(Failure) as refused:
        client.run(sql)
    assert refused.value.sqlstate in (spec.UNSUPPORTED_SQLSTATE,)
    client.expect("SELECT 1", spec.TRANSACTION_ABORTED)
    client.run("ROLLBACK")
    assert client.run("SELECT 1") == [(1,)]


def test_commit_of_an_aborted_transaction_answers_rollback(dsql_endpoint: Any) -> None:
    import psycopg2

    with psycopg2.connect(dsql_endpoint.dsn()) as conn, conn.cursor() as cur:
        conn.autocommit = True
        cur.execute("BEGIN")
        with pytest.raises(psycopg2.Error):
            cur.execute("VACUUM")
        cur.execute("COMMIT")
        assert cur.statusmessage == "ROLLBACK"


def test_one_ddl_per_transaction(client: Client, table: str) -> None:
    client.run("BEGIN")
    client.run(f"ALTER TABLE {table} ADD COLUMN b text")
    client.expect(f"ALTER TABLE {table} ADD COLUMN c text", spec.MULTIPLE_DDL)
    client.run("ROLLBACK")


def test_no_ddl_with_dml(client: Client, table: str) -> None:
    client.run("BEGIN")
    client.run(f"INSERT INTO {table} VALUES (1, 1)")
    client.run(f"SELECT * FROM {table}")
    client.expect(f"ALTER TABLE {table} ADD COLUMN b text", spec.DDL_AND_DML)
    client.run("ROLLBACK")
    client.run("BEGIN")
    client.run(f"ALTER TABLE {table} ADD COLUMN b text")
    client.run(f"SELECT count(*) FROM {table}")  # reads are not DML
    # A new text: a driver's cached prepared statement runs without Parse, which the policy
    # does not see (known limit, see dsqlkit.local.rules.session).
    client.expect(f"INSERT INTO {table} VALUES (2, 2)", spec.DDL_AND_DML)
    client.run("ROLLBACK")


@pytest.mark.parametrize("driver", ["psycopg2"])
def test_multi_statement_query_is_one_transaction(dsql_endpoint: Any, driver: str) -> None:
    client = connect(dsql_endpoint, driver)  # the simple query protocol carries several statements
    try:
        client.settle()
        client.expect("CREATE TABLE ms1 (a int); INSERT INTO ms1 VALUES (1)", spec.DDL_AND_DML)
        client.expect("CREATE TABLE ms1 (a int); CREATE TABLE ms2 (a int)", spec.MULTIPLE_DDL)
        client.expect(
            "SELECT 1; TRUNCATE ms1", spec.DsqlError("0A000", "unsupported statement: Truncate")
        )
        # Refused before anything ran:
        assert client.run("SELECT count(*) FROM pg_class WHERE relname = 'ms1'") == [(0,)]
        assert client.run("SELECT 1; SELECT 2") == [(2,)]
    finally:
        client.close()


def test_supported_statements_work(client: Client) -> None:
    if client.name == "asyncpg":
        # asyncpg's type introspection sends SET jit = off, which DSQL's whitelist refuses.
        pytest.xfail("asyncpg introspection sets jit (not settable on DSQL)")
    t = f"sup_{client.name}"
    steps = [
        f"CREATE TABLE {t}_p (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY, n text UNIQUE)",
        f"CREATE TABLE {t} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), q int NOT NULL CHECK (q > 0),"
        f" p bigint REFERENCES {t}_p (id), d jsonb DEFAULT '{{}}', j json)",
        f"CREATE VIEW {t}_v AS SELECT q FROM {t}",
        f"CREATE FUNCTION {t}_f(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1'",
        f"CREATE DOMAIN {t}_d AS int CHECK (VALUE > 0)",
        f"CREATE SEQUENCE {t}_s CACHE 65536",
        f"INSERT INTO {t}_p (n) VALUES ('a') ON CONFLICT (n) DO NOTHING RETURNING id",
        f"INSERT INTO {t} (q, p) SELECT {t}_f(1), id FROM {t}_p RETURNING q",
        f"WITH x AS (SELECT q, row_number() OVER (ORDER BY q) AS r FROM {t}) SELECT * FROM x",
        f"SELECT * FROM {t} FOR UPDATE",
        f"SELECT * FROM {t} FOR KEY SHARE",
        f"EXPLAIN SELECT * FROM {t}_v",
        f"ANALYZE {t}",
        "SELECT ARRAY[1, 2], '10.0.0.1'::inet",
        "SET search_path = public",
        "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "SET LOCAL role admin",
        "COMMIT",
    ]
    try:
        for sql in steps:
            client.settle()
            client.run(sql)
        assert client.run(f"SELECT q FROM {t}") == [(2,)]
    finally:
        client.settle()
        for kind, name in (
            ("VIEW", f"{t}_v"),
            ("TABLE", t),
            ("TABLE", f"{t}_p"),
            ("FUNCTION", f"{t}_f"),
            ("DOMAIN", f"{t}_d"),
            ("SEQUENCE", f"{t}_s"),
        ):
            client.settle()
            client.run(f"DROP {kind} IF EXISTS {name}")


def test_copy_works(dsql_endpoint: Any, table: str, client: Client) -> None:
    import io

    import psycopg2

    with psycopg2.connect(dsql_endpoint.dsn()) as conn, conn.cursor() as cur:
        cur.copy_expert(f"COPY {table} FROM STDIN", io.StringIO("1\t2\n"))
    assert client.run(f"SELECT a FROM {table}") == [(2,)]


def test_startup_options_outside_the_whitelist_are_refused(dsql_endpoint: Any) -> None:
    import psycopg2

    with pytest.raises(psycopg2.OperationalError) as refused:
        psycopg2.connect(dsql_endpoint.dsn(), options="-c statement_timeout=5s")
    assert spec.PARAMETER_NOT_SUPPORTED.format(name="statement_timeout").message in str(
        refused.value
    )
    psycopg2.connect(dsql_endpoint.dsn(), options="-c search_path=public").close()


def test_transaction_age_limit(dsql_endpoint_factory: Any) -> None:
    limit = 0.2
    endpoint = dsql_endpoint_factory(quotas=Quotas(max_transaction_age_seconds=limit))
    client = connect(endpoint, "psycopg")
    try:
        client.run("BEGIN")
        client.run("SELECT 1")
        time.sleep(limit * 2)  # the rule is about elapsed time: let the limit pass
        with pytest.raises(Failure) as refused:
            client.run("COMMIT")
        error = spec.TRANSACTION_AGE_EXCEEDED.format(limit=int(limit), age=int(limit * 2))
        assert (refused.value.sqlstate, refused.value.message) == (error.sqlstate, error.message)
        client.run("ROLLBACK")
        assert client.run("SELECT 1") == [(1,)]
    finally:
        client.close()


def test_schema_change_by_another_session_fails_only_older_transactions_using_it(
    dsql_endpoint: Any, client: Client
) -> None:
    other = connect(dsql_endpoint, "psycopg2")
    try:
        other.run("CREATE TABLE oc001_probe (a int)")
        assert client.run("SELECT 1") == [(1,)]  # touches nothing changed, begun after it
        client.run("BEGIN")
        client.run("SELECT 1")
        other.run("ALTER TABLE oc001_probe ADD COLUMN b int")
        client.expect("SELECT * FROM oc001_probe", spec.OCC_SCHEMA_CONFLICT)
        client.run("ROLLBACK")
        assert client.run("SELECT * FROM oc001_probe") == []
    finally:
        other.run("DROP TABLE IF EXISTS oc001_probe")
        other.close()
