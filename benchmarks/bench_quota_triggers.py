"""Server-side cost of the backend's quota and DDL/DML triggers per DML statement.

N single-row INSERTs in one transaction, in a DO loop on the backend directly (no endpoint, no
network), as the non-superuser role admin (so the triggers count), best of 7. Run it against the
code before a change with ``PYTHONPATH=<old checkout>/src`` (an old checkout's triggers read their
limits from the ``dsqlkit.max_rows`` setting, which this script then sets).

    python benchmarks/bench_quota_triggers.py [--statements 2000]
"""

from __future__ import annotations

import argparse

import psycopg

import dsqlkit
from dsqlkit.local import LocalEndpoint

_LOOP = """
DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
  FOR i IN 1..{n} LOOP INSERT INTO b VALUES (i, 'x'); END LOOP;
  PERFORM set_config('bench.ms', (extract(epoch FROM clock_timestamp() - t0) * 1000)::text, false);
END $$
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=2000)
    n = parser.parse_args().statements
    with (
        LocalEndpoint(trust_environment=False) as ep,
        psycopg.connect(ep.backend.dsn(), autocommit=True) as conn,
    ):
        conn.execute("CREATE TABLE b (id int PRIMARY KEY, v text)")
        conn.execute("GRANT ALL ON b TO admin")
        conn.execute("SET ROLE admin")
        conn.execute("SELECT set_config('dsqlkit.max_rows', '1000000', false)")  # old code
        conn.execute("SELECT set_config('dsqlkit.max_bytes', '1000000000', false)")
        best = float("inf")
        for _ in range(7):
            conn.execute("DELETE FROM b")
            conn.execute(_LOOP.format(n=n))
            row = conn.execute("SELECT current_setting('bench.ms')").fetchone()
            assert row is not None
            best = min(best, float(row[0]))
    print(f"{dsqlkit.__file__}: {n} INSERTs in {best:.1f} ms, {best * 1000 / n:.1f} us each")


if __name__ == "__main__":
    main()
