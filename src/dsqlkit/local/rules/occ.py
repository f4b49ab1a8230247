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


class OccState:
    """Endpoint-wide OCC state: the catalog version that the session rules compare (OC001).

    Each catalog change (DDL, GRANT, REVOKE) committed by a session bumps the version; a session
    that last saw an older version gets OC001 once on its next statement.

    Example::

        state = OccState()
        seen = state.catalog_version
        state.bump()
        assert state.catalog_version != seen
    """

    def __init__(self) -> None:
        self.catalog_version = 0

    def bump(self) -> None:
        """Record one catalog change."""
        self.catalog_version += 1
