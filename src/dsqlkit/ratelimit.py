"""Client-side rate limiting of new connections: a process-wide token bucket.

DSQL refills its new-connection bucket at 100/s; a fleet of clients that all reconnect at once
(a deploy, a failover, a Lambda scale-out) gets ``53400 rate exceeded``. Every dsqlkit connect
first takes a token from a bucket (default 50/s, burst 50) so one process stays well under the
cluster's rate. Configure it globally, or per call with ``rate_limit=``::

    import dsqlkit.ratelimit
    dsqlkit.ratelimit.configure(rate=20, burst=5)   # this process: at most ~20 connects/s
    dsqlkit.ratelimit.configure(None)               # off

    dsqlkit.psycopg.connect(..., rate_limit=TokenBucket(5, 1))  # this call site only
    dsqlkit.psycopg.connect(..., rate_limit=None)               # no limit for this call

A taker reserves the next free slot under a lock and then waits outside it, so waiting callers
are served in order, threads never hold the lock while sleeping and async callers ``await``
(the event loop is never blocked).
"""

from __future__ import annotations

import contextlib
import threading
import time

from dsqlkit import _log, stats
from dsqlkit import dsql as spec

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs a cold start ~7 ms
    from collections.abc import Callable, Iterator

#: Half of DSQL's refill rate, so that two busy processes still fit in one cluster's quota.
DEFAULT_RATE = spec.CONNECTION_RATE_PER_SECOND / 2
DEFAULT_BURST = int(DEFAULT_RATE)


class TokenBucket:
    """A thread-safe token bucket: ``rate`` tokens per second, at most ``burst`` saved up.

    ``clock`` (monotonic seconds) is injectable so that tests decide how time passes.

    Example::

        bucket = TokenBucket(rate=10, burst=2)
        bucket.acquire()          # sync: sleeps when the bucket is empty
        await bucket.aacquire()   # async: awaits instead
    """

    def __init__(
        self, rate: float, burst: int = 1, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate > 0:
            raise ValueError(
                f"rate must be a positive number of connections per second, got {rate!r}"
            )
        if not (isinstance(burst, int) and burst >= 1):
            raise ValueError(f"burst must be an integer >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._updated = clock()

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}, burst={self.burst})"

    def reserve(self) -> float:
        """Take one token now and return how many seconds the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            # The balance may go negative: each caller owns the slot after the previous one.
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            stats.add("ratelimit_waits")
            stats.add("ratelimit_wait_seconds", wait)
            _log.debug("new-connection rate limit: waiting %.3fs", wait)
        return wait

    def acquire(self) -> None:
        """Take a token, sleeping (this thread only) until it is due."""
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)

    async def aacquire(self) -> None:
        """Take a token, awaiting until it is due (never blocks the event loop)."""
        wait = self.reserve()
        if wait > 0:
            import asyncio  # loaded already by any async caller; sync users never pay for it

            await asyncio.sleep(wait)


class _Default:
    """Marker for "use the process-wide limiter" (``rate_limit=`` not given)."""

    def __repr__(self) -> str:
        return "DEFAULT"


#: Pass as ``rate_limit=`` (or leave it out) to use the process-wide limiter.
DEFAULT = _Default()

_global: TokenBucket | None = TokenBucket(DEFAULT_RATE, DEFAULT_BURST)


def configure(rate: float | None = DEFAULT_RATE, burst: int | None = None) -> TokenBucket | None:
    """Set the process-wide new-connection limit; ``rate=None`` turns it off.

    ``burst`` defaults to one second's worth of ``rate``. Returns the new limiter.

    Example::

        dsqlkit.ratelimit.configure(rate=20)     # 20/s, burst 20
        dsqlkit.ratelimit.configure(None)        # unlimited
    """
    global _global
    _global = None if rate is None else TokenBucket(rate, burst or max(1, int(rate)))
    return _global


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """Turn the process-wide limiter off for a ``with`` block, then put it back.

    For measurements of connection cost, where waiting on the limiter would be timed as cost::

        with dsqlkit.ratelimit.suspended():
            run_connect_benchmark()
    """
    global _global
    saved, _global = _global, None
    try:
        yield
    finally:
        _global = saved


def current() -> TokenBucket | None:
    """The process-wide limiter (None when rate limiting is off)."""
    return _global


def resolve(rate_limit: TokenBucket | _Default | None) -> TokenBucket | None:
    """The limiter a connect call uses: its own, the process-wide one, or none."""
    if isinstance(rate_limit, _Default):
        return _global
    if rate_limit is None or isinstance(rate_limit, TokenBucket):
        return rate_limit
    raise TypeError(
        f"rate_limit must be a dsqlkit.ratelimit.TokenBucket, None (no limit) or left out "
        f"(the process-wide limit), got {type(rate_limit).__name__}"
    )
