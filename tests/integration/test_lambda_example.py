"""examples/lambda/handler.py run locally against the local endpoint.

AWS Lambda itself cannot run here: the test calls the handler as Lambda would, with a stand-in
context object carrying the attributes the handler reads, twice in one process (a warm container).
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from dsqlkit.bench.runner import Report

HANDLER = Path(__file__).resolve().parents[2] / "examples" / "lambda" / "handler.py"


@pytest.fixture
def handler_module(dsql_endpoint, dsql_environ, monkeypatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("DSQL_HOST", dsql_endpoint.host)
    monkeypatch.setenv("DSQL_PORT", str(dsql_endpoint.port))
    monkeypatch.setenv("DSQL_SSLROOTCERT", str(dsql_endpoint.ca_file))
    spec = importlib.util.spec_from_file_location("lambda_bench_handler", HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a fresh "container" for this test
    yield module
    module.close_all()


def _context() -> SimpleNamespace:
    """Stands in for the LambdaContext that AWS passes (only what the handler reads)."""
    return SimpleNamespace(
        function_name="dsqlkit-bench-x86_64",
        memory_limit_in_mb=256,
        aws_request_id="00000000-0000-0000-0000-000000000000",
        get_remaining_time_in_millis=lambda: 60_000,
    )


def test_handler_returns_json_rows_and_reuses_connections(handler_module) -> None:
    event = {"iterations": 3}
    first = handler_module.handler(event, _context())
    kept = {
        key: state.connection or state.pool for key, (_, state) in handler_module._STATES.items()
    }
    second = handler_module.handler(event, _context())

    assert json.loads(json.dumps(first)) == first  # what Lambda serialises
    assert (first["header"]["invocation"], second["header"]["invocation"]) == (1, 2)
    assert first["header"]["memory_mb"] == 256
    # The same format as dsqlkit bench's results.json: `dsqlkit bench compare` reads it.
    assert Report.from_json(first).rows[0].connect is not None
    labels = [(r["driver"], r["pattern"], r["implementation"]) for r in second["rows"]]
    assert len(labels) == 4 * 3 and {label[2] for label in labels} == {"dsqlkit"}
    for row in first["rows"] + second["rows"]:
        assert row["status"] == "ok", f"{row['driver']} {row['pattern']}: {row['error']}"
        for metric in ("connect", "query"):
            assert all(math.isfinite(v) and v >= 0 for v in row[metric].values())
        assert row["query"]["p50"] > 0
    # Module-level reuse across invocations, as in a warm container: the same objects.
    reused = {
        key: state.connection or state.pool for key, (_, state) in handler_module._STATES.items()
    }
    assert {k for k in kept if k[1] != "connect"} == {k for k in reused if k[1] != "connect"}
    for key, obj in kept.items():
        if key[1] != "connect":
            assert reused[key] is obj, key


def test_handler_reports_a_bad_driver_as_a_row_error(handler_module) -> None:
    result = handler_module.handler(
        {"iterations": 1, "drivers": ["psycopg2", "nosuchdriver"], "patterns": ["connect"]},
        _context(),
    )
    statuses = {row["driver"]: row["status"] for row in result["rows"]}
    assert statuses == {"psycopg2": "ok", "nosuchdriver": "error"}
    error = next(row["error"] for row in result["rows"] if row["status"] == "error")
    assert "nosuchdriver" in error and "asyncpg" in error
