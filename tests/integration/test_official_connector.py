"""The official aurora-dsql-python-connector against the local endpoint.

It signs its tokens with botocore (a new boto3 session per connection), from the environment
credentials that ``dsql_environ`` sets, so these tests prove that our verifier accepts botocore's
tokens. The official connector takes any host without ``.dsql`` for a cluster id, so it connects
to the DSQL-style name ``<cluster-id>.dsql.<region>.on.aws`` mapped to 127.0.0.1 (not in DNS).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aurora_dsql_asyncpg
import aurora_dsql_psycopg
import aurora_dsql_psycopg2
import pytest

from dsqlkit import dsql as spec


@pytest.fixture
def official_kwargs(dsql_endpoint, dsql_environ, monkeypatch) -> dict[str, Any]:
    monkeypatch.delenv("AWS_PROFILE", raising=False)  # botocore: the environment's keys only
    return {
        "host": dsql_endpoint.hostname,
        "port": dsql_endpoint.port,
        "user": spec.ADMIN_USER,
        "sslmode": "verify-full",
        "sslrootcert": str(dsql_endpoint.ca_file),
    }


def test_official_psycopg2(official_kwargs):
    # libpq: host= is the name for SNI and certificate checks, hostaddr= where to connect.
    conn = aurora_dsql_psycopg2.connect(**official_kwargs, hostaddr="127.0.0.1")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, current_setting('application_name')")
            user, application_name = cur.fetchone()
        assert user == spec.ADMIN_USER
        assert application_name.startswith("aurora-dsql-python-psycopg2/")
    finally:
        conn.close()


def test_official_psycopg(official_kwargs):
    with aurora_dsql_psycopg.connect(**official_kwargs, hostaddr="127.0.0.1") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (spec.ADMIN_USER,)


class _LoopbackResolvingLoop(asyncio.SelectorEventLoop):
    """asyncpg has no ``hostaddr``: it resolves ``host`` and also sends it as SNI. This loop
    resolves the DSQL-style name to 127.0.0.1 (what an /etc/hosts line would do), so SNI and
    verify-full still see the real name."""

    hostname = ""

    async def getaddrinfo(self, host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == self.hostname:
            host = "127.0.0.1"
        return await super().getaddrinfo(host, *args, **kwargs)


def test_official_asyncpg(official_kwargs):
    _LoopbackResolvingLoop.hostname = official_kwargs["host"]

    async def select_user() -> str:
        conn = await aurora_dsql_asyncpg.connect(**official_kwargs)
        try:
            return str(await conn.fetchval("SELECT current_user"))
        finally:
            await conn.close()

    with asyncio.Runner(loop_factory=_LoopbackResolvingLoop) as runner:
        assert runner.run(select_user()) == spec.ADMIN_USER
