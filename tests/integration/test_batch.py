"""Batched writes against an endpoint whose row limit is 50 per transaction: 10x the limit in
chunks of 40, every driver, an OCC conflict injected mid-way, a permanent failure mid-way."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg2
import pytest

import dsqlkit.asyncpg as dsql_asyncpg
import dsqlkit.psycopg as dsql_psycopg
import dsqlkit.psycopg2 as dsql_psycopg2
from dsqlkit import batch, stats
from dsqlkit import dsql as spec
from dsqlkit.batch import BatchError, acopy_rows, ainsert_many, copy_rows, insert_many
from dsqlkit.local import LocalEndpoint, Quotas
from dsqlkit.retry import OCCRetryConfig

LIMIT = 50
CHUNK = 40
ROWS = 10 * LIMIT
COLUMNS = ["id", "v"]
_names = itertools.count()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(quotas=Quotas(max_rows_per_transaction=LIMIT)) as ep:
        yield ep


@pytest.fixture
def kwargs(endpoint: LocalEndpoint) -> Iterator[dict[str, Any]]:
    with endpoint.use_environment():
        yield endpoint.connect_kwargs()


@pytest.fixture
def table(kwargs: dict[str, Any]) -> str:
    name = f"batch_{next(_names)}"
    with dsql_psycopg.connect(**kwargs, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text CHECK (v <> 'bad'))")
    return name


def rows(n: int = ROWS, start: int = 0) -> Iterator[tuple[int, str]]:
    return ((i, f"v{i}") for i in range(start, start + n))


def contents(kwargs: dict[str, Any], table: str) -> list[tuple[int, str]]:
    with dsql_psycopg.connect(**kwargs) as conn:
        return conn.execute(f"SELECT id, v FROM {table} ORDER BY id").fetchall()


def assert_whole(result: batch.BatchResult, n: int = ROWS) -> None:
    starts = [c.start for c in result.chunks]
    stops = [c.stop for c in result.chunks]
    assert starts == [0, *stops[:-1]]  # contiguous, in order, nothing skipped
    assert stops[-1] == n and result.rows == n
    assert all(c.rows <= CHUNK for c in result.chunks)


# --- every driver, 10x the row limit ---------------------------------------------------------


@pytest.mark.parametrize("helper", [insert_many, copy_rows])
@pytest.mark.parametrize("target", ["psycopg", "psycopg2", "psycopg_pool", "psycopg2_pool"])
def test_sync_writes_ten_times_the_row_limit(kwargs, table, helper, target):
    seen: list[batch.Chunk] = []
    with _sync_target(target, kwargs) as conn:
        result = helper(conn, table, COLUMNS, rows(), chunk_rows=CHUNK, progress=seen.append)
    assert_whole(result)
    assert list(result.chunks) == seen
    assert result.written == ROWS
    assert contents(kwargs, table) == list(rows())


class _SyncTarget:
    def __init__(self, kind: str, kwargs: dict[str, Any]) -> None:
        self.kind, self.kwargs = kind, kwargs

    def __enter__(self) -> Any:
        if self.kind == "psycopg":
            self.obj = dsql_psycopg.connect(**self.kwargs)
        elif self.kind == "psycopg2":
            self.obj = dsql_psycopg2.connect(**self.kwargs)
        elif self.kind == "psycopg_pool":
            self.obj = dsql_psycopg.create_pool(kwargs=self.kwargs, min_size=1, max_size=2)
            self.obj.open(wait=True)
        else:
            self.obj = dsql_psycopg2.AuroraDSQLThreadedConnectionPool(1, 2, **self.kwargs)
        return self.obj

    def __exit__(self, *exc: object) -> None:
        if self.kind == "psycopg2_pool":
            self.obj.closeall()
        else:
            self.obj.close()


def _sync_target(kind: str, kwargs: dict[str, Any]) -> _SyncTarget:
    return _SyncTarget(kind, kwargs)


@pytest.mark.parametrize("helper", [ainsert_many, acopy_rows])
@pytest.mark.parametrize("target", ["asyncpg", "asyncpg_pool", "psycopg_async"])
async def test_async_writes_ten_times_the_row_limit(kwargs, table, helper, target):
    if target == "asyncpg":
        conn = await dsql_asyncpg.connect(**kwargs)
    elif target == "asyncpg_pool":
        conn = await dsql_asyncpg.create_pool(**kwargs, min_size=1, max_size=2)
    else:
        conn = await dsql_psycopg.connect_async(**kwargs)
    try:
        result = await helper(conn, table, COLUMNS, rows(), chunk_rows=CHUNK)
    finally:
        await conn.close()
    assert_whole(result)
    assert contents(kwargs, table) == list(rows())


def test_rows_are_streamed_one_chunk_at_a_time(kwargs, table):
    consumed = 0

    def source() -> Iterator[tuple[int, str]]:
        nonlocal consumed
        for row in rows():
            consumed += 1
            yield row

    ahead = []
    with dsql_psycopg.connect(**kwargs) as conn:
        insert_many(
            conn, table, COLUMNS, source(), chunk_rows=CHUNK,
            progress=lambda chunk: ahead.append(consumed - chunk.stop),
        )  # fmt: skip
    assert max(ahead) <= CHUNK  # never more than one chunk read ahead of what committed


def test_a_chunk_over_the_row_limit_is_refused_by_the_endpoint(kwargs, table):
    with dsql_psycopg.connect(**kwargs) as conn, pytest.raises(BatchError) as info:
        insert_many(conn, table, COLUMNS, rows(), chunk_rows=LIMIT + 10)
    assert info.value.committed == ()
    assert info.value.cause.sqlstate == spec.TRANSACTION_ROWS_EXCEEDED.sqlstate
    assert contents(kwargs, table) == []


def test_time_bound_commits_early_and_carries_the_rest(kwargs, table, monkeypatch):
    monkeypatch.setattr(batch, "_STATEMENT_ROWS", 10)
    with dsql_psycopg.connect(**kwargs) as conn:
        # Any statement takes longer than a microsecond: every chunk stops after one statement.
        result = insert_many(
            conn, table, COLUMNS, rows(100), chunk_rows=CHUNK, max_chunk_seconds=1e-6
        )
    assert [c.rows for c in result.chunks] == [10] * 10
    assert_whole(result, 100)
    assert contents(kwargs, table) == list(rows(100))


# --- failures: exact accounts ------------------------------------------------------------------


@pytest.mark.parametrize("where", ["argument", "inherited from the pool"])
def test_conflict_mid_way_is_retried_and_every_row_lands_once(kwargs, table, where):
    """Another session holds an uncommitted insert of row 150 (chunk 4: rows 120-159).

    Chunk 4 meets it and gets OC000; the other session commits the same row once it sees the
    retry counted; chunk 4 re-runs and, with ON CONFLICT DO NOTHING, skips the row. The patient
    retry policy is given to insert_many, or to the pool (``retry=None``: inherit it).
    """
    blocker = psycopg.connect(**_raw(kwargs))
    blocker.execute(f"INSERT INTO {table} VALUES (150, 'v150')")  # open transaction
    stats.reset()
    released = threading.Event()

    def release_on_first_retry() -> None:
        while not released.wait(0.002):  # poll the counter the retry increments
            if stats.snapshot()["occ_retries"] > 0:
                blocker.commit()
                released.set()

    watcher = threading.Thread(target=release_on_first_retry, daemon=True)
    watcher.start()
    patient = OCCRetryConfig(max_retries=50, base_delay_ms=5, max_delay_ms=50)
    if where == "argument":
        target, retry = dsql_psycopg.connect(**kwargs), patient
    else:
        target, retry = (
            dsql_psycopg.create_pool(kwargs=kwargs, min_size=1, max_size=1, retry=patient),
            None,
        )
        target.open(wait=True)
    try:
        with target:
            result = insert_many(
                target, table, COLUMNS, rows(), chunk_rows=CHUNK, retry=retry,
                on_conflict="ON CONFLICT (id) DO NOTHING",
            )  # fmt: skip
    finally:
        released.set()
        watcher.join(10)
        blocker.close()
    assert_whole(result)
    retried = [c.index for c in result.chunks if c.attempts > 1]
    assert retried == [4]
    assert result.chunks[3].written == CHUNK - 1  # row 150 was the other session's
    assert result.written == ROWS - 1
    assert contents(kwargs, table) == list(rows())


def _raw(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A plain psycopg connection to the endpoint (the 'other application')."""
    from dsqlkit import _driver

    plan = _driver.plan("psycopg", None, dict(kwargs))
    return {**_driver.libpq_kwargs(plan, psycopg.pq.version()), "password": plan.tokens.token()}


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_permanent_failure_in_chunk_3_reports_chunks_1_2_committed(kwargs, table, driver):
    data = [(i, "bad" if i == 95 else f"v{i}") for i in range(ROWS)]  # row 95: chunk 3 (80-119)
    connect = dsql_psycopg.connect if driver == "psycopg" else dsql_psycopg2.connect
    conn = connect(**kwargs)
    try:
        with pytest.raises(BatchError) as info:
            insert_many(conn, table, COLUMNS, data, chunk_rows=CHUNK)
    finally:
        conn.close()
    err = info.value
    assert [(c.index, c.start, c.stop) for c in err.committed] == [(1, 0, 40), (2, 40, 80)]
    assert (err.failed.index, err.failed.start, err.failed.stop) == (3, 80, 120)
    assert err.failed.attempts == 1 and not err.outcome_unknown
    assert err.resume_from == 80
    assert isinstance(err.cause, (psycopg.Error, psycopg2.Error)) and err.__cause__ is err.cause
    assert "chunk 3 (rows 80-119)" in str(err) and "resume from row 80" in str(err)
    assert contents(kwargs, table) == data[:80]  # nothing of chunk 3


async def test_async_permanent_failure_reports_committed_chunks(kwargs, table):
    data = [(i, "bad" if i == 95 else f"v{i}") for i in range(ROWS)]
    conn = await dsql_asyncpg.connect(**kwargs)
    try:
        with pytest.raises(BatchError) as info:
            await ainsert_many(conn, table, COLUMNS, data, chunk_rows=CHUNK)
        with pytest.raises(BatchError, match="row 1 is None"):
            await ainsert_many(conn, table, COLUMNS, [(1000, "x"), None, (1001, "y")])
    finally:
        await conn.close()
    assert info.value.resume_from == 80 and info.value.failed.stop == 120
    assert contents(kwargs, table) == data[:80]


def test_a_failing_source_is_accounted_for(kwargs, table):
    def source() -> Iterator[tuple[int, str]]:
        yield from rows(100)
        raise RuntimeError("upstream feed broke")

    with dsql_psycopg.connect(**kwargs) as conn, pytest.raises(BatchError) as info:
        insert_many(conn, table, COLUMNS, source(), chunk_rows=CHUNK)
    assert info.value.resume_from == 80 and isinstance(info.value.cause, RuntimeError)
    assert contents(kwargs, table) == list(rows(80))


# --- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_refused_clearly(kwargs, table):
    with dsql_psycopg.connect(**kwargs) as conn:
        with pytest.raises(ValueError, match="chunk_rows must be an integer from 1 to 3000"):
            insert_many(conn, table, COLUMNS, rows(), chunk_rows=5000)
        with pytest.raises(ValueError, match="ON CONFLICT clause"):
            insert_many(conn, table, COLUMNS, rows(), on_conflict="DO NOTHING")
        with pytest.raises(ValueError, match="columns must be"):
            insert_many(conn, table, "id", rows())
        with pytest.raises(BatchError, match="row 3 has 1 values, expected 2"):
            insert_many(conn, table, COLUMNS, [(0, "a"), (1, "b"), (2, "c"), (3,)])
        # A None row is refused, never taken for the end of the input (no row silently lost).
        with pytest.raises(BatchError, match=r"row 1 is None.*resume from row 0") as info:
            insert_many(conn, table, COLUMNS, [(0, "a"), None, (2, "c")])
        assert info.value.resume_from == 0 and isinstance(info.value.cause, ValueError)
        with pytest.raises(BatchError, match="row 0 is int, not a sequence of 2"):
            insert_many(conn, table, COLUMNS, [5])
        assert contents(kwargs, table) == []
        conn.execute("SELECT 1")  # a transaction is now open
        with pytest.raises(ValueError, match="transaction open"):
            insert_many(conn, table, COLUMNS, rows())
    with pytest.raises(TypeError, match="psycopg, psycopg2 or asyncpg"):
        insert_many(object(), table, COLUMNS, rows())
