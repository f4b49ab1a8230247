"""Parked backend sessions of the local endpoint, reused by later clients (PgBouncer's lever).

Opening a PostgreSQL session costs a fork and an authentication on the same cores the endpoint
runs on; the connection rate target needs them reused. The server (:mod:`dsqlkit.local.server`)
resets an idle session with ``DISCARD ALL`` when its client leaves cleanly and parks it here;
this module only keeps the parked sessions: keyed by the exact backend StartupMessage parameters
(role, the rules' settings, the client's own parameters), bounded by a size cap, and closed when
they break or the endpoint stops.

Example::

    pool: BackendPool[Link] = BackendPool(size=4)
    key = pool_key({"user": "admin", "database": "postgres"})
    parked = pool.take(key)            # None: open a new backend session
    ...
    pool.park(key, ParkedSession(link, status_frames, backend_key))
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = ["BackendPool", "Link", "ParkedSession", "PoolKey", "pool_key"]

#: The backend StartupMessage parameters, sorted: sessions are shared only on an exact match.
PoolKey = tuple[tuple[str, str], ...]


class Link(Protocol):
    """What the pool needs of a backend connection."""

    def is_open(self) -> bool:
        """False once the connection is closing or closed."""

    def close(self) -> None:
        """End the backend session (Terminate, then close)."""


L = TypeVar("L", bound=Link)


def pool_key(parameters: Mapping[str, str]) -> PoolKey:
    """The key of a backend session started with ``parameters`` (``user`` is the role)."""
    return tuple(sorted(parameters.items()))


@dataclass(frozen=True)
class ParkedSession(Generic[L]):
    """An idle, reset backend session and the startup answer its next client gets.

    ``status_frames``: the ParameterStatus messages as sent to the first client (already
    rewritten); ``backend_key``: PostgreSQL's BackendKeyData (pid, secret) for cancels.
    """

    link: L
    status_frames: tuple[bytes, ...]
    backend_key: tuple[int, bytes]


class BackendPool(Generic[L]):
    """Up to ``size`` parked sessions (0: pooling off) plus the ones being reset.

    Sessions being reset count against the cap, so the endpoint never holds more than ``size``
    backend sessions without a client. When full, the oldest parked session makes room.
    """

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"backend pool size must be >= 0, got {size!r}")
        self.size = size
        self.reused = 0
        # Insertion order is age order: the oldest parked session is evicted first.
        self._parked: dict[L, tuple[PoolKey, ParkedSession[L]]] = {}
        self._by_key: dict[PoolKey, collections.deque[L]] = {}
        self._resetting: set[L] = set()

    def __len__(self) -> int:
        """Parked (idle, ready) sessions."""
        return len(self._parked)

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def take(self, key: PoolKey) -> ParkedSession[L] | None:
        """The most recently parked open session for ``key`` (removed from the pool), or None."""
        links = self._by_key.get(key)
        while links:
            link = links.pop()
            _, parked = self._parked.pop(link)
            if link.is_open():
                self.reused += 1
                if not links:
                    del self._by_key[key]
                return parked
            link.close()
        self._by_key.pop(key, None)
        return None

    def start_reset(self, link: L) -> bool:
        """Reserve a slot for ``link`` while it is reset; False: no room (close it instead)."""
        if not self.enabled:
            return False
        if len(self._parked) + len(self._resetting) >= self.size:
            if not self._parked:
                return False
            self.discard(next(iter(self._parked)), close=True)
        self._resetting.add(link)
        return True

    def park(self, key: PoolKey, parked: ParkedSession[L]) -> bool:
        """Park a session whose reset succeeded; False (and closed): its slot was taken back."""
        if parked.link not in self._resetting:  # cleared meanwhile (stop, backend death)
            parked.link.close()
            return False
        self._resetting.discard(parked.link)
        self._parked[parked.link] = (key, parked)
        self._by_key.setdefault(key, collections.deque()).append(parked.link)
        return True

    def discard(self, link: L, *, close: bool = False) -> None:
        """Forget ``link`` (reset failed, connection lost, unexpected message); maybe close it."""
        self._resetting.discard(link)
        entry = self._parked.pop(link, None)
        if entry is not None:
            links = self._by_key[entry[0]]
            links.remove(link)
            if not links:
                del self._by_key[entry[0]]
        if close:
            link.close()

    def clear(self) -> None:
        """Close every parked and resetting session (endpoint stop, backend death)."""
        links = [*self._parked, *self._resetting]
        self._parked.clear()
        self._by_key.clear()
        self._resetting.clear()
        for link in links:
            link.close()
