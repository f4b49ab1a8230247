"""psycopg_pool pools of IAM connections for :mod:`dsqlkit.psycopg` (its public names live there).

Imported on first use of a pool name, so that ``import dsqlkit.psycopg`` does not import
psycopg_pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from dsqlkit import _driver
from dsqlkit._psycopg import PLAN, DSQLAsyncConnection, DSQLConnection, aonce, once
from dsqlkit.retry import (
    RetrySetting,
    arun_with_occ_retry,
    resolve_retry_config,
    run_with_occ_retry,
)

T = TypeVar("T")


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
    driver = "psycopg_async" if issubclass(base_class, DSQLAsyncConnection) else "psycopg"
    plan = _driver.plan(driver, conninfo or None, connect_kwargs)
    pool_kwargs["kwargs"] = {PLAN: plan}
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
                return once(conn, callback)

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
                return await aonce(conn, callback)

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
