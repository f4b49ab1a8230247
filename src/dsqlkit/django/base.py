"""The ``DatabaseWrapper`` of ENGINE ``dsqlkit.django`` (see :mod:`dsqlkit.django`)."""

from __future__ import annotations

from typing import Any

from aurora_dsql_django import base as official
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql.psycopg_any import IsolationLevel, is_psycopg3
from django.utils.asyncio import async_unsafe

from dsqlkit import drivers

#: The driver Django runs on decides dsqlkit's connect.
DRIVER = "psycopg" if is_psycopg3 else "psycopg2"


class DatabaseWrapper(official.DatabaseWrapper):  # type: ignore[misc]
    """aurora-dsql-django's ``DatabaseWrapper``, with connections from dsqlkit's connect."""

    display_name = "Aurora DSQL (dsqlkit)"

    def get_connection_params(self) -> dict[str, Any]:
        """The official adapter's parameters (``application_name`` "django" becomes dsqlkit's
        ORM prefix), without the ``sslrootcert=system`` it adds: dsqlkit applies the settings'
        value, then ``PGSSLROOTCERT``, and only then the system CAs."""
        params: dict[str, Any] = super().get_connection_params()
        if "sslrootcert" not in self.settings_dict["OPTIONS"]:
            params.pop("sslrootcert", None)
        return params

    @async_unsafe
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        """A connection from ``dsqlkit.<driver>.connect``; the isolation level as Django's own
        backend sets it (DSQL runs REPEATABLE READ whatever is asked)."""
        value = self.settings_dict["OPTIONS"].get("isolation_level")
        try:
            self.isolation_level = IsolationLevel(
                IsolationLevel.READ_COMMITTED if value is None else value
            )
        except ValueError:
            raise ImproperlyConfigured(
                f"Invalid transaction isolation level {value} specified. Use one of the "
                "psycopg.IsolationLevel values."
            ) from None
        connection = drivers.get(DRIVER).connect(**conn_params)
        if value is not None:
            connection.isolation_level = self.isolation_level
        if not is_psycopg3:  # as Django: no json round trip in psycopg2's decoder
            import psycopg2.extras

            psycopg2.extras.register_default_jsonb(conn_or_curs=connection, loads=lambda x: x)
        return connection
