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

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from dsqlkit import __version__, _driver
from dsqlkit.retry import (
    OCCRetryConfig,
    RetrySetting,
    arun_with_occ_retry,
    is_occ_error,
    resolve_retry_config,
    run_with_occ_retry,
)

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

T = TypeVar("T")
logger = logging.getLogger("dsqlkit")
#: Pools hand a connect plan made once to every new connection under this keyword.
_PLAN = "_dsqlkit_plan"


def _plan(conninfo: str, kwargs: dict[str, Any]) -> _driver.Plan:
    plan = kwargs.pop(_PLAN, None)
    return plan if plan is not None else _driver.plan("psycopg", conninfo or None, kwargs)


def _connect_kwargs(plan: _driver.Plan) -> dict[str, Any]:
    return _driver.libpq_kwargs(plan, psycopg.pq.version())


class DSQLConnection(psycopg.Connection[Any]):
    """A psycopg ``Connection`` whose ``connect`` signs an IAM token; use as psycopg_pool's
    ``connection_class=``.

    Example::

        conn = DSQLConnection.connect(host="localhost", region="us-east-1", sslrootcert="ca.pem")
    """

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> DSQLConnection:  # type: ignore[override]
        """Connect with the official connector's arguments (host, cluster id or URL DSN, region,
        user, profile, custom_credentials_provider, token_duration_secs), dsqlkit's options
        (``connect_retry``, ``rate_limit``, ``orm_prefix``) and any psycopg argument."""
        plan = _plan(conninfo, kwargs)
        base = super().connect
        arguments = _connect_kwargs(plan)
        return _driver.open_sync(plan, lambda password: base(password=password, **arguments))


class DSQLAsyncConnection(psycopg.AsyncConnection[Any]):
    """Async twin of :class:`DSQLConnection`, for ``AsyncConnectionPool(connection_class=...)``.

    Example::

        conn = await DSQLAsyncConnection.connect(host="localhost", region="us-east-1")
    """

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> DSQLAsyncConnection:  # type: ignore[override]
        """Async twin of :meth:`DSQLConnection.connect`; the token never blocks the event loop."""
        plan = _plan(conninfo, kwargs)
        base = super().connect
        arguments = _connect_kwargs(plan)
        return await _driver.open_async(plan, lambda password: base(password=password, **arguments))


#: DB-API entry point, as in the official connector.
connect = DSQLConnection.connect
#: ``await connect_async(...)`` returns a ``psycopg.AsyncConnection``.
connect_async = DSQLAsyncConnection.connect


# --- Transactions with OCC retry ---------------------------------------------------------------


def _once(conn: psycopg.Connection[Any], callback: Callable[[psycopg.Connection[Any]], T]) -> T:
    """Run ``callback`` in one transaction on ``conn``: commit, or roll back and raise."""
    autocommit = conn.autocommit
    if autocommit:  # the callback's statements must share one transaction
        conn.autocommit = False
    return _driver.commit_or_rollback(conn, callback, autocommit=autocommit)


async def _aonce(
    conn: psycopg.AsyncConnection[Any],
    callback: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
) -> T:
    """Async twin of :func:`_once`."""
    autocommit = conn.autocommit
    if autocommit:
        await conn.set_autocommit(False)
    try:
        result = await callback(conn)
        await conn.commit()
        return result
    except BaseException:
        try:
            await conn.rollback()
        except Exception as exc:
            logger.debug("rollback failed: %s", type(exc).__name__)
        raise
    finally:
        if autocommit and not conn.closed:
            await conn.set_autocommit(True)


def transaction(
    conn: psycopg.Connection[Any],
    callback: Callable[[psycopg.Connection[Any]], T],
    *,
    retry: RetrySetting = None,
) -> T:
    """Run ``callback(conn)`` in a transaction and commit; re-run it on an OCC conflict.

    Any other error rolls back and is raised at once. ``retry``: an :class:`OCCRetryConfig`,
    True or None (the defaults) or False (no retry): see :data:`dsqlkit.retry.RetrySetting`.

    Example::

        def add(conn):
            conn.execute("UPDATE counters SET n = n + 1 WHERE id = 1")
        transaction(conn, add)
    """
    config = resolve_retry_config(retry)
    return run_with_occ_retry(lambda: _once(conn, callback), config)


async def atransaction(
    conn: psycopg.AsyncConnection[Any],
    callback: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
    *,
    retry: RetrySetting = None,
) -> T:
    """Async twin of :func:`transaction`.

    Example::

        async def add(conn):
            await conn.execute("UPDATE counters SET n = n + 1 WHERE id = 1")
        await atransaction(conn, add)
    """
    config = resolve_retry_config(retry)
    return await arun_with_occ_retry(lambda: _aonce(conn, callback), config)


# --- Pools -------------------------------------------------------------------------------------


def _pool_arguments(
    conninfo: str, pool_kwargs: dict[str, Any], base_class: type
) -> tuple[str, dict[str, Any]]:
    """Plan once for the whole pool and fill in dsqlkit's pool defaults."""
    connection_class = pool_kwargs.setdefault("connection_class", base_class)
    if not (isinstance(connection_class, type) and issubclass(connection_class, base_class)):
        raise TypeError(
            f"connection_class must be a subclass of dsqlkit.psycopg.{base_class.__name__} "
            "(it signs the IAM token for every new connection)"
        )
    connect_kwargs = dict(pool_kwargs.pop("kwargs", None) or {})
    plan = _driver.plan("psycopg", conninfo or None, connect_kwargs)
    pool_kwargs["kwargs"] = {_PLAN: plan}
    pool_kwargs.setdefault("max_lifetime", _driver.POOL_MAX_LIFETIME)  # psycopg_pool jitters it
    pool_kwargs.setdefault("max_idle", _driver.POOL_MAX_IDLE)
    return "", pool_kwargs


class AuroraDSQLPool(ConnectionPool[Any]):
    """A psycopg_pool ``ConnectionPool`` of IAM-authenticated connections, with OCC retry.

    ``conninfo`` and ``kwargs=`` take the same connection arguments as :func:`connect`; the
    parameters are resolved once for the pool and every new connection gets a fresh token.
    ``retry`` is the default OCC policy of :meth:`run_transaction` (on by default).

    Example::

        with AuroraDSQLPool("localhost", kwargs={"region": "us-east-1"}, min_size=2) as pool:
            pool.run_transaction(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
    """

    def __init__(self, conninfo: str = "", *, retry: RetrySetting = None, **kwargs: Any) -> None:
        self._retry = retry
        conninfo, kwargs = _pool_arguments(conninfo, kwargs, DSQLConnection)
        super().__init__(conninfo, **kwargs)

    def run_transaction(
        self, callback: Callable[[psycopg.Connection[Any]], T], *, retry: RetrySetting = None
    ) -> T:
        """Run ``callback(conn)`` in a transaction on a pooled connection; re-run on OCC conflict."""

        def execute() -> T:
            with self.connection() as conn:
                return _once(conn, callback)

        return run_with_occ_retry(execute, resolve_retry_config(retry, self._retry))


class AuroraDSQLAsyncPool(AsyncConnectionPool[Any]):
    """Async twin of :class:`AuroraDSQLPool` (psycopg_pool ``AsyncConnectionPool``).

    Example::

        async with AuroraDSQLAsyncPool("localhost", kwargs={"region": "us-east-1"}) as pool:
            await pool.run_transaction(work)
    """

    def __init__(self, conninfo: str = "", *, retry: RetrySetting = None, **kwargs: Any) -> None:
        self._retry = retry
        conninfo, kwargs = _pool_arguments(conninfo, kwargs, DSQLAsyncConnection)
        super().__init__(conninfo, **kwargs)

    async def run_transaction(
        self,
        callback: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
        *,
        retry: RetrySetting = None,
    ) -> T:
        """Async twin of :meth:`AuroraDSQLPool.run_transaction`."""

        async def execute() -> T:
            async with self.connection() as conn:
                return await _aonce(conn, callback)

        return await arun_with_occ_retry(execute, resolve_retry_config(retry, self._retry))


def create_pool(conninfo: str = "", *, retry: RetrySetting = None, **kwargs: Any) -> AuroraDSQLPool:
    """Create an (unopened) :class:`AuroraDSQLPool`; use ``with pool:`` or ``pool.open()``.

    Example::

        pool = create_pool("localhost", kwargs={"region": "us-east-1"}, min_size=1, max_size=4)
    """
    kwargs.setdefault("open", False)
    return AuroraDSQLPool(conninfo, retry=retry, **kwargs)


def create_async_pool(
    conninfo: str = "", *, retry: RetrySetting = None, **kwargs: Any
) -> AuroraDSQLAsyncPool:
    """Create an (unopened) :class:`AuroraDSQLAsyncPool`; use ``async with pool:`` or ``await pool.open()``.

    Example::

        pool = create_async_pool("localhost", kwargs={"region": "us-east-1"})
        async with pool:
            ...
    """
    kwargs.setdefault("open", False)
    return AuroraDSQLAsyncPool(conninfo, retry=retry, **kwargs)
