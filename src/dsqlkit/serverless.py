"""A connection reused across serverless invocations, replaced before DSQL's 60-minute cap.

Keep one :class:`ReusableConnection` in a module global; each invocation takes the warm
connection with ``with reusable.connection() as conn:`` (or ``async with
reusable.aconnection()``). Handing it out costs no round trip: the driver's own flags say
whether it is closed or broken and whether a transaction was left open. It is replaced (a new
connection, a fresh token) when it is older than ``max_age``, closed, broken, or failed its
last use and then fails a ``SELECT 1``. It is never replaced while a caller holds it, so a
caller's transaction is never cut. The same object serves a long batch job: take it per unit
of work and the job outlives any number of connection lifetimes::

    import dsqlkit.serverless

    db = dsqlkit.serverless.ReusableConnection("psycopg", host="...", region="us-east-1")

    def handler(event, context):
        with db.connection() as conn:
            return conn.execute("SELECT count(*) FROM orders").fetchone()[0]

Drivers: a name of :mod:`dsqlkit.drivers` (``"psycopg"``, ``"psycopg2"``, sync; ``"asyncpg"``,
``"psycopg_async"``, async), or any function returning a connection of one of them
(``dsqlkit.psycopg.connect`` etc.).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from dsqlkit import drivers
from dsqlkit import dsql as spec

if TYPE_CHECKING:
    from dsqlkit._driver import DriverOps

__all__ = ["DEFAULT_MAX_AGE", "ReusableConnection"]

logger = logging.getLogger("dsqlkit")

#: 55 minutes: 5 minutes (DSQL's longest transaction) before the 60-minute connection cap.
DEFAULT_MAX_AGE = spec.CONNECTION_LIFETIME_SECONDS - spec.TRANSACTION_MAX_AGE_SECONDS


def _connect_function(driver: str | Callable[..., Any]) -> tuple[Callable[..., Any], bool]:
    """The connect function for a driver name (or the caller's own) and whether it is async."""
    if callable(driver):
        import inspect

        return driver, inspect.iscoroutinefunction(driver)
    ops = drivers.get(driver)
    return ops.connect, ops.is_async


class ReusableConnection:
    """One connection kept warm across calls and replaced before the server's lifetime cap.

    ``driver``: a driver name or a connect function; ``connect_kwargs``: its arguments.
    ``max_age``: seconds after which the connection is replaced at the next hand-out (default
    55 minutes); ``margin``: up to this many seconds earlier, drawn per connection, so that
    containers started together do not all reconnect together (default 5% of ``max_age``).

    Sync drivers use :meth:`get` / :meth:`connection`; async ones :meth:`aget` /
    :meth:`aconnection`. One caller at a time (a serverless handler): use a pool for
    concurrent work.

    Example::

        db = ReusableConnection("asyncpg", host="...", region="us-east-1", max_age=1800)

        async def handler(event, context):
            async with db.aconnection() as conn:
                return await conn.fetchval("SELECT 1")
    """

    def __init__(
        self,
        driver: str | Callable[..., Any],
        /,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        margin: float | None = None,
        **connect_kwargs: Any,
    ) -> None:
        if not max_age > 0:
            raise ValueError(f"max_age must be > 0 seconds, got {max_age!r}")
        margin = 0.05 * max_age if margin is None else margin
        if not 0 <= margin < max_age:
            raise ValueError(f"margin must be >= 0 and < max_age ({max_age!r}), got {margin!r}")
        self._connect, self.is_async = _connect_function(driver)
        self._kwargs = connect_kwargs
        self.max_age = max_age
        self.margin = margin
        self._conn: Any = None
        self._ops: DriverOps | None = None  # the held connection's registry row
        self._expires = 0.0
        self._born = 0.0
        self._suspect = False  # the last use failed: ping before handing out again
        self._in_use = False
        self._lock = threading.Lock()
        #: How many connections this object has opened (the first one included).
        self.connections_opened = 0

    def __repr__(self) -> str:
        state = "none" if self._conn is None else f"age {self.age:.0f}s"
        return f"ReusableConnection(max_age={self.max_age:g}, {state})"

    @property
    def age(self) -> float:
        """Seconds since the current connection was opened (0 without one)."""
        return 0.0 if self._conn is None else time.monotonic() - self._born

    # --- deciding -----------------------------------------------------------------------------

    def _verdict(self) -> str:
        """What the held connection needs: ``"new"``, ``"rollback"``, ``"ping"`` or ``"ok"``."""
        if self._conn is None or time.monotonic() >= self._expires:
            return "new"
        state = self._driver().state(self._conn)
        if state == "closed":
            return "new"
        if state == "open-transaction":
            return "rollback"  # a previous caller left one open: never hand it on
        return "ping" if self._suspect else "ok"

    def _take(self) -> None:
        with self._lock:
            if self._in_use:
                raise RuntimeError(
                    "this ReusableConnection is in use by another caller: it serves one caller "
                    "at a time; use a pool (dsqlkit.<driver>.create_pool) for concurrent work"
                )
            self._in_use = True

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        """One caller holds the connection for the block (it is never replaced meanwhile)."""
        self._take()
        try:
            yield
        finally:
            self._in_use = False

    @contextlib.contextmanager
    def _lent(self, conn: Any) -> Iterator[Any]:
        """``conn`` for the caller's block; an error there marks it suspect (a ping next time)."""
        try:
            yield conn
        except BaseException:
            self._suspect = True
            raise

    def _driver(self) -> DriverOps:
        assert self._ops is not None, "no connection held"
        return self._ops

    def _opened(self, conn: Any) -> Any:
        """Keep ``conn`` (new) as the held connection; a replacement is logged (sync and async)."""
        now = time.monotonic()
        self._conn, self._born, self._suspect = conn, now, False
        self._ops = drivers.of(conn)
        self._expires = now + self.max_age - random.uniform(0, self.margin)
        self.connections_opened += 1
        if self.connections_opened > 1:
            logger.debug("reusable connection replaced (%d opened)", self.connections_opened)
        return conn

    def _require(self, want_async: bool) -> None:
        if self.is_async != want_async:
            hint = (
                "await .aget() / async with .aconnection()"
                if self.is_async
                else ".get() / with .connection()"
            )
            raise TypeError(
                f"this ReusableConnection's driver is {'async' if self.is_async else 'sync'}: use {hint}"
            )

    # --- sync ---------------------------------------------------------------------------------

    def get(self) -> Any:
        """The warm connection, replaced first if it is too old, closed or broken.

        Prefer :meth:`connection`, which also keeps it from being replaced while you use it.
        Inside a :meth:`connection` block it returns the held connection as it is.
        """
        self._require(False)
        if self._in_use and self._conn is not None:
            return self._conn
        return self._hand_out()

    def _hand_out(self) -> Any:
        verdict = self._verdict()
        ops = self._ops
        if verdict == "rollback" and ops is not None:
            verdict = "ok" if self._try(lambda: ops.rollback(self._conn)) else "new"
        if verdict == "ping" and ops is not None:
            verdict = "ok" if self._try(lambda: ops.ping(self._conn)) else "new"
        if verdict == "new":
            self._discard()
            self._opened(self._connect(**self._kwargs))
        return self._conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """``with reusable.connection() as conn:``: the connection, held for the block.

        An error in the block marks it suspect (one ``SELECT 1`` at the next hand-out).
        """
        self._require(False)
        with self._held(), self._lent(self._hand_out()) as conn:
            yield conn

    def close(self) -> None:
        """Close the held connection (the next :meth:`get` opens a new one)."""
        self._require(False)
        self._discard()

    def _try(self, action: Callable[[], object]) -> bool:
        try:
            action()
        except Exception as exc:
            logger.debug("reusable connection check failed: %s", type(exc).__name__)
            return False
        self._suspect = False
        return True

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._driver().discard(conn)

    # --- async --------------------------------------------------------------------------------

    async def aget(self) -> Any:
        """Async twin of :meth:`get`."""
        self._require(True)
        if self._in_use and self._conn is not None:
            return self._conn
        return await self._ahand_out()

    async def _ahand_out(self) -> Any:
        verdict = self._verdict()
        ops = self._ops
        if verdict == "rollback" and ops is not None:
            verdict = "ok" if await self._atry(ops.rollback) else "new"
        if verdict == "ping" and ops is not None:
            verdict = "ok" if await self._atry(ops.ping) else "new"
        if verdict == "new":
            await self._adiscard()
            self._opened(await self._connect(**self._kwargs))
        return self._conn

    @contextlib.asynccontextmanager
    async def aconnection(self) -> AsyncIterator[Any]:
        """Async twin of :meth:`connection`: ``async with reusable.aconnection() as conn:``."""
        self._require(True)
        with self._held(), self._lent(await self._ahand_out()) as conn:
            yield conn

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self._require(True)
        await self._adiscard()

    async def _atry(self, action: Callable[[Any], Any]) -> bool:
        try:
            await action(self._conn)
        except Exception as exc:
            logger.debug("reusable connection check failed: %s", type(exc).__name__)
            return False
        self._suspect = False
        return True

    async def _adiscard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._driver().discard(conn)
