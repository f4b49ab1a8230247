"""Aurora DSQL with psycopg 3: IAM connections, psycopg_pool pools, OCC retry.

A drop-in for the official ``aurora_dsql_psycopg`` (same arguments and names); what it returns
are psycopg's own connections and pools, so nothing sits on the query path::

    import dsqlkit.psycopg as dsql

    with dsql.connect("abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws") as conn:
        conn.execute("SELECT 1")

    with dsql.create_pool("abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws") as pool:
        pool.run_transaction(lambda conn: conn.execute("UPDATE t SET n = n + 1"))

Differences from the official connector: TLS settings from the arguments, then libpq's environment
(``PGSSLMODE``, ``PGSSLROOTCERT``), and only when neither sets them ``verify-full`` with the
system CAs over direct TLS; connect backoff on rate/too-many refusals (``connect_retry=``) and a process-wide
new-connection rate limit (``rate_limit=``); pools recycle connections after 55 minutes (idle
after 10) and retry OCC conflicts by default (``retry=False`` to turn off); tokens are cached
per process and signed locally. ``application_name=`` (or ``orm_prefix=``) is kept as a prefix.
"""

from __future__ import annotations

import psycopg

from dsqlkit import __version__
from dsqlkit._psycopg import (
    DSQLAsyncConnection,
    DSQLConnection,
    atransaction,
    connect,
    connect_async,
    transaction,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # for type checkers; loaded on first use at run time (see __getattr__)
    from typing import Any

    from dsqlkit._psycopg_pool import (
        AuroraDSQLAsyncPool,
        AuroraDSQLPool,
        create_async_pool,
        create_pool,
    )
    from dsqlkit.retry import OCCRetryConfig, is_occ_error

__all__ = [
    "AuroraDSQLAsyncPool",
    "AuroraDSQLPool",
    "DSQLAsyncConnection",
    "DSQLConnection",
    "OCCRetryConfig",
    "__version__",
    "atransaction",
    "connect",
    "connect_async",
    "create_async_pool",
    "create_pool",
    "is_occ_error",
    "transaction",
]

#: DB-API module globals: the driver's own.
apilevel, threadsafety, paramstyle = psycopg.apilevel, psycopg.threadsafety, psycopg.paramstyle

_POOL_NAMES = frozenset(
    {"AuroraDSQLPool", "AuroraDSQLAsyncPool", "create_pool", "create_async_pool"}
)


def __getattr__(name: str) -> Any:
    """Names loaded on first use: the pools import psycopg_pool, the retry names dataclasses,
    neither of which ``import dsqlkit.psycopg`` should pay for."""
    if name in _POOL_NAMES:
        from dsqlkit import _psycopg_pool

        return getattr(_psycopg_pool, name)
    if name in ("OCCRetryConfig", "is_occ_error"):
        from dsqlkit import retry

        return getattr(retry, name)
    if name in ("driver_ops", "async_driver_ops"):
        from dsqlkit import _psycopg

        return _psycopg.driver_ops(is_async=name == "async_driver_ops")
    raise AttributeError(f"module 'dsqlkit.psycopg' has no attribute {name!r}")
