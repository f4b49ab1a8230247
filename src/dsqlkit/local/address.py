"""What a client needs to reach a running local endpoint: address, CA, local identity, tokens.

An :class:`EndpointAddress` is a plain picklable value, so an endpoint running in another thread
(:class:`~dsqlkit.local.LocalEndpoint`) or another process
(:class:`~dsqlkit.local.process.EndpointProcess`) hands clients the same thing. Example::

    with LocalEndpoint() as ep:
        address = ep.address
        conn = psycopg.connect(address.dsn())          # raw driver, token included
        with address.use_environment():
            conn = dsqlkit.psycopg.connect(**address.connect_kwargs())
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsqlkit import dsql as spec

if TYPE_CHECKING:
    from dsqlkit.auth.credentials import Credentials

#: Variables that would mix a real identity into the local one: unset by use_environment().
CONFLICTING_VARIABLES = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


@dataclass(frozen=True)
class EndpointAddress:
    """A running local endpoint as its clients see it.

    ``host`` is ``localhost`` (served in the certificate and for SNI); ``hostname`` the DSQL-style
    name also served; ``access_key``/``secret_key`` the endpoint's local-only admin identity (a
    local test credential, not an AWS one; hidden from the repr).
    """

    host: str
    port: int
    region: str
    hostname: str
    hostnames: tuple[str, ...]
    ca_file: Path
    access_key: str
    secret_key: str = field(repr=False)

    @property
    def credentials(self) -> Credentials:
        """The local admin identity's access key and secret (repr hides the secret)."""
        from dsqlkit.auth.credentials import Credentials

        return Credentials(self.access_key, self.secret_key, None)

    def connect_kwargs(self, user: str = spec.ADMIN_USER, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for ``dsqlkit.<driver>.connect``; credentials come from
        :meth:`environ` / :meth:`use_environment` (or the pytest fixture ``dsql_connect_kwargs``).

        Example::

            with ep.use_environment():
                conn = dsqlkit.psycopg2.connect(**ep.connect_kwargs(application_name="tests"))
        """
        return {
            "host": self.host,
            "port": self.port,
            "region": self.region,
            "user": user,
            "sslrootcert": str(self.ca_file),
            **extra,
        }

    def environ(self) -> dict[str, str]:
        """The environment variables that point AWS SDKs, dsqlkit and libpq at this endpoint.

        The access key is the local admin identity's (a local test credential, not an AWS one).
        Also unset :data:`CONFLICTING_VARIABLES` (``use_environment()`` does both).
        """
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "PGSSLROOTCERT": str(self.ca_file),
        }

    @contextlib.contextmanager
    def use_environment(self) -> Iterator[dict[str, str]]:
        """Set :meth:`environ` in ``os.environ`` for a ``with`` block, then restore it.

        Process-wide, so not for concurrent threads wanting different identities.
        """
        wanted: dict[str, str | None] = {**self.environ()}
        wanted.update(dict.fromkeys(CONFLICTING_VARIABLES))
        saved = {name: os.environ.get(name) for name in wanted}
        _set_environ(wanted)
        try:
            yield self.environ()
        finally:
            _set_environ(saved)

    def token(
        self,
        user: str = spec.ADMIN_USER,
        *,
        host: str | None = None,
        expires: int = spec.TOKEN_DEFAULT_EXPIRES,
    ) -> str:
        """An IAM auth token for ``user`` signed by the local admin identity, for raw drivers.

        ``host`` is the name the client connects to (default ``localhost``): tokens are bound to it.

        Example::

            psycopg2.connect(host=ep.host, port=ep.port, user="admin", dbname="postgres",
                             password=ep.token(), sslmode="verify-full", sslrootcert=ep.ca_file)
        """
        from dsqlkit.auth.sigv4 import presign_token

        return presign_token(
            host=host or self.host,
            region=self.region,
            action=spec.action_for_user(user),
            access_key=self.access_key,
            secret_key=self.secret_key,
            expires=expires,
        )

    def dsn(self, user: str = spec.ADMIN_USER) -> str:
        """A libpq connection string with a fresh token as password and verify-full TLS.

        Example: ``psycopg.connect(ep.dsn())``. The token expires after 15 minutes.
        """
        params = {
            "host": self.host,
            "port": str(self.port),
            "user": user,
            "dbname": spec.DATABASE,
            "sslmode": "verify-full",
            "sslrootcert": str(self.ca_file),
            "password": self.token(user),
        }
        return " ".join(f"{key}={_conninfo_quote(value)}" for key, value in params.items())

    def asyncpg_kwargs(self, user: str = spec.ADMIN_USER) -> dict[str, Any]:
        """Keyword arguments for a raw ``asyncpg.connect`` (token and verify-full TLS context)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        # ALPN as PostgreSQL 17 clients send it, so `direct_tls=True` works with these kwargs too.
        context.set_alpn_protocols([spec.ALPN_PROTOCOL])
        return {
            "host": self.host,
            "port": self.port,
            "user": user,
            "database": spec.DATABASE,
            "password": self.token(user),
            "ssl": context,
        }


def _set_environ(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _conninfo_quote(value: str) -> str:
    """Quote a libpq conninfo value (single quotes, backslash escapes) when it needs it."""
    if value and not any(ch in value for ch in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
