"""Optimistic concurrency through the endpoint: real concurrent sessions, nobody ever waits.

Each "must not block" statement runs in a worker thread joined with a timeout that fails the test
(the emulator answers in milliseconds; the timeout is only the bound of a hang).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import psycopg
import pytest

import dsqlkit.psycopg as dsql_psycopg
from dsqlkit import dsql as spec
from dsqlkit.local.rules import occ

HANG = 30.0  # seconds: a statement still running after this is blocked
CONFLICT = spec.OCC_DATA_CONFLICT
_names = itertools.count()


@pytest.fixture
def table(connect) -> str:
    name = f"occ{next(_names)}"
    conn = connect()
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, n int NOT NULL)")
    conn.execute(f"INSERT INTO {name} VALUES (1, 0), (2, 0)")
    return name


def run_bounded(statement: Callable[[], Any]) -> Any:
    """Run ``statement`` in a thread; fail the test if it does not finish within HANG seconds."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(statement)
        return future.result(timeout=HANG)


def assert_conflict(exc: BaseException) -> None:
    assert isinstance(exc, psycopg.Error)
    assert exc.sqlstate == spec.OCC_SQLSTATE
    assert exc.diag.message_primary == CONFLICT.message


def conflict_of(statement: Callable[[], Any]) -> BaseException:
    with pytest.raises(psycopg.Error) as info:
        run_bounded(statement)
    assert_conflict(info.value)
    return info.value


def test_rewrite_error_maps_backend_conflicts_and_nothing_else():
    for code in ("55P03", "40001", "40P01"):
        fields = occ.rewrite_error({"S": "ERROR", "C": code, "M": "x", "D": "tuple (0,1)"})
        assert fields == {"S": "ERROR", "C": CONFLICT.sqlstate, "M": CONFLICT.message}
    schema = spec.OCC_SCHEMA_CONFLICT
    fields = {"S": "ERROR", "C": schema.sqlstate, "M": schema.message}
    assert occ.rewrite_error(fields) == fields
    other = {"S": "ERROR", "C": "23505", "M": "duplicate key"}
    assert occ.rewrite_error(other) == other


def test_occ_state_counts_catalog_changes():
    state = occ.OccState()
    before = state.catalog_version
    state.bump()
    assert state.catalog_version == before + 1


def test_second_writer_of_a_row_gets_oc000_without_waiting(connect, table):
    first, second = connect(), connect()
    first.execute("BEGIN")
    first.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 1")
    second.execute("BEGIN")
    conflict_of(lambda: second.execute(f"UPDATE {table} SET n = n + 10 WHERE id = 1"))
    second.execute("ROLLBACK")
    first.execute("COMMIT")
    assert first.execute(f"SELECT n FROM {table} WHERE id = 1").fetchone()[0] == 1


def test_autocommit_writer_conflicts_too(connect, table):
    first, second = connect(), connect()
    first.execute("BEGIN")
    first.execute(f"DELETE FROM {table} WHERE id = 2")
    conflict_of(lambda: second.execute(f"UPDATE {table} SET n = 5 WHERE id = 2"))
    first.execute("ROLLBACK")


def test_write_after_a_committed_concurrent_write_conflicts(connect, table):
    """Snapshot isolation: a row changed and committed after our snapshot cannot be written."""
    first, second = connect(), connect()
    second.execute("BEGIN")
    second.execute(f"SELECT n FROM {table} WHERE id = 1")  # takes the snapshot
    first.execute(f"UPDATE {table} SET n = 7 WHERE id = 1")
    conflict_of(lambda: second.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 1"))
    second.execute("ROLLBACK")


def test_same_new_unique_key_does_not_wait(connect, table):
    first, second = connect(), connect()
    first.execute("BEGIN")
    first.execute(f"INSERT INTO {table} VALUES (3, 0)")
    conflict_of(lambda: second.execute(f"INSERT INTO {table} VALUES (3, 1)"))
    first.execute("COMMIT")
    # Once the first has committed, a duplicate is a plain unique violation.
    with pytest.raises(psycopg.errors.UniqueViolation):
        second.execute(f"INSERT INTO {table} VALUES (3, 1)")


def test_select_for_update_conflicts_with_a_writer(connect, table):
    first, second = connect(), connect()
    first.execute("BEGIN")
    first.execute(f"SELECT * FROM {table} WHERE id = 1 FOR UPDATE")
    conflict_of(lambda: second.execute(f"UPDATE {table} SET n = 1 WHERE id = 1"))
    first.execute("ROLLBACK")


def test_plain_reads_never_conflict(connect, table):
    writer, reader = connect(), connect()
    reader.execute("BEGIN")
    assert reader.execute(f"SELECT sum(n) FROM {table}").fetchone()[0] == 0
    writer.execute("BEGIN")
    writer.execute(f"UPDATE {table} SET n = 100")
    total = run_bounded(lambda: reader.execute(f"SELECT sum(n) FROM {table}").fetchone()[0])
    assert total == 0
    writer.execute("COMMIT")
    assert reader.execute(f"SELECT sum(n) FROM {table}").fetchone()[0] == 0  # its snapshot
    reader.execute("COMMIT")
    # Write skew is allowed: two transactions reading both rows and writing different ones.
    a, b = connect(), connect()
    a.execute("BEGIN")
    b.execute("BEGIN")
    a.execute(f"SELECT sum(n) FROM {table}")
    b.execute(f"SELECT sum(n) FROM {table}")
    a.execute(f"UPDATE {table} SET n = 0 WHERE id = 1")
    b.execute(f"UPDATE {table} SET n = 0 WHERE id = 2")
    a.execute("COMMIT")
    b.execute("COMMIT")


async def test_asyncpg_loser_gets_oc000(dsql_endpoint, table):
    first = await asyncpg.connect(**dsql_endpoint.asyncpg_kwargs())
    second = await asyncpg.connect(**dsql_endpoint.asyncpg_kwargs())
    try:
        async with first.transaction():
            await first.execute(f"UPDATE {table} SET n = 1 WHERE id = 1")
            with pytest.raises(asyncpg.SerializationError) as info:
                await second.execute(f"UPDATE {table} SET n = 2 WHERE id = 1")
            assert info.value.sqlstate == spec.OCC_SQLSTATE
            assert "(OC000)" in str(info.value)
    finally:
        await first.close()
        await second.close()


def test_money_transfers_with_retries_keep_the_total(dsql_endpoint, connect):
    accounts, start, workers, transfers = 5, 100, 4, 15
    name = f"bank{next(_names)}"
    setup = connect()
    setup.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, balance int NOT NULL)")
    setup.execute(
        f"INSERT INTO {name} SELECT g, %s FROM generate_series(1, %s) g", (start, accounts)
    )
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        conn = psycopg.connect(dsql_endpoint.dsn())
        try:
            for i in range(transfers):
                src, dst = (seed + i) % accounts + 1, (seed + 2 * i + 1) % accounts + 1
                if src == dst:
                    continue

                def transfer(c: psycopg.Connection, src: int = src, dst: int = dst) -> None:
                    c.execute(f"UPDATE {name} SET balance = balance - 1 WHERE id = %s", (src,))
                    c.execute(f"UPDATE {name} SET balance = balance + 1 WHERE id = %s", (dst,))

                dsql_psycopg.transaction(conn, transfer, retry=_patient_retry())
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG * 2)
        assert not thread.is_alive(), "a transfer blocked"
    assert not errors, errors
    total = setup.execute(f"SELECT sum(balance) FROM {name}").fetchone()[0]
    assert total == accounts * start


def _patient_retry() -> Any:
    from dsqlkit.retry import OCCRetryConfig

    return OCCRetryConfig(max_retries=50, base_delay_ms=1, max_delay_ms=20)
