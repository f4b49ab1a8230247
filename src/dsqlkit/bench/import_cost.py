"""What ``import dsqlkit.<driver>`` costs over ``import <driver>`` alone, in fresh processes.

After one untimed run (which writes any missing bytecode, as an installed package has it), each
run starts two new interpreters with ``-X importtime``, one importing the driver, one
importing dsqlkit's module for it, back to back (so that a busy machine slows both alike), and
sums the import times of every module loaded. Reported as medians over the runs:
``driver_ms``, ``dsqlkit_ms``, and ``added_ms``, the median of the per-run differences (the
goal of DESIGN.md: at most 10 ms for each driver). Two figures that a busy machine disturbs
less: ``own_ms``, in the dsqlkit process, the self time of only the modules the driver alone does
not load (what dsqlkit itself adds, without the noise between two processes), and
``added_cpu_ms``, the CPU time (``time.process_time``) of ``import dsqlkit.<driver>`` right after
``import <driver>`` in a third process (time spent descheduled is not counted).

Example::

    from dsqlkit.bench.import_cost import measure_import_cost
    cost = measure_import_cost("psycopg2", runs=7)
    print(f"{cost.added_ms:+.1f} ms")
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from dataclasses import dataclass

#: The drivers measured: import name -> dsqlkit's module for it.
MODULES = {
    "psycopg2": "dsqlkit.psycopg2",
    "psycopg": "dsqlkit.psycopg",
    "asyncpg": "dsqlkit.asyncpg",
}
#: DESIGN.md's goal for ``added_ms``.
GOAL_MS = 10.0


@dataclass(frozen=True)
class ImportCost:
    """Medians over ``runs`` fresh processes, in milliseconds (see the module's docstring)."""

    driver: str
    runs: int
    driver_ms: float
    dsqlkit_ms: float
    added_ms: float
    own_ms: float
    added_cpu_ms: float

    @property
    def within_goal(self) -> bool:
        """Whether ``added_ms`` is within DESIGN.md's 10 ms."""
        return self.added_ms <= GOAL_MS


def _environment() -> dict[str, str]:
    """This environment, allowed to write bytecode: an installed package has its ``.pyc``
    files, and compiling a module's source at every import would be timed as its cost."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _importtime(module: str) -> dict[str, int]:
    """Self time in microseconds of every module a fresh ``import module`` loads."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env=_environment(),
    ).stderr
    selves: dict[str, int] = {}
    for line in err.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line[len("import time:") :].split("|", 2)
        selves[name.strip()] = int(self_us)
    return selves


_CPU_CODE = (
    "import time; import {driver}; started = time.process_time(); import {module}; "
    "print((time.process_time() - started) * 1000)"
)


def _cpu_ms(driver: str, module: str) -> float:
    """CPU milliseconds of ``import module`` after ``import driver``, in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", _CPU_CODE.format(driver=driver, module=module)],
        capture_output=True,
        text=True,
        check=True,
        env=_environment(),
    ).stdout
    return float(out.strip())


def measure_import_cost(driver: str, runs: int = 7) -> ImportCost:
    """Measure ``import dsqlkit.<driver>`` against ``import <driver>`` over ``runs`` pairs of
    fresh processes; ``driver`` is ``"psycopg2"``, ``"psycopg"`` or ``"asyncpg"``.

    Example::

        cost = measure_import_cost("asyncpg")
        cost.driver_ms, cost.dsqlkit_ms, cost.added_ms
    """
    module = MODULES.get(driver)
    if module is None:
        raise ValueError(f"unknown driver {driver!r}: use one of {', '.join(MODULES)}")
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be an integer >= 1, got {runs!r}")
    _importtime(module)  # a first, untimed run writes any missing bytecode
    raw_totals, ours_totals, added, own, cpu = [], [], [], [], []
    for _ in range(runs):
        raw = _importtime(driver)
        ours = _importtime(module)
        raw_totals.append(sum(raw.values()))
        ours_totals.append(sum(ours.values()))
        added.append(ours_totals[-1] - raw_totals[-1])
        own.append(sum(us for name, us in ours.items() if name not in raw))
        cpu.append(_cpu_ms(driver, module))
    return ImportCost(
        driver=driver,
        runs=runs,
        driver_ms=statistics.median(raw_totals) / 1000,
        dsqlkit_ms=statistics.median(ours_totals) / 1000,
        added_ms=statistics.median(added) / 1000,
        own_ms=statistics.median(own) / 1000,
        added_cpu_ms=statistics.median(cpu),
    )
