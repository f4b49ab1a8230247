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


def test_occ_state_logs_catalog_changes_by_relation():
    state = occ.OccState()
    began = state.version
    state.commit(frozenset({"t"}))
    assert state.version == began + 1
    assert state.conflicts(began, frozenset({"t", "u"}))
    assert not state.conflicts(began, frozenset({"u"}))
    assert not state.conflicts(began, frozenset())
    state.commit(None)  # GRANT: every relation
    assert state.conflicts(began + 1, frozenset({"u"}))
    for _ in range(occ.CATALOG_LOG_SIZE):
        state.commit(frozenset({"x"}))
    assert state.conflicts(began, frozenset({"u"}))  # older than the log: assume it changed


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


# --- OCC on the catalog (OC001) -------------------------------------------------------------------


def assert_schema_conflict(exc: BaseException) -> None:
    assert isinstance(exc, psycopg.Error)
    assert exc.sqlstate == spec.OCC_SQLSTATE
    assert exc.diag.message_primary == spec.OCC_SCHEMA_CONFLICT.message


def test_transaction_open_across_an_alter_table_of_its_table_gets_oc001(connect, table):
    ddl, mine = connect(), connect()
    mine.execute("BEGIN")
    mine.execute("SELECT 1")
    ddl.execute(f"ALTER TABLE {table} ADD COLUMN extra int")
    mine.execute("SELECT 2")  # touches nothing that changed
    with pytest.raises(psycopg.Error) as info:
        mine.execute(f"INSERT INTO {table} VALUES (3, 0)")
    assert_schema_conflict(info.value)
    mine.execute("ROLLBACK")
    # Retrying runs on the new catalog; other sessions were never affected.
    mine.execute(f"INSERT INTO {table} VALUES (3, 0, 1)")
    assert ddl.execute(f"SELECT extra FROM {table} WHERE id = 3").fetchone() == (1,)


def test_no_oc001_after_a_ddl_that_changed_nothing(connect, table):
    ddl, mine = connect(), connect()
    mine.execute("BEGIN")
    mine.execute("SELECT 1")
    ddl.execute(f"CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY)")
    ddl.execute("DROP TABLE IF EXISTS no_such_table_here")
    mine.execute(f"INSERT INTO {table} VALUES (4, 0)")
    mine.execute("COMMIT")


ROUNDS = 4  # DDL/DML alternations per pool test


def test_psycopg_pool_alternating_ddl_and_dml_never_gets_oc001(dsql_endpoint):
    from psycopg_pool import ConnectionPool

    name = f"pool{next(_names)}"
    with ConnectionPool(dsql_endpoint.dsn(), min_size=2, max_size=2, open=True) as pool:
        for i in range(ROUNDS):
            with pool.connection() as first, pool.connection() as second:
                first.execute(f"CREATE TABLE {name}_{i} (id int PRIMARY KEY)")
                first.commit()
                second.execute(f"INSERT INTO {name}_{i} VALUES (1)")
                second.commit()
                first.execute(f"SELECT count(*) FROM {name}_{i}")
                first.commit()
                second.execute(f"DROP TABLE {name}_{i}")
                second.commit()


async def test_asyncpg_pool_alternating_ddl_and_dml_never_gets_oc001(dsql_connect_kwargs):
    import dsqlkit.asyncpg as dsql_asyncpg

    name = f"apool{next(_names)}"
    pool = await dsql_asyncpg.create_pool(min_size=2, max_size=2, **dsql_connect_kwargs)
    try:
        for i in range(ROUNDS):
            async with pool.acquire() as first, pool.acquire() as second:
                await first.execute(f"CREATE TABLE {name}_{i} (id int PRIMARY KEY)")
                await second.execute(f"INSERT INTO {name}_{i} VALUES ($1)", 1)
                async with first.transaction():
                    assert await first.fetchval(f"SELECT count(*) FROM {name}_{i}") == 1
                await second.execute(f"ALTER TABLE {name}_{i} ADD COLUMN b int")
                await first.execute(f"INSERT INTO {name}_{i} VALUES ($1, $2)", 2, 3)
    finally:
        await pool.close()


def test_sqlalchemy_queuepool_alternating_ddl_and_dml_never_gets_oc001(dsql_connect_kwargs):
    import sqlalchemy as sa

    import dsqlkit.sqlalchemy as dsa

    engine = dsa.create_engine(
        driver="psycopg", engine_options={"pool_size": 2}, **dsql_connect_kwargs
    )
    assert isinstance(engine.pool, sa.pool.QueuePool)
    name = f"sapool{next(_names)}"
    try:
        for i in range(ROUNDS):
            with engine.connect() as first, engine.connect() as second:
                with first.begin():
                    first.exec_driver_sql(f"CREATE TABLE {name}_{i} (id int PRIMARY KEY)")
                with second.begin():
                    second.exec_driver_sql(f"INSERT INTO {name}_{i} VALUES (1)")
                with first.begin():
                    first.exec_driver_sql(f"DROP TABLE {name}_{i}")
                with second.begin():
                    assert second.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def aged_endpoint():
    """An endpoint whose transactions are too old at once (every statement after BEGIN refused)."""
    from dsqlkit.local.config import Quotas
    from dsqlkit.local.endpoint import LocalEndpoint

    endpoint = LocalEndpoint(quotas=Quotas(max_transaction_age_seconds=1e-9)).start()
    yield endpoint
    endpoint.stop()


def test_a_refused_commit_ends_the_transaction_extended_protocol(aged_endpoint):
    with psycopg.connect(aged_endpoint.dsn(), autocommit=True) as conn:
        conn.execute("BEGIN")
        with pytest.raises(psycopg.Error) as info:
            conn.execute("COMMIT")
        assert info.value.sqlstate == spec.TRANSACTION_AGE_EXCEEDED.sqlstate
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_a_refused_commit_ends_the_transaction_simple_query(aged_endpoint):
    import psycopg2
    import psycopg2.extensions

    conn = psycopg2.connect(aged_endpoint.dsn())
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute("BEGIN")
        with pytest.raises(psycopg2.Error) as info:
            cur.execute("COMMIT")
        assert info.value.pgcode == spec.TRANSACTION_AGE_EXCEEDED.sqlstate
        status = conn.info.transaction_status
        assert status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        cur.execute("SELECT 2")
        assert cur.fetchone() == (2,)
    finally:
        conn.close()
