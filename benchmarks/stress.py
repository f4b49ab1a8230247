"""Load figures for the local endpoint: the money-transfer workload of ``tests/stress``.

Runs ``--clients`` clients (mostly asyncpg, some psycopg async and psycopg2) for ``--seconds``
against a fresh LocalEndpoint, optionally killing and restarting its PostgreSQL every
``--kill-every`` seconds, then checks the invariants (total constant, nothing half-applied or
applied twice) and prints/records the figures: clients, duration, transfers, reads, errors by kind.

Run::

    .venv/bin/python benchmarks/stress.py --clients 200 --seconds 120 \\
        --output benchmarks/results/stress.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the workload lives in tests/stress

from tests.stress.workload import (
    Figures,
    LoadConfig,
    check_invariants,
    create_schema,
    run_load,
)

from dsqlkit.local import LocalEndpoint


def _faults(ep: LocalEndpoint, every: float, down: float, seconds: float):  # type: ignore[no-untyped-def]
    async def fault(figures: Figures) -> None:
        while True:
            await asyncio.sleep(every)
            await asyncio.to_thread(ep.kill_backend)
            figures.errors["fault:backend_killed"] += 1
            await asyncio.sleep(down)
            await asyncio.to_thread(ep.restart_backend)

    async def bounded(figures: Figures) -> None:
        # Stop injecting before the clients' deadline so the run ends on a healthy backend.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(fault(figures), timeout=max(0.0, seconds - every / 2))

    return bounded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--kill-every", type=float, default=0.0, help="0: no backend kills")
    parser.add_argument("--output", type=Path, help="append a Markdown row/section here")
    args = parser.parse_args(argv)
    config = LoadConfig(clients=args.clients, seconds=args.seconds, op_timeout=30)
    with LocalEndpoint(trust_environment=False) as ep, ep.use_environment():
        create_schema(ep, config)
        during = _faults(ep, args.kill_every, 1.0, args.seconds) if args.kill_every else None
        figures = asyncio.run(run_load(ep, config, during=during))
        check_invariants(ep, config, figures)
        stats = ep.stats()
    print(figures.summary())
    print(f"invariants: ok; endpoint sessions open after the run: {stats.client_sessions_open}")
    if args.output:
        _record(args, figures, stats.client_sessions_open)
    return 0


def _record(args: argparse.Namespace, figures: Figures, open_after: int) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    errors = ", ".join(f"{k} {v}" for k, v in sorted(figures.errors.items())) or "none"
    clients = ", ".join(f"{k} {v}" for k, v in sorted(figures.clients.items()))
    row = (
        f"| {when} | {sum(figures.clients.values())} ({clients}) | {figures.seconds:.0f} s | "
        f"{args.kill_every or '-'} | {figures.transfers} ({figures.transfers / figures.seconds:.0f}/s)"
        f" | {figures.reads} | {errors} | ok | {open_after} |\n"
    )
    if not args.output.exists():
        args.output.write_text(
            "# Stress: money-transfer load on the local endpoint\n\n"
            f"Machine: {platform.machine()}, {platform.python_version()}; "
            "`benchmarks/stress.py` (workload: `tests/stress/workload.py`).\n\n"
            "| when | clients | duration | kill every (s) | transfers | reads | errors by kind"
            " | invariants | sessions open after |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
        )
    with args.output.open("a") as out:
        out.write(row)


if __name__ == "__main__":
    raise SystemExit(main())
