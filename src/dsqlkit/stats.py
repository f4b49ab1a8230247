"""Process-wide connector counters: what dsqlkit's connects, retries and rate limiting did.

Read them with :func:`snapshot` (a plain ``dict``), start over with :func:`reset`::

    import dsqlkit.stats
    dsqlkit.stats.snapshot()["connections_opened"]

Updates take a lock: they happen once per connect or retry, never per query, so the cost is
negligible and the numbers stay exact under threads.
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs a cold start ~7 ms
    from typing import Any

_lock = threading.Lock()
_counts: dict[str, float] = {}
_failures: dict[str, int] = {}

#: Every counter :func:`snapshot` reports (seconds are floats, counts ints).
COUNTERS = (
    "connections_opened",
    "connect_retries",
    "token_count",
    "token_seconds",
    "occ_retries",
    "ratelimit_waits",
    "ratelimit_wait_seconds",
)


def add(name: str, amount: float = 1) -> None:
    """Add ``amount`` to counter ``name`` (one of :data:`COUNTERS`)."""
    with _lock:
        _counts[name] = _counts.get(name, 0) + amount


def connect_failed(kind: str) -> None:
    """Count one failed connection attempt of ``kind`` (a SQLSTATE or an exception name)."""
    with _lock:
        _failures[kind] = _failures.get(kind, 0) + 1


def snapshot() -> dict[str, Any]:
    """Return a copy of every counter, with ``connect_failures`` as ``{kind: count}``.

    Example::

        >>> reset()
        >>> connect_failed("53400"); connect_failed("53400")
        >>> snapshot()["connect_failures"]
        {'53400': 2}
        >>> snapshot()["connections_opened"]
        0
    """
    with _lock:
        result: dict[str, Any] = {name: _counts.get(name, 0) for name in COUNTERS}
        result["connect_failures"] = dict(_failures)
    return result


def reset() -> None:
    """Set every counter back to zero."""
    with _lock:
        _counts.clear()
        _failures.clear()
