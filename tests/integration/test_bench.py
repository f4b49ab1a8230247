"""``dsqlkit bench`` end to end against the local endpoint: real drivers, real TLS, real tokens.

Few iterations, one round, no warm-up: these tests check that every requested row produces
numbers and that the reports have their structure, never how fast anything is.
"""

from __future__ import annotations

import dataclasses
import json
import math
import socket
from pathlib import Path

import pytest

from dsqlkit.bench import BenchConfig, RowResult, run_benchmark
from dsqlkit.bench.command import local_target
from dsqlkit.bench.patterns import DRIVERS, IMPLEMENTATIONS, PATTERNS, cold_start_once
from dsqlkit.bench.storm import StormConfig, run_storm
from dsqlkit.cli import main


def _assert_numbers(row: RowResult | dict) -> None:
    data = row if isinstance(row, dict) else row.__dict__
    label = f"{data['driver']} {data['pattern']} {data['implementation']}"
    assert data["status"] == "ok", f"{label}: {data['error'] or data['note']}"
    for metric in ("connect", "query"):
        stats = data[metric] if isinstance(data[metric], dict) else data[metric].__dict__
        for name, value in stats.items():
            assert math.isfinite(value) and value >= 0, f"{label} {metric} {name} = {value}"
    assert data["queries_per_second"] > 0 and math.isfinite(data["queries_per_second"])
    assert data["total_ms"] > 0


def test_every_row_runs_on_the_local_endpoint(dsql_endpoint, dsql_environ) -> None:
    config = BenchConfig(iterations=2, rounds=1, warmup=0, concurrency=2, cold_start=False)
    report = run_benchmark(config, local_target(dsql_endpoint), progress_stream=None)
    assert len(report.rows) == len(DRIVERS) * len(PATTERNS) * len(IMPLEMENTATIONS)
    # Every cell, official asyncpg included: the client process resolves the DSQL name locally.
    for row in report.rows:
        _assert_numbers(row)
        assert row.query is not None and row.query.p50 > 0  # a round trip is never free
        if row.pattern == "connect":
            assert row.connect is not None and row.connect.p50 > 0
        if row.pattern == "pool":
            assert row.pool_create_ms is not None and row.pool_create_ms > 0
    assert report.failed == []
    assert report.header["endpoint"] == dsql_endpoint.host
    assert {"cpu", "arch", "cores", "python", "versions", "date"} <= set(report.header)


def test_cold_start_table(dsql_endpoint, dsql_environ) -> None:
    config = BenchConfig(
        iterations=1, rounds=1, warmup=0, drivers=("psycopg2", "asyncpg"),
        patterns=("reuse",), implementations=("dsqlkit", "official"),
    )  # fmt: skip
    report = run_benchmark(config, local_target(dsql_endpoint), progress_stream=None)
    cold = {(c.driver, c.implementation): c for c in report.cold_start}
    assert set(cold) == {(d, i) for d in config.drivers for i in config.implementations}
    for key in cold:
        result = cold[key]
        assert result.status == "ok", f"{key}: {result.error}"
        parts = [result.import_ms, result.connect_ms, result.query_ms]
        assert all(p is not None and p > 0 for p in parts)
        assert result.total_ms == pytest.approx(sum(parts))  # type: ignore[arg-type]
        assert result.process_ms is not None and result.process_ms > result.total_ms  # type: ignore[operator]
        if key[1] == "dsqlkit":  # the import-cost column: a measured difference, either sign
            assert result.import_added_ms is not None and math.isfinite(result.import_added_ms)
        else:
            assert result.import_added_ms is None


def test_official_asyncpg_still_verifies_the_certificate(dsql_endpoint, dsql_environ) -> None:
    """The shim only changes where a name points: a name the endpoint's certificate does not
    cover, pointed at the endpoint, is refused by TLS verification in the client process."""
    uncovered = "notthisclusteraaaaaaaaaaaa.dsql.us-east-1.on.aws"
    assert uncovered not in dsql_endpoint.hostnames
    target = dataclasses.replace(local_target(dsql_endpoint), dsql_host=uncovered)
    with pytest.raises(RuntimeError, match=r"(?i)certificate|hostname"):
        cold_start_once("asyncpg", "official", "SELECT 1", target)
    good = cold_start_once("asyncpg", "official", "SELECT 1", local_target(dsql_endpoint))
    assert good["connect"] > 0


def _cluster_args(dsql_endpoint, port: int | None = None) -> list[str]:
    """The CLI pointed at the session endpoint as if it were a cluster (no second endpoint)."""
    return [
        "bench", "--endpoint", dsql_endpoint.host, "--port", str(port or dsql_endpoint.port),
        "--region", dsql_endpoint.region, "--sslrootcert", str(dsql_endpoint.ca_file),
        "--iterations", "2", "--rounds", "1", "--warmup", "0", "--quiet",
    ]  # fmt: skip


def test_command_writes_json_markdown_and_chart(
    dsql_endpoint, dsql_environ, tmp_path, capsys
) -> None:
    out = tmp_path / "results"
    args = [
        *_cluster_args(dsql_endpoint),
        "--drivers", "psycopg,asyncpg", "--implementations", "dsqlkit,raw",
        "--no-cold-start", "--output", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "results.json" in printed and "asyncpg" in printed
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md", "results.png"]
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["drivers"] == ["psycopg", "asyncpg"]
    assert len(data["rows"]) == 2 * len(PATTERNS) * 2
    for row in data["rows"]:
        _assert_numbers(row)
    markdown = (out / "results.md").read_text()
    # One summary line per pattern, then one line per pattern and implementation.
    assert markdown.count("| psycopg |") == len(PATTERNS) + len(PATTERNS) * 2
    assert markdown.index("## Summary") < markdown.index("## All rows")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_refusing_endpoint_records_errors_and_exits_1(
    dsql_endpoint, dsql_environ, tmp_path
) -> None:
    out = tmp_path / "refused"
    args = [
        *_cluster_args(dsql_endpoint, port=_closed_port()),
        "--drivers", "psycopg2", "--patterns", "connect", "--implementations", "dsqlkit,raw",
        "--no-cold-start", "--json-only", "--output", str(out),
    ]  # fmt: skip
    assert main(args) == 1
    assert [p.name for p in Path(out).iterdir()] == ["results.json"]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [row["status"] for row in rows] == ["error", "error"]
    assert all(row["connect"] is None and row["error"] for row in rows)
    assert all(
        "refused" in row["error"].lower() or "connect" in row["error"].lower() for row in rows
    )


def test_storm_accounting_against_the_endpoints_own_counters() -> None:
    """12 cold containers, a bucket of 4 refilled at 2/s: without backoff every refused
    connection is one failed invocation, and every container ends up served."""
    config = StormConfig(
        containers=12, burst=4, rate=2.0, warm=1, interval_s=0.2,
        variants=("dsqlkit-no-backoff",), timeout_s=60,
    )  # fmt: skip
    report = run_storm(config, progress=None)
    (result,) = report.results
    assert result.crashed == 0 and result.served == 12
    assert result.invocations_ok == 12 * 2
    assert result.admitted == 12  # the endpoint's count: one connection per container
    assert result.refused_53400 == result.invocations_failed >= 1
    assert result.errors == {"53400 rate exceeded": result.invocations_failed}
    assert result.all_serving_s is not None and result.timeline[-1][1:] == (
        12,
        result.refused_53400,
    )
