"""The session state machine (``local/wire/session.py``) alone: bytes in, bytes and actions out.

Each test plays both peers: the client's messages go through the real MessageReader and Relay,
the backend's answers are written by hand as PostgreSQL would send them, and the test reads what
the relay sent each way. DSQL's real rules decide (``DsqlSession`` with an ``OccState``).
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from dsqlkit import dsql as spec
from dsqlkit.local.config import Quotas
from dsqlkit.local.rules import occ
from dsqlkit.local.rules.policy import SessionPolicy
from dsqlkit.local.rules.session import DsqlSession
from dsqlkit.local.wire import protocol as pg
from dsqlkit.local.wire.session import CLIENT_INSPECT, SERVER_INSPECT, Close, Relay, Wait
from dsqlkit.local.wire.startup import (
    AUTH_MAX_MESSAGE,
    AskPassword,
    Authenticate,
    Cancel,
    Startup,
)


def bind(statement: str = "", portal: str = "") -> bytes:
    body = portal.encode() + b"\0" + statement.encode() + b"\0" + struct.pack("!HHH", 0, 0, 0)
    return pg.message(b"B", body)


def execute(portal: str = "") -> bytes:
    return pg.message(b"E", portal.encode() + b"\0" + struct.pack("!I", 0))


def function_call() -> bytes:
    return pg.message(b"F", struct.pack("!IHHI", 1234, 0, 0, 0) + struct.pack("!H", 0))


def notice(fields: dict[str, str]) -> bytes:
    return pg.error_response(fields, notice=True)


def backend_error(code: str, message: str, **extra: str) -> bytes:
    return pg.error_response({"S": "ERROR", "V": "ERROR", "C": code, "M": message, **extra})


class Peers:
    """A relay between a scripted client and a scripted backend."""

    def __init__(self, policy: SessionPolicy | None = None, *, encoding: str = "UTF8") -> None:
        self.catalog = occ.OccState()
        self.policy = policy or DsqlSession(Quotas(), catalog=self.catalog)
        self.relay = Relay(self.policy, encoding=encoding)
        self.client_reader = pg.MessageReader(CLIENT_INSPECT)
        self.backend_reader = pg.MessageReader(SERVER_INSPECT)

    def send(self, *messages: bytes) -> list[tuple[str, bytes]]:
        """Client bytes in; the messages the relay sent to the backend out."""
        self.relay.client(self.client_reader.feed(b"".join(messages)))
        return self._take("to_backend")

    def answer(self, *messages: bytes) -> list[tuple[str, bytes]]:
        """Backend bytes in; the messages the relay sent to the client out."""
        for kind, frame in self.backend_reader.feed(b"".join(messages)):
            self.relay.backend(kind, frame)
        return self._take("to_client")

    def sent_to_backend(self) -> list[tuple[str, bytes]]:
        return self._take("to_backend")

    def _take(self, side: str) -> list[tuple[str, bytes]]:
        data = b"".join(bytes(chunk) for chunk in getattr(self.relay, side))
        setattr(self.relay, side, [])
        reader = pg.MessageReader(frozenset(range(256)))
        return [(chr(kind), bytes(frame[5:])) for kind, frame in reader.feed(data)]

    def round_trip(self, sql: str, *answers: bytes) -> list[tuple[str, bytes]]:
        """A simple Query the backend answers with ``answers``; the client's messages out."""
        self.send(pg.query(sql))
        return self.answer(*answers)


def cc(tag: str) -> bytes:
    return pg.command_complete(tag)


def rfq(status: str) -> bytes:
    return pg.ready_for_query(status)


def queries(sent: list[tuple[str, bytes]]) -> list[str]:
    return [pg.parse_query(body) for kind, body in sent if kind == "Q"]


def raised(sent: list[tuple[str, bytes]], error: spec.DsqlError) -> bool:
    """Whether the relay made the backend raise ``error`` (sys.dsqlkit_raise) in ``sent``."""
    return any(pg.raise_sql(error) in q for q in queries(sent))


def error_of(messages: list[tuple[str, bytes]]) -> dict[str, str]:
    (fields,) = [pg.parse_error_fields(body) for kind, body in messages if kind == "E"]
    return fields


def begin(peers: Peers) -> None:
    peers.round_trip("BEGIN", cc("BEGIN"), rfq("T"))


# --- too lenient: the backend's truth ------------------------------------------------------


def test_sql_prepare_execute_counts_as_the_prepared_statement() -> None:
    peers = Peers()
    peers.round_trip("PREPARE p AS INSERT INTO t VALUES (1)", cc("PREPARE"), rfq("I"))
    begin(peers)
    peers.round_trip("CREATE TABLE x (a int)", cc("CREATE TABLE"), rfq("T"))
    assert raised(peers.send(pg.query("EXECUTE p")), spec.DDL_AND_DML)
    # A second PREPARE of the name fails in the backend: the first statement still counts.
    peers.answer(backend_error("P0001", spec.DDL_AND_DML.message), rfq("E"))
    peers.round_trip("ROLLBACK", cc("ROLLBACK"), rfq("I"))
    peers.send(pg.query("PREPARE p AS SELECT 1"))
    peers.answer(backend_error("42P05", 'prepared statement "p" already exists'), rfq("I"))
    begin(peers)
    peers.round_trip("CREATE TABLE y (a int)", cc("CREATE TABLE"), rfq("T"))
    assert raised(peers.send(pg.query("EXECUTE p")), spec.DDL_AND_DML)


def test_unnamed_statement_is_checked_again_when_bound_again() -> None:
    peers = Peers()
    sent = peers.send(pg.parse("", "CREATE TABLE u (a int)"), bind(), execute(), pg.sync())
    assert [kind for kind, _ in sent] == ["P", "B", "E", "S"]
    peers.answer(pg.message(b"1"), pg.message(b"2"), cc("CREATE TABLE"), rfq("I"))
    begin(peers)
    peers.send(pg.parse("s", "INSERT INTO t VALUES (1)"), bind("s"), execute(), pg.sync())
    peers.answer(pg.message(b"1"), pg.message(b"2"), cc("INSERT 0 1"), rfq("T"))
    sent = peers.send(bind(""), execute(), pg.sync())
    assert [kind for kind, _ in sent] == ["C", "H", "S"]  # refused: a barrier, not the Bind
    client = peers.answer(pg.message(b"3"), rfq("T"))
    assert error_of(client)["M"] == spec.DDL_AND_DML.message
    assert raised(peers.sent_to_backend(), spec.TRANSACTION_ABORTED)  # the backend's txn fails


def test_a_parse_the_backend_refused_or_skipped_keeps_nothing() -> None:
    peers = Peers()
    # Refused by the backend (no such table): the name is free again.
    peers.send(pg.parse("s", "INSERT INTO nosuch VALUES (1)"), pg.sync())
    peers.answer(backend_error("42P01", 'relation "nosuch" does not exist'), rfq("I"))
    # Skipped by the backend (an error before it in the batch): the name is free too.
    peers.send(pg.parse("t", "SELECT 1/0"), bind("t"), execute())
    peers.send(pg.parse("u", "INSERT INTO t VALUES (1)"), pg.sync())
    peers.answer(pg.message(b"1"), pg.message(b"2"), backend_error("22012", "division"), rfq("I"))
    for name in ("s", "u"):
        peers.send(pg.parse(name, f"CREATE TABLE {name}_t (a int)"), pg.sync())
        peers.answer(pg.message(b"1"), rfq("I"))
    begin(peers)
    peers.round_trip("INSERT INTO t VALUES (1)", cc("INSERT 0 1"), rfq("T"))
    for name in ("s", "u"):  # each runs its CREATE TABLE: checked as DDL
        sent = peers.send(bind(name), execute(), pg.sync())
        assert [kind for kind, _ in sent] == ["C", "H", "S"]
        assert error_of(peers.answer(pg.message(b"3"), rfq("T")))["M"] == (spec.DDL_AND_DML.message)
        peers.answer(backend_error("25P02", "aborted"), rfq("E"))  # our raise: swallowed
        peers.round_trip("ROLLBACK", cc("ROLLBACK"), rfq("I"))
        begin(peers)
        peers.round_trip("INSERT INTO t VALUES (1)", cc("INSERT 0 1"), rfq("T"))


def test_commit_counts_when_executed_not_when_parsed() -> None:
    peers = Peers()
    begin(peers)
    peers.round_trip("INSERT INTO t VALUES (1)", cc("INSERT 0 1"), rfq("T"))
    peers.send(pg.parse("c", "COMMIT"), pg.sync())  # prepared, never executed
    peers.answer(pg.message(b"1"), rfq("T"))
    assert raised(peers.send(pg.query("CREATE TABLE z (a int)")), spec.DDL_AND_DML)


def test_commit_executed_in_a_pipeline_ends_the_transaction() -> None:
    peers = Peers()
    begin(peers)
    peers.round_trip("INSERT INTO t VALUES (1)", cc("INSERT 0 1"), rfq("T"))
    peers.send(pg.parse("c", "COMMIT"), bind("c"), execute(), pg.sync())
    peers.answer(pg.message(b"1"), pg.message(b"2"), cc("COMMIT"), rfq("I"))
    sent = peers.send(pg.query("CREATE TABLE z (a int)"))
    assert queries(sent) == ["CREATE TABLE z (a int)"]


def test_function_call_message_is_refused_and_the_session_goes_on() -> None:
    peers = Peers()
    assert raised(peers.send(function_call()), spec.FUNCTION_CALL_UNSUPPORTED)
    client = peers.answer(
        backend_error("0A000", spec.FUNCTION_CALL_UNSUPPORTED.message, W="PL/pgSQL"), rfq("I")
    )
    assert error_of(client)["C"] == "0A000" and "W" not in error_of(client)
    assert queries(peers.send(pg.query("SELECT 1"))) == ["SELECT 1"]


# --- encodings and parser limits ------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "char"), [("SJIS", b"\x95\x5c"), ("GBK", b"\x95\x5c"), ("BIG5", b"\xa5\x5c")]
)
def test_multibyte_encodings_are_read_as_the_backend_reads_them(encoding: str, char: bytes) -> None:
    # One character whose second byte is a backslash in ASCII: read as UTF-8 it would escape
    # the quote, hiding the TRUNCATE inside a string.
    text = b"SELECT E'" + char + b"'; TRUNCATE t; SELECT '--'"
    peers = Peers(encoding="UTF8")
    peers.answer(pg.parameter_status("client_encoding", encoding))
    sent = peers.send(pg.message(b"Q", text + b"\0"))
    assert any("unsupported statement: Truncate" in q for q in queries(sent))


def test_latin1_text_is_classified_and_forwarded_unchanged() -> None:
    peers = Peers(encoding="LATIN1")
    query = pg.message(b"Q", "SELECT 'café'".encode("latin-1") + b"\0")
    assert peers.send(query) == [("Q", query[5:])]


def test_invalid_bytes_get_22021_and_the_session_goes_on() -> None:
    peers = Peers()
    expected = spec.INVALID_BYTE_SEQUENCE.format(encoding="UTF8", bytes="0xff")
    assert raised(peers.send(pg.message(b"Q", b"SELECT '\xff\xfe'\0")), expected)
    peers.answer(backend_error("22021", expected.message), rfq("I"))
    sent = peers.send(pg.message(b"P", b"\0SELECT '\xff'\0\0\0"), bind(), execute(), pg.sync())
    assert [kind for kind, _ in sent] == ["C", "H", "S"]
    assert error_of(peers.answer(pg.message(b"3"), rfq("I")))["C"] == "22021"
    assert queries(peers.send(pg.query("SELECT 1"))) == ["SELECT 1"]


def test_statement_nested_too_deep_gets_54001() -> None:
    peers = Peers()
    deep = "SELECT " + "ARRAY[" * 500 + "1" + "]" * 500  # deeper than the JSON decoder's stack
    sent = peers.send(pg.query(deep))
    # A long text is decided in the classifier's worker process: carry the Wait out as the shell does.
    for wait in [event for event in peers.relay.events if isinstance(event, Wait)]:
        peers.relay.resolved(asyncio.run(wait.decision), wait)  # type: ignore[arg-type]
        sent += peers.sent_to_backend()
    assert raised(sent, spec.STACK_DEPTH_EXCEEDED)
    peers.answer(backend_error("54001", spec.STACK_DEPTH_EXCEEDED.message), rfq("I"))
    assert queries(peers.send(pg.query("SELECT 1"))) == ["SELECT 1"]


# --- COPY, errors, OCC ------------------------------------------------------------------------


def test_sync_during_copy_from_stdin_does_not_shift_later_answers() -> None:
    peers = Peers()
    peers.send(pg.parse("", "COPY t FROM STDIN"), bind(), execute(), pg.sync())
    copy_in = pg.message(b"G", b"\0\0\0")
    peers.answer(pg.message(b"1"), pg.message(b"2"), copy_in)
    peers.send(pg.message(b"d", b"1\n"), pg.sync(), pg.message(b"c"), pg.sync())
    client = peers.answer(cc("COPY 1"), rfq("I"))
    assert [kind for kind, _ in client] == ["C", "Z"]
    assert peers.relay.idle
    peers.send(pg.query("SELECT 1"))
    assert [kind for kind, _ in peers.answer(cc("SELECT 1"), rfq("I"))] == ["C", "Z"]
    assert peers.relay.idle


def test_copy_that_fails_before_starting_keeps_its_sync() -> None:
    peers = Peers()
    peers.send(pg.parse("", "COPY nosuch FROM STDIN"), bind(), execute(), pg.sync())
    client = peers.answer(
        pg.message(b"1"), pg.message(b"2"), backend_error("42P01", "no such"), rfq("I")
    )
    assert [kind for kind, _ in client] == ["1", "2", "E", "Z"] and peers.relay.idle


def test_backend_errors_lose_postgresql_source_fields() -> None:
    peers = Peers()
    peers.send(pg.query("SELECT 1/0"))
    error = backend_error("22012", "division by zero", F="int.c", L="841", R="int4div")
    fields = error_of(peers.answer(error, rfq("I")))
    assert fields["C"] == "22012" and not {"F", "L", "R"} & set(fields)


def test_catalog_notices_go_to_the_rules_and_oc001_follows() -> None:
    ddl, mine = Peers(), Peers()
    mine.policy = DsqlSession(Quotas(), catalog=ddl.catalog)
    mine.relay = Relay(mine.policy)
    begin(mine)
    ddl.send(pg.query("ALTER TABLE t ADD COLUMN b int"))
    change = notice({"S": "NOTICE", "C": occ.CATALOG_NOTICE_SQLSTATE, "D": '["t"]'})
    client = ddl.answer(change, cc("ALTER TABLE"), rfq("I"))
    assert [kind for kind, _ in client] == ["C", "Z"]  # the notice is not the client's
    assert queries(mine.send(pg.query("SELECT 1"))) == ["SELECT 1"]
    mine.answer(cc("SELECT 1"), rfq("T"))
    assert raised(mine.send(pg.query("SELECT * FROM t")), spec.OCC_SCHEMA_CONFLICT)


def test_refused_commit_rolls_back_in_the_extended_protocol() -> None:
    clock = [0.0]
    policy = DsqlSession(Quotas(max_transaction_age_seconds=1), clock=lambda: clock[0])
    peers = Peers(policy)
    begin(peers)
    clock[0] = 5.0
    sent = peers.send(pg.parse("", "COMMIT"), bind(), execute(), pg.sync())
    assert [kind for kind, _ in sent] == ["C", "H", "S"]
    peers.answer(pg.message(b"3"), rfq("T"))
    assert queries(peers.sent_to_backend()) == ["ROLLBACK"]
    client = peers.answer(cc("ROLLBACK"), rfq("I"))
    assert client == [("Z", b"I")] and peers.relay.idle


# --- limits ---------------------------------------------------------------------------------


def test_kept_statements_are_capped_with_a_clear_error() -> None:
    peers = Peers()
    peers.relay = Relay(peers.policy, max_kept_statements=2)
    for name in ("a", "b"):
        peers.send(pg.parse(name, "SELECT 1"), pg.sync())
        peers.answer(pg.message(b"1"), rfq("I"))
    peers.send(pg.parse("c", "SELECT 1"), pg.sync())
    client = peers.answer(pg.message(b"3"), rfq("I"))
    assert error_of(client)["C"] == spec.TOO_MANY_PREPARED.sqlstate
    # Closing one makes room.
    peers.send(pg.close_statement("a"), pg.sync())
    peers.answer(pg.message(b"3"), rfq("I"))
    assert [k for k, _ in peers.send(pg.parse("c", "SELECT 1"), pg.sync())] == ["P", "S"]


def test_sql_deallocate_frees_a_kept_statement_once_executed() -> None:
    peers = Peers()
    peers.relay = Relay(peers.policy, max_kept_statements=1)
    peers.send(pg.parse("a", "SELECT 1"), pg.sync())
    peers.answer(pg.message(b"1"), rfq("I"))
    peers.round_trip("DEALLOCATE a", cc("DEALLOCATE"), rfq("I"))
    assert [k for k, _ in peers.send(pg.parse("b", "SELECT 1"), pg.sync())] == ["P", "S"]


def test_terminate_closes_with_park() -> None:
    peers = Peers()
    peers.send(pg.terminate())
    assert peers.relay.events == [Close(None, "terminate", park=True)]


def test_password_must_be_exactly_one_c_string() -> None:
    assert pg.parse_password(b"token\0") == "token"
    with pytest.raises(pg.ProtocolError) as info:
        pg.parse_password(b"token\0junk")
    assert info.value.error is spec.INVALID_PASSWORD_PACKET


# --- the startup and password phase (wire/startup.py) ---------------------------------------


def startup_machine(**kwargs: object) -> Startup:
    return Startup(policy_for=lambda user: DsqlSession(Quotas()), **kwargs)  # type: ignore[arg-type]


def hello(**params: str) -> bytes:
    return pg.startup_message({"user": "admin", "database": "postgres", **params})


def test_startup_asks_for_the_password_then_takes_exactly_one() -> None:
    machine = startup_machine()
    machine.receive(hello() + pg.password_message("tok") + pg.query("SELECT 1"))
    assert [type(e) for e in machine.events] == [AskPassword, Authenticate]
    assert machine.events[1] == Authenticate("tok")
    # What followed the password was not split before authentication: the relay gets it.
    assert [kind for kind, _ in machine.pipelined()] == [ord("Q")]


@pytest.mark.parametrize(
    ("packet", "error"),
    [
        (hello(options="-ec dsqlkit.rows=-1000000"), spec.PARAMETER_NOT_SUPPORTED),
        (hello(replication="database"), spec.REPLICATION_UNSUPPORTED),
        (pg.startup_message({"user": "admin", "database": "other"}), spec.DATABASE_MISSING),
        (hello() + pg.message(b"p", b"tok\0junk"), spec.INVALID_PASSWORD_PACKET),
        (hello() + b"p" + pg.INT32.pack(10 << 20), spec.INVALID_MESSAGE_LENGTH),
        (hello() + pg.query("SELECT 1"), spec.PROTOCOL_VIOLATION),
    ],
)
def test_startup_refusals(packet: bytes, error: spec.DsqlError) -> None:
    machine = startup_machine()
    machine.receive(packet)
    (close,) = [e for e in machine.events if isinstance(e, Close)]
    assert close.error is not None and close.error.sqlstate == error.sqlstate
    assert close.error.severity == "FATAL" and machine.done


def test_password_header_over_a_token_is_refused_before_its_body() -> None:
    machine = startup_machine()
    machine.receive(hello())
    machine.receive(b"p" + pg.INT32.pack(AUTH_MAX_MESSAGE + 1))  # one byte over: header only
    assert machine.events[-1] == Close(spec.INVALID_MESSAGE_LENGTH, "protocol")
    assert machine.reader.buffered == 0


def test_cancel_request_over_tls() -> None:
    machine = startup_machine()
    machine.receive(pg.cancel_request(7, b"\1\2\3\4"))
    (event,) = machine.events
    assert isinstance(event, Cancel) and event.request.process_id == 7
