"""``dsqlkit bench``: which driver and connection pattern to choose, measured.

Run it from the shell (``dsqlkit bench --help``) or from Python::

    from dsqlkit.bench import BenchConfig, run_benchmark
    from dsqlkit.bench.command import local_target
    from dsqlkit.local import LocalEndpoint

    with LocalEndpoint() as ep, ep.use_environment():
        report = run_benchmark(BenchConfig(iterations=10, rounds=1), local_target(ep))
    print(report.rows[0].connect.p50)

Modules: :mod:`~dsqlkit.bench.patterns` (the patterns and driver adapters),
:mod:`~dsqlkit.bench.runner` (timing, rounds, results), :mod:`~dsqlkit.bench.report` (table,
JSON, Markdown, PNG), :mod:`~dsqlkit.bench.command` (the CLI).
"""

from dsqlkit.bench.patterns import Target
from dsqlkit.bench.runner import (
    BenchConfig,
    ColdStartResult,
    Report,
    RowResult,
    Stats,
    run_benchmark,
)

__all__ = [
    "BenchConfig",
    "ColdStartResult",
    "Report",
    "RowResult",
    "Stats",
    "Target",
    "run_benchmark",
]
