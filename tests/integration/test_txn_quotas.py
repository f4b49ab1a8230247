"""Per-transaction quotas (rows and bytes changed), counted by the backend, seen through the endpoint.

One endpoint with small quotas for the module; each test works on its own tables.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dsqlkit import dsql as spec
from dsqlkit.local.backend.postgres import SQL_DIR
from dsqlkit.local.config import Quotas
from dsqlkit.local.endpoint import LocalEndpoint

MAX_ROWS = 10
MAX_BYTES = 4096
ROWS = spec.TRANSACTION_ROWS_EXCEEDED
SIZE = spec.TRANSACTION_SIZE_EXCEEDED
_names = itertools.count()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    quotas = Quotas(max_rows_per_transaction=MAX_ROWS, max_bytes_per_transaction=MAX_BYTES)
    with LocalEndpoint(quotas=quotas) as ep:
        yield ep


@pytest.fixture
def conn(endpoint: LocalEndpoint) -> Iterator[psycopg.Connection]:
    with psycopg.connect(endpoint.dsn(), autocommit=True) as c:
        yield c


@pytest.fixture
def table(conn: psycopg.Connection) -> str:
    """A new table t<n> (id int PRIMARY KEY, v text) with a secondary index."""
    name = f"t{next(_names)}"
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text UNIQUE)")
    return name


def count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def insert_rows(conn: psycopg.Connection, table: str, first: int, n: int) -> None:
    conn.execute(
        f"INSERT INTO {table} SELECT g, 'v' || g FROM generate_series(%s::int, %s::int) g",
        (first, first + n - 1),
    )


def assert_quota_error(info: pytest.ExceptionInfo[psycopg.Error], error: spec.DsqlError) -> None:
    assert info.value.sqlstate == error.sqlstate
    assert info.value.diag.message_primary == error.message


def test_autocommit_statement_at_the_limit_passes_over_it_fails(conn, table):
    insert_rows(conn, table, 1, MAX_ROWS)  # exactly the limit: allowed, secondary index or not
    assert count(conn, table) == MAX_ROWS
    with pytest.raises(psycopg.Error) as info:
        insert_rows(conn, table, 100, MAX_ROWS + 1)
    assert_quota_error(info, ROWS)
    assert count(conn, table) == MAX_ROWS  # nothing of the refused statement committed


def test_explicit_transaction_counts_across_statements(conn, table):
    with conn.transaction():
        insert_rows(conn, table, 1, MAX_ROWS - 1)
    conn.execute("BEGIN")
    insert_rows(conn, table, 100, 4)
    conn.execute(f"UPDATE {table} SET v = v || 'x' WHERE id < 5")  # 4 more: 8
    with pytest.raises(psycopg.Error) as info:
        conn.execute(f"DELETE FROM {table} WHERE id >= 5")  # 5 + 4 rows: 17 > 10
    assert_quota_error(info, ROWS)
    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
        conn.execute("SELECT 1")
    conn.execute("ROLLBACK")
    assert count(conn, table) == MAX_ROWS - 1
    # A new transaction starts from zero.
    with conn.transaction():
        conn.execute(f"DELETE FROM {table}")
    assert count(conn, table) == 0


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO {t} SELECT g, 'n' || g FROM generate_series(1, 3) g "
        "ON CONFLICT (id) DO UPDATE SET v = excluded.v",
        "MERGE INTO {t} USING (SELECT g FROM generate_series(1, 3) g) s ON {t}.id = s.g "
        "WHEN MATCHED THEN UPDATE SET v = 'm' || s.g WHEN NOT MATCHED THEN INSERT VALUES (s.g, 'm')",
    ],
    ids=["on-conflict", "merge"],
)
def test_upsert_and_merge_count_inserted_and_updated_rows(conn, table, statement):
    insert_rows(conn, table, 100, 8)
    conn.execute("BEGIN")
    insert_rows(conn, table, 1, 2)  # ids 1, 2: the statement updates 2 rows and inserts 1
    conn.execute(statement.format(t=table))  # 2 + 3 = 5 rows
    insert_rows(conn, table, 200, 5)  # exactly 10
    with pytest.raises(psycopg.Error) as info:
        insert_rows(conn, table, 300, 1)
    assert_quota_error(info, ROWS)
    conn.execute("ROLLBACK")


def test_do_nothing_conflicts_are_not_changes(conn, table):
    insert_rows(conn, table, 1, MAX_ROWS)
    conn.execute(
        f"INSERT INTO {table} SELECT g, 'w' || g FROM generate_series(1, {MAX_ROWS}) g "
        "ON CONFLICT DO NOTHING"
    )  # nothing inserted: allowed even on top of the next statement's rows
    assert count(conn, table) == MAX_ROWS


def test_copy_counts(conn, table):
    with (
        pytest.raises(psycopg.Error) as info,
        conn.cursor().copy(f"COPY {table} (id, v) FROM STDIN") as copy,
    ):
        for i in range(MAX_ROWS + 1):
            copy.write_row((i, f"c{i}"))
    assert_quota_error(info, ROWS)
    assert count(conn, table) == 0
    with conn.cursor().copy(f"COPY {table} (id, v) FROM STDIN") as copy:
        for i in range(MAX_ROWS):
            copy.write_row((i, f"c{i}"))
    assert count(conn, table) == MAX_ROWS


def test_partitioned_table_counts_each_row_once(conn):
    name = f"p{next(_names)}"
    conn.execute(f"CREATE TABLE {name} (id int, v text) PARTITION BY RANGE (id)")
    conn.execute(f"CREATE TABLE {name}_a PARTITION OF {name} FOR VALUES FROM (0) TO (1000)")
    insert_rows(conn, name, 1, MAX_ROWS)  # through the parent
    insert_rows(conn, f"{name}_a", 100, MAX_ROWS)  # straight into the partition
    for target in (name, f"{name}_a"):
        with pytest.raises(psycopg.Error) as info:
            insert_rows(conn, target, 500, MAX_ROWS + 1)
        assert_quota_error(info, ROWS)
    assert count(conn, name) == 2 * MAX_ROWS


def test_writes_through_a_view_count(conn, table):
    conn.execute(f"CREATE VIEW {table}_view AS SELECT * FROM {table}")
    with pytest.raises(psycopg.Error) as info:
        insert_rows(conn, f"{table}_view", 1, MAX_ROWS + 1)
    assert_quota_error(info, ROWS)


def test_size_is_checked_at_commit(conn, table):
    big = "x" * (MAX_BYTES // 2)
    conn.execute("BEGIN")
    conn.execute(f"INSERT INTO {table} VALUES (1, %s)", (big,))
    conn.execute(f"INSERT INTO {table} VALUES (2, %s)", (big + "y",))  # over: still accepted
    assert count(conn, table) == 2
    with pytest.raises(psycopg.Error) as info:
        conn.execute("COMMIT")
    assert_quota_error(info, SIZE)
    assert count(conn, table) == 0
    # Autocommit: the statement itself fails; under the limit it commits.
    with pytest.raises(psycopg.Error) as info:
        conn.execute(f"INSERT INTO {table} VALUES (3, %s)", ("z" * (MAX_BYTES + 1),))
    assert_quota_error(info, SIZE)
    conn.execute(f"INSERT INTO {table} VALUES (4, %s)", (big,))
    assert count(conn, table) == 1


def test_tables_created_before_the_triggers_are_counted_after_a_restart_of_the_bootstrap(
    endpoint, conn
):
    """A table made while the event trigger was off (an older data directory) gets its triggers
    when the bootstrap runs again (every backend start)."""
    name = f"old{next(_names)}"
    quotas_sql = (Path(SQL_DIR) / "10_quotas.sql").read_text()
    with psycopg.connect(endpoint.backend.dsn(), autocommit=True) as admin:
        admin.execute("ALTER EVENT TRIGGER dsqlkit_quota_tables DISABLE")
        try:
            admin.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
            admin.execute(f"GRANT ALL ON {name} TO admin")
        finally:
            admin.execute("ALTER EVENT TRIGGER dsqlkit_quota_tables ENABLE")
        insert_rows(conn, name, 1, MAX_ROWS + 1)  # not counted yet
        admin.execute(quotas_sql)
    with pytest.raises(psycopg.Error) as info:
        insert_rows(conn, name, 100, MAX_ROWS + 1)
    assert_quota_error(info, ROWS)


def test_endpoint_connections_only_are_counted(endpoint, table):
    """Superuser sessions (the endpoint's own, psql on the backend) are not counted; no client
    role is a superuser."""
    with psycopg.connect(endpoint.backend.dsn(), autocommit=True) as admin:
        insert_rows(admin, f"public.{table}", 1, MAX_ROWS * 3)
        assert count(admin, f"public.{table}") == MAX_ROWS * 3
