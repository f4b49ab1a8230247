"""The benchmark's outputs: a table for the terminal, JSON, Markdown and a PNG chart.

Example::

    from dsqlkit.bench.report import write_all, format_table
    print(format_table(report))
    paths = write_all(report, Path("bench-results/run1"), chart=True)
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsqlkit.bench import seed
from dsqlkit.bench.runner import ColdStartResult, Report, RowResult, Stats
from dsqlkit.bench.storm import StormReport, per_second
from dsqlkit.bench.storm import to_json as storm_json

#: (heading, how to get the value from a row) of the results table, shared by terminal and Markdown.
_ROW_COLUMNS: list[tuple[str, Any]] = [
    ("driver", lambda r: r.driver),
    ("pattern", lambda r: r.pattern),
    ("impl", lambda r: r.implementation),
    ("conn avg", lambda r: _stat(r.connect, "avg")),
    ("conn p50", lambda r: _stat(r.connect, "p50")),
    ("conn p95", lambda r: _stat(r.connect, "p95")),
    ("conn p99", lambda r: _stat(r.connect, "p99")),
    ("query avg", lambda r: _stat(r.query, "avg")),
    ("query p50", lambda r: _stat(r.query, "p50")),
    ("query p95", lambda r: _stat(r.query, "p95")),
    ("query p99", lambda r: _stat(r.query, "p99")),
    ("total ms", lambda r: r.total_ms),
    ("qps", lambda r: r.queries_per_second),
    ("pool ms", lambda r: r.pool_create_ms),
    ("status", lambda r: r.status),
]
_COLD_COLUMNS: list[tuple[str, Any]] = [
    ("driver", lambda c: c.driver),
    ("impl", lambda c: c.implementation),
    ("import ms", lambda c: c.import_ms),
    ("connect ms", lambda c: c.connect_ms),
    ("query ms", lambda c: c.query_ms),
    ("total ms", lambda c: c.total_ms),
    ("process ms", lambda c: c.process_ms),
    ("import +ms vs driver", lambda c: c.import_added_ms),
    ("status", lambda c: c.status),
]


#: Left-aligned columns; the others hold numbers and are right-aligned.
_TEXT_COLUMNS = frozenset({"driver", "pattern", "impl", "seed row", "time"})


def _per_request(row: RowResult | None) -> float | None:
    """What one request costs on this pattern: getting the connection plus the query (p50)."""
    if row is None or row.status != "ok" or row.connect is None or row.query is None:
        return None
    return row.connect.p50 + row.query.p50


def ratio(numerator: float | None, denominator: float | None) -> str:
    """``"10.4x"``, or ``-`` when either side is missing. Example: ``ratio(873, 87.3) == "10.0x"``."""
    if numerator is None or not denominator:
        return "-"
    value = numerator / denominator
    if value < 0.1:
        return f"{value:.2g}x"
    return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f}x"


@dataclass
class _SummaryRow:
    driver: str
    pattern: str
    by_impl: dict[str, float | None]


_SUMMARY_COLUMNS: list[tuple[str, Any]] = [
    ("driver", lambda s: s.driver),
    ("pattern", lambda s: s.pattern),
    ("dsqlkit", lambda s: s.by_impl.get("dsqlkit")),
    ("official", lambda s: s.by_impl.get("official")),
    ("raw", lambda s: s.by_impl.get("raw")),
    ("official/dsqlkit", lambda s: ratio(s.by_impl.get("official"), s.by_impl.get("dsqlkit"))),
    ("dsqlkit/raw", lambda s: ratio(s.by_impl.get("dsqlkit"), s.by_impl.get("raw"))),
]
_SUMMARY_TITLE = (
    "Summary: one request (get a connection + the query), p50 ms, lower is better; "
    "official/dsqlkit = how many times faster dsqlkit is"
)


def _summary_rows(report: Report) -> list[_SummaryRow]:
    by_key = {(r.driver, r.pattern, r.implementation): r for r in report.rows}
    groups = dict.fromkeys((r.driver, r.pattern) for r in report.rows)
    implementations = dict.fromkeys(r.implementation for r in report.rows)
    return [
        _SummaryRow(d, p, {i: _per_request(by_key.get((d, p, i))) for i in implementations})
        for d, p in groups
    ]


@dataclass
class _SeedLine:
    label: str
    what: str
    seed_x86: float
    seed_arm: float
    official: float | None
    dsqlkit: float | None


_SEED_COLUMNS: list[tuple[str, Any]] = [
    ("seed row", lambda s: s.label),
    ("time", lambda s: s.what),
    ("seed x86", lambda s: s.seed_x86),
    ("seed arm64", lambda s: s.seed_arm),
    ("official (model)", lambda s: s.official),
    ("model/seed x86", lambda s: ratio(s.official, s.seed_x86)),
    ("dsqlkit (model)", lambda s: s.dsqlkit),
    ("dsqlkit/official", lambda s: ratio(s.dsqlkit, s.official)),
]


def _seed_lines(report: Report) -> list[_SeedLine]:
    by_key = {(r.driver, r.pattern, r.implementation): r for r in report.rows}
    lines = []
    for row in seed.SEED_ROWS:
        official = by_key.get((row.driver, row.pattern, "official"))
        dsqlkit = by_key.get((row.driver, row.pattern, "dsqlkit"))
        for what, x86, arm in (
            ("connect", row.connect_x86, row.connect_arm),
            ("query", row.query_x86, row.query_arm),
        ):
            lines.append(
                _SeedLine(row.label, what, x86, arm, _p50(official, what), _p50(dsqlkit, what))
            )
    return lines


def _p50(row: RowResult | None, metric: str) -> float | None:
    if row is None or row.status != "ok":
        return None
    stats: Stats | None = getattr(row, metric)
    return None if stats is None else stats.p50


def _seed_title(report: Report) -> str:
    return (
        f"The seed's question, modelled here ({report.header.get('model', '')}); {seed.DESCRIPTION}"
    )


def _is_seed(report: Report) -> bool:
    return report.header.get("preset") == "seed"


def _stat(stats: Stats | None, name: str) -> float | None:
    return None if stats is None else getattr(stats, name)


def format_number(value: Any) -> str:
    """Numbers with a precision that suits their size; ``-`` for missing.

    Example: ``format_number(0.01234) == "0.0123"``, ``format_number(873.2) == "873"``.
    """
    if value is None:
        return "-"
    if not isinstance(value, float):
        return str(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _cells(items: Sequence[Any], columns: list[tuple[str, Any]]) -> list[list[str]]:
    return [[format_number(get(item)) for _, get in columns] for item in items]


def _notes(items: Sequence[RowResult | ColdStartResult], label: Any) -> list[str]:
    return [
        f"{label(item)}: {item.status}: {item.error or item.note}"
        for item in items
        if item.status != "ok"
    ]


def _row_label(row: RowResult) -> str:
    return row.label


def _cold_label(cold: ColdStartResult) -> str:
    return f"cold start {cold.driver} {cold.implementation}"


def format_summary(report: Report) -> str:
    """The short answer: per driver and pattern, one request's cost for each implementation and
    the ratios; with ``--seed``, the seed's published numbers beside the modelled ones first."""
    parts = []
    if _is_seed(report):
        parts += [
            _seed_title(report),
            _text_table(_SEED_COLUMNS, _cells(_seed_lines(report), _SEED_COLUMNS)),
            "",
        ]
    rows = _summary_rows(report)
    parts += [_SUMMARY_TITLE, _text_table(_SUMMARY_COLUMNS, _cells(rows, _SUMMARY_COLUMNS))]
    return "\n".join(parts)


def format_table(report: Report) -> str:
    """The results as aligned plain-text tables (times in ms, medians across rounds)."""
    parts = ["All rows (medians across rounds of each round's statistic, ms)"]
    parts.append(_text_table(_ROW_COLUMNS, _cells(report.rows, _ROW_COLUMNS)))
    if report.cold_start:
        parts += [
            "",
            "Cold start (fresh process: import + first connection + first query; import +ms vs driver: what import dsqlkit.<driver> adds to the driver alone)",
        ]
        parts.append(_text_table(_COLD_COLUMNS, _cells(report.cold_start, _COLD_COLUMNS)))
    notes = _notes(report.rows, _row_label) + _notes(report.cold_start, _cold_label)
    if notes:
        parts += ["", *notes]
    return "\n".join(parts)


def _text_table(columns: list[tuple[str, Any]], rows: list[list[str]]) -> str:
    headings = [name for name, _ in columns]
    widths = [max(len(cell) for cell in column) for column in zip(headings, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if heading in _TEXT_COLUMNS else cell.rjust(width)
            for heading, cell, width in zip(headings, cells, widths, strict=True)
        ).rstrip()

    return "\n".join([line(headings), line(["-" * w for w in widths]), *map(line, rows)])


def to_json(report: Report) -> dict[str, Any]:
    """The report as plain JSON-ready data: ``header``, ``config``, ``rows``, ``cold_start``."""
    return {
        "header": report.header,
        "config": {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(report.config).items()
        },
        "rows": [dataclasses.asdict(row) for row in report.rows],
        "cold_start": [dataclasses.asdict(cold) for cold in report.cold_start],
    }


def to_markdown(report: Report) -> str:
    """The report as Markdown: the run's context, the results table, cold start, notes."""
    header = report.header
    versions = ", ".join(f"{name} {version}" for name, version in header["versions"].items())
    config = report.config
    lines = [
        "# dsqlkit bench results",
        "",
        f"- Date: {header['date']}",
        f"- Endpoint: {header['endpoint']}",
        f"- Machine: {header['cpu']}, {header['arch']}, {header['cores']} cores, {header['os']}",
        f"- Python {header['python']}; {versions}",
        f"- {config.iterations} iterations x {config.rounds} rounds ({config.warmup} warm-up), "
        f"query `{config.query}`, pool concurrency {config.concurrency}",
        "- Times in milliseconds; each figure is the median across rounds of the round's statistic.",
        *(
            [f"- dsqlkit's client-side connection rate limit: {limit}"]
            if (limit := header.get("dsqlkit client rate limit"))
            else []
        ),
        *([f"- Client model: {model}"] if (model := header.get("model")) else []),
        *([f"- Client processes: {client}"] if (client := header.get("client")) else []),
        *(
            [f"- CPU share the rows' client process achieved: {share}"]
            if (share := header.get("client CPU share achieved"))
            else []
        ),
        "",
    ]
    if _is_seed(report):
        lines += [f"## {_seed_title(report)}", ""]
        lines += [_markdown_table(_SEED_COLUMNS, _cells(_seed_lines(report), _SEED_COLUMNS)), ""]
    lines += [f"## {_SUMMARY_TITLE}", ""]
    lines += [_markdown_table(_SUMMARY_COLUMNS, _cells(_summary_rows(report), _SUMMARY_COLUMNS))]
    lines += ["", "## All rows", ""]
    lines.append(_markdown_table(_ROW_COLUMNS, _cells(report.rows, _ROW_COLUMNS)))
    if report.cold_start:
        lines += [
            "",
            "## Cold start",
            "",
            "Fresh process: import + first connection + first query. `import +ms vs driver`: what"
            " `import dsqlkit.<driver>` adds to `import <driver>` alone (medians of fresh"
            " unthrottled processes, `-X importtime`; DESIGN.md's goal: <= 10 ms).",
            "",
        ]
        lines.append(_markdown_table(_COLD_COLUMNS, _cells(report.cold_start, _COLD_COLUMNS)))
    notes = _notes(report.rows, _row_label) + _notes(report.cold_start, _cold_label)
    if notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def _markdown_table(columns: list[tuple[str, Any]], rows: list[list[str]]) -> str:
    headings = [name for name, _ in columns]
    align = ["---" if heading in _TEXT_COLUMNS else "---:" for heading in headings]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [headings, align, *rows])


def write_chart(report: Report, path: Path) -> Path | None:
    """Grouped bars of connect and query p50 per driver/pattern, one bar per implementation.

    Log scale when the values span more than two orders of magnitude. Returns None when no row
    has numbers. matplotlib (the ``bench`` extra) is imported only here.
    """
    rows = [row for row in report.rows if row.status == "ok"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys((row.driver, row.pattern) for row in rows))
    implementations = list(dict.fromkeys(row.implementation for row in rows))
    by_key = {(row.driver, row.pattern, row.implementation): row for row in rows}
    width = 0.8 / len(implementations)
    figure, axes = plt.subplots(2, 1, figsize=(max(8, len(groups) * 0.9), 8))
    for axis, metric in zip(axes, ("connect", "query"), strict=True):
        values_seen: list[float] = []
        for offset, impl in enumerate(implementations):
            values = []
            for driver, pattern in groups:
                row = by_key.get((driver, pattern, impl))
                stats = getattr(row, metric) if row else None
                values.append(stats.p50 if stats else 0.0)
            values_seen += [v for v in values if v > 0]
            positions = [index + offset * width for index in range(len(groups))]
            axis.bar(positions, values, width, label=impl)
        axis.set_xticks([i + width * (len(implementations) - 1) / 2 for i in range(len(groups))])
        axis.set_xticklabels([f"{d}\n{p}" for d, p in groups], fontsize=8)
        axis.set_ylabel(f"{metric} p50 (ms)")
        if values_seen and max(values_seen) / min(values_seen) > 100:
            axis.set_yscale("log")
        axis.legend()
    axes[0].set_title(f"dsqlkit bench: {report.header['endpoint']}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_all(
    report: Report, directory: Path, *, chart: bool = True, json_only: bool = False
) -> list[Path]:
    """Write ``results.json`` (always), ``results.md`` and ``results.png`` (unless turned off) to
    ``directory`` (created); return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "results.json"
    json_path.write_text(json.dumps(to_json(report), indent=2) + "\n", encoding="utf-8")
    written = [json_path]
    if json_only:
        return written
    markdown_path = directory / "results.md"
    markdown_path.write_text(to_markdown(report), encoding="utf-8")
    written.append(markdown_path)
    if chart:
        png = write_chart(report, directory / "results.png")
        if png is not None:
            written.append(png)
    return written


# --- the storm ------------------------------------------------------------------------------------

_STORM_COLUMNS: list[tuple[str, Any]] = [
    ("impl", lambda r: r.variant),
    ("containers", lambda r: r.containers),
    ("served", lambda r: r.served),
    ("failed invocations", lambda r: r.invocations_failed),
    ("ok invocations", lambda r: r.invocations_ok),
    ("53400 refusals", lambda r: r.refused_53400),
    ("all serving s", lambda r: r.all_serving_s),
    ("vs minimum", lambda r: r.versus),
]


@dataclass
class _StormLine:
    variant: str
    containers: int
    served: int
    invocations_failed: int
    invocations_ok: int
    refused_53400: int
    all_serving_s: float | None
    versus: str


def _storm_lines(report: StormReport) -> list[_StormLine]:
    minimum = report.config.minimum_s
    return [
        _StormLine(
            r.variant,
            r.containers,
            r.served,
            r.invocations_failed,
            r.invocations_ok,
            r.refused_53400,
            r.all_serving_s,
            ratio(r.all_serving_s, minimum),
        )
        for r in report.results
    ]


def _storm_title(report: StormReport) -> str:
    c = report.config
    return (
        f"Storm: {c.containers} cold containers at once ({c.driver}; each: import, connect, query, "
        f"then {c.warm} warm invocations every {c.interval_s:g} s); token bucket {c.rate:g}/s, "
        f"burst {c.burst}: theoretical minimum (N - burst) / rate = {c.minimum_s:.2f} s"
    )


def format_storm(report: StormReport) -> str:
    """The storm's table for the terminal, with the failures' kinds under it."""
    lines = _storm_lines(report)
    parts = [_storm_title(report), _text_table(_STORM_COLUMNS, _cells(lines, _STORM_COLUMNS))]
    for result in report.results:
        if result.errors:
            kinds = ", ".join(f"{count} x {kind}" for kind, count in result.errors.items())
            parts.append(f"{result.variant}: failed invocations: {kinds}")
    return "\n".join(parts)


def storm_markdown(report: StormReport) -> str:
    header = report.header
    lines = [
        "# dsqlkit bench storm",
        "",
        f"- Date: {header['date']}",
        f"- Machine: {header['cpu']}, {header['arch']}, {header['cores']} cores, {header['os']}",
        f"- Python {header['python']}",
        f"- {_storm_title(report)}",
        "",
        _markdown_table(_STORM_COLUMNS, _cells(_storm_lines(report), _STORM_COLUMNS)),
        "",
        *(
            f"- {r.variant}: failed invocations: "
            + ", ".join(f"{count} x {kind}" for kind, count in r.errors.items())
            for r in report.results
            if r.errors
        ),
    ]
    return "\n".join(lines) + "\n"


def write_storm_chart(report: StormReport, path: Path) -> Path | None:
    """Per variant: connections admitted and refused (53400) per second, with the bucket's
    minimum and the moment every container was serving."""
    if not report.results:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(report.results)
    figure, axes = plt.subplots(count, 1, figsize=(9, 2.6 * count), sharex=True, squeeze=False)
    for axis, result in zip(axes[:, 0], report.results, strict=True):
        seconds = per_second(result.timeline)
        xs = [s for s, _, _ in seconds]
        axis.bar(xs, [a for _, a, _ in seconds], 0.8, label="admitted", color="tab:green")
        axis.bar(
            xs, [r for _, _, r in seconds], 0.8, bottom=[a for _, a, _ in seconds],
            label="refused (53400)", color="tab:red",
        )  # fmt: skip
        axis.axvline(report.config.minimum_s, color="black", linestyle="--", label="bucket minimum")
        if result.all_serving_s is not None:
            axis.axvline(result.all_serving_s, color="tab:blue", label="all serving")
        axis.set_title(
            f"{result.variant}: {result.invocations_failed} failed invocations, "
            f"{result.refused_53400} refusals",
            fontsize=9,
        )
        axis.set_ylabel("connections/s")
        axis.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel(
        "seconds since the go (every container initialised, first requests sent)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_storm(report: StormReport, directory: Path, *, chart: bool = True) -> list[Path]:
    """``storm.json``, ``storm.md`` and ``storm.png`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "storm.json"
    json_path.write_text(json.dumps(storm_json(report), indent=2) + "\n", encoding="utf-8")
    markdown = directory / "storm.md"
    markdown.write_text(storm_markdown(report), encoding="utf-8")
    written = [json_path, markdown]
    if chart and (png := write_storm_chart(report, directory / "storm.png")) is not None:
        written.append(png)
    return written
