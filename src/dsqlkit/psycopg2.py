"""Aurora DSQL with psycopg2: IAM connections, a threaded pool with max lifetime, OCC retry.

A drop-in for the official ``aurora_dsql_psycopg2``; returns psycopg2's own connections::

    import dsqlkit.psycopg2 as dsql

    conn = dsql.connect("abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws")
    pool = dsql.AuroraDSQLThreadedConnectionPool(1, 10, host="...", region="us-east-1")
    pool.run_transaction(lambda conn: conn.cursor().execute("UPDATE t SET n = n + 1"))

Differences from the official connector: as for :mod:`dsqlkit.psycopg` (TLS defaults, connect
backoff, rate limiting, OCC retry on by default in pools); the pool also replaces connections
older than ``max_lifetime`` (55 minutes, jittered) when they are taken or given back.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions
from psycopg2 import pool

from dsqlkit import __version__, _driver
from dsqlkit.retry import (
    OCCRetryConfig,
    RetrySetting,
    is_occ_error,
    resolve_retry_config,
    run_with_occ_retry,
)

__all__ = [
    "AuroraDSQLThreadedConnectionPool",
    "OCCRetryConfig",
    "__version__",
    "connect",
    "is_occ_error",
    "transaction",
]

#: DB-API module globals: the driver's own.
apilevel, threadsafety, paramstyle = psycopg2.apilevel, psycopg2.threadsafety, psycopg2.paramstyle

T = TypeVar("T")
Connection = psycopg2.extensions.connection
logger = logging.getLogger("dsqlkit")


def _open(plan: _driver.Plan, **driver_args: Any) -> Any:
    arguments = {**_driver.libpq_kwargs(plan, psycopg2.__libpq_version__), **driver_args}
    return _driver.open_sync(
        plan, lambda password: psycopg2.connect(password=password, **arguments)
    )


def connect(
    dsn: str | None = None,
    *,
    connection_factory: Any = None,
    cursor_factory: Any = None,
    **kwargs: Any,
) -> Any:
    """Connect with the official connector's arguments (host, cluster id or URL DSN, region,
    user, profile, custom_credentials_provider, token_duration_secs), dsqlkit's options
    (``connect_retry``, ``rate_limit``, ``orm_prefix``) and any libpq parameter.

    Example::

        conn = connect(host="localhost", region="us-east-1", sslrootcert="ca.pem")
    """
    plan = _driver.plan("psycopg2", dsn, kwargs)
    return _open(plan, connection_factory=connection_factory, cursor_factory=cursor_factory)


def _once(conn: Any, callback: Callable[[Any], T]) -> T:
    """Run ``callback(conn)`` in one transaction: commit, or roll back and raise."""
    autocommit = conn.autocommit
    conn.autocommit = False
    return _driver.commit_or_rollback(conn, callback, autocommit=autocommit)


def transaction(conn: Any, callback: Callable[[Any], T], *, retry: RetrySetting = None) -> T:
    """Run ``callback(conn)`` in a transaction and commit; re-run it on an OCC conflict.

    Example::

        transaction(conn, lambda c: c.cursor().execute("UPDATE t SET n = n + 1 WHERE id = 1"))
    """
    return run_with_occ_retry(lambda: _once(conn, callback), resolve_retry_config(retry))


class AuroraDSQLThreadedConnectionPool(pool.ThreadedConnectionPool):
    """psycopg2's ``ThreadedConnectionPool`` with IAM tokens, max lifetime and OCC retry.

    Connection arguments as for :func:`connect`, resolved once for the pool; each new connection
    gets a fresh token. Connections older than ``max_lifetime`` seconds (jittered down by up to
    5%) are closed and replaced when taken (``getconn``) or given back (``putconn``).

    Example::

        with AuroraDSQLThreadedConnectionPool(1, 4, host="localhost", region="us-east-1") as p:
            p.run_transaction(lambda conn: conn.cursor().execute("SELECT 1"))
    """

    def __init__(
        self,
        minconn: int,
        maxconn: int,
        dsn: str | None = None,
        *,
        retry: RetrySetting = None,
        max_lifetime: float = _driver.POOL_MAX_LIFETIME,
        connection_factory: Any = None,
        cursor_factory: Any = None,
        **kwargs: Any,
    ) -> None:
        _driver.check_lifetimes(max_lifetime)
        self._retry = retry
        self._plan = _driver.plan("psycopg2", dsn, kwargs)
        self._factories = {
            "connection_factory": connection_factory,
            "cursor_factory": cursor_factory,
        }
        self.max_lifetime = max_lifetime
        self._expiry: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._expiry_lock = threading.Lock()
        super().__init__(minconn, maxconn)

    def _connect(self, key: Any = None) -> Any:
        """A new connection with a fresh token (the base class's bookkeeping, then ours)."""
        conn = _open(self._plan, **self._factories)
        with self._expiry_lock:
            self._expiry[conn] = _driver.jittered_expiry(self.max_lifetime)
        if key is not None:
            self._used[key] = conn
            self._rused[id(conn)] = key
        else:
            self._pool.append(conn)
        return conn

    def _expired(self, conn: Any) -> bool:
        with self._expiry_lock:
            return self._expiry.get(conn, 0.0) <= time.monotonic()

    def getconn(self, key: Any = None) -> Any:
        """Take a connection; idle ones past their max lifetime are closed first."""
        with self._lock:
            for conn in [c for c in self._pool if self._expired(c)]:
                logger.debug("psycopg2 pool: closing a connection past max_lifetime")
                self._pool.remove(conn)
                conn.close()
        return super().getconn(key)

    def putconn(self, conn: Any, key: Any = None, close: bool = False) -> None:
        """Give a connection back; one past its max lifetime is closed instead of kept."""
        super().putconn(conn, key, close=close or self._expired(conn))

    def __enter__(self) -> AuroraDSQLThreadedConnectionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.closeall()

    def run_transaction(self, callback: Callable[[Any], T], *, retry: RetrySetting = None) -> T:
        """Run ``callback(conn)`` in a transaction on a pooled connection; re-run on OCC conflict."""

        def execute() -> T:
            conn = self.getconn()
            try:
                return _once(conn, callback)
            finally:
                self.putconn(conn)

        return run_with_occ_retry(execute, resolve_retry_config(retry, self._retry))
