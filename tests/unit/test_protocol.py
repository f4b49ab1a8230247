"""dsqlkit.local.wire.protocol: framing, parsers and builders, fed whole, in pieces and byte by byte."""

from __future__ import annotations

import pytest

from dsqlkit import dsql as spec
from dsqlkit.local.wire import protocol as pg

ALL = frozenset(range(256))


def feed_bytewise(reader: pg.MessageReader, data: bytes) -> list[tuple[int, bytes]]:
    frames: list[tuple[int, bytes]] = []
    for i in range(len(data)):
        frames += [(k, bytes(v)) for k, v in reader.feed(data[i : i + 1])]
    return frames


def joined_raw(frames: list[tuple[int, bytes]]) -> bytes:
    return b"".join(v for k, v in frames if k == pg.RAW)


# --- startup packets ---------------------------------------------------------------------------


def test_startup_message_roundtrip() -> None:
    packet = pg.startup_message({"user": "admin", "database": "postgres", "options": "-c x=1"})
    (frame,) = pg.MessageReader(startup=True).feed(packet)
    assert frame[0] == pg.STARTUP
    message = pg.parse_startup_packet(frame[1][4:])
    assert message == pg.StartupMessage(
        3, 0, {"user": "admin", "database": "postgres", "options": "-c x=1"}
    )


def test_startup_packet_bytewise_and_rest_kept() -> None:
    data = pg.ssl_request() + pg.startup_message({"user": "u"})
    frames = feed_bytewise(pg.MessageReader(startup=True), data)
    assert [k for k, _ in frames] == [pg.STARTUP, pg.STARTUP]
    assert b"".join(v for _, v in frames) == data
    # Fed at once: one startup frame, the rest waits for the caller to choose the mode.
    reader = pg.MessageReader(startup=True)
    (first,) = reader.feed(data)
    assert isinstance(pg.parse_startup_packet(first[1][4:]), pg.SSLRequest)
    (second,) = reader.feed(b"")
    assert pg.parse_startup_packet(second[1][4:]) == pg.StartupMessage(3, 0, {"user": "u"})


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (pg.ssl_request(), pg.SSLRequest()),
        (pg.gssenc_request(), pg.GSSENCRequest()),
        (pg.cancel_request(7, b"\1\2\3\4"), pg.CancelRequest(7, b"\1\2\3\4")),
    ],
)
def test_requests(packet: bytes, expected: pg.StartupPacket) -> None:
    assert pg.parse_startup_packet(packet[4:]) == expected


def test_protocol_minor_and_options() -> None:
    body = pg.INT32.pack((3 << 16) | 2) + b"user\0u\0_pq_.x\0y\0\0"
    message = pg.parse_startup_packet(body)
    assert isinstance(message, pg.StartupMessage)
    assert (message.minor, message.protocol_options) == (2, ("_pq_.x",))


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (pg.INT32.pack(2 << 16) + b"\0", spec.UNSUPPORTED_PROTOCOL.format(major=2, minor=0)),
        (pg.INT32.pack(3 << 16) + b"user\0u", spec.INVALID_STARTUP_PACKET),  # no terminator
        (pg.INT32.pack(3 << 16) + b"user\0\0", spec.INVALID_STARTUP_PACKET),  # odd parts
        (pg.INT32.pack(3 << 16) + b"\0u\0\0", spec.INVALID_STARTUP_PACKET),  # empty name
        (b"\0\0", spec.INVALID_STARTUP_PACKET),
        (pg.INT32.pack(3 << 16) + b"user\0\xff\0\0", spec.INVALID_STARTUP_PACKET),
    ],
)
def test_bad_startup_packets(body: bytes, error: spec.DsqlError) -> None:
    with pytest.raises(pg.ProtocolError) as info:
        pg.parse_startup_packet(body)
    assert info.value.error == error


@pytest.mark.parametrize("size", [0, 7, spec.MAX_STARTUP_PACKET + 1])
def test_startup_length_caps(size: int) -> None:
    with pytest.raises(pg.ProtocolError) as info:
        pg.MessageReader(startup=True).feed(pg.INT32.pack(size) + b"\0" * 8)
    assert info.value.error == spec.INVALID_STARTUP_PACKET


# --- typed messages ---------------------------------------------------------------------------


def stream() -> bytes:
    return (
        pg.parse("s1", "SELECT $1", (23,))
        + pg.message(b"B", b"\0s1\0" + b"\0" * 6)
        + pg.message(b"D", b"\0" * 100)
        + pg.message(b"E", b"\0" + pg.INT32.pack(0))
        + pg.sync()
        + pg.query("SELECT 1")
        + pg.terminate()
    )


def test_inspected_whole_and_rest_raw() -> None:
    data = stream()
    frames = [(k, bytes(v)) for k, v in pg.MessageReader(frozenset(b"PQ")).feed(data)]
    assert [k for k, _ in frames] == [ord("P"), pg.RAW, ord("Q"), pg.RAW]
    assert b"".join(v for _, v in frames) == data  # nothing lost, nothing copied twice


@pytest.mark.parametrize("inspect", [frozenset(), frozenset(b"PQ"), ALL])
def test_bytewise_equals_whole(inspect: frozenset[int]) -> None:
    data = stream()
    whole = [(k, bytes(v)) for k, v in pg.MessageReader(inspect).feed(data)]
    pieces = feed_bytewise(pg.MessageReader(inspect), data)
    assert [f for f in pieces if f[0] != pg.RAW] == [f for f in whole if f[0] != pg.RAW]
    assert b"".join(v for _, v in pieces) == data
    assert joined_raw(pieces) == joined_raw(whole)


def test_partial_passthrough_is_forwarded_without_buffering() -> None:
    reader = pg.MessageReader(frozenset(b"Z"))
    big = pg.message(b"D", b"x" * 1000)
    first = reader.feed(big[:300])
    assert joined_raw([(k, bytes(v)) for k, v in first]) == big[:300]
    assert reader.buffered == 0
    rest = reader.feed(big[300:] + pg.ready_for_query("I"))
    assert [k for k, _ in rest] == [pg.RAW, ord("Z")]


def test_big_inspected_message_is_held_until_complete() -> None:
    reader = pg.MessageReader(frozenset(b"Q"))
    message = pg.query("SELECT '" + "x" * 100_000 + "'")
    for i in range(0, len(message) - 1000, 1000):
        assert reader.feed(message[i : i + 1000]) == []
    (frame,) = reader.feed(message[len(message) - len(message) % 1000 - 1000 + 1000 :])
    assert pg.parse_query(frame[1][5:]).startswith("SELECT 'xxx")


@pytest.mark.parametrize("length", [3, spec.MAX_MESSAGE_SIZE + 1])
def test_message_length_caps(length: int) -> None:
    with pytest.raises(pg.ProtocolError) as info:
        pg.MessageReader().feed(b"Q" + pg.INT32.pack(length))
    assert info.value.error == spec.INVALID_MESSAGE_LENGTH


def test_client_message_parsers() -> None:
    assert pg.parse_password(pg.password_message("tok")[5:]) == "tok"
    assert pg.parse_query(pg.query("SELECT 'é'")[5:]) == "SELECT 'é'"
    assert pg.parse_parse(pg.parse("n", "SELECT $1", (23, 25))[5:]) == pg.Parse(
        "n", "SELECT $1", (23, 25)
    )
    assert pg.parse_bind_names(b"p\0s\0\0\0") == ("p", "s")
    assert pg.parse_execute_portal(b"p\0" + pg.INT32.pack(0)) == "p"
    with pytest.raises(pg.ProtocolError):
        pg.parse_parse(b"n\0SELECT 1\0" + pg.INT16.pack(2) + pg.INT32.pack(23))
    with pytest.raises(pg.ProtocolError):
        pg.parse_query(b"no terminator")


def test_server_message_builders_and_parsers() -> None:
    error = spec.ACCESS_DENIED.format(reason="why")
    fields = pg.parse_error_fields(pg.error_response(error)[5:])
    assert fields == {"S": "FATAL", "V": "FATAL", "C": "08006", "M": error.message, "H": "why"}
    assert pg.error_response(error, notice=True)[:1] == b"N"
    assert pg.error_response({"S": "ERROR", "C": "1", "M": "m"}) == pg.message(
        b"E", b"SERROR\0C1\0Mm\0\0"
    )
    assert pg.parse_command_complete(pg.command_complete("INSERT 0 1")[5:]) == "INSERT 0 1"
    assert pg.parse_ready_for_query(pg.ready_for_query("T")[5:]) == "T"
    assert pg.parse_parameter_status(pg.parameter_status("a", "b")[5:]) == ("a", "b")
    assert pg.parse_backend_key_data(pg.backend_key_data(9, b"abcd")[5:]) == (9, b"abcd")
    assert pg.parse_authentication(pg.authentication_ok()[5:]) == 0
    assert pg.parse_authentication(pg.authentication_cleartext_password()[5:]) == 3
    nego = pg.negotiate_protocol_version(0, ("_pq_.x",))
    assert nego == pg.message(b"v", pg.INT32.pack(3 << 16) + pg.INT32.pack(1) + b"_pq_.x\0")
    assert pg.close_statement("s") == pg.message(b"C", b"Ss\0")
    assert pg.sync() + pg.flush() + pg.terminate() == b"S\0\0\0\4H\0\0\0\4X\0\0\0\4"
    with pytest.raises(pg.ProtocolError):
        pg.parse_ready_for_query(b"")
    with pytest.raises(pg.ProtocolError):
        pg.parse_backend_key_data(b"\0")


def test_raise_sql_quotes_safely() -> None:
    error = spec.DsqlError("0A000", "it's a \\ test", detail=None, hint="h'")
    assert pg.raise_sql(error) == (
        "SELECT sys.dsqlkit_raise(E'0A000', E'it''s a \\\\ test', NULL, E'h''')"
    )


def test_single_mode_splits_one_message_per_feed() -> None:
    # Before authentication: the password, and what follows it stays bytes until asked for.
    reader = pg.MessageReader(frozenset({ord("p")}))
    reader.single = True
    data = pg.password_message("tok") + pg.flush() * 3 + pg.query("SELECT 1")
    first = reader.feed(data)
    assert [(kind, bytes(frame)) for kind, frame in first] == [
        (ord("p"), pg.password_message("tok"))
    ]
    assert reader.buffered == len(data) - len(pg.password_message("tok"))
    reader.single = False
    reader.inspect = frozenset({ord("Q")})
    rest = reader.feed(b"")
    assert b"".join(bytes(frame) for _, frame in rest) == pg.flush() * 3 + pg.query("SELECT 1")
    reader = pg.MessageReader(frozenset({ord("p")}), max_size=64)
    reader.single = True
    try:
        reader.feed(b"p" + pg.INT32.pack(1000))
    except pg.ProtocolError as exc:
        assert exc.error == spec.INVALID_MESSAGE_LENGTH
    else:
        raise AssertionError("an oversized password header was accepted")
