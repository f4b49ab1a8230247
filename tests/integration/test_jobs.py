"""Asynchronous jobs through the endpoint: CREATE INDEX ASYNC, ALTER TABLE ASYNC, sys.wait_for_job.

No sleeps: a job is held back deterministically by an open writing transaction (CREATE INDEX
CONCURRENTLY waits for it), and every wait is bounded by a timeout that fails the test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import psycopg
import pytest

from dsqlkit import dsql as spec
from dsqlkit.local.rules.jobs import parse_async, parse_wait

HANG = 60.0
_names = itertools.count()


@pytest.fixture
def conn(connect) -> psycopg.Connection:
    return connect()


@pytest.fixture
def table(conn) -> str:
    name = f"jobs{next(_names)}"
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text, n int)")
    conn.execute(f"INSERT INTO {name} SELECT g, 'v' || (g % 3), g FROM generate_series(1, 9) g")
    return name


def submit(conn: psycopg.Connection, sql: str) -> str:
    cur = conn.execute(sql)
    assert cur.statusmessage == "CREATE INDEX" or sql.upper().startswith("ALTER")
    assert [c.name for c in cur.description] == ["job_id"]
    (job_id,) = cur.fetchone()
    assert spec.JOB_ID.match(job_id)
    return job_id


def wait(conn: psycopg.Connection, job_id: str) -> bool:
    cur = conn.execute(f"CALL sys.wait_for_job('{job_id}')")
    assert cur.statusmessage == "CALL"
    assert [c.name for c in cur.description] == ["succeeded"]
    return cur.fetchone()[0]


def job(conn: psycopg.Connection, job_id: str) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM sys.jobs WHERE job_id = %s", (job_id,))
    names = [c.name for c in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def index_valid(conn: psycopg.Connection, name: str) -> bool | None:
    row = conn.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (name,)
    ).fetchone()
    return None if row is None else row[0]


def bounded(statement: Callable[[], Any]) -> Any:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(statement).result(timeout=HANG)


def test_recognises_only_its_statements():
    assert parse_async("SELECT 1") is None
    assert parse_async("CREATE INDEX i ON t (a)") is None
    request = parse_async("/* c */ create unique index async if not exists i on s.t (a)")
    assert request is not None and request.job_type == "INDEX_BUILD"
    assert request.relation == "s.t" and request.object_name == "i"
    assert parse_wait("CALL other.wait_for_job('x')") is None
    assert parse_wait("CALL sys.wait_for_job($1)") == ("CALL sys.dsqlkit_wait_for_job($1)", None)


def test_create_index_async_builds_after_commit(conn, table):
    job_id = submit(conn, f"CREATE INDEX ASYNC {table}_v ON {table} (v)")
    assert wait(conn, job_id) is True
    assert index_valid(conn, f"{table}_v") is True
    row = job(conn, job_id)
    assert row["status"] == "completed" and row["job_type"] == "INDEX_BUILD"
    assert row["object_name"] == f"{table}_v" and row["details"] is None
    assert row["start_time"] <= row["update_time"]
    # The index serves queries.
    plan = conn.execute(f"EXPLAIN SELECT * FROM {table} WHERE v = 'x'").fetchall()
    assert plan


def in_pg_indexes(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s", (name,)).fetchone()
    return row == (1,)


def test_async_index_is_in_the_catalog_at_commit_not_valid_until_built(connect, table):
    """As DSQL (issue 12): pg_indexes has the index as soon as the transaction commits, and
    pg_index.indisvalid is false until the job ends. ORM migration tools check at once."""
    submitter, other = connect(), connect()
    submitter.execute("BEGIN")
    job_id = submit(submitter, f"CREATE INDEX ASYNC {table}_cat ON {table} (n)")
    assert index_valid(submitter, f"{table}_cat") is False  # the job cannot have run yet
    assert not in_pg_indexes(other, f"{table}_cat")
    submitter.execute("COMMIT")
    assert in_pg_indexes(other, f"{table}_cat")  # at once, every time
    assert wait(other, job_id) is True
    assert index_valid(other, f"{table}_cat") is True


def test_drop_index_cancels_a_build_in_progress(connect, table):
    """The runner is held on an earlier job (an open writer holds its table), so the second
    index is in the catalog, not valid, when it is dropped; its job then ends as failed."""
    conn = connect()
    conn.execute(f"CREATE TABLE {table}_held (id int)")
    writer = connect()
    writer.execute("BEGIN")
    writer.execute(f"INSERT INTO {table}_held VALUES (1)")
    held = submit(conn, f"CREATE INDEX ASYNC {table}_held_i ON {table}_held (id)")
    job_id = submit(conn, f"CREATE INDEX ASYNC {table}_drop ON {table} (n)")
    assert in_pg_indexes(conn, f"{table}_drop") and index_valid(conn, f"{table}_drop") is False
    conn.execute(f"DROP INDEX {table}_drop")
    writer.execute("ROLLBACK")
    assert wait(conn, held) is True
    assert wait(conn, job_id) is False
    row = job(conn, job_id)
    assert row["status"] == "failed" and "cancelled" in row["details"]


def test_unnamed_async_index_gets_postgresql_s_name(conn, table):
    job_id = submit(conn, f"create index async on {table} (n)")
    assert wait(conn, job_id) is True
    assert index_valid(conn, f"{table}_n_idx") is True


def test_failed_unique_build_reports_and_leaves_no_index(conn, table):
    job_id = submit(conn, f"CREATE UNIQUE INDEX ASYNC {table}_vu ON {table} (v)")
    assert wait(conn, job_id) is False
    row = job(conn, job_id)
    assert row["status"] == "failed"
    assert "could not create unique index" in row["details"] and "duplicated" in row["details"]
    assert index_valid(conn, f"{table}_vu") is None


def test_job_of_a_rolled_back_transaction_never_runs(conn, table):
    conn.execute("BEGIN")
    job_id = submit(conn, f"CREATE INDEX ASYNC {table}_rb ON {table} (n)")
    conn.execute("ROLLBACK")
    with pytest.raises(psycopg.errors.UndefinedObject, match=job_id):
        wait(conn, job_id)
    assert index_valid(conn, f"{table}_rb") is None


def test_waiting_holds_up_no_other_session(connect, table):
    """An open writer holds the build back; the waiter waits, others carry on, then it ends."""
    writer, submitter, waiter, other = connect(), connect(), connect(), connect()
    writer.execute("BEGIN")
    writer.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 1")
    job_id = submit(submitter, f"CREATE INDEX ASYNC {table}_n ON {table} (n)")
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(wait, waiter, job_id)
        # While the waiter waits, every other session works, the writer included.
        bounded(lambda: other.execute("SELECT count(*) FROM sys.jobs").fetchone())
        bounded(lambda: writer.execute(f"UPDATE {table} SET n = n + 1 WHERE id = 2"))
        assert job(other, job_id)["status"] in ("submitted", "processing")
        assert not waiting.done()
        writer.execute("COMMIT")
        assert waiting.result(timeout=HANG) is True
    assert index_valid(other, f"{table}_n") is True


def test_open_snapshots_do_not_hold_the_build_back(connect, table):
    """An idle-in-transaction reader, and a waiter inside its own transaction, still get the job."""
    reader, waiter = connect(), connect()
    reader.execute("BEGIN")
    reader.execute(f"SELECT count(*) FROM {table}")  # holds a snapshot and a read lock
    waiter.execute("BEGIN")
    waiter.execute("SELECT count(*) FROM sys.jobs")  # its snapshot predates the job
    job_id = submit(connect(), f"CREATE INDEX ASYNC {table}_s ON {table} (v)")
    assert bounded(lambda: wait(waiter, job_id)) is True
    waiter.execute("COMMIT")
    reader.execute("COMMIT")


def test_alter_table_async_validate_constraint(conn, table):
    conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pos CHECK (n > 0) NOT VALID")
    job_id = submit(conn, f"ALTER TABLE ASYNC {table} VALIDATE CONSTRAINT {table}_pos")
    assert wait(conn, job_id) is True
    assert job(conn, job_id)["job_type"] == "VALIDATE_CONSTRAINT"
    validated = conn.execute(
        "SELECT convalidated FROM pg_constraint WHERE conname = %s", (f"{table}_pos",)
    ).fetchone()[0]
    assert validated is True

    conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_big CHECK (n > 5) NOT VALID")
    job_id = submit(conn, f"ALTER TABLE ASYNC {table} VALIDATE CONSTRAINT {table}_big")
    assert wait(conn, job_id) is False
    assert "violated" in job(conn, job_id)["details"]


def test_select_of_the_procedure_is_dsqls_error(conn):
    error = spec.WAIT_FOR_JOB_IS_PROCEDURE
    with pytest.raises(psycopg.Error) as info:
        conn.execute("SELECT sys.wait_for_job('abcdefghijklmnopqrstuvwxyz')")
    assert info.value.sqlstate == error.sqlstate
    assert info.value.diag.message_primary == error.message


def test_unknown_job_and_bad_statements_are_clear_errors(conn, table):
    with pytest.raises(psycopg.errors.UndefinedObject, match="does not exist"):
        wait(conn, "a" * 26)
    with pytest.raises(psycopg.errors.SyntaxError):
        conn.execute(f"CREATE INDEX ASYNC broken ON {table} (")
    with pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute("CREATE INDEX ASYNC i_missing ON no_such_table (a)")


def test_wait_with_a_bind_parameter_answers_for_an_ended_job(conn, table):
    job_id = submit(conn, f"CREATE INDEX ASYNC {table}_p ON {table} (id, n)")
    assert wait(conn, job_id) is True
    cur = conn.execute("CALL sys.wait_for_job(%s)", (job_id,))  # extended protocol, $1
    assert cur.fetchone() == (True,)


async def test_asyncpg(dsql_endpoint, table):
    conn = await asyncpg.connect(**dsql_endpoint.asyncpg_kwargs())
    try:
        job_id = await conn.fetchval(f"CREATE INDEX ASYNC {table}_a ON {table} (v, n)")
        assert spec.JOB_ID.match(job_id)
        assert await conn.fetchval(f"CALL sys.wait_for_job('{job_id}')") is True
    finally:
        await conn.close()
