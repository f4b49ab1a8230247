"""AWS Lambda handler that runs dsqlkit's benchmark patterns against an Aurora DSQL cluster.

It reproduces the published Lambda measurement of the DSQL Python connectors: per pattern,
"connection establishment" (token + TCP + TLS + PostgreSQL auth) and "query execution"
(``SELECT 1``) timed separately with ``time.perf_counter()``, 30 iterations per invocation. Invoke
it several times and compare the medians (see README.md).

Connections and pools of the ``reuse`` and ``pool`` patterns are module globals, so a warm
container reuses them across invocations exactly as a real handler would; ``connect`` opens a new
connection every iteration. The event may narrow the run::

    {"drivers": ["asyncpg"], "patterns": ["connect", "pool"], "iterations": 30}

Environment: ``DSQL_HOST`` (the cluster endpoint), optional ``DSQL_PORT``, ``DSQL_USER``
(``admin``), ``DSQL_SSLROOTCERT`` (a CA file; default: the system's); Lambda sets ``AWS_REGION``
and the credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from dsqlkit.bench.patterns import (
    DRIVERS,
    PATTERNS,
    Client,
    PatternState,
    Target,
    describe_error,
    make_client,
)
from dsqlkit.bench.report import to_json
from dsqlkit.bench.runner import (
    BenchConfig,
    Report,
    RowResult,
    machine_header,
    run_round,
    summarize,
)

#: Module import time: how long this container has been alive (a cold start when it is recent).
_STARTED = time.time()
#: One event loop for the container's life: asyncpg connections and pools belong to their loop.
_LOOP = asyncio.new_event_loop()
#: (driver, pattern, implementation) -> the client and its reused connection or pool.
_STATES: dict[tuple[str, str, str], tuple[Client, PatternState]] = {}
_INVOCATIONS = 0


def _target() -> Target:
    host = os.environ.get("DSQL_HOST")
    region = os.environ.get("AWS_REGION")
    if not host or not region:
        raise RuntimeError("set DSQL_HOST (the cluster endpoint) and AWS_REGION")
    return Target(
        host=host,
        region=region,
        port=int(os.environ.get("DSQL_PORT", "5432")),
        user=os.environ.get("DSQL_USER", "admin"),
        sslrootcert=os.environ.get("DSQL_SSLROOTCERT"),
    )


async def _measure(key: tuple[str, str, str], config: BenchConfig) -> RowResult:
    driver, pattern, implementation = key
    row = RowResult(driver, pattern, implementation)
    try:
        if key not in _STATES:
            _STATES[key] = (make_client(driver, implementation, _target()), PatternState())
        client, state = _STATES[key]
        sample = await run_round(client, pattern, config, state)
    except Exception as exc:  # the row reports the error; the other rows still run
        row.status, row.error = "error", describe_error(exc)
        await _forget(key)
        return row
    summarize(row, [sample], state)
    return row


async def _forget(key: tuple[str, str, str]) -> None:
    client, state = _STATES.pop(key, (None, None))
    if client is not None and state is not None:
        # A broken connection: dropping it is all that is left to do.
        with contextlib.suppress(Exception):
            await state.close(client)


def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """Run one round (30 iterations) of every pattern for every driver; return the results in
    ``dsqlkit bench``'s results.json format (``header``, ``config``, ``rows``), so that
    ``dsqlkit bench compare x86.json arm64.json`` compares two functions' answers."""
    global _INVOCATIONS
    _INVOCATIONS += 1
    event = event or {}
    config = BenchConfig(
        iterations=int(event.get("iterations", 30)),
        rounds=1,
        warmup=0,  # as in the original: every invocation's iterations are timed
        query=event.get("query", "SELECT 1"),
    )
    keys = [
        (driver, pattern, implementation)
        for driver in event.get("drivers", list(DRIVERS))
        for pattern in event.get("patterns", list(PATTERNS))
        for implementation in event.get("implementations", ["dsqlkit"])
    ]
    rows = [_LOOP.run_until_complete(_measure(key, config)) for key in keys]
    header = machine_header(os.environ.get("DSQL_HOST", "unset"))
    header.update(
        {
            "lambda function": getattr(context, "function_name", None),
            "memory_mb": getattr(context, "memory_limit_in_mb", None),
            "request_id": getattr(context, "aws_request_id", None),
            "invocation": _INVOCATIONS,
            "container_age_s": round(time.time() - _STARTED, 3),
        }
    )
    return to_json(Report(header, config, rows))


def close_all() -> None:
    """Close every kept connection and pool (Lambda never calls this; tests and scripts do)."""
    for key in list(_STATES):
        _LOOP.run_until_complete(_forget(key))
