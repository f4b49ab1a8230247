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

import psycopg2
import psycopg2.extensions
from psycopg2 import pool

from dsqlkit import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs a cold start ~7 ms
    from collections.abc import Callable, Iterator
    from typing import Any, TypeVar

    from dsqlkit._driver import DriverOps, Plan
    from dsqlkit.retry import OCCRetryConfig, RetrySetting, is_occ_error

    T = TypeVar("T")

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

Connection = psycopg2.extensions.connection


def __getattr__(name: str) -> Any:
    """Names loaded on first use, so that ``import dsqlkit.psycopg2`` costs next to nothing."""
    if name in ("OCCRetryConfig", "is_occ_error"):
        from dsqlkit import retry

        return getattr(retry, name)
    if name == "driver_ops":
        return _driver_ops()
    raise AttributeError(f"module 'dsqlkit.psycopg2' has no attribute {name!r}")


def _libpq_kwargs(plan: Plan) -> dict[str, Any]:
    from dsqlkit import _driver

    return _driver.libpq_kwargs(plan, psycopg2.__libpq_version__)


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
    from dsqlkit import _driver

    plan = _driver.plan("psycopg2", dsn, kwargs)
    arguments = {
        **_libpq_kwargs(plan),
        "connection_factory": connection_factory,
        "cursor_factory": cursor_factory,
    }
    return _driver.open_sync(
        plan, lambda password: psycopg2.connect(password=password, **arguments)
    )


def _once(conn: Any, callback: Callable[[Any], T]) -> T:
    """Run ``callback(conn)`` in one transaction: commit, or roll back and raise."""
    from dsqlkit import _driver

    autocommit = conn.autocommit
    conn.autocommit = False
    return _driver.commit_or_rollback(conn, callback, autocommit=autocommit)


def transaction(conn: Any, callback: Callable[[Any], T], *, retry: RetrySetting = None) -> T:
    """Run ``callback(conn)`` in a transaction and commit; re-run it on an OCC conflict.

    ``retry``: see :data:`dsqlkit.retry.RetrySetting` (None: the defaults; False: no retry).

    Example::

        transaction(conn, lambda c: c.cursor().execute("UPDATE t SET n = n + 1 WHERE id = 1"))
    """
    from dsqlkit.retry import resolve_retry_config, run_with_occ_retry

    return run_with_occ_retry(lambda: _once(conn, callback), resolve_retry_config(retry))


class AuroraDSQLThreadedConnectionPool(pool.ThreadedConnectionPool):
    """psycopg2's ``ThreadedConnectionPool`` with IAM tokens, max lifetime and OCC retry.

    Connection arguments as for :func:`connect`, resolved once for the pool; each new connection
    gets a fresh token. Connections older than ``max_lifetime`` seconds (jittered down by up to
    5%) are closed and replaced when taken (``getconn``) or given back (``putconn``).
    ``retry`` is the default OCC policy of :meth:`run_transaction`.

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
        max_lifetime: float | None = None,
        connection_factory: Any = None,
        cursor_factory: Any = None,
        **kwargs: Any,
    ) -> None:
        import threading
        import weakref

        from dsqlkit import _driver, _private

        _private.require(pool.AbstractConnectionPool, ("_connect",), "psycopg2")
        max_lifetime = _driver.POOL_MAX_LIFETIME if max_lifetime is None else max_lifetime
        _driver.check_lifetimes(max_lifetime)
        self._retry = retry
        self._plan = _driver.plan("psycopg2", dsn, kwargs)
        self.max_lifetime = max_lifetime
        self._expiry: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._expiry_lock = threading.Lock()
        # The base class keeps these as its connect arguments (``_kwargs``); the token is added
        # per connection in _connect and never kept.
        super().__init__(
            minconn,
            maxconn,
            **_libpq_kwargs(self._plan),
            connection_factory=connection_factory,
            cursor_factory=cursor_factory,
        )

    def _connect(self, key: Any = None) -> Any:
        """A new connection with a fresh token; the base class does its own bookkeeping."""
        from dsqlkit import _driver, _private

        _private.require(self, ("_kwargs",), "psycopg2")
        arguments: dict[str, Any] = self._kwargs  # type: ignore[has-type]
        base_connect = super()._connect

        def open_(password: str) -> Any:
            self._kwargs = {**arguments, "password": password}
            try:
                return base_connect(key)
            finally:
                self._kwargs = arguments

        conn = _driver.open_sync(self._plan, open_)
        with self._expiry_lock:
            self._expiry[conn] = _driver.jittered_expiry(self.max_lifetime)
        return conn

    def _expired(self, conn: Any) -> bool:
        import time

        with self._expiry_lock:
            return self._expiry.get(conn, 0.0) <= time.monotonic()

    def getconn(self, key: Any = None) -> Any:
        """Take a connection; one past its max lifetime is closed and another taken instead."""
        for _ in range(self.maxconn + 1):  # bounded: even a new connection can be expired
            conn = super().getconn(key)
            if not self._expired(conn):
                return conn
            from dsqlkit import _log

            _log.debug("psycopg2 pool: closing a connection past max_lifetime")
            super().putconn(conn, key, close=True)
        return super().getconn(key)

    def putconn(self, conn: Any, key: Any = None, close: bool = False) -> None:
        """Give a connection back; one past its max lifetime is closed instead of kept."""
        super().putconn(conn, key, close=close or self._expired(conn))

    def __enter__(self) -> AuroraDSQLThreadedConnectionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.closeall()

    def run_transaction(self, callback: Callable[[Any], T], *, retry: RetrySetting = None) -> T:
        """Run ``callback(conn)`` in a transaction on a pooled connection; re-run on OCC conflict.

        ``retry``: this call's policy; None inherits the pool's (see
        :data:`dsqlkit.retry.RetrySetting`).
        """
        from dsqlkit.retry import resolve_retry_config, run_with_occ_retry

        def execute() -> T:
            conn = self.getconn()
            try:
                return _once(conn, callback)
            finally:
                self.putconn(conn)

        return run_with_occ_retry(execute, resolve_retry_config(retry, self._retry))


# --- The registry's row (dsqlkit.drivers) ------------------------------------------------------


def _owns(target: object) -> bool:
    return isinstance(target, (Connection, pool.AbstractConnectionPool))


def _is_connection(target: object) -> bool:
    return isinstance(target, Connection)


def _state(conn: Any) -> str:
    ext = psycopg2.extensions
    status = conn.get_transaction_status() if not conn.closed else ext.TRANSACTION_STATUS_UNKNOWN
    if status == ext.TRANSACTION_STATUS_UNKNOWN:
        return "closed"
    return "idle" if status == ext.TRANSACTION_STATUS_IDLE else "open-transaction"


def _ping(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    if not conn.autocommit:
        conn.rollback()  # the SELECT opened a transaction: leave the connection idle


def _discard(conn: Any) -> None:
    import contextlib

    with contextlib.suppress(Exception):
        conn.close()


def _borrow(target: Any) -> Any:
    """A context manager giving a connection: ``target`` itself or one of its pool's."""
    import contextlib

    @contextlib.contextmanager
    def borrowed() -> Iterator[Any]:
        if _is_connection(target):
            yield target
            return
        conn = target.getconn()
        try:
            yield conn
        finally:
            target.putconn(conn)

    return borrowed()


def _driver_ops() -> DriverOps:
    from dsqlkit._driver import DriverOps

    global _OPS
    if _OPS is None:
        _OPS = DriverOps(
            name="psycopg2",
            is_async=False,
            connect=connect,
            transaction=transaction,
            owns=_owns,
            is_connection=_is_connection,
            state=_state,
            ping=_ping,
            rollback=lambda conn: conn.rollback(),
            discard=_discard,
            borrow=_borrow,
            paramstyle="format",
        )
    return _OPS


_OPS: DriverOps | None = None
