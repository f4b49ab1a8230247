"""What importing and first connecting load: the heavy stdlib modules only on paths that need them.

Timing is for benchmarks/bench_import.py; these tests pin the structure that makes the import
cheap, in fresh processes (module sets, no clocks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dsqlkit.bench.import_cost import measure_import_cost

HEAVY = ("asyncio", "typing", "inspect", "logging", "dataclasses", "ssl", "subprocess")
#: On the sync connect path: all but dataclasses (and the inspect it imports), which the records
#: of dsqlkit.dsql and the SigV4 module use.
HEAVY_ON_SYNC_CONNECT = tuple(m for m in HEAVY if m not in ("dataclasses", "inspect"))


def _loaded_beyond_driver(
    driver: str, then: str = "", env: dict[str, str] | None = None
) -> set[str]:
    code = (
        f"import sys, json; import {driver}; before = set(sys.modules)\n"
        f"import dsqlkit.{driver}\n{then}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg", "asyncpg"])
def test_importing_a_driver_module_loads_only_itself(driver):
    added = _loaded_beyond_driver(driver)
    assert not added & set(HEAVY)
    assert {m for m in added if m.startswith("dsqlkit")} <= {
        "dsqlkit",
        f"dsqlkit.{driver}",
        "dsqlkit._psycopg",
    }
    assert "psycopg_pool" not in added


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_first_sync_connect_loads_no_heavy_module(driver, dsql_connect_kwargs, dsql_environ):
    connect = (
        # As where opentelemetry is not installed (here it is: its spans import typing, logging).
        "import dsqlkit.telemetry; dsqlkit.telemetry.configure(enabled=False)\n"
        f"conn = dsqlkit.{driver}.connect(**{dsql_connect_kwargs!r})\n"
        "conn.cursor().execute('SELECT 1'); conn.close()"
    )
    added = _loaded_beyond_driver(driver, connect, env={**os.environ, **dsql_environ})
    if driver == "psycopg2":  # psycopg itself loads the others
        assert not added & set(HEAVY_ON_SYNC_CONNECT)
    assert "dsqlkit._driver" in added and "botocore" not in added


def test_measure_import_cost_reports_medians():
    cost = measure_import_cost("psycopg2", runs=1)
    assert cost.driver == "psycopg2" and cost.runs == 1
    assert cost.driver_ms > 0 and cost.dsqlkit_ms > 0 and cost.own_ms > 0 and cost.added_cpu_ms > 0
    with pytest.raises(ValueError, match="unknown driver"):
        measure_import_cost("mysql")
