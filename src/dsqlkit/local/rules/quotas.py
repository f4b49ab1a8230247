"""Connection-level quotas of the local endpoint: the new-connection rate and the connection cap.

DSQL refills a token bucket at 100 connections/s with a burst of 1,000 (spec.RATE_EXCEEDED when
empty) and caps open connections at 10,000 (spec.TOO_MANY_CONNECTIONS). Both numbers come from
:class:`~dsqlkit.local.config.Quotas`; tests set small ones. Sans-I/O: the clock is injectable.

Example::

    gate = ConnectionQuotas(Quotas(connection_rate_per_second=1, connection_burst=2))
    refusal = gate.admit()      # None, or the DsqlError to send
    ...
    gate.release()              # when an admitted connection closes
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dsqlkit import dsql as spec
from dsqlkit.local.config import Quotas


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; starts full.

    >>> bucket = TokenBucket(rate=1.0, burst=2, clock=lambda: 0.0)
    >>> bucket.take(), bucket.take(), bucket.take()
    (True, True, False)
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        """Take one token if there is one."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class ConnectionQuotas:
    """The rate check and the open-connection count of one endpoint."""

    def __init__(self, quotas: Quotas, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_connections = quotas.max_connections
        self._bucket = TokenBucket(
            quotas.connection_rate_per_second, quotas.connection_burst, clock
        )
        self.open = 0

    def limit(self, capacity: int) -> None:
        """Open at most ``capacity`` connections (the backend's room), if below the quota."""
        self.max_connections = max(0, min(self.max_connections, capacity))

    def admit(self) -> spec.DsqlError | None:
        """Count a new connection in, or say why not (rate first: it is the cheaper refusal).

        A refused connection is not counted: do not :meth:`release` it.
        """
        if not self._bucket.take():
            return spec.RATE_EXCEEDED
        if self.open >= self.max_connections:
            return spec.TOO_MANY_CONNECTIONS
        self.open += 1
        return None

    def release(self) -> None:
        """An admitted connection closed."""
        self.open = max(0, self.open - 1)
