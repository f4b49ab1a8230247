"""``dsqlkit bench storm``: a Lambda scale-out against DSQL's new-connection rate limit.

``containers`` fresh processes start at once, each a cold Lambda container: import the connector,
connect, run the query (the cold invocation), then ``warm`` more invocations on the reused
connection. A request reaches each container every ``interval`` seconds; an invocation whose
connection is refused fails (the caller sees an error) and the next one tries again, as a Lambda
container does. The local endpoint enforces DSQL's connection-rate token bucket, scaled down
(``rate`` per second, ``burst``) so that the storm exceeds the burst.

Per variant (``official``, ``dsqlkit`` with its defaults: full-jitter backoff for up to 60 s,
``dsqlkit-no-backoff`` with ``connect_retry=None``) it reports the connections the endpoint
refused with 53400, the failed invocations, and the time until every container is serving (its
first invocation succeeded),
against the token bucket's theoretical minimum ``(containers - burst) / rate``: no client can be
served faster than the bucket admits connections.

Example::

    dsqlkit bench storm --containers 200 --burst 50 --rate 20
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dsqlkit.bench.patterns import DRIVERS, Target, local_target
from dsqlkit.bench.process import ClientModel

#: Variant name -> (implementation, extra connect keyword arguments as Python source).
VARIANTS: dict[str, tuple[str, str]] = {
    "official": ("official", ""),
    "dsqlkit": ("dsqlkit", ""),
    "dsqlkit-no-backoff": ("dsqlkit", "kw['connect_retry'] = None"),
}
#: The containers run at a lower CPU priority than the endpoint: DSQL's servers do not share
#: their CPUs with the Lambda fleet, and here 200 clients would otherwise starve the endpoint
#: (and its PostgreSQL) of the two cores, which would measure this machine, not the rate limit.
CONTAINER_NICENESS = 10
#: How often the endpoint's counters are sampled for the chart, seconds.
SAMPLE_INTERVAL_S = 0.1

#: One container: import (its init), say so with a file, wait for the go on stdin, then serve.
#: Stdout: {"started", "imported", "events": [[start, "ok" | "failed", error, end]]} (wall times).
_CONTAINER = """\
import json, os, sys, time
started = time.time()
job = json.loads(sys.argv[1])
kw, events, conn = job["kwargs"], [], None
import {module}
connect = {module}.{attribute}
{extra}
imported = time.time()
os.nice({niceness})  # after the init, which Lambda runs on the container's own CPU
open(job["ready"], "w").close()
def invoke():
    global conn
    if conn is None:
        conn = {connect_call}
    {query}
deadline = float(sys.stdin.readline() or 0)
while len([e for e in events if e[1] == "ok"]) < job["invocations"] and time.time() < deadline:
    t = time.time()
    try:
        invoke()
        events.append([t, "ok", None, time.time()])
    except Exception as exc:
        error = type(exc).__name__ + ": " + " ".join(str(exc).split())[:120]
        events.append([t, "failed", error, time.time()])
        conn = None
    time.sleep(max(0.0, t + job["interval"] - time.time()))
print(json.dumps({{"started": started, "imported": imported, "events": events}}))
"""
_QUERIES = {
    "psycopg2": "c = conn.cursor(); c.execute('SELECT 1'); c.fetchall()",
    "psycopg": "conn.execute('SELECT 1').fetchall()",
}
_CONNECT_CALLS = {
    "psycopg2": "connect(**kw); conn.autocommit = True",
    "psycopg": "connect(**kw)",
}


@dataclass(frozen=True)
class StormConfig:
    """One storm. ``timeout_s`` bounds every variant's storm after the go (containers still
    unserved then count as never serving); ``init_timeout_s`` bounds the containers' imports
    before it (200 processes importing boto3 take minutes on two cores)."""

    containers: int = 200
    burst: int = 50
    rate: float = 20.0
    warm: int = 3
    interval_s: float = 0.25
    driver: str = "psycopg2"
    variants: tuple[str, ...] = tuple(VARIANTS)
    timeout_s: float = 120.0
    init_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        if self.driver not in _QUERIES:
            raise ValueError(
                f"the storm runs sync drivers only ({', '.join(_QUERIES)}), got {self.driver!r}"
            )
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}: valid are {', '.join(VARIANTS)}")
        if self.containers < 1 or self.burst < 1 or self.rate <= 0 or self.warm < 0:
            raise ValueError("need containers >= 1, burst >= 1, rate > 0 and warm >= 0")

    @property
    def minimum_s(self) -> float:
        """The token bucket's theoretical minimum time to admit every container's connection."""
        return max(0, self.containers - self.burst) / self.rate


@dataclass
class VariantResult:
    """What one variant's storm did; times in seconds from the moment the containers started."""

    variant: str
    containers: int
    served: int = 0
    invocations_ok: int = 0
    invocations_failed: int = 0
    refused_53400: int = 0
    admitted: int = 0
    all_serving_s: float | None = None
    wall_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    #: (seconds, admitted so far, refused so far), sampled from the endpoint's counters.
    timeline: list[tuple[float, int, int]] = field(default_factory=list)
    crashed: int = 0

    def versus_minimum(self, minimum_s: float) -> float | None:
        if self.all_serving_s is None or minimum_s <= 0:
            return None
        return self.all_serving_s / minimum_s


@dataclass
class StormReport:
    config: StormConfig
    header: dict[str, Any]
    results: list[VariantResult] = field(default_factory=list)


# --- accounting (pure: tested on known inputs) -------------------------------------------------


def account(variant: str, start: float, outputs: Sequence[dict[str, Any] | None]) -> VariantResult:
    """Fold the containers' outputs (None: the container crashed) into a :class:`VariantResult`.

    A container is serving from its first successful invocation; ``all_serving_s`` is the last
    container's, or None if one never was.
    """
    result = VariantResult(variant, len(outputs))
    first_ok: list[float | None] = []
    for output in outputs:
        if output is None:
            result.crashed += 1
            first_ok.append(None)
            continue
        # Serving from the end of the first successful invocation (its answer reached the caller).
        oks = [event[-1] for event in output["events"] if event[1] == "ok"]
        failed = [event for event in output["events"] if event[1] == "failed"]
        result.invocations_ok += len(oks)
        result.invocations_failed += len(failed)
        for event in failed:
            kind = event[2].split(":", 1)[0] if event[2] else "unknown"
            key = "53400 rate exceeded" if "rate exceeded" in (event[2] or "") else kind
            result.errors[key] = result.errors.get(key, 0) + 1
        first_ok.append(min(oks) - start if oks else None)
        result.served += bool(oks)
    if first_ok and all(t is not None for t in first_ok):
        result.all_serving_s = max(t for t in first_ok if t is not None)
    return result


def per_second(timeline: Sequence[tuple[float, int, int]]) -> list[tuple[int, int, int]]:
    """Cumulative samples -> (second, admitted in that second, refused in that second)."""
    buckets: dict[int, list[int]] = {}
    previous = (0, 0)
    for seconds, admitted, refused in timeline:
        second = int(seconds)
        bucket = buckets.setdefault(second, [0, 0])
        bucket[0] += admitted - previous[0]
        bucket[1] += refused - previous[1]
        previous = (admitted, refused)
    last = max(buckets, default=-1)
    counts = [buckets.get(second, [0, 0]) for second in range(last + 1)]
    return [(second, admitted, refused) for second, (admitted, refused) in enumerate(counts)]


# --- running -------------------------------------------------------------------------------------


def _script(config: StormConfig, variant: str) -> str:
    implementation, extra = VARIANTS[variant]
    module, _, attribute = DRIVERS[config.driver].connect[implementation].partition(":")
    return _CONTAINER.format(
        niceness=CONTAINER_NICENESS,
        module=module,
        attribute=attribute,
        extra=extra,
        connect_call=_CONNECT_CALLS[config.driver],
        query=_QUERIES[config.driver],
    )


def _kwargs(config: StormConfig, variant: str, target: Target) -> dict[str, Any]:
    implementation, _ = VARIANTS[variant]
    driver = DRIVERS[config.driver]
    if implementation == "official":
        kwargs = target.official_kwargs(driver.libpq)
    else:
        kwargs = target.dsqlkit_kwargs()
    return {**kwargs, **driver.extra_kwargs}


def run_variant(
    config: StormConfig,
    variant: str,
    target: Target,
    counters: Callable[[], tuple[int, int]],
    progress: TextIO | None = sys.stderr,
) -> VariantResult:
    """Start every container of one variant at once and account for what they did.

    ``counters`` returns the endpoint's (connections admitted, refused with 53400) so far.
    """
    model = ClientModel(resolve=target.resolve_mapping())
    environment = model.environment()
    script = _script(config, variant)
    with tempfile.TemporaryDirectory(prefix="dsqlkit-storm-") as name:
        folder = Path(name)
        processes = [
            _start_container(script, folder, number, config, variant, target, environment)
            for number in range(config.containers)
        ]
        _wait_ready(processes, folder, config.init_timeout_s, variant, progress)
        base = counters()
        go = time.time()
        deadline = go + config.timeout_s
        for process in processes:
            _send_go(process, deadline)
        timeline = _watch(processes, go, base, counters, deadline + 10, variant, progress)
        outputs = [_read(folder / f"{n}.json") for n in range(config.containers)]
    result = account(variant, go, outputs)
    result.timeline = timeline
    result.admitted, result.refused_53400 = timeline[-1][1], timeline[-1][2]
    result.wall_s = timeline[-1][0]
    return result


def _start_container(
    script: str,
    folder: Path,
    number: int,
    config: StormConfig,
    variant: str,
    target: Target,
    environment: dict[str, str],
) -> subprocess.Popen[str]:
    job = {
        "kwargs": _kwargs(config, variant, target),
        "invocations": 1 + config.warm,
        "interval": config.interval_s,
        "ready": str(folder / f"{number}.ready"),
    }
    with (folder / f"{number}.json").open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(job)],
            env=environment,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.DEVNULL,
            text=True,
        )


def _wait_ready(
    processes: list[subprocess.Popen[str]],
    folder: Path,
    timeout: float,
    variant: str,
    progress: TextIO | None,
) -> None:
    """Until every container imported (or exited: it will count as crashed), bounded."""
    started, last_print = time.time(), 0.0
    while time.time() - started < timeout:
        ready = len(list(folder.glob("*.ready")))
        exited = sum(p.poll() is not None for p in processes)
        if ready + exited >= len(processes):
            return
        if progress is not None and time.time() - last_print >= 2.0:
            last_print = time.time()
            print(
                f"storm {variant}: {ready}/{len(processes)} containers initialised",
                file=progress,
                flush=True,
            )
        time.sleep(SAMPLE_INTERVAL_S)


def _send_go(process: subprocess.Popen[str], deadline: float) -> None:
    """The first request: the container starts invoking; it stops at ``deadline``."""
    assert process.stdin is not None
    try:
        process.stdin.write(f"{deadline}\n")
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the container died during its init: counted as crashed


def _watch(
    processes: list[subprocess.Popen[str]],
    start: float,
    base: tuple[int, int],
    counters: Callable[[], tuple[int, int]],
    hard_deadline: float,
    variant: str,
    progress: TextIO | None,
) -> list[tuple[float, int, int]]:
    """Sample the endpoint's counters until every container exited (or the hard deadline)."""
    timeline: list[tuple[float, int, int]] = []
    last_print = 0.0
    while True:
        admitted, refused = counters()
        now = time.time() - start
        timeline.append((now, admitted - base[0], refused - base[1]))
        running = sum(p.poll() is None for p in processes)
        if progress is not None and now - last_print >= 1.0:
            last_print = now
            print(
                f"storm {variant}: {now:5.1f} s, {running} containers running, "
                f"{admitted - base[0]} admitted, {refused - base[1]} refused",
                file=progress,
                flush=True,
            )
        if not running:
            return timeline
        if time.time() > hard_deadline:
            for process in processes:
                if process.poll() is None:
                    process.kill()
        time.sleep(SAMPLE_INTERVAL_S)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return None


def run_storm(
    config: StormConfig,
    progress: TextIO | None = sys.stderr,
    endpoint_fields: dict[str, Any] | None = None,
) -> StormReport:
    """Run every variant against a fresh local endpoint with the scaled token bucket each (so
    every variant starts with a full bucket)."""
    from dsqlkit.bench.runner import machine_header
    from dsqlkit.local import LocalEndpoint, Quotas

    quotas = Quotas(connection_rate_per_second=config.rate, connection_burst=config.burst)
    report = StormReport(config, machine_header("local endpoint (dsqlkit local), in-process"))
    for variant in config.variants:
        fields = endpoint_fields or {}
        with LocalEndpoint(quotas=quotas, **fields) as endpoint, endpoint.use_environment():

            def counters(endpoint: LocalEndpoint = endpoint) -> tuple[int, int]:
                stats = endpoint.stats()
                return stats.connections_authenticated, stats.connections_refused.get("rate", 0)

            result = run_variant(config, variant, local_target(endpoint), counters, progress)
        report.results.append(result)
    return report


def to_json(report: StormReport) -> dict[str, Any]:
    return {
        "header": report.header,
        "config": dataclasses.asdict(report.config),
        "minimum_s": report.config.minimum_s,
        "results": [dataclasses.asdict(result) for result in report.results],
    }
