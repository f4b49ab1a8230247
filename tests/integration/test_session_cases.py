"""Issue 10's cases through the real endpoint: each gets DSQL's answer and the session goes on.

psycopg's low-level connection (``conn.pgconn``: libpq itself) sends exactly the messages a case
needs (an unnamed Parse, a Parse never executed, raw bytes in a Query); the raw TLS client of
``tests/security/clients.py`` sends what libpq never would (FunctionCall, Sync inside COPY).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import pq
from tests.security.clients import authenticated, errors, read_messages

from dsqlkit import dsql as spec
from dsqlkit.local.wire import protocol as pg

_names = itertools.count()


@pytest.fixture
def conn(dsql_endpoint: Any) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsql_endpoint.dsn(), autocommit=True) as connection:
        yield connection


@pytest.fixture
def table(conn: psycopg.Connection[Any]) -> Iterator[str]:
    name = f"cases_{next(_names)}"
    conn.execute(f"CREATE TABLE {name} (a int)")
    yield name
    conn.pgconn.exec_(b"ROLLBACK")
    conn.execute(f"DROP TABLE IF EXISTS {name}")


def run(conn: psycopg.Connection[Any], sql: str | bytes) -> pq.abc.PGresult:
    """A simple Query through libpq; the result (possibly an error)."""
    return conn.pgconn.exec_(sql.encode() if isinstance(sql, str) else sql)


def sqlstate(result: pq.abc.PGresult) -> str | None:
    code = result.error_field(pq.DiagnosticField.SQLSTATE)
    return code.decode() if code else None


def message(result: pq.abc.PGresult) -> str:
    return (result.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b"").decode()


def assert_usable(conn: psycopg.Connection[Any]) -> None:
    run(conn, "ROLLBACK")
    result = run(conn, "SELECT 1")
    assert result.status == pq.ExecStatus.TUPLES_OK and result.get_value(0, 0) == b"1"


def test_sql_prepare_then_execute_in_a_ddl_transaction(conn: Any, table: str) -> None:
    assert sqlstate(run(conn, f"PREPARE p AS INSERT INTO {table} VALUES (1)")) is None
    run(conn, "BEGIN")
    assert sqlstate(run(conn, f"CREATE TABLE {table}_x (a int)")) is None
    result = run(conn, "EXECUTE p")
    assert (sqlstate(result), message(result)) == ("0A000", spec.DDL_AND_DML.message)
    assert_usable(conn)
    run(conn, "DEALLOCATE p")


def test_unnamed_statement_bound_again_is_checked(conn: Any, table: str) -> None:
    pgconn = conn.pgconn
    assert pgconn.prepare(b"", f"ALTER TABLE {table} ADD COLUMN b int".encode()).status == (
        pq.ExecStatus.COMMAND_OK
    )
    run(conn, "BEGIN")
    pgconn.prepare(b"ins", f"INSERT INTO {table} (a) VALUES (1)".encode())
    assert pgconn.exec_prepared(b"ins", []).status == pq.ExecStatus.COMMAND_OK
    result = pgconn.exec_prepared(b"", [])  # the unnamed ALTER, bound again
    assert (sqlstate(result), message(result)) == ("0A000", spec.DDL_AND_DML.message)
    assert_usable(conn)
    assert run(conn, f"SELECT count(*) FROM {table}").get_value(0, 0) == b"0"  # nothing kept


def test_commit_parsed_but_never_executed_does_not_end_the_transaction(
    conn: Any, table: str
) -> None:
    run(conn, "BEGIN")
    run(conn, f"INSERT INTO {table} VALUES (1)")
    assert conn.pgconn.prepare(b"c", b"COMMIT").status == pq.ExecStatus.COMMAND_OK
    result = run(conn, f"CREATE TABLE {table}_y (a int)")
    assert (sqlstate(result), message(result)) == ("0A000", spec.DDL_AND_DML.message)
    assert_usable(conn)
    assert run(conn, f"SELECT count(*) FROM {table}").get_value(0, 0) == b"0"


@pytest.mark.parametrize(
    ("encoding", "char"), [("SJIS", b"\x95\x5c"), ("GBK", b"\x95\x5c"), ("BIG5", b"\xa5\x5c")]
)
def test_multibyte_backslash_cannot_hide_a_truncate(
    conn: Any, table: str, encoding: str, char: bytes
) -> None:
    run(conn, f"INSERT INTO {table} VALUES (1)")
    run(conn, f"SET client_encoding = '{encoding}'")
    result = run(conn, b"SELECT E'" + char + f"'; TRUNCATE {table}; SELECT '--'".encode())
    assert sqlstate(result) == "0A000" and "Truncate" in message(result)
    run(conn, "SET client_encoding = 'UTF8'")
    assert run(conn, f"SELECT count(*) FROM {table}").get_value(0, 0) == b"1"


def test_latin1_text_and_invalid_bytes_never_drop_the_connection(conn: Any) -> None:
    run(conn, "SET client_encoding = 'LATIN1'")
    result = run(conn, "SELECT 'café'".encode("latin-1"))
    assert result.get_value(0, 0) == "café".encode("latin-1")
    run(conn, "SET client_encoding = 'UTF8'")
    result = run(conn, b"SELECT '\xff\xfe'")
    assert sqlstate(result) == "22021"
    assert message(result) == 'invalid byte sequence for encoding "UTF8": 0xff'
    assert_usable(conn)


def test_statement_nested_500_deep_gets_an_error_not_a_dropped_connection(conn: Any) -> None:
    result = run(conn, "SELECT " + "ARRAY[" * 500 + "1" + "]" * 500)
    assert (sqlstate(result), message(result)) == ("54001", spec.STACK_DEPTH_EXCEEDED.message)
    assert_usable(conn)


def test_function_call_message_is_refused(dsql_endpoint: Any) -> None:
    sock = authenticated(dsql_endpoint)
    try:
        sock.sendall(pg.message(b"F", struct.pack("!IHHIH", 1598, 0, 1, 0, 0)))  # random()
        (error,) = errors(read_messages(sock))
        assert (error["C"], error["M"]) == ("0A000", spec.FUNCTION_CALL_UNSUPPORTED.message)
        sock.sendall(pg.query("SELECT 1"))
        assert [kind for kind, _ in read_messages(sock)] == ["T", "D", "C", "Z"]
    finally:
        sock.close()


def test_sync_during_copy_from_stdin_does_not_shift_answers(
    dsql_endpoint: Any, conn: Any, table: str
) -> None:
    sock = authenticated(dsql_endpoint)
    try:
        sock.sendall(pg.query(f"COPY {table} FROM STDIN"))
        assert read_messages(sock, b"G")[-1][0] == "G"
        sock.sendall(pg.message(b"d", b"7\n") + pg.sync() + pg.message(b"c"))
        assert [kind for kind, _ in read_messages(sock)] == ["C", "Z"]
        sock.sendall(pg.query("SELECT 2"))
        answer = read_messages(sock)
        assert [kind for kind, _ in answer] == ["T", "D", "C", "Z"]
        assert answer[1][1].endswith(b"2")
    finally:
        sock.close()
    assert conn.execute(f"SELECT a FROM {table}").fetchall() == [(7,)]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ("-ec dsqlkit.rows=-1000000", spec.PARAMETER_NOT_SUPPORTED.format(name="dsqlkit.rows")),
        ("-P", spec.PARAMETER_NOT_SUPPORTED.format(name="ignore_system_indexes")),
        ("-S 1000000", spec.PARAMETER_NOT_SUPPORTED.format(name="work_mem")),
    ],
)
def test_startup_options_read_with_postgresql_getopt(
    dsql_endpoint: Any, options: str, error: spec.DsqlError
) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(dsql_endpoint.dsn(), options=options)
    assert error.message in str(info.value)
    with psycopg.connect(dsql_endpoint.dsn(), options="-c search_path=public") as ok:
        assert ok.execute("SHOW search_path").fetchone() == ("public",)


def test_replication_connection_is_refused(dsql_endpoint: Any) -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(dsql_endpoint.dsn(), replication="database")
    assert spec.REPLICATION_UNSUPPORTED.message in str(info.value)
