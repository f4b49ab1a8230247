"""What DSQL's dialect checks cost: classification per statement, and the endpoint's added latency.

Run: ``.venv/bin/python benchmarks/bench_dialect.py [--relay]`` (``--relay`` starts two local
endpoints, dialect checks on and off, and needs the server). Results: benchmarks/results/dialect.md.

- classify, uncached: a new statement text each time (parse + checks), per statement;
- classify, cached: the same text again (the LRU cache hit the hot path sees);
- relay: round-trip time of ``SELECT 1`` and of a mixed statement set through the endpoint with
  ``dialect_checks=True`` vs ``False`` (same machine, same backend), texts repeated (cached) or
  made unique per execution (uncached).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

from dsqlkit.local.rules.dialect import classify

MIXED = [
    "SELECT 1",
    "SELECT a, b FROM t WHERE id = $1",
    "INSERT INTO t (id, a, b) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a",
    "UPDATE t SET a = a + 1 WHERE id = $1 RETURNING a",
    "WITH x AS (SELECT id, row_number() OVER (ORDER BY a) AS r FROM t) SELECT * FROM x WHERE r < 10",
    "SELECT * FROM t WHERE id = $1 FOR UPDATE",
    "DELETE FROM t WHERE id = $1",
    "BEGIN",
    "COMMIT",
    "SET search_path = public",
]


def per_call_us(fn: Callable[[int], object], n: int) -> float:
    """Median over 5 runs of the mean cost of fn(i) for i in range(n), in microseconds."""
    runs = []
    for r in range(5):
        start = time.perf_counter()
        for i in range(n):
            fn(r * n + i)
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def bench_classify(n: int) -> list[tuple[str, float, float]]:
    rows = []
    for sql in ("SELECT 1", *MIXED[1:7]):
        # A comment with a counter makes each text new to the cache, with the same parse work.
        uncached = per_call_us(lambda i, s=sql: classify(f"{s} /* {i} */"), n)
        classify(sql)
        cached = per_call_us(lambda i, s=sql: classify(s), n * 10)
        rows.append((sql, uncached, cached))
    return rows


def bench_relay(n: int) -> list[tuple[str, float, float]]:
    import psycopg

    from dsqlkit.local.process import EndpointProcess

    results: dict[tuple[str, bool], float] = {}
    for checks in (False, True):
        with (
            # Each endpoint in its own process: its CPU time must not be timed as the client's.
            EndpointProcess(dialect_checks=checks) as ep,
            psycopg.connect(ep.dsn(), autocommit=True) as conn,
        ):
            conn.execute("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, a int, b int)")
            conn.execute("INSERT INTO t VALUES (1, 1, 1) ON CONFLICT DO NOTHING")

            def one(i: int, texts: list[str], unique: bool) -> None:
                sql = texts[i % len(texts)]
                sql = f"{sql} /* {i} */" if unique and sql[:1] != "B" and sql[:1] != "C" else sql
                params = (1,) if "$1" in sql else None
                if "$3" in sql:
                    params = (1, 1, 1)
                if sql.startswith("BEGIN") or sql.startswith("COMMIT"):
                    conn.execute(sql.split(" ")[0])  # keep BEGIN / COMMIT paired
                else:
                    conn.execute(
                        sql.replace("$1", "%s").replace("$2", "%s").replace("$3", "%s"), params
                    )

            for name, texts in (("SELECT 1", ["SELECT 1"]), ("mixed", MIXED)):
                for unique in (False, True):
                    label = f"{name}, {'uncached' if unique else 'cached'} texts"
                    run = functools.partial(one, texts=texts, unique=unique)
                    per_call_us(run, 50)  # warm up
                    results[(label, checks)] = per_call_us(run, n)
    labels = dict.fromkeys(label for label, _ in results)
    return [(label, results[(label, False)], results[(label, True)]) for label in labels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--relay", action="store_true")
    args = parser.parse_args()
    print("| statement | classify uncached (us) | classify cached (us) |")
    print("| --- | ---: | ---: |")
    for sql, uncached, cached in bench_classify(args.n):
        print(f"| `{sql[:60]}` | {uncached:.1f} | {cached:.2f} |")
    if args.relay:
        print("\n| workload | checks off (us/round trip) | checks on | ratio |")
        print("| --- | ---: | ---: | ---: |")
        for label, off, on in bench_relay(max(args.n // 4, 200)):
            print(f"| {label} | {off:.0f} | {on:.0f} | {on / off:.3f} |")


if __name__ == "__main__":
    main()
