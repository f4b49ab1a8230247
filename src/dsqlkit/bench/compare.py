"""``dsqlkit bench compare A.json B.json``: two runs side by side, with ratios.

Reads ``results.json`` files written by ``dsqlkit bench`` or answered by the Lambda example's
handler (``examples/lambda``, the same format), for example its x86_64 and arm64 runs, which
reproduces the seed's architecture table from real Lambda runs. Rows are matched by (driver,
pattern, implementation); ``B/A`` below 1 means B is faster.

Example::

    dsqlkit bench compare x86.json arm64.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsqlkit.bench.report import _cells, _text_table, ratio
from dsqlkit.bench.runner import Report, RowResult


def load_results(path: Path) -> Report:
    """Read one results file; ValueError saying what is wrong for anything else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON ({exc.msg} at line {exc.lineno})") from exc
    missing = [key for key in ("header", "config", "rows") if key not in data]
    if not isinstance(data, dict) or missing:
        raise ValueError(
            f"{path} is not a dsqlkit bench results.json (missing {', '.join(missing) or 'all'}): "
            "pass the results.json of `dsqlkit bench` or the Lambda example's answer"
        )
    try:
        return Report.from_json(data)
    except (TypeError, KeyError) as exc:
        raise ValueError(f"{path}: unexpected results format ({exc})") from exc


def label(report: Report) -> str:
    """``x86_64, <endpoint>, <date>``: how a run is named in the comparison."""
    header = report.header
    return ", ".join(str(header[k]) for k in ("arch", "endpoint", "date") if header.get(k))


@dataclass
class _Pair:
    driver: str
    pattern: str
    implementation: str
    a: RowResult
    b: RowResult


def pairs(left: Report, right: Report) -> list[_Pair]:
    """Rows with numbers in both runs, in the left run's order."""
    right_rows = {(r.driver, r.pattern, r.implementation): r for r in right.rows}
    found = []
    for row in left.rows:
        other = right_rows.get((row.driver, row.pattern, row.implementation))
        if other is not None and row.status == other.status == "ok":
            found.append(_Pair(row.driver, row.pattern, row.implementation, row, other))
    return found


def _p50(row: RowResult, metric: str) -> float | None:
    stats = getattr(row, metric)
    return None if stats is None else stats.p50


_COLUMNS: list[tuple[str, Any]] = [
    ("driver", lambda p: p.driver),
    ("pattern", lambda p: p.pattern),
    ("impl", lambda p: p.implementation),
    ("conn p50 A", lambda p: _p50(p.a, "connect")),
    ("conn p50 B", lambda p: _p50(p.b, "connect")),
    ("conn B/A", lambda p: ratio(_p50(p.b, "connect"), _p50(p.a, "connect"))),
    ("query p50 A", lambda p: _p50(p.a, "query")),
    ("query p50 B", lambda p: _p50(p.b, "query")),
    ("query B/A", lambda p: ratio(_p50(p.b, "query"), _p50(p.a, "query"))),
]


def compare(left: Report, right: Report) -> str:
    """The side-by-side table (ms, p50) with B/A ratios, and the rows only one run has."""
    found = pairs(left, right)
    lines = [f"A: {label(left)}", f"B: {label(right)}", ""]
    if not found:
        return "\n".join([*lines, "no row has numbers in both runs"])
    lines.append(_text_table(_COLUMNS, _cells(found, _COLUMNS)))
    matched = {(p.driver, p.pattern, p.implementation) for p in found}
    for name, report in (("A", left), ("B", right)):
        alone = [
            r.label for r in report.rows if (r.driver, r.pattern, r.implementation) not in matched
        ]
        if alone:
            lines.append(f"only in {name} (or not ok in both): {', '.join(alone)}")
    return "\n".join(lines)


def write_compare_chart(left: Report, right: Report, path: Path) -> Path | None:
    """Grouped bars: connect and query p50 of A and B per row (log scale)."""
    found = pairs(left, right)
    if not found:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{p.driver}\n{p.pattern}\n{p.implementation}" for p in found]
    figure, axes = plt.subplots(2, 1, figsize=(max(8, len(found) * 0.8), 8))
    for axis, metric in zip(axes, ("connect", "query"), strict=True):
        for offset, tag in enumerate(("a", "b")):
            values = [_p50(getattr(p, tag), metric) or 0.0 for p in found]
            axis.bar([i + offset * 0.4 for i in range(len(found))], values, 0.4, label=tag.upper())
        axis.set_xticks([i + 0.2 for i in range(len(found))])
        axis.set_xticklabels(names, fontsize=7)
        axis.set_ylabel(f"{metric} p50 (ms)")
        axis.set_yscale("log")
        axis.legend()
    axes[0].set_title(f"A: {label(left)}\nB: {label(right)}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
