"""Connection pools running schema changes and queries at once: dsqlkit's asyncpg pool (an
``asyncpg.Pool``) and its psycopg_pool ``ConnectionPool``, as a service does during a deploy.

One worker changes the schema (new tables, ADD COLUMN on the table the others write, an
asynchronous index), while writers insert into that table and readers count it, each transaction
through the pool's ``run_transaction`` (re-run on OCC conflicts: OC001 for a transaction that
began before a change to its table, OC000 for a lost write race). The assertions are on the end
state: every row written exactly once, every schema change in place, the index built.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

import dsqlkit.asyncpg
import dsqlkit.psycopg
from dsqlkit.retry import OCCRetryConfig

WRITERS = 3
ROWS_PER_WRITER = 15
TABLES = 3
#: Generous: while the index builds, writes to its table lose at once (docs/emulator.md).
RETRY = OCCRetryConfig(max_retries=50, base_delay_ms=1, max_delay_ms=20)


def check_end_state(conn: psycopg.Connection[Any], prefix: str) -> None:
    """What every pool scenario must have left behind, seen by a fresh connection."""
    rows = conn.execute(f"SELECT writer, count(*) FROM {prefix}_events GROUP BY writer ORDER BY 1")
    assert rows.fetchall() == [(w, ROWS_PER_WRITER) for w in range(WRITERS)]
    columns = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY 1",
        (f"{prefix}_events",),
    ).fetchall()
    assert [c for (c,) in columns] == ["id", "note", "writer"]
    tables = conn.execute(
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE %s", (f"{prefix}_t%",)
    ).fetchone()
    assert tables == (TABLES,)
    index = conn.execute(
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname = %s AND i.indisvalid",
        (f"{prefix}_writer_idx",),
    ).fetchone()
    assert index == (1,)


def test_asyncpg_pool_schema_changes_and_queries_at_once(
    dsql_clean_database: Any, dsql_connect_kwargs: dict[str, Any]
) -> None:
    prefix = "eco_ap"

    async def run() -> list[str]:
        pool = await dsqlkit.asyncpg.create_pool(
            min_size=WRITERS + 2, max_size=WRITERS + 2, retry=RETRY, **dsql_connect_kwargs
        )
        async with pool:
            await pool.execute(f"CREATE TABLE {prefix}_events (id int PRIMARY KEY, writer int)")

            async def ddl(sql: str) -> Any:
                return await pool.run_transaction(lambda conn: conn.fetchval(sql))

            async def schema() -> None:
                for i in range(TABLES):
                    await ddl(f"CREATE TABLE {prefix}_t{i} (id uuid PRIMARY KEY, v text)")
                    if i == 0:
                        await ddl(f"ALTER TABLE {prefix}_events ADD COLUMN note text")
                job = await ddl(
                    f"CREATE INDEX ASYNC {prefix}_writer_idx ON {prefix}_events (writer)"
                )
                async with pool.acquire() as conn:
                    assert await conn.fetchval(f"CALL sys.wait_for_job('{job}')") is True

            async def writer(w: int) -> None:
                for k in range(ROWS_PER_WRITER):
                    await pool.run_transaction(
                        lambda conn, k=k: conn.execute(
                            f"INSERT INTO {prefix}_events (id, writer) VALUES ($1, $2)",
                            w * 1000 + k,
                            w,
                        )
                    )

            async def reader() -> list[int]:
                counts = []
                for _ in range(ROWS_PER_WRITER):
                    counts.append(
                        await pool.run_transaction(
                            lambda conn: conn.fetchval(f"SELECT count(*) FROM {prefix}_events")
                        )
                    )
                return counts

            *_, counts = await asyncio.gather(
                schema(), *(writer(w) for w in range(WRITERS)), reader()
            )
            assert counts == sorted(counts)  # each read sees at least what the last one saw
            held = [await pool.acquire() for _ in range(WRITERS + 2)]
            ids = [await c.fetchval("SELECT sys.current_session_id()") for c in held]
            for conn in held:
                await pool.release(conn)
            return ids

    session_ids = asyncio.run(run())
    assert len(set(session_ids)) == WRITERS + 2  # the pool's connections are distinct sessions
    with dsqlkit.psycopg.connect(**dsql_connect_kwargs, autocommit=True) as conn:
        check_end_state(conn, prefix)


def test_psycopg_pool_schema_changes_and_queries_at_once(
    dsql_clean_database: Any, dsql_connect_kwargs: dict[str, Any]
) -> None:
    prefix = "eco_pp"
    pool = dsqlkit.psycopg.create_pool(
        kwargs=dsql_connect_kwargs, min_size=WRITERS + 1, max_size=WRITERS + 1, retry=RETRY
    )
    with pool:
        pool.run_transaction(
            lambda conn: conn.execute(
                f"CREATE TABLE {prefix}_events (id int PRIMARY KEY, writer int)"
            )
        )
        start = threading.Barrier(WRITERS + 1)

        def ddl(sql: str) -> Any:
            def run(conn: psycopg.Connection[Any]) -> Any:
                cur = conn.execute(sql)
                return cur.fetchone() if cur.description else None

            return pool.run_transaction(run)

        def schema() -> None:
            start.wait()
            for i in range(TABLES):
                ddl(f"CREATE TABLE {prefix}_t{i} (id uuid PRIMARY KEY, v text)")
                if i == 0:
                    ddl(f"ALTER TABLE {prefix}_events ADD COLUMN note text")
            (job,) = ddl(f"CREATE INDEX ASYNC {prefix}_writer_idx ON {prefix}_events (writer)")
            with pool.connection() as conn:
                conn.autocommit = True
                assert conn.execute(f"CALL sys.wait_for_job('{job}')").fetchone() == (True,)

        def writer(w: int) -> None:
            start.wait()
            for k in range(ROWS_PER_WRITER):
                pool.run_transaction(
                    lambda conn, k=k: conn.execute(
                        f"INSERT INTO {prefix}_events (id, writer) VALUES (%s, %s)",
                        (w * 1000 + k, w),
                    )
                )

        with ThreadPoolExecutor(WRITERS + 1) as executor:
            futures = [executor.submit(schema)]
            futures += [executor.submit(writer, w) for w in range(WRITERS)]
            for future in futures:
                future.result(timeout=120)
    with dsqlkit.psycopg.connect(**dsql_connect_kwargs, autocommit=True) as conn:
        check_end_state(conn, prefix)
