"""The benchmark's client process: ``python -m dsqlkit.bench.child`` runs the rows it is given.

:func:`dsqlkit.bench.runner.run_rows_in_child` starts it (with the resolver shim and the CPU
model of :mod:`dsqlkit.bench.process`), writes one JSON job to its stdin
(``{"config", "target", "raw_password", "rows"}``) and reads ``{"rows": [...]}`` from its stdout;
progress lines go to stderr. The rows run one after the other, like invocations of one warm Lambda
container, with dsqlkit's client-side connection rate limit suspended (a policy, not a cost).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from typing import Any

from dsqlkit import ratelimit
from dsqlkit.bench.patterns import Target
from dsqlkit.bench.process import report_progress
from dsqlkit.bench.runner import BenchConfig, Progress, run_rows


class ChildProgress(Progress):
    """Progress that the parent prints: each step is one line on this process's stderr."""

    def step(self, what: str) -> None:
        report_progress(what)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run a job's rows; the answer the parent reads."""
    config = BenchConfig.from_json(job["config"])
    password = job.get("raw_password")
    target = Target(**job["target"], token=(lambda: password) if password else None)
    rows = [tuple(row) for row in job["rows"]]
    with ratelimit.suspended():
        results = asyncio.run(run_rows(rows, config, target, ChildProgress(len(rows), None)))
    return {"rows": [dataclasses.asdict(row) for row in results]}


def main() -> None:
    answer = run_job(json.loads(sys.stdin.read()))
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
