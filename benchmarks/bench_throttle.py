"""The Lambda CPU model: a CPU-bound loop under ``--lambda-memory MB`` takes about 1/share as long.

Run: ``.venv/bin/python benchmarks/bench_throttle.py [--work-ms 300]``. Prints a table and writes
``benchmarks/results/throttle.md``.

Each case runs the same CPU-bound loop (about ``--work-ms`` of CPU) in a fresh child process under
:class:`dsqlkit.bench.throttle.DutyCycleThrottle`, the mechanism ``dsqlkit bench --lambda-memory``
uses, and reports the child's wall time, its CPU time and their ratio (the share it really got)
against Lambda's share for that memory (memory / 1,769 MB). The unthrottled run is the baseline;
``slowdown`` is wall time / the baseline's wall time, to compare with 1/share. On a machine shared
with other work the baseline is itself slowed, so the achieved share (CPU / wall) is the figure
to read first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from dsqlkit.bench.runner import machine_header
from dsqlkit.bench.throttle import DEFAULT_PERIOD_S, DutyCycleThrottle, lambda_cpu_share

RESULTS = Path(__file__).parent / "results" / "throttle.md"
MEMORY_SIZES = (None, 1024, 512, 256, 128)

_LOOP = """
import json, sys, time
def loop(n):
    total = 0
    for i in range(n):
        total += i * i
    return total
w0, c0 = time.perf_counter(), time.process_time()
loop(int(sys.argv[1]))
print(json.dumps({"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0}))
"""


def _loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def _calibrate(work_ms: float) -> int:
    """Loop iterations that take about ``work_ms`` of CPU here."""
    n, start = 1_000_000, time.process_time()
    _loop(n)
    per_iteration = (time.process_time() - start) / n
    return max(1, int(work_ms / 1000 / per_iteration))


def run_case(iterations: int, share: float) -> dict[str, float]:
    process = subprocess.Popen(
        [sys.executable, "-c", _LOOP, str(iterations)], stdout=subprocess.PIPE, text=True
    )
    with DutyCycleThrottle(process.pid, share):
        out, _ = process.communicate()
    result = json.loads(out)
    return {"wall_ms": result["wall"] * 1000, "cpu_ms": result["cpu"] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-ms", type=float, default=300.0, help="CPU work per case (300)")
    args = parser.parse_args()
    iterations = _calibrate(args.work_ms)
    rows = []
    baseline = None
    for memory in MEMORY_SIZES:
        share = 1.0 if memory is None else lambda_cpu_share(memory)
        case = run_case(iterations, share)
        baseline = baseline or case["wall_ms"]
        rows.append(
            {
                "memory": "unthrottled" if memory is None else f"{memory} MB",
                "share": share,
                "expected": 1 / share,
                "slowdown": case["wall_ms"] / baseline,
                "achieved": case["cpu_ms"] / case["wall_ms"],
                **case,
            }
        )
        print(rows[-1], file=sys.stderr)
    text = _markdown(rows, args.work_ms)
    print(text)
    RESULTS.write_text(text, encoding="utf-8")


def _markdown(rows: list[dict[str, object]], work_ms: float) -> str:
    cpu = machine_header("")["cpu"]
    lines = [
        "# The Lambda CPU model (duty-cycle throttle)",
        "",
        "`.venv/bin/python benchmarks/bench_throttle.py"
        + ("" if work_ms == 300 else f" --work-ms {work_ms:g}")
        + "`",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Machine: {cpu}, {os.cpu_count()} cores (nproc), Python {platform.python_version()}",
        f"- A CPU-bound loop of about {work_ms:g} ms of CPU in a fresh process; throttle period "
        f"{DEFAULT_PERIOD_S * 1000:g} ms; share = memory / 1769 MB",
        "",
        "| Lambda memory | share | expected slowdown (1/share) | slowdown | achieved share "
        "(CPU / wall) | wall ms | CPU ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['memory']} | {row['share']:.4f} | {row['expected']:.2f}x | "
            f"{row['slowdown']:.2f}x | {row['achieved']:.4f} | {row['wall_ms']:.0f} | "
            f"{row['cpu_ms']:.0f} |"
        )
    baseline = rows[0]["achieved"]
    lines += [
        "",
        f"The unthrottled run itself got {baseline:.2f} of a CPU (a machine shared with other work),",
        "so its wall time is not a full core's: read the achieved share against the target share.",
        "On an idle core the slowdown is 1/share; here it is about achieved-unthrottled / share.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
