"""psycopg 3 connections and transactions for :mod:`dsqlkit.psycopg` (its public names live there).

Kept apart from the pools (:mod:`dsqlkit._psycopg_pool`) so that ``import dsqlkit.psycopg`` does
not import psycopg_pool, and from :mod:`dsqlkit._driver` (imported at the first connect).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from dsqlkit._driver import DriverOps, Plan
    from dsqlkit.retry import RetrySetting

T = TypeVar("T")
#: Pools hand a connect plan made once to every new connection under this keyword.
PLAN = "_dsqlkit_plan"


def _plan(driver: str, conninfo: str, kwargs: dict[str, Any]) -> Plan:
    from dsqlkit import _driver

    plan: Plan | None = kwargs.pop(PLAN, None)
    return plan if plan is not None else _driver.plan(driver, conninfo or None, kwargs)


def _connect_kwargs(plan: Plan) -> dict[str, Any]:
    from dsqlkit import _driver

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
        from dsqlkit import _driver

        plan = _plan("psycopg", conninfo, kwargs)
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
        from dsqlkit import _driver

        plan = _plan("psycopg_async", conninfo, kwargs)
        base = super().connect
        arguments = _connect_kwargs(plan)
        return await _driver.open_async(plan, lambda password: base(password=password, **arguments))


#: DB-API entry point, as in the official connector.
connect = DSQLConnection.connect
#: ``await connect_async(...)`` returns a ``psycopg.AsyncConnection``.
connect_async = DSQLAsyncConnection.connect


# --- Transactions with OCC retry ---------------------------------------------------------------


def once(conn: psycopg.Connection[Any], callback: Callable[[psycopg.Connection[Any]], T]) -> T:
    """Run ``callback`` in one transaction on ``conn``: commit, or roll back and raise."""
    from dsqlkit import _driver

    autocommit = conn.autocommit
    if autocommit:  # the callback's statements must share one transaction
        conn.autocommit = False
    return _driver.commit_or_rollback(conn, callback, autocommit=autocommit)


async def aonce(
    conn: psycopg.AsyncConnection[Any],
    callback: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
) -> T:
    """Async twin of :func:`once`."""
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
            from dsqlkit import _log

            _log.debug("rollback failed: %s", type(exc).__name__)
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
    from dsqlkit.retry import resolve_retry_config, run_with_occ_retry

    return run_with_occ_retry(lambda: once(conn, callback), resolve_retry_config(retry))


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
    from dsqlkit.retry import arun_with_occ_retry, resolve_retry_config

    return await arun_with_occ_retry(lambda: aonce(conn, callback), resolve_retry_config(retry))


# --- The registry's rows (dsqlkit.drivers) -----------------------------------------------------


def _async_pool_class() -> type | None:
    import sys

    module = sys.modules.get("psycopg_pool")  # a pool exists only if psycopg_pool was imported
    return None if module is None else module.AsyncConnectionPool


def _is_async_target(target: object) -> bool:
    if isinstance(target, psycopg.AsyncConnection):
        return True
    pool_class = _async_pool_class()
    return pool_class is not None and isinstance(target, pool_class)


def _state(conn: Any) -> str:
    """The state of a sync or async psycopg connection, from its flags (no I/O)."""
    if conn.closed or conn.broken:
        return "closed"
    status = conn.info.transaction_status
    if status == psycopg.pq.TransactionStatus.UNKNOWN:
        return "closed"
    return "idle" if status == psycopg.pq.TransactionStatus.IDLE else "open-transaction"


def _ping(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT 1")
    if not conn.autocommit:
        conn.rollback()  # the SELECT opened a transaction: leave the connection idle


async def _aping(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("SELECT 1")
    if not conn.autocommit:
        await conn.rollback()


def _discard(conn: psycopg.Connection[Any]) -> None:
    import contextlib

    with contextlib.suppress(Exception):
        conn.close()


async def _adiscard(conn: psycopg.AsyncConnection[Any]) -> None:
    import contextlib

    with contextlib.suppress(Exception):
        await conn.close()


def _borrow(target: Any) -> Any:
    import contextlib

    @contextlib.contextmanager
    def borrowed() -> Iterator[Any]:
        if isinstance(target, psycopg.Connection):
            yield target
        else:
            with target.connection() as conn:
                yield conn

    return borrowed()


def _aborrow(target: Any) -> Any:
    import contextlib

    @contextlib.asynccontextmanager
    async def borrowed() -> AsyncIterator[Any]:
        if isinstance(target, psycopg.AsyncConnection):
            yield target
        else:
            async with target.connection() as conn:
                yield conn

    return borrowed()


async def _arollback(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.rollback()


def driver_ops(is_async: bool) -> DriverOps:
    """The registry row of ``psycopg`` (sync) or ``psycopg_async``, built once."""
    from dsqlkit._driver import DriverOps

    ops = _OPS.get(is_async)
    if ops is None:
        if is_async:
            ops = DriverOps(
                name="psycopg_async",
                is_async=True,
                connect=connect_async,
                transaction=atransaction,
                owns=_is_async_target,
                is_connection=lambda target: isinstance(target, psycopg.AsyncConnection),
                state=_state,
                ping=_aping,
                rollback=_arollback,
                discard=_adiscard,
                borrow=_aborrow,
                paramstyle="format",
            )
        else:
            ops = DriverOps(
                name="psycopg",
                is_async=False,
                connect=connect,
                transaction=transaction,
                owns=lambda target: not _is_async_target(target),
                is_connection=lambda target: isinstance(target, psycopg.Connection),
                state=_state,
                ping=_ping,
                rollback=lambda conn: conn.rollback(),
                discard=_discard,
                borrow=_borrow,
                paramstyle="format",
            )
        _OPS[is_async] = ops
    return ops


_OPS: dict[bool, DriverOps] = {}
