"""``dsqlkit bench --seed``: the published Lambda measurement that motivates dsqlkit, and the model
that reproduces its configuration on this machine.

The seed measured the official connector on AWS Lambda (Python 3.12, 256 MB, x86_64 and arm64,
client and cluster in the same region), ``SELECT 1``, 30 iterations per invocation, medians. Its
numbers are below, as published. The model runs the same configuration here, from physical
parameters only (never fitted to the seed's numbers):

- **CPU**: the client processes get 256 / 1769 = 0.145 of a CPU (Lambda's memory-to-CPU ratio,
  :mod:`~dsqlkit.bench.throttle`).
- **Network**: :data:`IN_REGION_RTT_MS` added to every round trip after TLS, and
  :data:`DSQL_CONNECT_SETUP_MS` to every new connection, by the local endpoint.

Example::

    dsqlkit bench --seed
"""

from __future__ import annotations

from dataclasses import dataclass

#: Round trip between a Lambda function and the cluster's endpoint in the same region, ms: AWS
#: describes its Availability Zones as connected by "single-digit millisecond" latency networking
#: (https://aws.amazon.com/about-aws/global-infrastructure/regions_az/); a function and the
#: endpoint in one region are typically one AZ hop apart, about a millisecond.
IN_REGION_RTT_MS = 1.0
#: DSQL's own work for a new connection (IAM token verification, session start) beyond the round
#: trips, ms. DSQL publishes no figure; 20 ms is the in-region model this benchmark used before the
#: seed comparison existed (docs/benchmark.md), kept as it was rather than tuned to the seed.
DSQL_CONNECT_SETUP_MS = 20.0
#: The seed's function size, MB.
MEMORY_MB = 256
ITERATIONS = 30
QUERY = "SELECT 1"
DRIVERS = ("psycopg2", "asyncpg")
PATTERNS = ("connect", "reuse", "pool")


@dataclass(frozen=True)
class SeedRow:
    """One published row: medians in ms, on x86_64 and arm64."""

    driver: str
    pattern: str  # this benchmark's pattern that measures the same thing
    label: str  # as the seed named it
    connect_x86: float
    connect_arm: float
    query_x86: float
    query_arm: float


#: The seed's table (Lambda Python 3.12, 256 MB, same region; medians, ms).
SEED_ROWS = (
    SeedRow("psycopg2", "connect", "psycopg2, connect each time", 873.0, 673.6, 12.95, 12.56),
    SeedRow("asyncpg", "connect", "asyncpg, connect each time", 807.7, 633.1, 7.53, 6.67),
    SeedRow("asyncpg", "pool", "asyncpg, reuse (pool of min 1)", 0.02, 0.02, 2.50, 2.44),
)
#: What the seed's configuration was, for the report.
DESCRIPTION = (
    "seed = AWS Lambda, Python 3.12, 256 MB, x86_64 / arm64, same region, SELECT 1, "
    "30 iterations, medians"
)
