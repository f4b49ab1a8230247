"""Statistics and report formatting of ``dsqlkit bench``, on known inputs (no database)."""

from __future__ import annotations

import json

import pytest

from dsqlkit.bench.command import UsageError, parse_names
from dsqlkit.bench.patterns import DRIVERS, PATTERNS, PatternState, Sample, describe_error
from dsqlkit.bench.report import (
    format_number,
    format_summary,
    format_table,
    ratio,
    to_json,
    to_markdown,
    write_all,
)
from dsqlkit.bench.runner import (
    BenchConfig,
    ColdStartResult,
    Report,
    RowResult,
    Stats,
    percentile,
    summarize,
)
from dsqlkit.cli import main


def test_percentile_interpolates_between_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 50) == 30.0
    assert percentile(values, 100) == 50.0
    assert percentile(values, 95) == pytest.approx(48.0)
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5  # unsorted input
    assert percentile(list(map(float, range(1, 101))), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize(("values", "p"), [([], 50), ([1.0], 101), ([1.0], -1)])
def test_percentile_refuses_bad_input(values: list[float], p: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, p)


def test_stats_and_median_across_rounds() -> None:
    stats = Stats.of([1.0, 2.0, 3.0, 4.0])
    assert stats.avg == 2.5 and stats.p50 == 2.5
    rounds = [Stats(1, 2, 3, 4), Stats(5, 6, 7, 8), Stats(3, 1, 9, 0)]
    assert Stats.median_of(rounds) == Stats(3, 2, 7, 4)


def test_summarize_takes_medians_of_round_statistics() -> None:
    samples = []
    for scale in (1.0, 3.0, 2.0):
        sample = Sample(wall_ms=100.0 * scale)
        for value in (1.0, 2.0, 3.0, 4.0):
            sample.add(value * scale / 1000, value * scale / 2000)
        samples.append(sample)
    row = RowResult("psycopg2", "connect", "dsqlkit")
    state = PatternState(pool_create_ms=12.5)
    summarize(row, samples, state)
    assert row.rounds == 3
    assert row.connect == Stats.of([2.0, 4.0, 6.0, 8.0])  # the middle round (scale 2)
    assert row.query is not None and row.query.p50 == pytest.approx(2.5)
    assert row.total_ms == 200.0
    assert row.queries_per_second == pytest.approx(4 / 0.2)
    assert row.pool_create_ms == 12.5


def _report() -> Report:
    ok = RowResult(
        "asyncpg", "pool", "dsqlkit", connect=Stats(0.02, 0.02, 0.03, 0.04),
        query=Stats(2.5, 2.44, 3.1, 4.0), total_ms=75.0, queries_per_second=400.0,
        pool_create_ms=812.0, rounds=3,
    )  # fmt: skip
    failed = RowResult("psycopg2", "connect", "raw", status="error", error="OperationalError: no")
    skipped = RowResult("asyncpg", "connect", "official", status="skipped", note="not here")
    cold = ColdStartResult("asyncpg", "dsqlkit", import_ms=50.0, connect_ms=9.0, query_ms=1.0,
                           total_ms=60.0, process_ms=90.0)  # fmt: skip
    header = {
        "cpu": "Test CPU", "arch": "x86_64", "cores": 2, "os": "Linux", "python": "3.11.0",
        "versions": {"asyncpg": "0.30.0"}, "endpoint": "local", "date": "2026-01-01T00:00:00+00:00",
    }  # fmt: skip
    return Report(header, BenchConfig(iterations=5, rounds=3), [ok, failed, skipped], [cold])


def test_format_number_precision() -> None:
    assert format_number(None) == "-"
    assert format_number(873.4) == "873"
    assert format_number(12.954) == "12.95"
    assert format_number(0.01234) == "0.0123"
    assert format_number(0.0) == "0"
    assert format_number("ok") == "ok"


def test_terminal_table_lists_every_row_and_the_errors() -> None:
    text = format_table(_report())
    lines = text.splitlines()[1:]  # under the title
    assert lines[0].split()[:4] == ["driver", "pattern", "impl", "conn"]
    assert any(
        line.split()[:3] == ["asyncpg", "pool", "dsqlkit"] and "2.44" in line for line in lines
    )
    assert "psycopg2 connect raw: error: OperationalError: no" in text
    assert "asyncpg connect official: skipped: not here" in text
    assert "Cold start" in text
    # Columns line up: every table line of the first table has the same width as its header rule.
    assert len(lines[1]) >= max(len(line) for line in lines[2:5])


def _row(driver: str, pattern: str, impl: str, connect: float, query: float) -> RowResult:
    return RowResult(
        driver, pattern, impl, connect=Stats(connect, connect, connect, connect),
        query=Stats(query, query, query, query), total_ms=1.0, queries_per_second=1.0, rounds=1,
    )  # fmt: skip


def test_summary_gives_one_request_per_implementation_and_the_ratios() -> None:
    rows = [
        _row("psycopg2", "connect", "dsqlkit", 40.0, 10.0),
        _row("psycopg2", "connect", "official", 490.0, 10.0),
        _row("psycopg2", "connect", "raw", 45.0, 5.0),
        _row("psycopg2", "reuse", "dsqlkit", 0.001, 2.0),
        RowResult("psycopg2", "reuse", "official", status="error", error="no"),
    ]
    report = Report(_report().header, BenchConfig(), rows, [])
    lines = format_summary(report).splitlines()
    cells = {tuple(line.split()[:2]): line.split()[2:] for line in lines[3:]}
    # connect + query p50: 50 / 500 / 50 ms; official/dsqlkit 10x, dsqlkit/raw 1.00x.
    assert cells["psycopg2", "connect"] == ["50.00", "500", "50.00", "10.0x", "1.00x"]
    assert cells["psycopg2", "reuse"] == ["2.00", "-", "-", "-", "-"]
    assert "The seed" not in lines[0]  # the seed's table only with --seed


def test_seed_summary_puts_the_published_numbers_beside_the_model() -> None:
    rows = [
        _row("psycopg2", "connect", "official", 436.5, 13.0),
        _row("psycopg2", "connect", "dsqlkit", 87.3, 13.0),
    ]
    header = {**_report().header, "preset": "seed", "model": "Lambda 256 MB"}
    text = format_summary(Report(header, BenchConfig(), rows, []))
    lines = text.splitlines()
    line = next(
        x for x in lines if x.startswith("psycopg2, connect each time") and "connect " in x[28:]
    )
    assert line.split()[-6:] == ["873", "674", "436", "0.50x", "87.30", "0.20x"]
    assert "asyncpg, reuse (pool of min 1)" in text and "Lambda 256 MB" in text
    assert "## The seed's question" in to_markdown(Report(header, BenchConfig(), rows, []))


def test_ratio_formats() -> None:
    assert ratio(873.0, 87.3) == "10.0x"
    assert ratio(1.0, 3.0) == "0.33x"
    assert ratio(1.0, 40.0) == "0.025x"
    assert ratio(500.0, 2.0) == "250x"
    assert ratio(None, 1.0) == ratio(1.0, None) == ratio(1.0, 0.0) == "-"


def test_json_and_markdown_structure(tmp_path) -> None:
    report = _report()
    data = to_json(report)
    assert set(data) == {"header", "config", "rows", "cold_start"}
    assert data["rows"][0]["connect"] == {"avg": 0.02, "p50": 0.02, "p95": 0.03, "p99": 0.04}
    assert data["rows"][1]["error"] == "OperationalError: no" and data["rows"][1]["connect"] is None
    assert data["config"]["iterations"] == 5
    markdown = to_markdown(report)
    table = [
        line for line in markdown.splitlines() if line.startswith("| asyncpg | pool | dsqlkit")
    ]
    assert len(table) == 1 and table[0].count("|") == 16
    assert "## Cold start" in markdown and "## Notes" in markdown
    written = write_all(report, tmp_path / "out", chart=False)
    assert [p.name for p in written] == ["results.json", "results.md"]
    assert json.loads(written[0].read_text())["rows"][2]["status"] == "skipped"


def test_chart_is_a_png(tmp_path) -> None:
    written = write_all(_report(), tmp_path, chart=True)
    png = tmp_path / "results.png"
    assert png in written and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parse_names_lists_the_valid_ones() -> None:
    assert parse_names("pool, connect,pool", PATTERNS, "pattern") == ("pool", "connect")
    with pytest.raises(UsageError) as error:
        parse_names("psycopg2,mysql", list(DRIVERS), "driver")
    assert "mysql" in str(error.value) and "psycopg2, psycopg, psycopg_async, asyncpg" in str(
        error.value
    )


def test_unknown_driver_is_a_usage_error(capsys, tmp_path) -> None:
    code = main(["bench", "--drivers", "mysql", "--output", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown driver: mysql" in err and "asyncpg" in err
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


def test_bad_numbers_are_usage_errors(capsys) -> None:
    assert main(["bench", "--iterations", "0"]) == 2
    assert "iterations must be at least 1" in capsys.readouterr().err


def test_errors_hide_token_signatures() -> None:
    token = "h/?Action=DbConnectAdmin&X-Amz-Credential=AKIDEXAMPLE%2F2026&X-Amz-Signature=abc123"
    text = describe_error(RuntimeError(f"bad password {token}"))
    assert "abc123" not in text and "AKIDEXAMPLE" not in text
    assert text.startswith("RuntimeError: bad password")
