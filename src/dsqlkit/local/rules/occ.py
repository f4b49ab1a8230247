"""Optimistic concurrency (DSQL section 5) on a PostgreSQL backend that takes row locks.

DSQL never makes a transaction wait: the first to commit wins and the other gets
``40001 change conflicts with another transaction (OC000)``. PostgreSQL makes a writer wait on the
row lock (or the transaction id, for a duplicate unique key) of another open transaction. The
emulator keeps the client-visible contract with two settings for every backend session
(:data:`BACKEND_PARAMETERS`): REPEATABLE READ, and a ``lock_timeout`` so short that a writer that
would wait gives up at once. :func:`rewrite_error` turns PostgreSQL's answers to a conflict
(lock timeout, serialization failure, deadlock) into DSQL's OC000 error. So in the emulator the
first *writer* wins, at the statement; in DSQL the first *committer* wins, at COMMIT
(docs/emulator.md).

Example::

    fields = occ.rewrite_error({"S": "ERROR", "C": "55P03", "M": "canceling statement due to lock timeout"})
    assert fields["C"] == "40001" and "(OC000)" in fields["M"]
"""

from __future__ import annotations

import collections
import json
from collections.abc import Mapping

from dsqlkit import dsql as spec

#: Added to every backend StartupMessage. lock_timeout is in milliseconds; 1 is the smallest
#: value (0 would mean "wait forever").
BACKEND_PARAMETERS: dict[str, str] = {
    "default_transaction_isolation": "repeatable read",
    "lock_timeout": "1",
}

#: What PostgreSQL says when a transaction would have to wait for, or lost to, another one:
#: lock_not_available (the lock timeout), serialization_failure, deadlock_detected.
CONFLICT_SQLSTATES = frozenset({"55P03", "40001", "40P01"})

# Error fields that describe PostgreSQL's view of the conflict (which tuple, which lock, where in
# a function): DSQL's error has none of them.
_DROPPED_FIELDS = ("D", "H", "W", "P", "p", "q", "s", "t", "c", "d", "n", "F", "L", "R")


def is_conflict(fields: dict[str, str]) -> bool:
    """Whether a backend error is a concurrency conflict that DSQL reports as OC000."""
    if fields.get("C") not in CONFLICT_SQLSTATES:
        return False
    # An error already in DSQL's words (e.g. OC001 raised by the session rules) stays as it is.
    message = fields.get("M", "")
    return not any(code in message for code in spec.OCC_CODES)


def rewrite_error(fields: dict[str, str]) -> dict[str, str]:
    """Return DSQL's OC000 error for a backend conflict error; any other error unchanged.

    ``fields`` are an ErrorResponse's fields by their one-letter protocol code. The severity
    fields (``S``, ``V``) are kept; the detail, hint and position fields are dropped.
    """
    if not is_conflict(fields):
        return fields
    error = spec.OCC_DATA_CONFLICT
    rewritten = {k: v for k, v in fields.items() if k not in _DROPPED_FIELDS}
    rewritten["C"] = error.sqlstate
    rewritten["M"] = error.message
    return rewritten


#: SQLSTATE of the NOTICE the backend's event triggers send when a DDL, GRANT or REVOKE changed
#: the catalog (sql/50_occ.sql); its DETAIL is a JSON array of the relations touched (null: all).
CATALOG_NOTICE_SQLSTATE = "DQ001"
#: Changes remembered; a transaction begun before the oldest one kept conflicts on any relation.
CATALOG_LOG_SIZE = 1024

#: One committed catalog change: the relation names it touched, None for "every relation".
Touched = frozenset[str] | None


def touched_relations(fields: Mapping[str, str]) -> Touched:
    """The relations named by a catalog-change NOTICE's fields (see :data:`CATALOG_NOTICE_SQLSTATE`).

    Example: ``touched_relations({"C": "DQ001", "D": '["t", "t_pkey"]'}) == {"t", "t_pkey"}``.
    """
    try:
        names = json.loads(fields.get("D", "[]"))
    except ValueError:
        return None  # not ours after all: the safe reading is "everything changed"
    if not isinstance(names, list) or any(not isinstance(n, str) for n in names):
        return None
    return frozenset(names)


class OccState:
    """Endpoint-wide OCC state: the log of committed catalog changes that OC001 is decided on.

    Each catalog change (DDL, GRANT, REVOKE) committed by a session is recorded with the relations
    it touched; a transaction that began at an older ``version`` and then uses one of them gets
    OC001 (:meth:`conflicts`). Example::

        state = OccState()
        began = state.version
        state.commit(frozenset({"t"}))
        assert state.conflicts(began, frozenset({"t"}))
        assert not state.conflicts(began, frozenset({"other"}))
        assert not state.conflicts(state.version, frozenset({"t"}))  # began after the change
    """

    def __init__(self) -> None:
        self.version = 0
        self._log: collections.deque[tuple[int, Touched]] = collections.deque(
            maxlen=CATALOG_LOG_SIZE
        )

    def commit(self, touched: Touched) -> None:
        """Record one committed catalog change."""
        self.version += 1
        self._log.append((self.version, touched))

    def conflicts(self, began: int, relations: frozenset[str]) -> bool:
        """Whether a transaction begun at version ``began`` conflicts by using ``relations``."""
        if began >= self.version or not relations:
            return False
        if not self._log or self._log[0][0] > began + 1:
            return True  # older than the log remembers: assume its relations changed
        for version, touched in reversed(self._log):
            if version <= began:
                return False
            if touched is None or not touched.isdisjoint(relations):
                return True
        return False
