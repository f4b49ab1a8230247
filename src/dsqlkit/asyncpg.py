"""Aurora DSQL with asyncpg: IAM connections, pools with a max lifetime, OCC retry.

A drop-in for the official ``aurora_dsql_asyncpg``; returns asyncpg's own connections and a
``asyncpg.Pool`` subclass::

    import dsqlkit.asyncpg as dsql

    conn = await dsql.connect("abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws")
    pool = await dsql.create_pool(host="...", region="us-east-1", min_size=1, max_size=10)
    await pool.run_transaction(lambda conn: conn.execute("UPDATE t SET n = n + 1"))

Differences from the official connector: TLS from ``sslmode=`` / ``sslrootcert=``, else libpq's
``PGSSLMODE`` / ``PGSSLROOTCERT``, else ``verify-full`` with the system CAs, over direct TLS with
ALPN (a context dsqlkit builds); a caller's own ``ssl=`` context is used as is over SSLRequest
(``direct_tls=True`` to ask for direct TLS); tokens signed off the event loop; connect backoff and rate limiting; pools replace
connections older than ``max_lifetime`` (55 minutes) and close idle ones after 10 minutes; OCC
retry on by default in pools.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from dsqlkit import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # for type checkers; loaded on first use at run time (see __getattr__)
    from collections.abc import AsyncIterator

    from dsqlkit._driver import DriverOps, Plan
    from dsqlkit.retry import OCCRetryConfig, RetrySetting, is_occ_error

__all__ = [
    "AuroraDSQLPool",
    "OCCRetryConfig",
    "__version__",
    "connect",
    "create_pool",
    "is_occ_error",
    "transaction",
]

T = TypeVar("T")
#: DSQL refuses asyncpg's default reset (advisory unlocks, UNLISTEN): reset the session only.
_RESET = "RESET ALL"
#: Pool defaults shared with the other drivers (dsqlkit._driver's, repeated so that importing
#: this module does not import the connector core; tests/unit/test_private.py checks they agree).
_POOL_MAX_LIFETIME = 55 * 60.0
_POOL_MAX_IDLE = 10 * 60.0


def __getattr__(name: str) -> Any:
    """Names loaded on first use, so that ``import dsqlkit.asyncpg`` costs next to nothing."""
    if name in ("OCCRetryConfig", "is_occ_error"):
        from dsqlkit import retry

        return getattr(retry, name)
    if name == "driver_ops":
        return _driver_ops()
    raise AttributeError(f"module 'dsqlkit.asyncpg' has no attribute {name!r}")


async def _open(plan: Plan, **driver_args: Any) -> Any:
    from dsqlkit import _driver

    arguments = {**_driver.asyncpg_kwargs(plan), **driver_args}
    return await _driver.open_async(
        plan, lambda password: asyncpg.connect(password=password, **arguments)
    )


async def connect(dsn: str | None = None, **kwargs: Any) -> Any:
    """Connect with the official connector's arguments (host, cluster id or URL DSN, region,
    user, profile, custom_credentials_provider, token_duration_secs), dsqlkit's options
    (``connect_retry``, ``rate_limit``, ``orm_prefix``), ``sslmode``/``sslrootcert`` and any
    ``asyncpg.connect`` argument. ``password``/``passfile`` are not accepted.

    Example::

        conn = await connect(host="localhost", region="us-east-1", sslrootcert="ca.pem")
    """
    from dsqlkit import _driver

    return await _open(_driver.plan("asyncpg", dsn, kwargs))


async def _once(conn: Any, callback: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``callback(conn)`` between BEGIN and COMMIT; roll back and raise on error."""
    await conn.execute("BEGIN")
    try:
        result = await callback(conn)
        await conn.execute("COMMIT")
        return result
    except BaseException:
        try:
            await conn.execute("ROLLBACK")
        except Exception as exc:  # a broken connection: the original error matters more
            from dsqlkit import _log

            _log.debug("rollback failed: %s", type(exc).__name__)
        raise


async def transaction(
    conn: Any, callback: Callable[[Any], Awaitable[T]], *, retry: RetrySetting = None
) -> T:
    """Run ``callback(conn)`` in a transaction and commit; re-run it on an OCC conflict.

    Example::

        async def add(conn):
            await conn.execute("UPDATE counters SET n = n + 1 WHERE id = 1")
        await transaction(conn, add)
    """
    from dsqlkit.retry import arun_with_occ_retry, resolve_retry_config

    return await arun_with_occ_retry(lambda: _once(conn, callback), resolve_retry_config(retry))


class AuroraDSQLPool(asyncpg.Pool):
    """An ``asyncpg.Pool`` of IAM-authenticated connections with a max lifetime and OCC retry.

    Create it with :func:`create_pool`. Connections older than ``max_lifetime`` (jittered down
    by up to 5%) are closed and replaced when acquired or released.
    """

    __slots__ = ("_dsqlkit_expiry", "_dsqlkit_max_lifetime", "_retry")

    def __init__(
        self, *args: Any, retry: RetrySetting = None, max_lifetime: float, **kwargs: Any
    ) -> None:
        from dsqlkit import _driver, _private

        _private.require(asyncpg.Pool, ("_acquire",), "asyncpg")
        _private.require(PoolConnectionProxy, ("_con",), "asyncpg")
        _driver.check_lifetimes(max_lifetime)
        self._retry = retry
        self._dsqlkit_max_lifetime = max_lifetime
        # raw connection -> monotonic deadline; weak so closed connections drop out
        self._dsqlkit_expiry: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        super().__init__(*args, **kwargs)

    def _born(self, conn: Any) -> None:
        from dsqlkit import _driver

        self._dsqlkit_expiry[conn] = _driver.jittered_expiry(self._dsqlkit_max_lifetime)

    def _expired(self, proxy: Any) -> bool:
        # asyncpg exposes no public way to reach the connection behind a pool proxy.
        raw = proxy._con if isinstance(proxy, PoolConnectionProxy) else proxy
        return raw is not None and self._dsqlkit_expiry.get(raw, 0.0) <= time.monotonic()

    async def _acquire(self, timeout: float | None) -> Any:
        proxy = await super()._acquire(timeout)
        # Bounded: with a lifetime shorter than a connect, even new connections are expired.
        for _ in range(self.get_max_size()):
            if not self._expired(proxy):
                break
            from dsqlkit import _log

            _log.debug("asyncpg pool: replacing a connection past max_lifetime")
            await proxy.close()  # asyncpg returns the holder to the pool; it reconnects
            proxy = await super()._acquire(timeout)
        return proxy

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        """Release ``connection``; one past its max lifetime is closed instead of kept."""
        if self._expired(connection):
            await connection.close(timeout=timeout)
            return
        await super().release(connection, timeout=timeout)

    async def run_transaction(
        self, callback: Callable[[Any], Awaitable[T]], *, retry: RetrySetting = None
    ) -> T:
        """Run ``callback(conn)`` in a transaction on a pooled connection; re-run on OCC conflict.

        Example::

            await pool.run_transaction(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
        """

        from dsqlkit.retry import arun_with_occ_retry, resolve_retry_config

        async def execute() -> T:
            async with self.acquire() as conn:
                return await _once(conn, callback)

        return await arun_with_occ_retry(execute, resolve_retry_config(retry, self._retry))


async def create_pool(
    dsn: str | None = None,
    *,
    retry: RetrySetting = None,
    min_size: int = 1,
    max_size: int = 10,
    max_queries: int = 50000,
    max_inactive_connection_lifetime: float = _POOL_MAX_IDLE,
    max_lifetime: float = _POOL_MAX_LIFETIME,
    setup: Any = None,
    init: Any = None,
    reset: Any = None,
    connection_class: type = asyncpg.Connection,
    record_class: type = asyncpg.Record,
    **connect_kwargs: Any,
) -> AuroraDSQLPool:
    """Create and open an :class:`AuroraDSQLPool`; connection arguments as for :func:`connect`.

    The parameters are resolved once for the pool; each new connection gets a fresh token and
    goes through the rate limiter, so a large ``min_size`` warms up staggered.

    Example::

        async with await create_pool(host="localhost", region="us-east-1", max_size=4) as pool:
            await pool.fetchval("SELECT 1")
    """
    from dsqlkit import _driver

    plan = _driver.plan("asyncpg", dsn, connect_kwargs)
    pool: AuroraDSQLPool | None = None

    async def new_connection(*_args: Any, loop: Any = None, **driver_args: Any) -> Any:
        conn = await _open(plan, **driver_args)
        if pool is not None:
            pool._born(conn)
        return conn

    async def reset_session(conn: Any) -> None:
        await conn.execute(_RESET)

    pool = AuroraDSQLPool(
        None,
        retry=retry,
        max_lifetime=max_lifetime,
        min_size=min_size,
        max_size=max_size,
        max_queries=max_queries,
        max_inactive_connection_lifetime=max_inactive_connection_lifetime,
        connect=new_connection,
        setup=setup,
        init=init,
        reset=reset or reset_session,
        loop=None,
        connection_class=connection_class,
        record_class=record_class,
    )
    await pool
    return pool


# --- The registry's row (dsqlkit.drivers) ------------------------------------------------------


def _owns(target: object) -> bool:
    return isinstance(target, (asyncpg.Connection, PoolConnectionProxy, asyncpg.Pool))


def _is_connection(target: object) -> bool:
    return isinstance(target, (asyncpg.Connection, PoolConnectionProxy))


def _state(conn: Any) -> str:
    if conn.is_closed():
        return "closed"
    return "open-transaction" if conn.is_in_transaction() else "idle"


async def _ping(conn: Any) -> None:
    await conn.fetchval("SELECT 1")


async def _rollback(conn: Any) -> None:
    await conn.execute("ROLLBACK")


async def _discard(conn: Any) -> None:
    conn.terminate()  # no round trip: the server may already have closed it


def _borrow(target: Any) -> Any:
    import contextlib

    @contextlib.asynccontextmanager
    async def borrowed() -> AsyncIterator[Any]:
        if _is_connection(target):
            yield target
        else:
            async with target.acquire() as conn:
                yield conn

    return borrowed()


def _driver_ops() -> DriverOps:
    from dsqlkit._driver import DriverOps

    global _OPS
    if _OPS is None:
        _OPS = DriverOps(
            name="asyncpg",
            is_async=True,
            connect=connect,
            transaction=transaction,
            owns=_owns,
            is_connection=_is_connection,
            state=_state,
            ping=_ping,
            rollback=_rollback,
            discard=_discard,
            borrow=_borrow,
            paramstyle="numeric",
        )
    return _OPS


_OPS: DriverOps | None = None
