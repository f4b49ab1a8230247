"""The drivers dsqlkit supports: one name each, and what dsqlkit does with them, in one table.

=================  ==================  =========================================================
name               module              connections
=================  ==================  =========================================================
``psycopg2``       dsqlkit.psycopg2    ``psycopg2`` connections and threaded pools (sync)
``psycopg``        dsqlkit.psycopg     psycopg 3 ``Connection`` and psycopg_pool pools (sync)
``psycopg_async``  dsqlkit.psycopg     psycopg 3 ``AsyncConnection`` and async pools
``asyncpg``        dsqlkit.asyncpg     asyncpg connections and pools (async)
=================  ==================  =========================================================

These names are the ones the public API (``ReusableConnection("psycopg_async")``, the SQLAlchemy
engines' ``driver=``), the benchmark and the docs use. Each row's operations (connect, one
transaction with OCC retry, the connection's state without I/O, ping, rollback, close, borrowing
a connection from a pool) are a :class:`~dsqlkit._driver.DriverOps` defined beside the driver's
code and loaded on first use, so naming a driver imports nothing::

    from dsqlkit import drivers

    ops = drivers.get("psycopg_async")      # imports dsqlkit.psycopg now
    conn = await ops.connect(host="...", region="us-east-1")
    drivers.of(conn).name                    # 'psycopg_async'
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs a cold start ~7 ms
    from dsqlkit._driver import DriverOps

#: name -> (dsqlkit module, its DriverOps attribute, the driver packages whose objects it owns).
_TABLE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "psycopg2": ("dsqlkit.psycopg2", "driver_ops", ("psycopg2",)),
    "psycopg": ("dsqlkit.psycopg", "driver_ops", ("psycopg", "psycopg_pool")),
    "psycopg_async": ("dsqlkit.psycopg", "async_driver_ops", ("psycopg", "psycopg_pool")),
    "asyncpg": ("dsqlkit.asyncpg", "driver_ops", ("asyncpg",)),
}
#: Every driver name, sync ones first.
NAMES: tuple[str, ...] = tuple(_TABLE)


def get(name: str) -> DriverOps:
    """The operations of driver ``name`` (one of :data:`NAMES`); imports its dsqlkit module.

    Example::

        >>> get("mysql")
        Traceback (most recent call last):
        ValueError: unknown driver 'mysql': use one of 'psycopg2', 'psycopg', 'psycopg_async', 'asyncpg'
    """
    entry = _TABLE.get(name)
    if entry is None:
        raise ValueError(f"unknown driver {name!r}: use one of {', '.join(map(repr, NAMES))}")
    module, attribute, _ = entry
    ops: DriverOps = getattr(importlib.import_module(module), attribute)
    return ops


def of(target: object) -> DriverOps:
    """The operations for a connection or pool of any supported driver (raw or dsqlkit's).

    Example::

        >>> of(object())
        Traceback (most recent call last):
        TypeError: expected a psycopg, psycopg2 or asyncpg connection or pool, got object
    """
    roots = {cls.__module__.split(".")[0] for cls in type(target).__mro__}
    for name, (_, _, packages) in _TABLE.items():
        if roots.intersection(packages):
            ops = get(name)
            if ops.owns(target):
                return ops
    raise TypeError(
        f"expected a psycopg, psycopg2 or asyncpg connection or pool, got {type(target).__name__}"
    )
