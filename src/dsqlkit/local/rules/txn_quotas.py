"""Per-transaction quotas (DSQL section 3: rows and bytes changed per transaction).

The backend counts (``sql/10_quotas.sql``): statement-level triggers with transition tables on
every user table add each statement's changed rows and their size to transaction-local
settings, raise DSQL's row-limit error on the statement that crosses the limit, and arm a
deferred constraint trigger that raises the size-limit error at COMMIT. The endpoint passes the
limits and the error texts to each backend session in its StartupMessage, as the settings that
:func:`backend_parameters` returns.

Example::

    from dsqlkit.local.config import Quotas
    params = backend_parameters(Quotas(max_rows_per_transaction=10))
    assert params["dsqlkit.max_rows"] == "10"
"""

from __future__ import annotations

from dsqlkit import dsql as spec
from dsqlkit.local.config import Quotas


def _error_setting(error: spec.DsqlError) -> str:
    # One setting per error: '<sqlstate> <message>', split again by sys.dsqlkit_raise_quota.
    return f"{error.sqlstate} {error.message}"


def backend_parameters(quotas: Quotas) -> dict[str, str]:
    """The settings that turn on the row and size limits in one backend session."""
    return {
        "dsqlkit.max_rows": str(quotas.max_rows_per_transaction),
        "dsqlkit.max_bytes": str(quotas.max_bytes_per_transaction),
        "dsqlkit.rows_error": _error_setting(spec.TRANSACTION_ROWS_EXCEEDED),
        "dsqlkit.size_error": _error_setting(spec.TRANSACTION_SIZE_EXCEEDED),
    }
