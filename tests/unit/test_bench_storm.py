"""The storm's accounting and report, and ``dsqlkit bench compare``, on known inputs."""

from __future__ import annotations

import json

import pytest

from dsqlkit.bench.compare import compare, load_results
from dsqlkit.bench.report import format_storm, write_all, write_storm
from dsqlkit.bench.runner import BenchConfig, Report, RowResult, Stats
from dsqlkit.bench.storm import StormConfig, StormReport, account, per_second
from dsqlkit.cli import main

START = 1000.0


def _container(*events: tuple[float, str]) -> dict[str, object]:
    return {
        "started": START - 5,
        "imported": START - 1,
        "events": [
            [
                START + t,
                kind,
                None if kind == "ok" else "OperationalError: rate exceeded",
                START + t + 0.05,
            ]
            for t, kind in events
        ],
    }


def test_account_counts_invocations_and_the_last_container_to_serve() -> None:
    outputs = [
        _container((0.1, "ok"), (0.35, "ok")),
        _container((0.1, "failed"), (0.35, "failed"), (0.6, "ok"), (0.85, "ok")),
        _container((0.2, "ok"), (0.45, "ok")),
    ]
    result = account("official", START, outputs)
    assert (result.served, result.invocations_ok, result.invocations_failed) == (3, 6, 2)
    assert result.all_serving_s == pytest.approx(0.65)  # the end of its first good invocation
    assert result.errors == {"53400 rate exceeded": 2}
    assert result.versus_minimum(0.5) == pytest.approx(1.3)


def test_account_never_serving_and_crashed_containers() -> None:
    outputs = [_container((0.1, "ok")), _container((0.1, "failed")), None]
    result = account("dsqlkit", START, outputs)
    assert (result.served, result.crashed, result.invocations_failed) == (1, 1, 1)
    assert result.all_serving_s is None and result.versus_minimum(1.0) is None


def test_per_second_turns_cumulative_samples_into_rates() -> None:
    timeline = [(0.0, 0, 0), (0.5, 4, 6), (0.9, 5, 8), (2.2, 7, 8), (2.9, 9, 9)]
    assert per_second(timeline) == [(0, 5, 8), (1, 0, 0), (2, 4, 1)]
    assert per_second([]) == []


def test_storm_config_minimum_and_refusals() -> None:
    assert StormConfig(containers=200, burst=50, rate=20).minimum_s == 7.5
    assert StormConfig(containers=10, burst=50).minimum_s == 0
    with pytest.raises(ValueError, match="sync drivers"):
        StormConfig(driver="asyncpg")
    with pytest.raises(ValueError, match="valid are"):
        StormConfig(variants=("nope",))


def test_storm_report_table_and_chart(tmp_path) -> None:
    config = StormConfig(containers=3, burst=1, rate=4)
    result = account("official", START, [_container((0.1, "failed"), (0.6, "ok"))] * 3)
    result.refused_53400, result.timeline = 3, [(0.0, 0, 0), (0.2, 1, 3), (0.7, 3, 3)]
    header = {"date": "2026-12-01", "cpu": "CPU", "arch": "x86_64", "cores": 2, "os": "Linux",
              "python": "3.11"}  # fmt: skip
    report = StormReport(config, header, [result])
    text = format_storm(report)
    row = next(line.split() for line in text.splitlines() if line.startswith("official"))
    assert row == ["official", "3", "3", "3", "3", "3", "0.65", "1.30x"]
    assert "minimum (N - burst) / rate = 0.50 s" in text and "3 x 53400 rate exceeded" in text
    written = write_storm(report, tmp_path)
    assert [p.name for p in written] == ["storm.json", "storm.md", "storm.png"]
    assert json.loads(written[0].read_text())["minimum_s"] == 0.5
    assert written[2].read_bytes()[:4] == b"\x89PNG"


def _run(arch: str, psycopg2_connect: float) -> Report:
    def row(pattern: str, connect: float, query: float) -> RowResult:
        return RowResult("psycopg2", pattern, "dsqlkit", connect=Stats(connect, connect, connect,
                         connect), query=Stats(query, query, query, query), total_ms=1.0,
                         queries_per_second=1.0, rounds=1)  # fmt: skip

    header = {"arch": arch, "endpoint": "cluster", "date": "2026-12-01", "cpu": "CPU", "cores": 2,
              "os": "Linux", "python": "3.12", "versions": {}}  # fmt: skip
    rows = [row("connect", psycopg2_connect, 12.0), row("reuse", 0.02, 2.5)]
    if arch == "x86_64":
        rows.append(RowResult("asyncpg", "connect", "dsqlkit", status="error", error="x"))
    return Report(header, BenchConfig(), rows)


def test_compare_prints_both_runs_with_ratios(tmp_path, capsys) -> None:
    for name, arch, connect in (("a", "x86_64", 80.0), ("b", "arm64", 60.0)):
        write_all(_run(arch, connect), tmp_path / name, chart=False)
    a, b = tmp_path / "a" / "results.json", tmp_path / "b" / "results.json"
    text = compare(load_results(a), load_results(b))
    assert text.splitlines()[0].startswith("A: x86_64") and "B: arm64" in text
    line = next(x.split() for x in text.splitlines() if x.startswith("psycopg2  connect"))
    assert line[3:] == ["80.00", "60.00", "0.75x", "12.00", "12.00", "1.00x"]
    assert "only in A (or not ok in both): asyncpg connect dsqlkit" in text
    assert main(["bench", "compare", str(a), str(b), "--output", str(tmp_path / "c")]) == 0
    assert "0.75x" in capsys.readouterr().out
    assert (tmp_path / "c" / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_refuses_files_that_are_not_results(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}')
    assert main(["bench", "compare", str(bad), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a dsqlkit bench results.json (missing header, config)" in err
    assert main(["bench", "compare", str(tmp_path / "none.json"), str(bad)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["bench", "frobnicate"]) == 2
    assert "unknown action 'frobnicate'" in capsys.readouterr().err
