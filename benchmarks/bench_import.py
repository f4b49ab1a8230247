"""Import cost: ``import dsqlkit.<driver>`` over ``import <driver>`` alone, per driver.

Run: ``.venv/bin/python benchmarks/bench_import.py [--runs N]`` (default 7). Prints a table and
writes ``benchmarks/results/import.md``. Each run is a pair of fresh processes with
``-X importtime`` (driver alone, then dsqlkit's module): see ``dsqlkit.bench.import_cost``.
The goal (DESIGN.md): at most +10 ms for each driver. Also lists which modules the dsqlkit
process loads beyond the driver's own, so that a regression shows where it comes from.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from dsqlkit.bench.import_cost import GOAL_MS, MODULES, ImportCost, measure_import_cost
from dsqlkit.bench.runner import machine_header

RESULTS = Path(__file__).parent / "results" / "import.md"


def extra_modules(driver: str) -> list[str]:
    """The modules ``import dsqlkit.<driver>`` loads that ``import <driver>`` does not."""
    code = (
        f"import sys; import {driver}; before = set(sys.modules); import {MODULES[driver]}; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def machine() -> str:
    header = machine_header("none (imports only)")
    try:
        load = "load average {:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())
    except OSError:
        load = "load unknown"
    drivers = ", ".join(
        f"{name} {version(name)}" for name in ("psycopg2-binary", "psycopg", "asyncpg")
    )
    return (
        f"{header['cpu']}, nproc {header['cores']} (shared with other work, {load}), "
        f"Python {header['python']} on {header['os']}; {drivers}"
    )


def report(costs: list[ImportCost]) -> str:
    lines = [
        "# Import cost: `import dsqlkit.<driver>` vs `import <driver>` alone",
        "",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. "
        f"Machine: {machine()}.",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_import.py --runs {costs[0].runs}`; "
        f"medians over {costs[0].runs} pairs of fresh processes (`-X importtime`, the sum of "
        "every module's import time). *added* is the median of the per-pair differences, "
        "*dsqlkit's own* the self time of only the modules the driver alone does not load "
        "(insensitive to noise between processes), *added CPU* the CPU time of `import "
        "dsqlkit.<driver>` after `import <driver>` (insensitive to time spent descheduled). "
        f"Goal: added <= {GOAL_MS:.0f} ms.",
        "",
        "| driver | import driver (ms) | import dsqlkit.driver (ms) | added (ms) "
        "| dsqlkit's own modules (ms) | added CPU (ms) | within goal | modules added |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for cost in costs:
        extra = ", ".join(f"`{m}`" for m in extra_modules(cost.driver))
        lines.append(
            f"| {cost.driver} | {cost.driver_ms:.1f} | {cost.dsqlkit_ms:.1f} | "
            f"{cost.added_ms:+.1f} | {cost.own_ms:.1f} | {cost.added_cpu_ms:.1f} | "
            f"{'yes' if cost.within_goal else 'NO'} | {extra} |"
        )
    lines += [
        "",
        "What moved off the import path: the connector core (`dsqlkit._driver`: parameters, "
        "TLS, tokens, SigV4, rate limit, retry) loads at the first connect; psycopg_pool at the "
        "first use of a psycopg pool name; `OCCRetryConfig` / `is_occ_error` on first use "
        "(module `__getattr__`). On the sync connect path asyncio, logging, typing and ssl are "
        "not imported at all.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="pairs of processes per driver")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    costs = [measure_import_cost(driver, args.runs) for driver in MODULES]
    text = report(costs)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)
    return 0 if all(cost.within_goal for cost in costs) else 1


if __name__ == "__main__":
    sys.exit(main())
