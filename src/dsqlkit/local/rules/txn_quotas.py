"""The rules the backend enforces itself: per-transaction quotas, one DDL per transaction, no DDL
with DML, no TRUNCATE, advisory locks or pg_notify (DESIGN.md, "Defence in depth").

The backend does the work (``sql/10_quotas.sql``, ``sql/15_guards.sql``): statement triggers on every
user table count each statement's changed rows and their size, event triggers count DDL commands,
and the totals live in a table only the endpoint's SECURITY DEFINER functions write. What the
backend needs from the endpoint is written by :func:`install` at every start, as superuser, into
tables no client can write: the limits (from :class:`~dsqlkit.local.config.Quotas`), whether the
rules apply (dialect checks on), DSQL's error texts (from :mod:`dsqlkit.dsql` and the dialect's
refusals, so no text is written twice) and the parameters a client may set. No client-settable
setting (``SET``, ``set_config``, startup ``options``) takes part.

:func:`rewrite_error` turns the "permission denied" of a function revoked from client roles
(advisory locks, ``pg_notify``) into DSQL's refusal of it.

Example::

    await install(backend, EndpointConfig(quotas=Quotas(max_rows_per_transaction=10)))
    rewrite_error({"C": "42501", "M": "permission denied for function pg_advisory_lock"})["M"]
    # 'function pg_advisory_lock not supported'
"""

from __future__ import annotations

import re
from typing import Any

from dsqlkit import dsql as spec
from dsqlkit.local.config import EndpointConfig
from dsqlkit.local.rules.dialect import REFUSALS

#: The errors the backend raises by name (sys.dsqlkit_fail), from the one table of DSQL's texts.
BACKEND_ERRORS: dict[str, spec.DsqlError] = {
    "rows": spec.TRANSACTION_ROWS_EXCEEDED,
    "size": spec.TRANSACTION_SIZE_EXCEEDED,
    "multiple_ddl": spec.MULTIPLE_DDL,
    "ddl_and_dml": spec.DDL_AND_DML,
    "truncate": REFUSALS["truncate"],
    "quota_trigger": spec.QUOTA_TRIGGER_PROTECTED,
    "iam_privileged_role": spec.IAM_PRIVILEGED_ROLE,
}
_RAISED = frozenset((e.sqlstate, e.message) for e in BACKEND_ERRORS.values())
_IAM_PREFIX = spec.IAM_PRIVILEGED_ROLE.message.split("{", 1)[0]
_REVOKED_FUNCTION = re.compile(
    r"^permission denied for function (pg_(?:try_)?advisory_\w+|pg_notify)$"
)


def settings(config: EndpointConfig) -> dict[str, int]:
    """The rows of ``sys.dsqlkit_settings`` for an endpoint with ``config``."""
    return {
        "enforce": 1 if config.dialect_checks else 0,
        "max_rows": config.quotas.max_rows_per_transaction,
        "max_bytes": config.quotas.max_bytes_per_transaction,
    }


async def install(backend: Any, config: EndpointConfig) -> None:
    """Write the limits, DSQL's error texts and the settable parameters into the backend.

    ``backend``: a :class:`dsqlkit.local.backend.postgres.Backend` (``admin_connection()``). One
    transaction: sessions see the old rows or the new ones, never none.
    """
    async with backend.admin_connection() as conn, conn.transaction():
        await conn.execute("DELETE FROM sys.dsqlkit_settings")
        await conn.executemany(
            "INSERT INTO sys.dsqlkit_settings VALUES ($1, $2)", list(settings(config).items())
        )
        await conn.execute("DELETE FROM sys.dsqlkit_errors")
        await conn.executemany(
            "INSERT INTO sys.dsqlkit_errors VALUES ($1, $2, $3, $4)",
            [(n, e.sqlstate, e.message, e.hint) for n, e in BACKEND_ERRORS.items()],
        )
        # Totals rows of backend processes that are gone (one row per process ever seen).
        await conn.execute(
            "DELETE FROM sys.dsqlkit_transactions"
            " WHERE pid NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)"
        )
        await conn.execute("DELETE FROM sys.dsqlkit_settable")
        await conn.executemany(
            "INSERT INTO sys.dsqlkit_settable VALUES ($1)",
            [(name,) for name in sorted(spec.SETTABLE_PARAMETERS | spec.SET_LOCAL_ONLY_PARAMETERS)],
        )


def rewrite_error(fields: dict[str, str]) -> dict[str, str]:
    """DSQL's error, with only the fields DSQL sends, for what the backend's rules raised.

    A revoked function's "permission denied" becomes DSQL's refusal of that function; an error
    of :data:`BACKEND_ERRORS` loses the PL/pgSQL context and source location PostgreSQL adds.
    Any other error is returned unchanged.
    """
    sqlstate, message = fields.get("C"), fields.get("M", "")
    match = _REVOKED_FUNCTION.match(message) if sqlstate == "42501" else None
    if match is not None:
        name = match.group(1)
        pg_notify = name == "pg_notify"
        return _only_dsql_fields(
            fields, REFUSALS["notify"] if pg_notify else REFUSALS["function"].format(name=name)
        )
    iam = sqlstate == spec.IAM_PRIVILEGED_ROLE.sqlstate and message.startswith(_IAM_PREFIX)
    if sqlstate is not None and ((sqlstate, message) in _RAISED or iam):
        return _only_dsql_fields(fields, spec.DsqlError(sqlstate, message, hint=fields.get("H")))
    return fields


def _only_dsql_fields(fields: dict[str, str], error: spec.DsqlError) -> dict[str, str]:
    # Severity kept; no detail, context, position or source location (DSQL sends none).
    rewritten = {k: v for k, v in fields.items() if k in ("S", "V")}
    rewritten["C"], rewritten["M"] = error.sqlstate, error.message
    if error.hint:
        rewritten["H"] = error.hint
    return rewritten
