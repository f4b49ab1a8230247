"""The connection cap: with a backend smaller than the endpoint's quota, clients get DSQL's 53300
from the endpoint, never PostgreSQL's own "remaining connection slots are reserved" FATAL.

A real endpoint over a real PostgreSQL started with a small ``max_connections`` (12: 9 slots for
roles that are not superusers, less the endpoint's own connections).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import pytest

from dsqlkit import dsql as spec
from dsqlkit.local import LocalEndpoint
from dsqlkit.local.backend.postgres import EmbeddedBackend
from dsqlkit.local.server import OWN_BACKEND_CONNECTIONS
from tests.security.clients import GoodClient, assert_back_to, baseline

MAX_CONNECTIONS = 12
SUPERUSER_RESERVED = 3  # PostgreSQL's default superuser_reserved_connections


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    backend = EmbeddedBackend(None, max_connections=MAX_CONNECTIONS)
    with LocalEndpoint(backend=backend, trust_environment=False) as ep:
        yield ep


def test_clients_get_dsqls_error_before_the_backend_runs_out(endpoint):
    base = baseline(endpoint)
    cap = MAX_CONNECTIONS - SUPERUSER_RESERVED - OWN_BACKEND_CONNECTIONS
    with contextlib.ExitStack() as stack:
        for _ in range(cap):
            conn = stack.enter_context(psycopg.connect(endpoint.dsn(), autocommit=True))
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(endpoint.dsn()).close()
        # psycopg keeps no SQLSTATE for a failed connection: the text is DSQL's, not PostgreSQL's.
        assert f"FATAL:  {spec.TOO_MANY_CONNECTIONS.message}" in str(info.value)
    assert_back_to(endpoint, base)
    good = GoodClient(endpoint)
    good.check()
    good.close()
