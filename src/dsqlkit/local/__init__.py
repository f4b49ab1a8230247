"""A DSQL-compatible endpoint on this machine: TLS, IAM tokens, DSQL's quotas and dialect.

Start one from Python (sync or async), from the shell (``dsqlkit local``) or in tests (the
``dsql_endpoint`` pytest fixture)::

    from dsqlkit.local import LocalEndpoint, Quotas

    with LocalEndpoint(quotas=Quotas(max_rows_per_transaction=10)) as ep, ep.use_environment():
        conn = dsqlkit.psycopg.connect(**ep.connect_kwargs())

Importing this package is cheap: the server and PostgreSQL are loaded only when an endpoint starts.
"""

from __future__ import annotations

# Not `typing.TYPE_CHECKING`: importing typing costs the connector's cold start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from dsqlkit.local.config import EndpointConfig, Quotas
    from dsqlkit.local.endpoint import LocalEndpoint

__all__ = ["EndpointConfig", "LocalEndpoint", "Quotas"]


def __getattr__(name: str) -> object:
    # Lazy so that `import dsqlkit.dsql` (used by the connector) loads nothing else.
    if name == "LocalEndpoint":
        from dsqlkit.local.endpoint import LocalEndpoint

        return LocalEndpoint
    if name in ("EndpointConfig", "Quotas"):
        from dsqlkit.local import config

        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
