"""Rows of the differences ledger (docs/emulator.md) that no other test pins: where the local
endpoint knowingly answers otherwise than DSQL. If one of these starts failing, the emulator got
closer to DSQL (or broke): update the ledger row with the test.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import psycopg
import pytest

from dsqlkit import dsql as spec
from dsqlkit.local import LocalEndpoint


@pytest.fixture
def two(dsql_clean_database: LocalEndpoint) -> Iterator[tuple[psycopg.Connection, ...]]:
    """Two autocommit connections and a table ``led (id int PRIMARY KEY)`` with one row."""
    with (
        psycopg.connect(dsql_clean_database.dsn(), autocommit=True) as a,
        psycopg.connect(dsql_clean_database.dsn(), autocommit=True) as b,
    ):
        a.execute("CREATE TABLE led (id int PRIMARY KEY)")
        a.execute("INSERT INTO led VALUES (1)")
        yield a, b


def assert_oc000(error: psycopg.Error) -> None:
    assert (error.sqlstate, error.diag.message_primary) == (
        spec.OCC_DATA_CONFLICT.sqlstate,
        spec.OCC_DATA_CONFLICT.message,
    )


def test_read_during_another_sessions_open_ddl_gets_oc000(
    two: tuple[psycopg.Connection, ...],
) -> None:
    # DSQL: the read runs on the old catalog. Locally the open ALTER holds PostgreSQL's table lock.
    ddl, reader = two
    ddl.execute("BEGIN")
    ddl.execute("ALTER TABLE led ADD COLUMN x int")
    with pytest.raises(psycopg.Error) as caught:
        reader.execute("SELECT count(*) FROM led")
    assert_oc000(caught.value)
    ddl.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM led").fetchone() == (1,)


def test_ddl_on_a_table_an_open_transaction_used_gets_oc000(
    two: tuple[psycopg.Connection, ...],
) -> None:
    # DSQL: the ALTER commits and the older transaction gets OC001. Locally the ALTER loses.
    ddl, user = two
    user.execute("BEGIN")
    assert user.execute("SELECT id FROM led").fetchall() == [(1,)]
    with pytest.raises(psycopg.Error) as caught:
        ddl.execute("ALTER TABLE led ADD COLUMN x int")
    assert_oc000(caught.value)
    user.execute("COMMIT")
    ddl.execute("ALTER TABLE led ADD COLUMN x int")  # once the reader is done, it goes through


def test_a_host_name_the_endpoint_does_not_serve(dsql_endpoint: LocalEndpoint) -> None:
    # The SNI names another cluster; TLS is not verified so that the endpoint's answer is seen.
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(
            host="other-cluster.example",
            hostaddr=socket.gethostbyname(dsql_endpoint.host),
            port=dsql_endpoint.port,
            user=spec.ADMIN_USER,
            dbname=spec.DATABASE,
            password=dsql_endpoint.token(),
            sslmode="require",
        )
    expected = spec.UNKNOWN_HOST.format(host="other-cluster.example").message
    assert expected in str(caught.value)
