"""Conformance suite: DSQL's dialect and session rules through real drivers, against the local endpoint.

``client`` is parametrized over psycopg2 (simple query protocol), psycopg 3 (extended protocol:
``prepare=True``) and asyncpg (extended protocol: ``fetch``), all in autocommit mode so that the
tests send BEGIN / COMMIT themselves. Errors come back as ``Failure(sqlstate, message)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dsqlkit import dsql as spec

_names = itertools.count()


@dataclass
class Failure(Exception):
    sqlstate: str
    message: str

    def matches(self, error: spec.DsqlError) -> bool:
        return (self.sqlstate, self.message) == (error.sqlstate, error.message)


class Client:
    """One connection; ``run(sql)`` returns rows or raises :class:`Failure`."""

    name = ""
    extended = False

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def expect(self, sql: str, error: spec.DsqlError) -> None:
        with pytest.raises(Failure) as caught:
            self.run(sql)
        assert (caught.value.sqlstate, caught.value.message) == (error.sqlstate, error.message)

    def settle(self) -> None:
        """Absorb a pending OC001 (other tests' DDL bumps the shared catalog version)."""
        try:
            self.run("SELECT 1")
        except Failure as failure:
            assert failure.matches(spec.OCC_SCHEMA_CONFLICT), failure


class Psycopg2Client(Client):
    name = "psycopg2"

    def __init__(self, dsn: str) -> None:
        import psycopg2

        self.errors = psycopg2.Error
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
        except self.errors as error:
            raise Failure(error.pgcode, error.diag.message_primary) from None

    def close(self) -> None:
        self.conn.close()


class PsycopgClient(Client):
    name = "psycopg"
    extended = True

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.errors = psycopg.Error
        self.conn = psycopg.connect(dsn, autocommit=True)

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            cur = self.conn.execute(sql, prepare=True)
            return cur.fetchall() if cur.description else []
        except self.errors as error:
            raise Failure(error.sqlstate or "", error.diag.message_primary or "") from None

    def close(self) -> None:
        self.conn.close()


class AsyncpgClient(Client):
    name = "asyncpg"
    extended = True

    def __init__(self, kwargs: dict[str, Any]) -> None:
        import asyncpg

        self.errors = asyncpg.PostgresError
        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(**kwargs))

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            rows = self.loop.run_until_complete(self.conn.fetch(sql))
        except self.errors as error:
            raise Failure(error.sqlstate, error.args[0]) from None
        return [tuple(row) for row in rows]

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


DRIVERS = ("psycopg2", "psycopg", "asyncpg")


def connect(endpoint: Any, driver: str) -> Client:
    if driver == "psycopg2":
        return Psycopg2Client(endpoint.dsn())
    if driver == "psycopg":
        return PsycopgClient(endpoint.dsn())
    return AsyncpgClient(endpoint.asyncpg_kwargs())


@pytest.fixture(scope="session")
def clients(dsql_endpoint: Any) -> Iterator[dict[str, Client]]:
    opened: dict[str, Client] = {}
    yield opened
    for client in opened.values():
        client.close()


@pytest.fixture(params=DRIVERS)
def client(
    request: pytest.FixtureRequest, dsql_endpoint: Any, clients: dict[str, Client]
) -> Iterator[Client]:
    """A connection per driver, reused across tests, outside any transaction at start and end."""
    driver = request.param
    if driver not in clients:
        clients[driver] = connect(dsql_endpoint, driver)
    conn = clients[driver]
    conn.settle()
    yield conn
    with contextlib.suppress(Failure):
        conn.run("ROLLBACK")


@pytest.fixture
def table(client: Client) -> Iterator[str]:
    """A fresh table ``(id int PRIMARY KEY, a int)``, dropped after the test."""
    name = f"conf_{next(_names)}"
    client.run(f"CREATE TABLE {name} (id int PRIMARY KEY, a int)")
    client.settle()
    yield name
    client.run("ROLLBACK")
    client.settle()
    client.run(f"DROP TABLE IF EXISTS {name}")
