"""``dsqlkit bench``: measure drivers and connection patterns, on a local endpoint or a cluster.

Examples::

    dsqlkit bench                                   # local endpoint, every pattern
    dsqlkit bench --seed                            # the seed's Lambda 256 MB question, modelled
    dsqlkit bench --lambda-memory 512 --added-latency-ms 1 --connect-delay-ms 20
    dsqlkit bench storm --containers 200 --burst 50 --rate 20   # a Lambda scale-out storm
    dsqlkit bench compare x86/results.json arm64/results.json  # two runs side by side
    dsqlkit bench --drivers asyncpg,psycopg --patterns connect,pool --added-latency-ms 0.5
    dsqlkit bench --endpoint abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws --profile dev

Exit status: 0 when every requested row ran, 1 when some failed (their errors are in the report),
2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from dsqlkit import dsql as spec
from dsqlkit.bench import patterns, seed
from dsqlkit.bench.patterns import local_target
from dsqlkit.bench.runner import BenchConfig, Report, Target, run_benchmark, timestamp_folder
from dsqlkit.bench.throttle import lambda_cpu_share

#: The local endpoint's connection-rate quota is lifted for the benchmark: connect-each-time rows
#: open connections faster than DSQL's 100/s refill, and the benchmark measures latency, not the
#: rate limiter (which would turn raw rows into 53400 errors).
_BENCH_CONNECTION_RATE = 1_000_000.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument(
        "action",
        nargs="*",
        metavar="storm | compare A.json B.json",
        help="storm: the scale-out storm scenario; compare: two results.json side by side "
        "(default: the benchmark)",
    )
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--patterns",
        default=",".join(patterns.PATTERNS),
        help=f"comma-separated, from {', '.join(patterns.PATTERNS)} (default: all)",
    )
    what.add_argument(
        "--drivers",
        default=",".join(patterns.DRIVERS),
        help=f"comma-separated, from {', '.join(patterns.DRIVERS)} (default: all)",
    )
    what.add_argument(
        "--implementations",
        default=",".join(patterns.IMPLEMENTATIONS),
        help=f"comma-separated, from {', '.join(patterns.IMPLEMENTATIONS)} (default: all)",
    )
    what.add_argument("--iterations", type=int, default=30, help="timed iterations per round (30)")
    what.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds, like Lambda invocations; medians across them are reported (3)",
    )
    what.add_argument("--warmup", type=int, default=2, help="discarded iterations per round (2)")
    what.add_argument("--query", default="SELECT 1", help="the query timed ('SELECT 1')")
    what.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="parallel queries per iteration for the pool pattern (1)",
    )
    what.add_argument(
        "--lambda-memory",
        type=int,
        metavar="MB",
        help="run the client processes at the CPU share of a Lambda function of this size "
        "(MB / 1769 of a CPU; e.g. 128, 256, 512, 1769)",
    )
    what.add_argument(
        "--seed",
        action="store_true",
        help=f"the seed's configuration: Lambda {seed.MEMORY_MB} MB, {seed.QUERY!r}, "
        f"{seed.ITERATIONS} iterations, drivers {','.join(seed.DRIVERS)}, in-region network "
        f"(+{seed.IN_REGION_RTT_MS:g} ms per round trip, +{seed.DSQL_CONNECT_SETUP_MS:g} ms per "
        "connection); prints the seed's published numbers beside the modelled ones",
    )
    what.add_argument(
        "--no-cold-start",
        dest="cold_start",
        action="store_false",
        help="skip the cold-start table (fresh processes)",
    )

    where = parser.add_argument_group("where (default: an ephemeral local endpoint)")
    where.add_argument("--endpoint", metavar="HOST", help="a real cluster's host name")
    where.add_argument("--region", help="AWS region (default: from the host name, then AWS_REGION)")
    where.add_argument("--user", default=spec.ADMIN_USER, help="database role (admin)")
    where.add_argument("--port", type=int, default=spec.DEFAULT_PORT, help="port (5432)")
    where.add_argument("--sslrootcert", help="CA bundle (default: the system's)")
    where.add_argument("--profile", help="AWS profile for credentials")
    where.add_argument(
        "--added-latency-ms",
        type=float,
        default=0.0,
        help="local endpoint: simulated round-trip latency per message exchange",
    )
    where.add_argument(
        "--connect-delay-ms",
        type=float,
        default=0.0,
        help="local endpoint: simulated extra delay per new connection",
    )

    storm = parser.add_argument_group("storm (dsqlkit bench storm)")
    storm.add_argument("--containers", type=int, default=200, help="cold containers (200)")
    storm.add_argument("--burst", type=int, default=50, help="the endpoint's rate burst (50)")
    storm.add_argument("--rate", type=float, default=20.0, help="its refill per second (20)")
    storm.add_argument("--warm", type=int, default=3, help="warm invocations per container (3)")
    storm.add_argument(
        "--variants",
        default=",".join(storm_variants()),
        help=f"comma-separated, from {', '.join(storm_variants())} (default: all)",
    )

    out = parser.add_argument_group("output")
    out.add_argument(
        "--output",
        metavar="DIR",
        type=Path,
        help="results folder (default: ./bench-results/<timestamp>/)",
    )
    out.add_argument("--json-only", action="store_true", help="write only results.json")
    out.add_argument("--no-chart", dest="chart", action="store_false", help="no PNG chart")
    out.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


class UsageError(ValueError):
    """Bad command-line input: exit status 2."""


def parse_names(text: str, valid: Sequence[str], what: str) -> tuple[str, ...]:
    """``"a,b"`` -> ``("a", "b")``, refusing names not in ``valid`` with the list of valid ones.

    Example: ``parse_names("connect,pool", PATTERNS, "pattern") == ("connect", "pool")``.
    """
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        shown = ", ".join(unknown) or "(none)"
        raise UsageError(f"unknown {what}: {shown}; valid {what}s are: {', '.join(valid)}")
    return names


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    try:
        return BenchConfig(
            iterations=args.iterations,
            rounds=args.rounds,
            warmup=args.warmup,
            query=args.query,
            concurrency=args.concurrency,
            patterns=parse_names(args.patterns, patterns.PATTERNS, "pattern"),
            drivers=parse_names(args.drivers, list(patterns.DRIVERS), "driver"),
            implementations=parse_names(
                args.implementations, patterns.IMPLEMENTATIONS, "implementation"
            ),
            cold_start=args.cold_start,
            lambda_memory_mb=args.lambda_memory,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def apply_seed_preset(args: argparse.Namespace) -> None:
    """``--seed``: the seed's configuration (see :mod:`dsqlkit.bench.seed`)."""
    if args.endpoint:
        raise UsageError(
            "--seed models the network on the local endpoint: drop --endpoint, or use "
            f"--lambda-memory {seed.MEMORY_MB} against a cluster"
        )
    args.lambda_memory = seed.MEMORY_MB
    args.query, args.iterations = seed.QUERY, seed.ITERATIONS
    args.added_latency_ms = seed.IN_REGION_RTT_MS
    args.connect_delay_ms = seed.DSQL_CONNECT_SETUP_MS
    args.drivers, args.patterns = ",".join(seed.DRIVERS), ",".join(seed.PATTERNS)


def model_description(args: argparse.Namespace) -> str:
    """The client model in one line, for the report."""
    parts = []
    if args.lambda_memory:
        share = lambda_cpu_share(args.lambda_memory)
        parts.append(f"Lambda {args.lambda_memory} MB = {share:.3f} of a vCPU")
    if not args.endpoint and (args.added_latency_ms or args.connect_delay_ms):
        parts.append(
            f"network +{args.added_latency_ms:g} ms per round trip, "
            f"+{args.connect_delay_ms:g} ms per new connection"
        )
    return "; ".join(parts) or "none: a whole CPU, this machine's loopback"


def storm_variants() -> tuple[str, ...]:
    from dsqlkit.bench.storm import VARIANTS

    return tuple(VARIANTS)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark (or ``storm``, ``compare``); 0 if every row ran, 1 if some failed, 2 for
    usage errors."""
    action = args.action[0] if args.action else None
    try:
        if action == "storm" and len(args.action) == 1:
            return _run_storm(args)
        if action == "compare" and len(args.action) == 3:
            return _run_compare(args, Path(args.action[1]), Path(args.action[2]))
        if action is not None:
            raise UsageError(
                f"unknown action {' '.join(args.action)!r}: use `dsqlkit bench`, "
                "`dsqlkit bench storm` or `dsqlkit bench compare A.json B.json`"
            )
        return _run_benchmark(args)
    except UsageError as exc:
        print(f"dsqlkit bench: error: {exc}", file=sys.stderr)
        return 2


def _run_storm(args: argparse.Namespace) -> int:
    from dsqlkit.bench.report import format_storm, write_storm
    from dsqlkit.bench.storm import StormConfig, run_storm

    try:
        config = StormConfig(
            containers=args.containers,
            burst=args.burst,
            rate=args.rate,
            warm=args.warm,
            driver=parse_names(args.drivers, list(patterns.DRIVERS), "driver")[0],
            variants=parse_names(args.variants, storm_variants(), "variant"),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.endpoint:
        raise UsageError("the storm runs against its own local endpoint: drop --endpoint")
    output = args.output or Path("bench-results") / timestamp_folder()
    report = run_storm(config, None if args.quiet else sys.stderr)
    print(format_storm(report))
    written = write_storm(report, output, chart=args.chart)
    print(f"\nwrote {', '.join(str(path) for path in written)}")
    return 0


def _run_compare(args: argparse.Namespace, first: Path, second: Path) -> int:
    from dsqlkit.bench.compare import compare, load_results, write_compare_chart

    try:
        left, right = load_results(first), load_results(second)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(compare(left, right))
    if args.chart:
        output = args.output or Path("bench-results") / f"compare-{timestamp_folder()}"
        output.mkdir(parents=True, exist_ok=True)
        chart = write_compare_chart(left, right, output / "compare.png")
        if chart is not None:
            print(f"\nwrote {chart}")
    return 0


def _run_benchmark(args: argparse.Namespace) -> int:
    if args.seed:
        apply_seed_preset(args)
    config = config_from_args(args)
    if args.endpoint and (args.added_latency_ms or args.connect_delay_ms):
        raise UsageError(
            "--added-latency-ms and --connect-delay-ms apply to the local endpoint"
            " only: drop them or drop --endpoint"
        )
    output = args.output or Path("bench-results") / timestamp_folder()
    with _target(args) as (target, label):
        stream = None if args.quiet else sys.stderr
        report = run_benchmark(config, target, endpoint_label=label, progress_stream=stream)
    report.header["model"] = model_description(args)
    if args.seed:
        report.header["preset"] = "seed"
    return _output(report, output, args)


def _output(report: Report, output: Path, args: argparse.Namespace) -> int:
    from dsqlkit.bench.report import format_summary, format_table, write_all

    print(format_summary(report))
    print()
    print(format_table(report))
    written = write_all(report, output, chart=args.chart, json_only=args.json_only)
    print(f"\nwrote {', '.join(str(path) for path in written)}")
    failed = report.failed
    if failed:
        print(f"{len(failed)} row(s) failed: see the notes above", file=sys.stderr)
    return 1 if failed else 0


@contextlib.contextmanager
def _target(args: argparse.Namespace) -> Iterator[tuple[Target, str]]:
    if args.endpoint:
        yield _cluster_target(args), args.endpoint
        return
    from dsqlkit.local import Quotas
    from dsqlkit.local.process import EndpointProcess

    quotas = Quotas(
        connection_rate_per_second=_BENCH_CONNECTION_RATE,
        connection_burst=int(_BENCH_CONNECTION_RATE),
    )
    print("starting a local endpoint (in its own process)...", file=sys.stderr)
    # Its own process: the endpoint's CPU time must not be counted as the client's.
    with (
        EndpointProcess(
            added_latency_ms=args.added_latency_ms,
            connect_delay_ms=args.connect_delay_ms,
            quotas=quotas,
        ) as address,
        address.use_environment(),
    ):
        yield local_target(address, args.user), _local_label(args)


def _local_label(args: argparse.Namespace) -> str:
    return (
        f"local endpoint (dsqlkit local, added latency {args.added_latency_ms} ms, "
        f"connect delay {args.connect_delay_ms} ms)"
    )


def _cluster_target(args: argparse.Namespace) -> Target:
    found = spec.REGION_FROM_HOST.search(args.endpoint)
    region = args.region or (found.group(1) if found else None)
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise UsageError(f"no region for {args.endpoint}: pass --region or set AWS_REGION")
    return Target(
        host=args.endpoint,
        port=args.port,
        region=region,
        user=args.user,
        sslrootcert=args.sslrootcert,
        profile=args.profile,
        dsql_host=args.endpoint,
    )
