"""Timing, rounds, progress and the result dataclasses of ``dsqlkit bench``.

A *row* is one (driver, pattern, implementation). It runs ``rounds`` rounds (the original
measurement's Lambda invocations) of ``warmup`` discarded plus ``iterations`` timed iterations; the
statistics of each round are computed and the row reports their median across rounds, as the
original did. Connections and pools of the ``reuse`` and ``pool`` patterns survive across rounds,
like module-level objects in a warm Lambda container.

Example::

    from dsqlkit.bench import BenchConfig, Target, run_benchmark

    report = run_benchmark(BenchConfig(iterations=5, rounds=1), Target(host="...", region="..."))
    print(report.rows[0].connect.p50)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TextIO

from dsqlkit.bench import patterns
from dsqlkit.bench.patterns import (
    DRIVERS,
    IMPLEMENTATIONS,
    PATTERNS,
    Client,
    PatternState,
    Sample,
    Target,
)
from dsqlkit.bench.process import ClientModel, run_python
from dsqlkit.bench.throttle import lambda_cpu_share

__all__ = [
    "BenchConfig",
    "ColdStartResult",
    "Progress",
    "Report",
    "RowResult",
    "Stats",
    "Target",
    "percentile",
    "run_benchmark",
]


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) with linear interpolation between ranks (numpy's default).

    Example::

        >>> percentile([1, 2, 3, 4], 50)
        2.5
    """
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {p}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Stats:
    """Average and percentiles of one series of durations, in milliseconds."""

    avg: float
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> Stats:
        """Example: ``Stats.of([1.0, 2.0, 3.0]).p50 == 2.0``."""
        return cls(
            statistics.fmean(values_ms),
            percentile(values_ms, 50),
            percentile(values_ms, 95),
            percentile(values_ms, 99),
        )

    @classmethod
    def median_of(cls, rounds: Sequence[Stats]) -> Stats:
        """Field by field median across rounds (the original measurement's summary)."""
        return cls(
            *(
                statistics.median(getattr(s, f.name) for s in rounds)
                for f in dataclasses.fields(cls)
            )
        )


@dataclass
class RowResult:
    """One (driver, pattern, implementation): its numbers, or why it has none.

    ``status`` is ``ok``, ``error`` (``error`` says what failed) or ``skipped`` (``note`` says why:
    not applicable here, not a failure).
    """

    driver: str
    pattern: str
    implementation: str
    status: str = "ok"
    connect: Stats | None = None
    query: Stats | None = None
    total_ms: float | None = None
    queries_per_second: float | None = None
    pool_create_ms: float | None = None
    rounds: int = 0
    error: str | None = None
    note: str | None = None

    @property
    def label(self) -> str:
        return f"{self.driver} {self.pattern} {self.implementation}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RowResult:
        """The inverse of ``dataclasses.asdict`` (results.json, a child's answer)."""
        stats = {k: Stats(**data[k]) if data.get(k) else None for k in ("connect", "query")}
        return cls(**{**data, **stats})


@dataclass
class ColdStartResult:
    """A fresh process: import, first connection, first query (ms, medians across rounds)."""

    driver: str
    implementation: str
    status: str = "ok"
    import_ms: float | None = None
    connect_ms: float | None = None
    query_ms: float | None = None
    total_ms: float | None = None
    process_ms: float | None = None
    error: str | None = None
    note: str | None = None
    #: dsqlkit rows: what ``import dsqlkit.<driver>`` adds to ``import <driver>`` alone
    #: (:func:`~dsqlkit.bench.import_cost.measure_import_cost`, unthrottled, ``-X importtime``).
    import_added_ms: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColdStartResult:
        return cls(**data)


@dataclass(frozen=True)
class BenchConfig:
    """What to run. ``lambda_memory_mb`` runs every client process (rows and cold starts) at the
    CPU share of a Lambda function of that size (:func:`~dsqlkit.bench.throttle.lambda_cpu_share`);
    None: unthrottled."""

    iterations: int = 30
    rounds: int = 3
    warmup: int = 2
    query: str = "SELECT 1"
    concurrency: int = 1
    patterns: tuple[str, ...] = PATTERNS
    drivers: tuple[str, ...] = tuple(DRIVERS)
    implementations: tuple[str, ...] = IMPLEMENTATIONS
    cold_start: bool = True
    lambda_memory_mb: int | None = None

    def __post_init__(self) -> None:
        for name in ("iterations", "rounds", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be 0 or more, got {self.warmup}")
        if self.lambda_memory_mb is not None:
            lambda_cpu_share(self.lambda_memory_mb)  # refuses sizes Lambda does not have

    @property
    def cpu_share(self) -> float | None:
        """The client's CPU share under the Lambda model (None: a whole CPU)."""
        if self.lambda_memory_mb is None:
            return None
        return lambda_cpu_share(self.lambda_memory_mb)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchConfig:
        """The inverse of ``dataclasses.asdict`` (lists back to tuples; unknown keys ignored, so
        an older results.json still loads)."""
        known = {f.name for f in dataclasses.fields(cls)}
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
        }
        return cls(**fields)


@dataclass
class Report:
    """Everything one run measured, ready for :mod:`dsqlkit.bench.report`."""

    header: dict[str, Any]
    config: BenchConfig
    rows: list[RowResult] = field(default_factory=list)
    cold_start: list[ColdStartResult] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        """A report from ``results.json`` (or the Lambda example's answer, the same format)."""
        return cls(
            dict(data["header"]),
            BenchConfig.from_json(data["config"]),
            [RowResult.from_json(row) for row in data["rows"]],
            [ColdStartResult.from_json(cold) for cold in data.get("cold_start", [])],
        )

    @property
    def failed(self) -> list[RowResult | ColdStartResult]:
        """Rows and cold-start cases that ended in an error (skips are not failures)."""
        items: list[RowResult | ColdStartResult] = [*self.rows, *self.cold_start]
        return [item for item in items if item.status == "error"]


class Progress:
    """A plain-text progress line per step on stderr: ``[12/40] psycopg2 connect dsqlkit round 2/3``."""

    def __init__(self, total: int, stream: TextIO | None = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream

    def step(self, what: str) -> None:
        self.done += 1
        if self.stream is not None:
            print(f"[{self.done}/{self.total}] {what}", file=self.stream, flush=True)


def machine_header(endpoint: str) -> dict[str, Any]:
    """The run's context: machine, Python, driver versions, endpoint, date."""
    return {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "versions": patterns.driver_versions(),
        "endpoint": endpoint,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- running --------------------------------------------------------------------------------------


def run_benchmark(
    config: BenchConfig,
    target: Target,
    *,
    endpoint_label: str | None = None,
    progress_stream: TextIO | None = sys.stderr,
) -> Report:
    """Run every requested row (and the cold-start table) against ``target``; never raises for a
    row that fails: the row records its error.

    Example::

        report = run_benchmark(BenchConfig(iterations=2, rounds=1, warmup=0), target)
    """
    rows = [
        (d, p, i) for d in config.drivers for p in config.patterns for i in config.implementations
    ]
    cold = patterns.cold_start_cases(config.drivers, config.implementations)
    steps = (len(rows) + (len(cold) if config.cold_start else 0)) * config.rounds
    progress = Progress(steps, progress_stream)
    report = Report(machine_header(endpoint_label or target.host), config)
    model = ClientModel(config.cpu_share, target.resolve_mapping())
    # dsqlkit's process-wide new-connection limiter (50/s by default) is a policy, not a cost:
    # connect-each-time rows would be timed waiting on it.
    report.header["dsqlkit client rate limit"] = "off during the run"
    report.header["client"] = describe_model(config)
    report.rows, share = run_rows_in_child(rows, config, target, model, progress)
    if share is not None:
        report.header["client CPU share achieved"] = round(share, 4)
    if config.cold_start:
        report.cold_start = [
            _cold_start(driver, impl, config, target, model, progress) for driver, impl in cold
        ]
        add_import_costs(report.cold_start)
    return report


#: Fresh-process pairs per driver for the import-cost column (a few seconds in all).
IMPORT_COST_RUNS = 5


def add_import_costs(cold_start: list[ColdStartResult]) -> None:
    """Fill ``import_added_ms`` of the dsqlkit cold-start rows, measured once per driver package;
    a measurement that fails leaves the cell empty (the cold start itself still counts)."""
    from dsqlkit.bench.import_cost import MODULES, measure_import_cost

    costs: dict[str, float | None] = {}
    for result in cold_start:
        package = patterns.DRIVERS[result.driver].package
        if result.implementation != "dsqlkit" or result.status != "ok" or package not in MODULES:
            continue
        if package not in costs:
            try:
                costs[package] = measure_import_cost(package, runs=IMPORT_COST_RUNS).added_ms
            except Exception:  # a broken driver install shows in the cold start's own error
                costs[package] = None
        result.import_added_ms = costs[package]


def describe_model(config: BenchConfig) -> str:
    """One line: the client processes' CPU model."""
    if config.lambda_memory_mb is None:
        return "a fresh child process, unthrottled"
    return (
        f"a fresh child process at {config.cpu_share:.4f} of a CPU (Lambda {config.lambda_memory_mb}"
        " MB: memory / 1769 MB per vCPU; duty-cycle throttle, SIGSTOP/SIGCONT)"
    )


def run_rows_in_child(
    rows: list[tuple[str, str, str]],
    config: BenchConfig,
    target: Target,
    model: ClientModel,
    progress: Progress,
) -> tuple[list[RowResult], float | None]:
    """Run ``rows`` in one child process (a warm container) under ``model``; its rows and the
    CPU share it achieved. A child that dies makes every row an error with its last words."""
    job = {
        "config": dataclasses.asdict(config),
        "target": target.to_json(),
        "raw_password": _raw_password(rows, target),
        "rows": rows,
    }
    done = run_python(
        ["-m", "dsqlkit.bench.child"], model, stdin=json.dumps(job), on_progress=progress.step
    )
    if done.returncode == 0:
        return [RowResult.from_json(row) for row in json.loads(done.stdout)["rows"]], done.cpu_share
    error = f"the benchmark's client process failed: {done.last_error_line()}"
    return [RowResult(d, p, i, status="error", error=error) for d, p, i in rows], None


def _raw_password(rows: list[tuple[str, str, str]], target: Target) -> str | None:
    """The raw rows' token, made here (before anything is timed), or None if none is needed."""
    if not any(impl == "raw" for _, _, impl in rows):
        return None
    try:
        return target.raw_token()
    except Exception:  # the raw rows will report why, in the child
        return None


async def run_rows(
    rows: list[tuple[str, str, str]], config: BenchConfig, target: Target, progress: Progress
) -> list[RowResult]:
    """Run ``rows`` one after the other in this process (the child's side of the benchmark)."""
    return [await run_row(d, p, i, config, target, progress) for d, p, i in rows]


async def run_row(
    driver: str,
    pattern: str,
    implementation: str,
    config: BenchConfig,
    target: Target,
    progress: Progress | None = None,
) -> RowResult:
    """Run one row's rounds; errors and skips are recorded in the result, not raised."""
    row = RowResult(driver, pattern, implementation)
    try:
        client = patterns.make_client(driver, implementation, target)
    except patterns.Skip as skip:
        row.status, row.note = "skipped", str(skip)
    except Exception as exc:
        row.status, row.error = "error", patterns.describe_error(exc)
    if row.status != "ok":
        for _ in range(config.rounds):
            _step(progress, row, _ + 1, config.rounds)
        return row
    samples: list[Sample] = []
    state = PatternState()
    try:
        for number in range(1, config.rounds + 1):
            _step(progress, row, number, config.rounds)
            samples.append(await run_round(client, pattern, config, state))
    except Exception as exc:
        row.status, row.error = "error", patterns.describe_error(exc)
    finally:
        await state.close(client)
    if row.status == "ok":
        summarize(row, samples, state)
    return row


async def run_round(
    client: Client, pattern: str, config: BenchConfig, state: PatternState
) -> Sample:
    """One round (one Lambda invocation): ``warmup`` discarded iterations, then the timed ones."""
    run = patterns.PATTERN_FUNCTIONS[pattern]
    if config.warmup:
        await run(client, config.query, config.warmup, config.concurrency, state)
    return await run(client, config.query, config.iterations, config.concurrency, state)


def summarize(row: RowResult, samples: Sequence[Sample], state: PatternState) -> None:
    """Fill ``row``'s numbers from its rounds: per-round statistics, median across rounds."""
    row.rounds = len(samples)
    row.connect = Stats.median_of([Stats.of(s.connect_ms) for s in samples])
    row.query = Stats.median_of([Stats.of(s.query_ms) for s in samples])
    row.total_ms = statistics.median(s.wall_ms for s in samples)
    row.queries_per_second = statistics.median(
        len(s.query_ms) / (s.wall_ms / 1000) for s in samples
    )
    row.pool_create_ms = state.pool_create_ms


def _step(progress: Progress | None, row: RowResult, number: int, rounds: int) -> None:
    if progress is not None:
        progress.step(f"{row.label} round {number}/{rounds}")


# --- cold start -----------------------------------------------------------------------------------


def _cold_start(
    driver: str,
    implementation: str,
    config: BenchConfig,
    target: Target,
    model: ClientModel,
    progress: Progress,
) -> ColdStartResult:
    result = ColdStartResult(driver, implementation)
    runs: list[dict[str, float]] = []
    for number in range(1, config.rounds + 1):
        progress.step(f"cold start {driver} {implementation} round {number}/{config.rounds}")
        if result.status != "ok":
            continue
        try:
            runs.append(
                patterns.cold_start_once(driver, implementation, config.query, target, model)
            )
        except patterns.Skip as skip:
            result.status, result.note = "skipped", str(skip)
        except Exception as exc:
            result.status, result.error = "error", patterns.describe_error(exc)
    if result.status == "ok":
        for name in ("import", "connect", "query", "total", "process"):
            setattr(result, f"{name}_ms", statistics.median(run[name] for run in runs))
    return result


def timestamp_folder() -> str:
    """``YYYYmmdd-HHMMSS`` (UTC), the default results folder name."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())
