"""Async SQLAlchemy dialects built on the official Aurora DSQL dialect (aurora-dsql-sqlalchemy).

aurora-dsql-sqlalchemy 1.3 ships ``auroradsql+psycopg`` and ``auroradsql+psycopg2`` only; these
add ``auroradsql+asyncpg`` and ``auroradsql+psycopg_async`` the same way those are made: SQLAlchemy's
PostgreSQL driver dialect first, the official ``AuroraDSQLDialect`` (its DDL compiler:
``CREATE INDEX ASYNC``, ``NOT VALID`` constraints, sequences with CACHE, DDL committed one
statement at a time; its catalog queries) after it. Registered with SQLAlchemy by
:func:`register` (and by the ``sqlalchemy.dialects`` entry points of dsqlkit's package).
Nothing here opens connections: :mod:`dsqlkit.sqlalchemy` gives the engines dsqlkit's connect.
"""

from __future__ import annotations

from typing import Any

from aurora_dsql_sqlalchemy.base import AuroraDSQLDialect
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.dialects.postgresql.psycopg import PGDialectAsync_psycopg


class _CommitDDLOnAsyncAdapters:
    """What the async adapters need on top of the official dialect.

    It commits after each DDL statement through ``cursor.connection``, which SQLAlchemy's async
    cursor adapters do not have: commit the adapted DBAPI connection of the execution context
    instead (the same connection, reached through public API).
    """

    @classmethod
    def get_async_dialect_cls(cls, url: Any) -> Any:
        # psycopg's dialects name PGDialectAsync_psycopg here, which would drop the DSQL dialect.
        return cls

    def do_execute(self, cursor: Any, statement: Any, parameters: Any, context: Any = None) -> None:
        cursor.execute(statement, parameters)
        _commit_if_ddl(context)

    def do_execute_no_params(self, cursor: Any, statement: Any, context: Any = None) -> None:
        cursor.execute(statement)
        _commit_if_ddl(context)


def _commit_if_ddl(context: Any) -> None:
    if context is not None and context.isddl:
        context.root_connection.connection.dbapi_connection.commit()


class AuroraDSQLDialect_asyncpg(_CommitDDLOnAsyncAdapters, PGDialect_asyncpg, AuroraDSQLDialect):  # type: ignore[misc]
    """``auroradsql+asyncpg``: the official DSQL dialect over SQLAlchemy's asyncpg adapter."""

    driver = "asyncpg"
    supports_statement_cache = True


class AuroraDSQLDialect_psycopg_async(  # type: ignore[misc]
    _CommitDDLOnAsyncAdapters, PGDialectAsync_psycopg, AuroraDSQLDialect
):
    """``auroradsql+psycopg_async``: the official DSQL dialect over psycopg's async adapter."""

    driver = "psycopg_async"
    supports_statement_cache = True

    def __init__(self, **kwargs: Any) -> None:
        # As the official psycopg dialect: the hstore lookup runs in a SAVEPOINT, which DSQL refuses.
        kwargs.setdefault("use_native_hstore", False)
        super().__init__(**kwargs)


def register() -> None:
    """Make ``auroradsql+asyncpg://`` and ``auroradsql+psycopg_async://`` known to SQLAlchemy."""
    registry.register("auroradsql.asyncpg", __name__, "AuroraDSQLDialect_asyncpg")
    registry.register("auroradsql.psycopg_async", __name__, "AuroraDSQLDialect_psycopg_async")
