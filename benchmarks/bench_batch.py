"""Bulk load within DSQL's 3,000-row transaction limit: dsqlkit's batch helpers vs naive executemany.

Run: ``.venv/bin/python benchmarks/bench_batch.py [--rows N] [--rounds R]``. Starts a
local endpoint (in its own process) with DSQL's real quotas and loads N rows (id bigint, name text, score float) into a
fresh table per run, each way in turn (interleaved per round so machine drift hits all alike):

- naive: psycopg ``cursor.executemany`` (no pipeline) in one transaction per 3,000 rows: the peer.
- naive psycopg2: psycopg2's ``executemany`` per 3,000 rows (one round trip per row).
- insert_many / copy_rows with psycopg and psycopg2, ainsert_many / acopy_rows with asyncpg,
  each at the default chunk of 2,500 rows.

Prints a table and writes ``benchmarks/results/batch.md`` (rows/s medians, ratio to the peer).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

import dsqlkit.asyncpg
import dsqlkit.psycopg
import dsqlkit.psycopg2
from dsqlkit import dsql as spec
from dsqlkit.batch import acopy_rows, ainsert_many, copy_rows, insert_many
from dsqlkit.local.process import EndpointProcess

RESULTS = Path(__file__).parent / "results" / "batch.md"
COLUMNS = ["id", "name", "score"]
INSERT = "INSERT INTO {t} (id, name, score) VALUES (%s, %s, %s)"
_tables = iter(range(10**9))


def data(n: int) -> list[tuple[int, str, float]]:
    return [(i, f"name-{i}", i * 0.5) for i in range(n)]


def new_table(kwargs: dict[str, Any]) -> str:
    name = f"bench_{next(_tables)}"
    with dsqlkit.psycopg.connect(**kwargs, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, name text, score float8)")
    return name


def naive_psycopg(kwargs: dict[str, Any], table: str, rows: list[Any]) -> None:
    with dsqlkit.psycopg.connect(**kwargs) as conn, conn.cursor() as cur:
        for i in range(0, len(rows), spec.TRANSACTION_MAX_ROWS):
            cur.executemany(INSERT.format(t=table), rows[i : i + spec.TRANSACTION_MAX_ROWS])
            conn.commit()


def naive_psycopg2(kwargs: dict[str, Any], table: str, rows: list[Any]) -> None:
    conn = dsqlkit.psycopg2.connect(**kwargs)
    try:
        with conn.cursor() as cur:
            for i in range(0, len(rows), spec.TRANSACTION_MAX_ROWS):
                cur.executemany(INSERT.format(t=table), rows[i : i + spec.TRANSACTION_MAX_ROWS])
                conn.commit()
    finally:
        conn.close()


def with_sync(helper: Callable[..., Any], module: Any) -> Callable[..., None]:
    def run(kwargs: dict[str, Any], table: str, rows: list[Any]) -> None:
        conn = module.connect(**kwargs)
        try:
            helper(conn, table, COLUMNS, iter(rows))
        finally:
            conn.close()

    return run


def with_asyncpg(helper: Callable[..., Any]) -> Callable[..., None]:
    def run(kwargs: dict[str, Any], table: str, rows: list[Any]) -> None:
        async def main() -> None:
            conn = await dsqlkit.asyncpg.connect(**kwargs)
            try:
                await helper(conn, table, COLUMNS, iter(rows))
            finally:
                await conn.close()

        asyncio.run(main())

    return run


WAYS: dict[str, Callable[..., None]] = {
    "naive executemany, psycopg (peer)": naive_psycopg,
    "naive executemany, psycopg2": naive_psycopg2,
    "insert_many, psycopg": with_sync(insert_many, dsqlkit.psycopg),
    "insert_many, psycopg2": with_sync(insert_many, dsqlkit.psycopg2),
    "copy_rows, psycopg": with_sync(copy_rows, dsqlkit.psycopg),
    "copy_rows, psycopg2": with_sync(copy_rows, dsqlkit.psycopg2),
    "ainsert_many, asyncpg": with_asyncpg(ainsert_many),
    "acopy_rows, asyncpg": with_asyncpg(acopy_rows),
}


def count(kwargs: dict[str, Any], table: str) -> int:
    with dsqlkit.psycopg.connect(**kwargs) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=15_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = data(args.rows)
    rates: dict[str, list[float]] = {name: [] for name in WAYS}
    # The endpoint runs in its own process: its CPU time must not be timed as the client's.
    with EndpointProcess() as ep, ep.use_environment():
        kwargs = ep.connect_kwargs()
        for _ in range(args.rounds):
            for name, way in WAYS.items():
                table = new_table(kwargs)
                started = time.perf_counter()
                way(kwargs, table, rows)
                elapsed = time.perf_counter() - started
                assert count(kwargs, table) == len(rows), name
                rates[name].append(len(rows) / elapsed)
    report(rates, args)


def report(rates: dict[str, list[float]], args: argparse.Namespace) -> None:
    peer = statistics.median(next(iter(rates.values())))
    lines = [
        "# Bulk load within the 3,000-row limit (benchmarks/bench_batch.py)",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"psycopg {psycopg.__version__}. The machine may be shared: compare ratios.",
        "",
        f"{args.rows} rows (bigint, text, float8) per run, {args.rounds} rounds interleaved, "
        "local endpoint with DSQL's real quotas; target: >= 5x the naive executemany.",
        "",
        "| way | median rows/s | min | max | / peer |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, values in rates.items():
        median = statistics.median(values)
        lines.append(
            f"| {name} | {median:,.0f} | {min(values):,.0f} | {max(values):,.0f} | {median / peer:.1f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
