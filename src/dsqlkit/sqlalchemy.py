"""SQLAlchemy engines for Aurora DSQL (sync and async) and an OCC retry helper for sessions.

The engines use the official Aurora DSQL dialect (``auroradsql``, from aurora-dsql-sqlalchemy:
``CREATE INDEX ASYNC``, ``NOT VALID`` constraints, one DDL per transaction, DSQL-shaped catalog
queries), ``auroradsql+psycopg`` / ``+psycopg2`` as shipped and ``auroradsql+asyncpg`` /
``+psycopg_async`` built on it by :mod:`dsqlkit._sqlalchemy_dialects`. Each pooled connection is
opened by dsqlkit's connect (a fresh IAM token, TLS defaults, connect backoff, rate limit),
recycled before DSQL's 60-minute cap and pinged before use (``pip install 'dsqlkit[sqlalchemy]'``)::

    from sqlalchemy.orm import sessionmaker
    import dsqlkit.sqlalchemy as dsa

    engine = dsa.create_engine("abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws")
    Session = sessionmaker(engine)
    dsa.run_transaction(Session, lambda s: s.add(Order(id=1)))   # re-run on OCC conflicts

    aengine = dsa.create_async_engine(host="...", region="us-east-1", driver="asyncpg")

DSQL quirks handled: REPEATABLE READ pinned for asyncpg (the only level DSQL accepts); no hstore lookup at first connect (psycopg's
runs in a SAVEPOINT, which DSQL refuses); the application name is
``sqlalchemy:dsqlkit-<driver>/<version>``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy
from sqlalchemy.orm import Session, sessionmaker

from dsqlkit import _driver, drivers
from dsqlkit.retry import (
    RetrySetting,
    arun_with_occ_retry,
    resolve_retry_config,
    run_with_occ_retry,
)

if TYPE_CHECKING:  # sqlalchemy.ext.asyncio needs greenlet: imported only for async use
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = ["arun_transaction", "create_async_engine", "create_engine", "run_transaction"]

T = TypeVar("T")
#: Recycle 5 minutes (DSQL's longest transaction) before the server's 60-minute cap.
POOL_RECYCLE = _driver.POOL_MAX_LIFETIME
#: DSQL runs every transaction as REPEATABLE READ.
ISOLATION_LEVEL = "REPEATABLE READ"
_SYNC = {"psycopg": "auroradsql+psycopg://", "psycopg2": "auroradsql+psycopg2://"}
_ASYNC = {"asyncpg": "auroradsql+asyncpg://", "psycopg_async": "auroradsql+psycopg_async://"}


def _require_dialect(is_async: bool) -> None:
    """The official dialect must be installed; the async ones are registered on first use."""
    try:
        if is_async:
            from dsqlkit._sqlalchemy_dialects import register

            register()
        else:
            import aurora_dsql_sqlalchemy  # noqa: F401  (its entry points name the dialects)
    except ImportError as exc:
        raise ImportError(
            f"dsqlkit's SQLAlchemy engines use the official Aurora DSQL dialect ({exc.name} is "
            "missing): pip install 'dsqlkit[sqlalchemy]' (adds aurora-dsql-sqlalchemy)"
        ) from exc


def _prepare(
    driver: str, table: dict[str, str], dsn: str | None, connect_kwargs: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The dialect URL and the connect arguments, validated now (not at the first checkout)."""
    if driver not in table:
        hint = " (psycopg's async driver is 'psycopg_async')" if driver == "psycopg" else ""
        raise ValueError(
            f"driver must be one of {', '.join(map(repr, table))}, got {driver!r}{hint}"
        )
    kwargs = dict(connect_kwargs)
    if dsn is not None:
        kwargs["dsn" if driver in ("psycopg2", "asyncpg") else "conninfo"] = dsn
    if not (kwargs.get("orm_prefix") or kwargs.get("application_name")):
        kwargs["orm_prefix"] = "sqlalchemy"
    probe = dict(kwargs)
    probe_dsn = probe.pop("dsn", None) or probe.pop("conninfo", None)
    _driver.plan(driver, probe_dsn, probe)  # clear errors for bad arguments, at creation
    return table[driver], kwargs


def _engine_options(driver: str, options: dict[str, Any]) -> dict[str, Any]:
    if driver != "asyncpg":
        # DSQL has no hstore; psycopg's lookup for it would run in a SAVEPOINT, which DSQL refuses.
        options.setdefault("use_native_hstore", False)
    options.setdefault("pool_recycle", POOL_RECYCLE)
    options.setdefault("pool_pre_ping", True)
    if driver == "asyncpg":
        # SQLAlchemy's asyncpg adapter passes any level it is given to BEGIN: pin DSQL's own.
        # (psycopg2 would SET default_transaction_isolation, which DSQL refuses: left alone.)
        options.setdefault("isolation_level", ISOLATION_LEVEL)
    if options["pool_recycle"] is None or not 0 < options["pool_recycle"] <= POOL_RECYCLE:
        raise ValueError(
            f"pool_recycle must be between 0 and {POOL_RECYCLE:g} seconds (DSQL closes "
            f"connections after 60 minutes), got {options['pool_recycle']!r}"
        )
    return options


def create_engine(
    dsn: str | None = None,
    *,
    driver: str = "psycopg",
    engine_options: dict[str, Any] | None = None,
    **connect_kwargs: Any,
) -> sqlalchemy.Engine:
    """A SQLAlchemy ``Engine`` whose pool connects through ``dsqlkit.<driver>.connect``.

    ``dsn``: a host, cluster id or DSN (or give ``host=``...); ``driver``: ``"psycopg"`` or
    ``"psycopg2"``; ``connect_kwargs``: the connector's arguments (region, user, profile,
    ``connect_retry``, ``rate_limit``, driver options). ``engine_options`` go to
    ``sqlalchemy.create_engine`` (defaults: ``pool_recycle`` 55 min, ``pool_pre_ping``,
    REPEATABLE READ).

    Example::

        engine = create_engine(host="localhost", region="us-east-1", sslrootcert="ca.pem",
                               engine_options={"pool_size": 5})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    """
    url, kwargs = _prepare(driver, _SYNC, dsn, connect_kwargs)
    _require_dialect(is_async=False)
    connect = drivers.get(driver).connect
    options = _engine_options(driver, dict(engine_options or {}))
    return sqlalchemy.create_engine(url, creator=lambda: connect(**kwargs), **options)


def create_async_engine(
    dsn: str | None = None,
    *,
    driver: str = "asyncpg",
    engine_options: dict[str, Any] | None = None,
    **connect_kwargs: Any,
) -> AsyncEngine:
    """Async twin of :func:`create_engine`: ``driver`` is ``"asyncpg"`` or ``"psycopg_async"``.

    Example::

        engine = create_async_engine(host="localhost", region="us-east-1", driver="asyncpg")
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    """
    from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine

    url, kwargs = _prepare(driver, _ASYNC, dsn, connect_kwargs)
    _require_dialect(is_async=True)
    connect: Callable[..., Awaitable[Any]] = drivers.get(driver).connect

    async def creator() -> Any:
        return await connect(**kwargs)

    options = _engine_options(driver, dict(engine_options or {}))
    return sa_create_async_engine(url, async_creator=creator, **options)


def run_transaction(
    target: Session | sessionmaker[Any] | sqlalchemy.Engine,
    fn: Callable[[Any], T],
    *,
    retry: RetrySetting = None,
) -> T:
    """Run ``fn`` in one transaction and commit; re-run it all on an OCC conflict.

    ``target``: a ``sessionmaker`` (a new session per attempt: the cleanest), a ``Session``
    (rolled back and reused; it must have no transaction open) or an ``Engine`` (``fn`` gets
    a ``Connection``). OCC errors are recognised through SQLAlchemy's wrapping (``.orig``).

    Example::

        def pay(session):
            account = session.get(Account, 1)
            account.balance -= 10
        run_transaction(Session, pay, retry=OCCRetryConfig(max_retries=5))
    """
    config = resolve_retry_config(retry)

    def attempt() -> T:
        if isinstance(target, sqlalchemy.Engine):
            with target.begin() as conn:
                return fn(conn)
        if isinstance(target, Session):
            with target.begin():
                return fn(target)
        with target.begin() as session:
            return fn(session)

    return run_with_occ_retry(attempt, config)


async def arun_transaction(
    target: AsyncSession | async_sessionmaker[Any] | AsyncEngine,
    fn: Callable[[Any], Awaitable[T]],
    *,
    retry: RetrySetting = None,
) -> T:
    """Async twin of :func:`run_transaction` (``AsyncSession``, ``async_sessionmaker`` or
    ``AsyncEngine``; ``fn`` is a coroutine function).

    Example::

        async def pay(session):
            (await session.get(Account, 1)).balance -= 10
        await arun_transaction(AsyncSessionMaker, pay)
    """
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    config = resolve_retry_config(retry)

    async def attempt() -> T:
        if isinstance(target, AsyncEngine):
            async with target.begin() as conn:
                return await fn(conn)
        if isinstance(target, AsyncSession):
            async with target.begin():
                return await fn(target)
        async with target.begin() as session:
            return await fn(session)

    return await arun_with_occ_retry(attempt, config)
