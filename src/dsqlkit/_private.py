"""The private attributes of the drivers' pools that dsqlkit relies on, checked so that a driver
release that moves one fails loudly, at pool creation, instead of silently losing max lifetime.

No public hook exists for what they do:

- psycopg2's ``AbstractConnectionPool`` opens every connection in ``_connect()`` from the
  arguments it keeps in ``_kwargs`` (no connect callback): dsqlkit gives each one a fresh token.
- asyncpg's ``Pool`` has no per-acquire hook that may replace a connection (``setup=`` may not),
  so a connection past its max lifetime is swapped in ``_acquire()``; a pool proxy has no public
  accessor for the connection behind it (``_con``).

``pyproject.toml`` bounds these drivers to the versions tested (``asyncpg<0.33``,
``psycopg2-binary<2.10``); ``tests/unit/test_private.py`` checks the installed ones.
"""

from __future__ import annotations


def require(owner: object, names: tuple[str, ...], package: str) -> None:
    """Raise ImportError naming the driver and the fix if ``owner`` lacks any of ``names``.

    Example::

        >>> require(object(), ("_acquire",), "asyncpg")
        Traceback (most recent call last):
        ImportError: this asyncpg release has no object._acquire, which dsqlkit's pool max lifetime needs: install the asyncpg version range dsqlkit's pyproject.toml allows, or upgrade dsqlkit
    """
    missing = [name for name in names if not hasattr(owner, name)]
    if missing:
        where = owner.__name__ if isinstance(owner, type) else type(owner).__name__
        raise ImportError(
            f"this {package} release has no {', '.join(f'{where}.{n}' for n in missing)}, "
            "which dsqlkit's pool max lifetime needs: install the "
            f"{package} version range dsqlkit's pyproject.toml allows, or upgrade dsqlkit"
        )
