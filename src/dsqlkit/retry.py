"""Retry policies: OCC conflicts (re-run the transaction) and connect backoff (re-open the connection).

Both use exponential backoff with *full jitter* (a delay drawn uniformly from zero to the capped
exponential), which spreads competing clients best. Errors are classified through their whole
cause chain (``__cause__``, ``__context__`` and SQLAlchemy's ``.orig``), so an OCC error wrapped by
an ORM is still recognised.

Example::

    from dsqlkit.retry import OCCRetryConfig, is_occ_error, run_with_occ_retry

    def transfer():
        ...  # one whole transaction: begin, statements, commit
    run_with_occ_retry(transfer, OCCRetryConfig(max_retries=5))
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from dsqlkit import _log, stats
from dsqlkit import dsql as spec

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs a cold start ~7 ms
    from collections.abc import Awaitable, Callable, Iterator
    from typing import TypeVar

    T = TypeVar("T")


def full_jitter(attempt: int, base: float, cap: float) -> float:
    """A delay for retry number ``attempt`` (0-based): uniform in ``[0, min(cap, base * 2**attempt)]``."""
    return random.uniform(0.0, min(cap, base * 2.0 ** min(attempt, 62)))


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps (``__cause__``, ``__context__``, ``.orig``), once each."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue  # cause chains can loop
        seen.add(id(current))
        yield current
        for linked in (getattr(current, "orig", None), current.__context__, current.__cause__):
            if isinstance(linked, BaseException):
                stack.append(linked)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of one exception: psycopg/asyncpg ``sqlstate``, psycopg2 ``pgcode``."""
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return code if isinstance(code, str) else None


# --- OCC ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OCCRetryConfig:
    """How often and how patiently to re-run a transaction that lost an OCC conflict.

    The fields are the official connector's, so configurations port unchanged. ``jitter_factor``
    is accepted and validated for that reason; dsqlkit always applies full jitter.

    Example::

        pool.run_transaction(work, retry=OCCRetryConfig(max_retries=5, max_delay_ms=200))
    """

    max_retries: int = 3
    base_delay_ms: float = 1
    max_delay_ms: float = 100
    jitter_factor: float = 0.25

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or not 0 <= self.max_retries <= 100:
            raise ValueError(
                f"max_retries must be an integer from 0 to 100, got {self.max_retries!r}"
            )
        if not self.base_delay_ms > 0:
            raise ValueError(f"base_delay_ms must be > 0, got {self.base_delay_ms!r}")
        if not self.max_delay_ms >= self.base_delay_ms:
            raise ValueError(
                f"max_delay_ms ({self.max_delay_ms!r}) must be >= base_delay_ms ({self.base_delay_ms!r})"
            )
        if not 0.0 <= self.jitter_factor <= 1.0:
            raise ValueError(
                f"jitter_factor must be between 0.0 and 1.0, got {self.jitter_factor!r}"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        return full_jitter(attempt, self.base_delay_ms / 1000, self.max_delay_ms / 1000)


RetrySetting = OCCRetryConfig | bool | None
"""An OCC retry setting, the same everywhere (``transaction``, ``run_transaction``, pools,
``insert_many``, sync and async): an :class:`OCCRetryConfig`; ``True`` for the defaults (or the
enclosing pool's configuration); ``False`` for no retry; ``None`` (or not given) to inherit the
enclosing setting, which ends at dsqlkit's default: retry with ``OCCRetryConfig()``."""


def resolve_retry_config(*settings: RetrySetting) -> OCCRetryConfig | None:
    """The OCC policy in effect for ``settings`` from the innermost (the call) to the outermost
    (its pool): the first that is not ``None`` decides; when all are ``None``, the defaults.

    Example::

        >>> resolve_retry_config(None, False) is None          # inherits the pool's "off"
        True
        >>> resolve_retry_config(None, None) == OCCRetryConfig()  # nothing set: dsqlkit's default
        True
        >>> resolve_retry_config(True, OCCRetryConfig(max_retries=7)).max_retries
        7
    """
    for index, setting in enumerate(settings):
        if setting is None:
            continue
        if isinstance(setting, OCCRetryConfig):
            return setting
        if setting is False:
            return None
        if setting is True:  # on: with the configuration of an enclosing level, if it has one
            outer = [s for s in settings[index + 1 :] if isinstance(s, OCCRetryConfig)]
            return outer[0] if outer else OCCRetryConfig()
        raise TypeError(
            f"retry must be an OCCRetryConfig, True, False or None (inherit), got {setting!r}"
        )
    return OCCRetryConfig()


def is_occ_error(exc: BaseException) -> bool:
    """True if ``exc`` (or anything it wraps) is a DSQL optimistic-concurrency conflict.

    Recognises SQLSTATE 40001 and the OC000/OC001 codes in the message, for psycopg, psycopg2,
    asyncpg and SQLAlchemy-wrapped errors.

    Example::

        >>> is_occ_error(RuntimeError("change conflicts with another transaction (OC000)"))
        True
    """
    for current in causes(exc):
        if sqlstate(current) == spec.OCC_SQLSTATE:
            return True
        text = str(current)
        if any(code in text for code in spec.OCC_CODES):
            return True
    return False


def _occ_delay(exc: Exception, attempt: int, config: OCCRetryConfig) -> float | None:
    """Seconds to wait before re-running after ``exc`` on ``attempt``, or None to give up."""
    if attempt >= config.max_retries or not is_occ_error(exc):
        return None
    delay = config.delay(attempt)
    stats.add("occ_retries")
    _log.debug("OCC conflict, retry %d/%d in %.1fms", attempt + 1, config.max_retries, delay * 1e3)
    return delay


def run_with_occ_retry(execute: Callable[[], T], config: OCCRetryConfig | None) -> T:
    """Call ``execute`` (one whole transaction) again while it fails with an OCC conflict."""
    attempt = 0
    while True:
        try:
            return execute()
        except Exception as exc:
            delay = None if config is None else _occ_delay(exc, attempt, config)
            if delay is None:
                raise
        time.sleep(delay)
        attempt += 1


async def arun_with_occ_retry(
    execute: Callable[[], Awaitable[T]], config: OCCRetryConfig | None
) -> T:
    """Async twin of :func:`run_with_occ_retry`."""
    attempt = 0
    while True:
        try:
            return await execute()
        except Exception as exc:
            delay = None if config is None else _occ_delay(exc, attempt, config)
            if delay is None:
                raise
        import asyncio  # loaded already by any async caller; sync users never pay for it

        await asyncio.sleep(delay)
        attempt += 1


# --- Connect backoff ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectRetryConfig:
    """Backoff for opening a connection that DSQL refused for a transient reason.

    Retries rate exceeded (53400), too many connections (53300) and transient connection failures
    (08xxx, refused, reset); never an authentication refusal or a missing database or role.
    Bounded by ``max_attempts`` (including the first) and ``max_total_s``.

    The defaults outlast a scale-out storm: DSQL admits new connections at 100/s after a burst of
    1,000, so 5,000 containers starting at once need 40 s before the last is admitted; a shorter
    budget turns that wait into failed invocations (``dsqlkit bench storm`` shows it). A Lambda
    whose own timeout is shorter simply ends sooner. Lower ``max_total_s`` to fail faster.

    Example::

        dsqlkit.psycopg.connect(..., connect_retry=ConnectRetryConfig(max_attempts=10))
        dsqlkit.psycopg.connect(..., connect_retry=None)   # fail at the first refusal
    """

    max_attempts: int = 50
    base_delay_ms: float = 50
    max_delay_ms: float = 2000
    max_total_s: float = 60

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        if not 0 < self.base_delay_ms <= self.max_delay_ms:
            raise ValueError(
                f"need 0 < base_delay_ms <= max_delay_ms, got {self.base_delay_ms!r} and {self.max_delay_ms!r}"
            )
        if not self.max_total_s > 0:
            raise ValueError(f"max_total_s must be > 0, got {self.max_total_s!r}")


#: Connect failures as libpq reports them (psycopg and psycopg2 give no SQLSTATE at connect):
#: DSQL's message text -> its SQLSTATE.
_CONNECT_MESSAGES = {
    spec.RATE_EXCEEDED.message: spec.RATE_EXCEEDED.sqlstate,
    spec.TOO_MANY_CONNECTIONS.message: spec.TOO_MANY_CONNECTIONS.sqlstate,
}
_RETRYABLE_SQLSTATES = frozenset(_CONNECT_MESSAGES.values())
_DENIED = spec.ACCESS_DENIED.message
#: 08P01 (protocol violation) is a configuration problem, such as no TLS or no SNI: not transient.
_NOT_TRANSIENT_08 = frozenset({"08P01"})
#: Transient network failures as libpq words them (lower case).
_TRANSIENT_TEXTS = (
    "connection refused",
    "connection reset",
    "server closed the connection unexpectedly",
    "could not receive data from server",
    "could not send data to server",
    "timeout expired",
    "connection timed out",
    "eof detected",
)


def connect_error_kind(exc: BaseException) -> str:
    """A short name for a connect failure: its SQLSTATE when known, else the exception's type."""
    for current in causes(exc):
        code = sqlstate(current)
        if code:
            return code
        text = str(current)
        for message, code in _CONNECT_MESSAGES.items():
            if message in text:
                return code
        if _DENIED in text:
            return spec.ACCESS_DENIED.sqlstate
    return type(exc).__name__


def is_retryable_connect_error(exc: BaseException) -> bool:
    """True if opening the connection again later may succeed.

    Example::

        >>> is_retryable_connect_error(ConnectionRefusedError())
        True
    """
    chain = list(causes(exc))
    if any(_DENIED in str(current) for current in chain):
        return False  # an authentication refusal never heals by itself
    for current in chain:
        code = sqlstate(current) or connect_error_kind(current)
        if code in _RETRYABLE_SQLSTATES:
            return True
        if code.startswith("08") and code not in _NOT_TRANSIENT_08:
            return True
        if isinstance(current, (ConnectionRefusedError, ConnectionResetError, TimeoutError)):
            return True
        if sqlstate(current) is None and any(t in str(current).lower() for t in _TRANSIENT_TEXTS):
            return True
    return False


class ConnectBackoff:
    """The retry state of one connect call: decides, after each failure, whether and how long to wait.

    Example::

        backoff = ConnectBackoff(ConnectRetryConfig())
        while True:
            try:
                return open_connection()
            except Exception as exc:
                delay = backoff.next_delay(exc)
                if delay is None:
                    raise
            time.sleep(delay)
    """

    def __init__(self, config: ConnectRetryConfig | None) -> None:
        self.config = config
        self.failures = 0
        self._started = time.monotonic()

    def next_delay(self, exc: BaseException) -> float | None:
        """Seconds to wait before the next attempt, or None when ``exc`` must be raised."""
        self.failures += 1
        kind = connect_error_kind(exc)
        stats.connect_failed(kind)
        config = self.config
        if config is None or self.failures >= config.max_attempts:
            return None
        if not is_retryable_connect_error(exc):
            return None
        delay = full_jitter(
            self.failures - 1, config.base_delay_ms / 1000, config.max_delay_ms / 1000
        )
        if time.monotonic() - self._started + delay > config.max_total_s:
            return None
        stats.add("connect_retries")
        _log.debug("connect failed (%s), attempt %d, retrying in %.3fs", kind, self.failures, delay)
        return delay
