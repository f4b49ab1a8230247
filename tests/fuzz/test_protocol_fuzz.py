"""Hypothesis fuzzing of the sans-I/O protocol core (``dsqlkit.local.wire.protocol``).

The reader is driven through the states the server puts it in (startup with SSL negotiation,
auth, relay for simple and extended query and COPY, and the backend side) with random,
truncated, oversized and mutated frames, cut into random chunks. What must hold:

- nothing but :class:`ProtocolError` escapes (no crash), and each one carries a FATAL 08P01/0A000;
- every call returns (no hang: pytest-timeout bounds the test), and what is held back stays under
  the caps (``spec.MAX_STARTUP_PACKET`` before startup, the message cap after);
- valid streams come out byte for byte, whatever the chunking.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsqlkit import dsql as spec
from dsqlkit.local import relay
from dsqlkit.local.config import Quotas
from dsqlkit.local.rules import occ
from dsqlkit.local.rules.session import DsqlSession
from dsqlkit.local.wire import protocol as pg
from dsqlkit.local.wire import session as wire

# The inspect sets the relay uses in each state (relay.py), so the fuzz follows its modes.
CLIENT_RELAY = wire.CLIENT_INSPECT
SERVER_RELAY = wire.SERVER_INSPECT
BACKEND_STARTUP = relay._BACKEND_STARTUP_INSPECT
AUTH = frozenset({ord("p")})
SMALL_CAP = 4096  # a small message cap so oversized frames are cheap to generate

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_message(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + pg.INT32.pack(len(body) + 4) + body


message_kinds = st.sampled_from(b"QPBEDSHCXFpdcfRZKTDNAIs3v123")
valid_messages = st.builds(_valid_message, message_kinds.map(int), st.binary(max_size=64))
hostile_headers = st.builds(
    lambda kind, length: bytes([kind]) + pg.INT32.pack(length),
    st.integers(0, 255),
    st.one_of(
        st.integers(0, 3),  # shorter than the length field itself
        st.integers(SMALL_CAP - 4, SMALL_CAP + 4),  # around the cap
        st.integers(2**31 - 8, 2**32 - 1),  # huge / negative as int32
    ),
)
startup_packets = st.one_of(
    st.just(pg.ssl_request()),
    st.just(pg.gssenc_request()),
    st.just(pg.cancel_request(1234, b"\x01\x02\x03\x04")),
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4).map(
        lambda params: pg.startup_message({"user": "admin", **params})
    ),
)
startup_headers = st.builds(
    lambda length, code: pg.STARTUP_HEADER.pack(length, code),
    st.one_of(st.integers(0, 16), st.integers(9_990, 10_010), st.integers(2**31, 2**32 - 1)),
    st.sampled_from(
        [
            pg.PROTOCOL_3_0,
            pg.SSL_REQUEST_CODE,
            pg.GSSENC_REQUEST_CODE,
            pg.CANCEL_REQUEST_CODE,
            2 << 16,
            0,
            2**32 - 1,
        ]
    ),
)


@st.composite
def mutated(draw: st.DrawFn, pieces: st.SearchStrategy[bytes]) -> bytes:
    """A stream of valid pieces, then damaged: bytes flipped, cut, spliced with garbage."""
    stream = bytearray(b"".join(draw(st.lists(pieces, max_size=8))))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "header"]))
        if action == "flip" and stream:
            i = draw(st.integers(0, len(stream) - 1))
            stream[i] ^= draw(st.integers(1, 255))
        elif action == "truncate" and stream:
            del stream[draw(st.integers(0, len(stream) - 1)) :]
        elif action == "insert":
            at = draw(st.integers(0, len(stream)))
            stream[at:at] = draw(st.binary(max_size=32))
        else:
            stream += draw(st.one_of(hostile_headers, startup_headers))
    return bytes(stream)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _check_error(exc: pg.ProtocolError) -> None:
    assert exc.error.severity == "FATAL"
    assert exc.error.sqlstate in ("08P01", "0A000")
    assert exc.error.message


def drive_reader(reader: pg.MessageReader, chunks: list[bytes]) -> list[pg.Frame] | None:
    """Feed ``chunks``; the frames, or None after a ProtocolError (which ends that client)."""
    frames: list[pg.Frame] = []
    try:
        for chunk in chunks:
            frames.extend(reader.feed(chunk))
            cap = spec.MAX_STARTUP_PACKET if reader.startup else reader.max_size + 5
            assert reader.buffered <= max(cap, len(chunk)), reader.buffered
    except pg.ProtocolError as exc:
        _check_error(exc)
        return None
    return frames


def parse_inspected(kind: int, frame: memoryview) -> None:
    """Decode an inspected frame the way the server does; only ProtocolError may escape."""
    payload = frame[5:]
    parsers = {
        ord("Q"): pg.parse_query,
        ord("P"): pg.parse_parse,
        ord("B"): pg.parse_bind_names,
        ord("E"): pg.parse_execute_portal,
        ord("p"): pg.parse_password,
    }
    try:
        if kind in parsers:
            parsers[kind](payload)
    except pg.ProtocolError as exc:
        _check_error(exc)
    except UnicodeDecodeError:
        assert kind in (ord("Q"), ord("P"))  # SQL text in no valid encoding: the relay's 22021


@FUZZ
@given(stream=mutated(st.one_of(startup_packets, valid_messages)), cuts=st.lists(st.integers()))
def test_client_session_states(stream: bytes, cuts: list[int]) -> None:
    """Startup (SSL/GSSENC/cancel negotiation), auth, then relay: the server's sequence of modes."""
    reader = pg.MessageReader(AUTH, startup=True)
    chunks = chunked(stream, cuts)
    try:
        for chunk in chunks:
            for kind, frame in reader.feed(chunk):
                if kind == pg.STARTUP:
                    packet = pg.parse_startup_packet(frame[4:])
                    if isinstance(packet, pg.StartupMessage):
                        reader.startup = False  # AUTH: only a password is expected
                elif kind == ord("p"):
                    pg.parse_password(frame[5:])
                    reader.inspect = CLIENT_RELAY  # authenticated: relay
                else:
                    parse_inspected(kind, frame)
                cap = spec.MAX_STARTUP_PACKET if reader.startup else reader.max_size + 5
                assert reader.buffered <= max(cap, len(chunk))
    except pg.ProtocolError as exc:
        _check_error(exc)


@FUZZ
@given(
    stream=mutated(st.one_of(valid_messages, hostile_headers)),
    cuts=st.lists(st.integers()),
    inspect=st.sampled_from([CLIENT_RELAY, SERVER_RELAY, BACKEND_STARTUP, AUTH, frozenset()]),
)
def test_typed_phase_with_small_cap(
    stream: bytes, cuts: list[int], inspect: frozenset[int]
) -> None:
    """Relay (simple, extended, COPY data) and backend side: oversized frames end the client."""
    reader = pg.MessageReader(inspect, max_size=SMALL_CAP)
    frames = drive_reader(reader, chunked(stream, cuts))
    for kind, frame in frames or []:
        if kind != pg.RAW:
            assert len(frame) == pg.INT32.unpack_from(frame, 1)[0] + 1 <= SMALL_CAP + 1
            parse_inspected(kind, frame)


@FUZZ
@given(
    messages=st.lists(valid_messages, max_size=20),
    cuts=st.lists(st.integers()),
    inspect=st.sampled_from([CLIENT_RELAY, SERVER_RELAY, frozenset()]),
)
def test_valid_streams_pass_through_unchanged(
    messages: list[bytes], cuts: list[int], inspect: frozenset[int]
) -> None:
    stream = b"".join(messages)
    reader = pg.MessageReader(inspect)
    frames = drive_reader(reader, chunked(stream, cuts))
    assert frames is not None
    assert b"".join(bytes(frame) for _, frame in frames) == stream
    assert reader.buffered == 0
    inspected = [bytes(frame) for kind, frame in frames if kind != pg.RAW]
    assert inspected == [m for m in messages if m[0] in inspect]


@FUZZ
@given(data=st.binary(max_size=256))
def test_parsers_only_raise_protocol_errors(data: bytes) -> None:
    for parse in (
        pg.parse_startup_packet, pg.parse_password, pg.parse_query, pg.parse_parse,
        pg.parse_bind_names, pg.parse_execute_portal, pg.parse_error_fields,
        pg.parse_command_complete, pg.parse_ready_for_query, pg.parse_parameter_status,
        pg.parse_backend_key_data, pg.parse_authentication,
    ):  # fmt: skip
        try:
            parse(data)
        except pg.ProtocolError as exc:
            _check_error(exc)
        except UnicodeDecodeError:
            assert parse in (pg.parse_query, pg.parse_parse)  # the relay answers 22021


def test_oversized_message_is_refused_at_its_header() -> None:
    # A message claiming more than the cap is refused on its 5-byte header, before any body.
    reader = pg.MessageReader(CLIENT_RELAY)
    header = b"Q" + pg.INT32.pack(spec.MAX_MESSAGE_SIZE + 1)
    try:
        reader.feed(header)
    except pg.ProtocolError as exc:
        assert exc.error == spec.INVALID_MESSAGE_LENGTH
    else:
        raise AssertionError("an oversized header was accepted")
    assert reader.buffered == 0


def test_big_inspected_message_is_held_once_not_recopied() -> None:
    # A 1 MiB Query fed in 1 KiB pieces: held until complete, then one frame (no quadratic copy).
    body = b"SELECT '" + b"x" * (1 << 20) + b"'\0"
    data = _valid_message(ord("Q"), body)
    reader = pg.MessageReader(CLIENT_RELAY)
    frames: list[pg.Frame] = []
    for i in range(0, len(data), 1024):
        frames += reader.feed(data[i : i + 1024])
        assert reader.buffered <= len(data)
    assert [bytes(f) for _, f in frames] == [data]


# --- the real session state machine (wire/session.py) under random traffic ------------------------

sql_texts = st.sampled_from(
    [b"SELECT 1", b"BEGIN", b"COMMIT", b"ROLLBACK", b"CREATE TABLE f (a int)", b"INSERT INTO f VALUES (1)",
     b"PREPARE p AS INSERT INTO f VALUES (1)", b"EXECUTE p", b"DEALLOCATE p", b"COPY f FROM STDIN",
     b"VACUUM", b"SELECT '\xff'", b"TRUNCATE f", b"SELECT version()"]
)  # fmt: skip
names = st.sampled_from([b"", b"s", b"t"])
client_messages = st.one_of(
    st.builds(lambda sql: _valid_message(ord("Q"), sql + b"\0"), sql_texts),
    st.builds(lambda n, sql: _valid_message(ord("P"), n + b"\0" + sql + b"\0\0\0"), names, sql_texts),
    st.builds(lambda n: _valid_message(ord("B"), b"\0" + n + b"\0\0\0\0\0\0\0"), names),
    st.just(_valid_message(ord("E"), b"\0\0\0\0\0")),
    st.builds(lambda n: _valid_message(ord("C"), b"S" + n + b"\0"), names),
    st.sampled_from([pg.sync(), pg.flush(), _valid_message(ord("d"), b"1\n"), _valid_message(ord("c"), b"")]),
    st.just(_valid_message(ord("F"), b"\0\0\0\1\0\0\0\0\0\0")),
    valid_messages,
)  # fmt: skip
backend_messages = st.one_of(
    st.builds(pg.command_complete, st.sampled_from(["SELECT 1", "BEGIN", "COMMIT", "ROLLBACK", "CREATE TABLE", "INSERT 0 1", "DEALLOCATE", "DISCARD ALL"])),
    st.builds(pg.ready_for_query, st.sampled_from("ITE")),
    st.sampled_from([pg.message(b"1"), pg.message(b"2"), pg.message(b"3"), pg.message(b"G", b"\0\0\0"), pg.message(b"s"), pg.message(b"I")]),
    st.builds(lambda c: pg.error_response({"S": "ERROR", "C": c, "M": "x", "F": "f.c"}), st.sampled_from(["42P01", "55P03", "25P02"])),
    st.builds(lambda d: pg.error_response({"S": "NOTICE", "C": occ.CATALOG_NOTICE_SQLSTATE, "D": d}, notice=True), st.sampled_from(['["f"]', "[null]", "{", '[1]'])),
    st.builds(lambda e: pg.parameter_status("client_encoding", e), st.sampled_from(["UTF8", "SJIS", "LATIN1", "EUC_TW"])),
)  # fmt: skip


@FUZZ
@given(
    steps=st.lists(
        st.tuples(
            st.booleans(), st.lists(st.one_of(client_messages, backend_messages), max_size=4)
        ),
        max_size=12,
    ),
    cuts=st.lists(st.integers(), max_size=4),
)
def test_session_state_machine_never_crashes(
    steps: list[tuple[bool, list[bytes]]], cuts: list[int]
) -> None:
    """Random client and backend traffic through the real Relay and DSQL's rules.

    Only a Close event may end it (a client's protocol error); a malformed backend frame may
    raise ProtocolError (the shell then drops the backend); nothing else escapes, and a Relay
    that is idle has nothing pending.
    """
    relay_ = wire.Relay(DsqlSession(Quotas(), catalog=occ.OccState()))
    client_reader = pg.MessageReader(CLIENT_RELAY)
    backend_reader = pg.MessageReader(SERVER_RELAY)
    for from_client, messages in steps:
        data = b"".join(messages)
        for chunk in chunked(data, cuts):
            try:
                if from_client:
                    relay_.client(client_reader.feed(chunk))
                else:
                    for kind, frame in backend_reader.feed(chunk):
                        relay_.backend(kind, frame)
            except pg.ProtocolError as exc:
                _check_error(exc)
                return
            for event in relay_.events:
                assert isinstance(event, wire.Close | wire.Wait)
            if relay_.closed:
                return
            relay_.to_client.clear()
            relay_.to_backend.clear()
