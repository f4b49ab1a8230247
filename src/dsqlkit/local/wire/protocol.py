"""PostgreSQL v3 wire protocol framing, sans-I/O: bytes in, frames and bytes out.

No sockets and no asyncio here (the h11 style): :mod:`dsqlkit.local.server` is the I/O shell. The
hot path is :class:`MessageReader`, which parses only the 5-byte headers and hands back the messages
the caller asked to inspect; everything else comes back as raw byte slices to forward unchanged
(consecutive ones merged, so one ``feed`` usually gives one write)::

    reader = MessageReader(inspect=frozenset(b"QPX"))
    for kind, data in reader.feed(chunk):
        if kind == RAW:
            forward(data)          # whole or partial messages, untouched
        elif kind == ord("Q"):
            sql = parse_query(data[5:])

Protocol errors raise :class:`ProtocolError`, which carries the :class:`~dsqlkit.dsql.DsqlError`
to send before closing.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from dsqlkit import dsql as spec

# Precompiled layouts (network byte order).
HEADER = struct.Struct("!BI")  # message type, length (length counts itself, not the type byte)
INT32 = struct.Struct("!I")
INT16 = struct.Struct("!H")
STARTUP_HEADER = struct.Struct("!II")  # length, protocol version or request code
CANCEL_BODY = struct.Struct("!III")  # code, process id, secret key
I32_PAIR = struct.Struct("!II")

PROTOCOL_3_0 = 3 << 16
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

#: Frame kinds returned by :meth:`MessageReader.feed` besides message type bytes.
RAW = -1
STARTUP = 0

TLS_HANDSHAKE_RECORD = 0x16


class ProtocolError(Exception):
    """The peer broke the protocol; ``error`` is what to send it before closing."""

    def __init__(self, error: spec.DsqlError) -> None:
        super().__init__(error.message)
        self.error = error


# --- Startup phase -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StartupMessage:
    major: int
    minor: int
    parameters: dict[str, str]
    #: ``_pq_.*`` protocol options the client asked for (we support none of them).
    protocol_options: tuple[str, ...] = ()


@dataclass(frozen=True)
class SSLRequest:
    pass


@dataclass(frozen=True)
class GSSENCRequest:
    pass


@dataclass(frozen=True)
class CancelRequest:
    process_id: int
    secret_key: bytes = field(repr=False)


StartupPacket = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest


def parse_startup_packet(body: bytes | memoryview) -> StartupPacket:
    """Decode a startup-phase packet (``body`` excludes the 4-byte length: ``frame[4:]``).

    >>> parse_startup_packet(INT32.pack(SSL_REQUEST_CODE))
    SSLRequest()
    """
    if len(body) < 4:
        raise ProtocolError(spec.INVALID_STARTUP_PACKET)
    (code,) = INT32.unpack_from(body)
    if code == SSL_REQUEST_CODE and len(body) == 4:
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE and len(body) == 4:
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE and len(body) >= 12:
        # PostgreSQL 18 (protocol 3.2) allows longer keys; we hand out 4-byte ones.
        (pid,) = INT32.unpack_from(body, 4)
        return CancelRequest(pid, bytes(body[8:]))
    major, minor = code >> 16, code & 0xFFFF
    if major != 3:
        raise ProtocolError(spec.UNSUPPORTED_PROTOCOL.format(major=major, minor=minor))
    return _parse_startup_parameters(major, minor, bytes(body[4:]))


def _parse_startup_parameters(major: int, minor: int, data: bytes) -> StartupMessage:
    # name\0value\0 ... \0: the final terminator is required.
    if not data.endswith(b"\0"):
        raise ProtocolError(spec.INVALID_STARTUP_PACKET)
    body = data[:-1]
    if body and not body.endswith(b"\0"):
        raise ProtocolError(spec.INVALID_STARTUP_PACKET)
    parts = body[:-1].split(b"\0") if body else []
    if len(parts) % 2:
        raise ProtocolError(spec.INVALID_STARTUP_PACKET)
    parameters: dict[str, str] = {}
    options: list[str] = []
    for i in range(0, len(parts), 2):
        name, value = _decode(parts[i]), _decode(parts[i + 1])
        if not name:
            raise ProtocolError(spec.INVALID_STARTUP_PACKET)
        if name.startswith("_pq_."):
            options.append(name)
        else:
            parameters[name] = value
    return StartupMessage(major, minor, parameters, tuple(options))


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(spec.INVALID_STARTUP_PACKET) from exc


# --- Incremental reader ---------------------------------------------------------------------------

Frame = tuple[int, memoryview]


class MessageReader:
    """Split a byte stream into frames: inspected messages whole, the rest as raw slices.

    ``inspect``: message type bytes whose payload the caller wants (buffered until complete);
    may be changed between feeds. Inspected frames are whole messages (header included, so they
    can be forwarded as they are; the payload is ``frame[5:]``). ``startup=True``: the next frame is an untyped startup packet
    (capped at spec.MAX_STARTUP_PACKET); after one startup frame the reader stops and keeps the rest
    until the next ``feed`` (the caller decides the mode in between, e.g. ``feed(b"")``).
    """

    def __init__(
        self,
        inspect: frozenset[int] = frozenset(),
        *,
        startup: bool = False,
        max_size: int = spec.MAX_MESSAGE_SIZE,
    ) -> None:
        self.inspect = inspect
        self.startup = startup
        #: One whole message per feed (before authentication): what follows stays as bytes,
        #: at most one read of the transport, never split into frames the caller must hold.
        self.single = False
        self.max_size = max_size
        self._partial = bytearray()  # a message prefix we hold (header and/or inspected body)
        self._skip = 0  # bytes of a passthrough message still to come

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a message."""
        return len(self._partial)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add ``data``; return the frames now complete, in order."""
        frames: list[Frame] = []
        view = memoryview(data)
        if self._skip:
            # Rest of a passthrough message: forward as it comes.
            take = min(self._skip, len(view))
            self._skip -= take
            frames.append((RAW, view[:take]))
            view = view[take:]
        if self._partial:
            self._partial += view
            if len(self._partial) < self._held_size():
                return frames  # still incomplete: no copy, no re-parse
            view = memoryview(bytes(self._partial))
            self._partial = bytearray()
        self._split(view, frames)
        return frames

    def _split(self, view: memoryview, frames: list[Frame]) -> None:
        if self.startup:
            pos = self._split_startup(view, frames)
        elif self.single:
            pos = self._split_one(view, frames)
        else:
            pos = self._split_typed(view, frames)
        if pos < len(view):
            self._partial += view[pos:]

    def _split_startup(self, view: memoryview, frames: list[Frame]) -> int:
        # One startup frame at most: the caller switches modes before the next feed.
        size = self._startup_size(view, 0)
        if size == 0 or len(view) < size:
            return 0
        frames.append((STARTUP, view[:size]))
        return size

    def _split_one(self, view: memoryview, frames: list[Frame]) -> int:
        if len(view) < 5:
            return 0
        kind, length = HEADER.unpack_from(view, 0)
        if length < 4 or length > self.max_size:
            raise ProtocolError(spec.INVALID_MESSAGE_LENGTH)
        if len(view) <= length:
            return 0
        frames.append((kind, view[: length + 1]))
        return int(length) + 1

    def _split_typed(self, view: memoryview, frames: list[Frame]) -> int:
        # The hot path of the relay: locals instead of attribute lookups in the loop.
        inspect, max_size, unpack = self.inspect, self.max_size, HEADER.unpack_from
        pos, end = 0, len(view)
        raw_start = -1  # start of the current run of passthrough bytes
        while end - pos >= 5:
            kind, length = unpack(view, pos)
            if length < 4 or length > max_size:
                raise ProtocolError(spec.INVALID_MESSAGE_LENGTH)
            size = length + 1
            if kind in inspect:
                if end - pos < size:
                    break
                if raw_start >= 0:
                    frames.append((RAW, view[raw_start:pos]))
                    raw_start = -1
                frames.append((kind, view[pos : pos + size]))
            else:
                if raw_start < 0:
                    raw_start = pos
                if end - pos < size:
                    self._skip = size - (end - pos)
                    pos = end
                    break
            pos += size
        if raw_start >= 0:
            frames.append((RAW, view[raw_start:pos]))
        return pos

    def _held_size(self) -> int:
        # Size of the held message when known and bounded, so big messages are not re-copied.
        held = self._partial
        if self.startup or len(held) < 5 or (held[0] not in self.inspect and not self.single):
            return 0
        length = INT32.unpack_from(held, 1)[0]
        return int(length) + 1 if 4 <= length <= self.max_size else 0

    def _startup_size(self, view: memoryview, pos: int) -> int:
        if len(view) - pos < 4:
            return 0
        (size,) = INT32.unpack_from(view, pos)
        if size < 8 or size > spec.MAX_STARTUP_PACKET:
            raise ProtocolError(spec.INVALID_STARTUP_PACKET)
        return int(size)


# --- Parsers for the messages the endpoint inspects -----------------------------------------------


def _cstring(data: bytes | memoryview, pos: int) -> tuple[str, int]:
    raw = bytes(data) if isinstance(data, memoryview) else data
    nul = raw.find(b"\0", pos)
    if nul < 0:
        raise ProtocolError(spec.INVALID_MESSAGE_LENGTH)
    return raw[pos:nul].decode("utf-8", "surrogateescape"), nul + 1


def parse_password(payload: bytes | memoryview) -> str:
    """PasswordMessage ('p'): the password (for DSQL, the IAM token), exactly one C string."""
    password, end = _cstring(payload, 0)
    if end != len(payload):
        raise ProtocolError(spec.INVALID_PASSWORD_PACKET)
    return password


def _sql_text(raw: bytes | memoryview, pos: int, codec: str) -> tuple[str, int]:
    """A C string of SQL decoded with ``codec`` (strict: UnicodeDecodeError for bad bytes)."""
    data = bytes(raw) if isinstance(raw, memoryview) else raw
    nul = data.find(b"\0", pos)
    if nul < 0:
        raise ProtocolError(spec.INVALID_MESSAGE_LENGTH)
    return data[pos:nul].decode(codec), nul + 1


def parse_query(payload: bytes | memoryview, codec: str = "utf-8") -> str:
    """Query ('Q'): the SQL text, decoded with ``codec`` (see :func:`python_codec`)."""
    return _sql_text(payload, 0, codec)[0]


#: PostgreSQL's client encodings and the Python codecs that read them as the backend does.
#: SJIS and BIG5 are Microsoft's variants in PostgreSQL's conversion tables (cp932, cp950).
#: SQL_ASCII with the backend's UTF8: PostgreSQL checks the text as UTF-8.
_CODECS = {
    "UTF8": "utf-8",
    "SQL_ASCII": "utf-8",
    "SJIS": "cp932",
    "SHIFT_JIS_2004": "shift_jis_2004",
    "BIG5": "cp950",
    "GBK": "gbk",
    "GB18030": "gb18030",
    "UHC": "cp949",
    "JOHAB": "johab",
    "EUC_JP": "euc_jp",
    "EUC_JIS_2004": "euc_jis_2004",
    "EUC_CN": "gb2312",
    "EUC_KR": "euc_kr",
    "KOI8R": "koi8_r",
    "KOI8U": "koi8_u",
    "WIN866": "cp866",
    "WIN874": "cp874",
    **{f"WIN{n}": f"cp{n}" for n in range(1250, 1259)},
    **{f"ISO_8859_{n}": f"iso8859_{n}" for n in (5, 6, 7, 8)},
    **{
        f"LATIN{n}": f"iso8859_{part}"
        for n, part in zip(range(1, 11), (1, 2, 3, 4, 9, 10, 13, 14, 15, 16), strict=True)
    },
}


def python_codec(encoding: str) -> str:
    """The Python codec for PostgreSQL client encoding ``encoding`` (as ParameterStatus names it).

    Encodings without one (EUC_TW, MULE_INTERNAL) never use ``\\`` or ``'`` bytes inside a
    multibyte character, so latin-1 reads their quoting and structure right. Example:
    ``python_codec("SJIS") == "cp932"``.
    """
    return _CODECS.get(encoding.upper().replace("-", "_"), "latin-1")


@dataclass(frozen=True)
class Parse:
    name: str
    sql: str
    param_types: tuple[int, ...]


def parse_parse(payload: bytes | memoryview, codec: str = "utf-8") -> Parse:
    """Parse ('P'): statement name, SQL (decoded with ``codec``) and parameter type OIDs."""
    raw = bytes(payload)
    name, pos = _cstring(raw, 0)
    sql, pos = _sql_text(raw, pos, codec)
    if len(raw) < pos + 2:
        raise ProtocolError(spec.INVALID_MESSAGE_LENGTH)
    (count,) = INT16.unpack_from(raw, pos)
    if len(raw) != pos + 2 + 4 * count:
        raise ProtocolError(spec.INVALID_MESSAGE_LENGTH)
    types = struct.unpack_from(f"!{count}I", raw, pos + 2)
    return Parse(name, sql, types)


def parse_bind_names(payload: bytes | memoryview) -> tuple[str, str]:
    """Bind ('B'): (portal name, statement name); parameters are not decoded."""
    # Both names are at the start: copy only a head of the message (its parameters may be large),
    # the whole only when the names are longer than that.
    raw = bytes(payload[:_BIND_HEAD])
    if raw.count(b"\0") < 2:
        raw = bytes(payload)
    portal, pos = _cstring(raw, 0)
    statement, _ = _cstring(raw, pos)
    return portal, statement


_BIND_HEAD = 256


def parse_close(payload: bytes | memoryview) -> tuple[str, str]:
    """Close ('C' from the client): (``"S"`` statement or ``"P"`` portal, name)."""
    if len(payload) < 2:
        raise ProtocolError(spec.INVALID_MESSAGE_LENGTH)
    return chr(payload[0]), _cstring(payload, 1)[0]


def parse_execute_portal(payload: bytes | memoryview) -> str:
    """Execute ('E' from the client): the portal name."""
    return _cstring(payload, 0)[0]


def parse_error_fields(payload: bytes | memoryview) -> dict[str, str]:
    """ErrorResponse / NoticeResponse: fields by one-letter code, e.g. ``{"C": "40001", ...}``."""
    raw = bytes(payload)
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(raw) and raw[pos] != 0:
        code = chr(raw[pos])
        value, pos = _cstring(raw, pos + 1)
        fields[code] = value
    return fields


def parse_command_complete(payload: bytes | memoryview) -> str:
    """CommandComplete ('C' from the server): the command tag."""
    return _cstring(payload, 0)[0]


def parse_ready_for_query(payload: bytes | memoryview) -> str:
    """ReadyForQuery ('Z'): transaction status 'I', 'T' or 'E'."""
    if len(payload) != 1:
        raise ProtocolError(spec.INVALID_MESSAGE_LENGTH)
    return chr(payload[0])


def parse_parameter_status(payload: bytes | memoryview) -> tuple[str, str]:
    """ParameterStatus ('S' from the server): (name, value)."""
    name, pos = _cstring(payload, 0)
    value, _ = _cstring(payload, pos)
    return name, value


def parse_backend_key_data(payload: bytes | memoryview) -> tuple[int, bytes]:
    """BackendKeyData ('K'): (process id, secret key bytes)."""
    if len(payload) < 8:
        raise ProtocolError(spec.INVALID_MESSAGE_LENGTH)
    (pid,) = INT32.unpack_from(payload)
    return pid, bytes(payload[4:])


def parse_authentication(payload: bytes | memoryview) -> int:
    """Authentication ('R'): the request code (0 = AuthenticationOk)."""
    if len(payload) < 4:
        raise ProtocolError(spec.INVALID_MESSAGE_LENGTH)
    return int(INT32.unpack_from(payload)[0])


# --- Builders ----------------------------------------------------------------------------------


def message(kind: bytes, body: bytes = b"") -> bytes:
    """One typed message: ``kind`` (1 byte), length, ``body``."""
    return kind + INT32.pack(len(body) + 4) + body


def _cstr(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\0"


def error_fields(error: spec.DsqlError) -> dict[str, str]:
    """The protocol fields of a DsqlError (S, V, C, M and D/H when set)."""
    fields = {"S": error.severity, "V": error.severity, "C": error.sqlstate, "M": error.message}
    if error.detail is not None:
        fields["D"] = error.detail
    if error.hint is not None:
        fields["H"] = error.hint
    return fields


def error_response(error: spec.DsqlError | Mapping[str, str], *, notice: bool = False) -> bytes:
    """ErrorResponse (or NoticeResponse) from a DsqlError or a fields dict."""
    fields = error_fields(error) if isinstance(error, spec.DsqlError) else error
    body = b"".join(code.encode("ascii") + _cstr(value) for code, value in fields.items())
    return message(b"N" if notice else b"E", body + b"\0")


def authentication_cleartext_password() -> bytes:
    return message(b"R", INT32.pack(3))


def authentication_ok() -> bytes:
    return message(b"R", INT32.pack(0))


def parameter_status(name: str, value: str) -> bytes:
    return message(b"S", _cstr(name) + _cstr(value))


def backend_key_data(process_id: int, secret_key: bytes) -> bytes:
    return message(b"K", INT32.pack(process_id) + secret_key)


def ready_for_query(status: str) -> bytes:
    return message(b"Z", status.encode("ascii"))


def negotiate_protocol_version(newest_minor: int, unsupported: tuple[str, ...] = ()) -> bytes:
    body = INT32.pack((3 << 16) | newest_minor) + INT32.pack(len(unsupported))
    return message(b"v", body + b"".join(_cstr(o) for o in unsupported))


def command_complete(tag: str) -> bytes:
    return message(b"C", _cstr(tag))


# Frontend messages the endpoint sends to the backend.


def startup_message(parameters: Mapping[str, str]) -> bytes:
    body = INT32.pack(PROTOCOL_3_0)
    body += b"".join(_cstr(k) + _cstr(v) for k, v in parameters.items()) + b"\0"
    return INT32.pack(len(body) + 4) + body


def ssl_request() -> bytes:
    return STARTUP_HEADER.pack(8, SSL_REQUEST_CODE)


def gssenc_request() -> bytes:
    return STARTUP_HEADER.pack(8, GSSENC_REQUEST_CODE)


def cancel_request(process_id: int, secret_key: bytes) -> bytes:
    body = INT32.pack(CANCEL_REQUEST_CODE) + INT32.pack(process_id) + secret_key
    return INT32.pack(len(body) + 4) + body


def query(sql: str, codec: str = "utf-8") -> bytes:
    """Query ('Q') of ``sql``, encoded for the session's client_encoding (``codec``)."""
    return message(b"Q", sql.encode(codec, "replace") + b"\0")


def parse(name: str, sql: str, param_types: tuple[int, ...] = (), codec: str = "utf-8") -> bytes:
    types = INT16.pack(len(param_types)) + b"".join(INT32.pack(t) for t in param_types)
    return message(b"P", _cstr(name) + sql.encode(codec, "replace") + b"\0" + types)


def password_message(password: str) -> bytes:
    return message(b"p", _cstr(password))


def close_statement(name: str) -> bytes:
    return message(b"C", b"S" + _cstr(name))


def sync() -> bytes:
    return message(b"S")


def flush() -> bytes:
    return message(b"H")


def terminate() -> bytes:
    return message(b"X")


def quote_literal(text: str | None) -> str:
    """A SQL literal for ``text`` (NULL for None), safe whatever the text holds.

    >>> quote_literal("it's")
    "E'it''s'"
    """
    if text is None:
        return "NULL"
    if "\0" in text:
        text = text.replace("\0", "")
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def raise_sql(error: spec.DsqlError) -> str:
    """The statement that makes the backend raise ``error`` (sys.dsqlkit_raise, see docs)."""
    args = ", ".join(
        quote_literal(x) for x in (error.sqlstate, error.message, error.detail, error.hint)
    )
    return f"SELECT sys.dsqlkit_raise({args})"
