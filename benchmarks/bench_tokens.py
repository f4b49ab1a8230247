"""Token cost per new connection and cold start: dsqlkit vs the official connector 0.2.7.

Run: ``.venv/bin/python benchmarks/bench_tokens.py [--quick]``. Uses fake credentials from the
environment (presigning is local: no network). Prints a table and writes
``benchmarks/results/tokens.md``.

1. Per new connection, in this process: dsqlkit's ``TokenFactory`` (cached token, and forced
   re-signing), the official connector's ``TokenManager.get_token`` (a new boto3 Session and client
   per connect), and a reused boto3 client (the best botocore can do).
2. Cold start: a new Python process that imports and signs its first token, median of N runs,
   for the auth modules alone and with the psycopg connector module imported.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

HOST = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"
REGION = "us-east-1"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDBENCHMARK",
    "AWS_SECRET_ACCESS_KEY": "benchmark/secret+key",
    "AWS_SESSION_TOKEN": "benchmark-session-token+/=",
    "AWS_REGION": REGION,
    # Nothing from this machine's AWS setup, and no IMDS lookups.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
RESULTS = Path(__file__).parent / "results" / "tokens.md"

OFFICIAL_PARAMS = f"dict(host={HOST!r}, region={REGION!r}, user='admin', token_duration_secs=900)"
COLD_START = {
    "dsqlkit (auth)": (
        "from dsqlkit.auth.tokens import TokenFactory\n"
        "from dsqlkit.config import resolve_params\n"
        f"TokenFactory(resolve_params(host={HOST!r})).token()"
    ),
    "official (auth)": (
        "from dsql_core.token_manager import TokenManager\n"
        f"TokenManager.get_token({OFFICIAL_PARAMS})"
    ),
    "dsqlkit.psycopg + token": (
        "import dsqlkit.psycopg\n"
        "from dsqlkit.auth.tokens import TokenFactory\n"
        "from dsqlkit.config import resolve_params\n"
        f"TokenFactory(resolve_params(host={HOST!r})).token()"
    ),
    "aurora_dsql_psycopg + token": (
        "import aurora_dsql_psycopg\n"
        "from dsql_core.token_manager import TokenManager\n"
        f"TokenManager.get_token({OFFICIAL_PARAMS})"
    ),
    "import psycopg (the driver alone)": "import psycopg",
    "python -c pass": "pass",
}


def per_call_us(fn: Callable[[], object], calls: int, repeats: int = 5) -> float:
    """Median over ``repeats`` rounds of the mean time per call, in microseconds."""
    fn()  # warm up (imports, first resolution)
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter_ns() - start) / calls / 1000)
    return statistics.median(rounds)


def hot_path(quick: bool) -> dict[str, float]:
    import boto3
    from dsql_core.token_manager import TokenManager

    from dsqlkit.auth.sigv4 import Credential, verify_token
    from dsqlkit.auth.tokens import TokenFactory
    from dsqlkit.config import resolve_params

    params = resolve_params(host=HOST)
    cached = TokenFactory(params)
    # A clock that jumps a whole token lifetime per call: every call signs a new token.
    ticks = itertools.count(time.time(), params.token_duration_secs)
    uncached = TokenFactory(params, clock=lambda: next(ticks))
    client = boto3.Session().client("dsql", region_name=REGION)
    official = dict(host=HOST, region=REGION, user="admin", token_duration_secs=900)
    token = cached.token()
    known = {
        FAKE_ENV["AWS_ACCESS_KEY_ID"]: Credential(
            FAKE_ENV["AWS_ACCESS_KEY_ID"],
            FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
            FAKE_ENV["AWS_SESSION_TOKEN"],
        )
    }
    scale = 10 if quick else 1
    return {
        "dsqlkit TokenFactory, cached token": per_call_us(cached.token, 200_000 // scale),
        "dsqlkit TokenFactory, new signature": per_call_us(uncached.token, 50_000 // scale),
        "botocore, reused client": per_call_us(
            lambda: client.generate_db_connect_admin_auth_token(HOST, REGION, 900),
            5_000 // scale,
        ),
        "official connector (new Session + client)": per_call_us(
            lambda: TokenManager.get_token(official), 30 // min(scale, 3), repeats=3
        ),
        "dsqlkit verify_token (endpoint side)": per_call_us(
            lambda: verify_token(
                token, host=HOST, region=REGION, user="admin", lookup_secret=known.get
            ),
            50_000 // scale,
        ),
    }


def cold_start(runs: int) -> dict[str, float]:
    """Median wall time (ms) of a new process per snippet; runs interleaved to share the noise."""
    env = {**os.environ, **FAKE_ENV}
    times: dict[str, list[float]] = {name: [] for name in COLD_START}
    for _ in range(runs):
        for name, code in COLD_START.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = ", ".join(
        f"{name} {version(name)}"
        for name in ("dsqlkit", "aurora-dsql-python-connector", "botocore", "boto3")
    )
    return (
        f"{cpu}, {os.cpu_count()} CPUs (shared with other work), "
        f"Python {platform.python_version()} on {platform.system()}; {packages}"
    )


def report(hot: dict[str, float], cold: dict[str, float], runs: int) -> str:
    official = hot["official connector (new Session + client)"]
    lines = [
        "# Token cost and cold start: dsqlkit vs aurora-dsql-python-connector",
        "",
        f"Machine: {machine()}.",
        "Recorded by `.venv/bin/python benchmarks/bench_tokens.py` (fake credentials in the",
        "environment; presigning is local). Targets (DESIGN.md): >= 500x cheaper than the official",
        "connector and <= 50 us per token; cold start <= 0.2x the official connector.",
        "",
        "## Token per new connection (median of rounds, microseconds per call)",
        "",
        "| Way | us per token | official connector / this |",
        "| --- | ---: | ---: |",
    ]
    for name, us in hot.items():
        lines.append(f"| {name} | {us:,.2f} | {official / us:,.0f}x |")
    baseline = cold["python -c pass"]
    lines += [
        "",
        f"## Cold start: new process, import, first token (median of {runs} runs, ms)",
        "",
        "| Process | wall ms | minus bare interpreter | ratio to official |",
        "| --- | ---: | ---: | ---: |",
    ]
    peers = {
        "dsqlkit (auth)": "official (auth)",
        "dsqlkit.psycopg + token": "aurora_dsql_psycopg + token",
    }
    for name, ms in cold.items():
        peer = peers.get(name)
        ratio = f"{ms / cold[peer]:.2f}x" if peer else ""
        lines.append(f"| {name} | {ms:.0f} | {ms - baseline:.0f} | {ratio} |")
    lines += [
        "",
        "Notes: the cached row is what a new connection costs when the process already holds a",
        "valid token (the normal case: a token is reused for half its validity); the new-signature",
        "row is the cost every `token_duration_secs / 2`. With psycopg, most of a cold start is",
        "importing psycopg itself (its own row); the official connector imports boto3 on top.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--runs", type=int, default=11, help="cold-start runs per process kind")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args()
    os.environ.update(FAKE_ENV)
    runs = 3 if args.quick else args.runs
    text = report(hot_path(args.quick), cold_start(runs), runs)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
