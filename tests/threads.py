"""Running one piece of test work in several threads at once (OCC conflicts need two sessions)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_in_threads(
    target: Callable[[], object], count: int = 2, join_timeout: float = 60.0
) -> list[Exception]:
    """Run ``target`` in ``count`` threads at once, join each for at most ``join_timeout``
    seconds, and return what they raised (empty: every thread succeeded).

    Example::

        assert not run_in_threads(lambda: run_transaction(increment))
    """
    errors: list[Exception] = []

    def worker() -> None:
        try:
            target()
        except Exception as exc:  # returned to the test, which asserts on it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(join_timeout)
    return errors
