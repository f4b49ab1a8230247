"""Connect-each-time and query latency: dsqlkit vs the raw drivers vs the official connector.

Run: ``.venv/bin/python benchmarks/bench_connect.py [--quick]``. Starts a local endpoint in its own process (quotas
raised so that the benchmark itself is never refused), prints a table and writes
``benchmarks/results/connect.md``.

- Connect: the time of one ``connect`` (TLS with verify-full, direct TLS where the driver does
  it, token check by the endpoint), per driver: the raw driver given a precomputed token (the
  limit), dsqlkit (token from its cached factory; client rate limit off, since it is a policy,
  not overhead), and the official connector 0.2.7 when installed (psycopg and psycopg2 only: it
  takes ``localhost`` for a cluster id, so it connects to the endpoint's DSQL-style name with
  libpq's ``hostaddr``). Implementations alternate within each round so drift hits them alike.
- Query: ``SELECT 1`` round trips on an open connection, dsqlkit's vs the raw driver's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import psycopg2

import dsqlkit.asyncpg
import dsqlkit.psycopg
import dsqlkit.psycopg2
from dsqlkit import _driver
from dsqlkit.local import Quotas
from dsqlkit.local.address import EndpointAddress
from dsqlkit.local.process import EndpointProcess

RESULTS = Path(__file__).parent / "results" / "connect.md"
Row = tuple[str, str, list[float], list[float] | None]  # driver, implementation, samples, baseline


def official_available() -> bool:
    try:
        version("aurora-dsql-python-connector")
        return True
    except PackageNotFoundError:
        return False


def libpq_raw(ep: EndpointAddress, token: str, libpq_version: int) -> dict[str, Any]:
    """What dsqlkit gives libpq, with the token precomputed: the limit for connect latency."""
    plan = _driver.plan("raw", None, {**ep.connect_kwargs(), "rate_limit": None})
    return {**_driver.libpq_kwargs(plan, libpq_version), "password": token}


def sync_connectors(ep: EndpointAddress) -> dict[str, dict[str, Callable[[], Any]]]:
    token = ep.token()
    ours = {**ep.connect_kwargs(), "rate_limit": None}
    raw3 = libpq_raw(ep, token, psycopg.pq.version())
    raw2 = libpq_raw(ep, token, psycopg2.__libpq_version__)
    found: dict[str, dict[str, Callable[[], Any]]] = {
        "psycopg": {
            "raw": lambda: psycopg.connect(**raw3),
            "dsqlkit": lambda: dsqlkit.psycopg.connect(**ours),
        },
        "psycopg2": {
            "raw": lambda: psycopg2.connect(**raw2),
            "dsqlkit": lambda: dsqlkit.psycopg2.connect(**ours),
        },
    }
    if official_available():
        import aurora_dsql_psycopg
        import aurora_dsql_psycopg2

        official = {
            "host": ep.hostname,
            "hostaddr": "127.0.0.1",
            "port": ep.port,
            "region": ep.region,
            "user": "admin",
            "sslmode": "verify-full",
            "sslrootcert": str(ep.ca_file),
        }
        found["psycopg"]["official"] = lambda: aurora_dsql_psycopg.connect(**official)
        found["psycopg2"]["official"] = lambda: aurora_dsql_psycopg2.connect(**official)
    return found


def measure_sync(make: Callable[[], Any]) -> float:
    started = time.perf_counter()
    conn = make()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


async def measure_async(make: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    conn = await make()
    elapsed = time.perf_counter() - started
    await conn.close()
    return elapsed


def bench_connect(ep: EndpointAddress, rounds: int) -> list[Row]:
    rows: list[Row] = []
    for driver, impls in sync_connectors(ep).items():
        samples: dict[str, list[float]] = {name: [] for name in impls}
        for make in impls.values():
            measure_sync(make)  # warm-up: imports, caches
        for _ in range(rounds):
            for name, make in impls.items():
                samples[name].append(measure_sync(make))
        rows += [(driver, name, s, samples["raw"]) for name, s in samples.items()]

    async def run_asyncpg() -> dict[str, list[float]]:
        # The same verify-full context with ALPN that dsqlkit builds (cached), token precomputed.
        context = _driver.client_context("verify-full", str(ep.ca_file))
        raw = {**ep.asyncpg_kwargs(), "ssl": context, "direct_tls": True}
        ours = {**ep.connect_kwargs(), "rate_limit": None}
        impls = {
            "raw": lambda: asyncpg.connect(**raw),
            "dsqlkit": lambda: dsqlkit.asyncpg.connect(**ours),
        }
        samples: dict[str, list[float]] = {name: [] for name in impls}
        for make in impls.values():
            await measure_async(make)
        for _ in range(rounds):
            for name, make in impls.items():
                samples[name].append(await measure_async(make))
        return samples

    samples = asyncio.run(run_asyncpg())
    rows += [("asyncpg", name, s, samples["raw"]) for name, s in samples.items()]
    return rows


def bench_query(ep: EndpointAddress, rounds: int, batch: int) -> list[Row]:
    ours = {**ep.connect_kwargs(), "rate_limit": None}
    token = ep.token()
    conns = {
        "raw": psycopg.connect(**libpq_raw(ep, token, psycopg.pq.version()), autocommit=True),
        "dsqlkit": dsqlkit.psycopg.connect(**ours, autocommit=True),
    }
    samples: dict[str, list[float]] = {name: [] for name in conns}
    for _ in range(rounds):
        for name, conn in conns.items():
            started = time.perf_counter()
            for _ in range(batch):
                conn.execute("SELECT 1").fetchone()
            samples[name].append((time.perf_counter() - started) / batch)
    for conn in conns.values():
        conn.close()
    return [("psycopg", f"{name} (SELECT 1)", s, samples["raw"]) for name, s in samples.items()]


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def table(title: str, rows: list[Row]) -> str:
    lines = [
        f"### {title}",
        "",
        "| driver | implementation | median ms | p95 ms | median / raw |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for driver, name, samples, baseline in rows:
        median = statistics.median(samples)
        ratio = median / statistics.median(baseline) if baseline else float("nan")
        lines.append(
            f"| {driver} | {name} | {median * 1e3:.3f} | {p95(samples) * 1e3:.3f} | {ratio:.3f}x |"
        )
    return "\n".join(lines)


def machine() -> str:
    names = ["psycopg", "psycopg2-binary", "asyncpg"]
    if official_available():
        names.append("aurora-dsql-python-connector")
    versions = ", ".join(f"{name} {version(name)}" for name in names)
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"Python {sys.version.split()[0]}, {versions}, libpq {psycopg.pq.version()} (psycopg) / "
        f"{psycopg2.__libpq_version__} (psycopg2)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args()
    rounds = 20 if args.quick else 200
    quotas = Quotas(connection_rate_per_second=1e6, connection_burst=10**6)
    # The endpoint runs in its own process: its CPU time must not be timed as the client's.
    with EndpointProcess(quotas=quotas) as ep, ep.use_environment():
        connect_rows = bench_connect(ep, rounds)
        query_rows = bench_query(ep, rounds // 4 or 1, 200)
    report = "\n\n".join(
        [
            "# Connect and query latency (benchmarks/bench_connect.py)",
            f"Machine: {machine()}. The machine may be shared: compare ratios, not absolute times.",
            f"{rounds} connects per implementation, interleaved; targets: dsqlkit <= 1.03x the raw "
            "driver for connect, 1.00x for queries.",
            table("Connect each time (local endpoint, verify-full TLS)", connect_rows),
            table("Query latency on an open connection", query_rows),
        ]
    )
    print(report)
    if not args.quick:
        RESULTS.write_text(report + "\n")
        print(f"\nwritten: {RESULTS}")


if __name__ == "__main__":
    main()
