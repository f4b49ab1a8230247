"""What a connection says before TLS, sans-I/O: bytes in, decisions out.

A client starts with at most one GSSENCRequest (answered ``N``), then either an SSLRequest (answered
``S``; the TLS handshake follows), a TLS record (``0x16``: direct TLS, PostgreSQL 17's
``sslnegotiation=direct``) or a CancelRequest. Anything else is refused: a plaintext
StartupMessage with ``spec.SSL_MANDATORY``, a second GSSENCRequest with ``spec.GSSENC_REPEATED``
(PostgreSQL too answers a repeated GSSENCRequest with a FATAL and closes), and bytes already sent
after an SSLRequest, before the handshake, by closing (CVE-2021-23214).

The bounds are by construction: at most two requests per connection, at most 16 bytes held
(:data:`MAX_HELD`), and every read either consumes bytes or waits for new ones, so a client that
sends part of a header and goes silent costs nothing until the startup deadline.

The I/O shell asks :meth:`Negotiation.next_read` what to read, reads it, and gives the bytes to
:meth:`Negotiation.receive`, until a final :class:`Step`::

    negotiation = Negotiation()
    while True:
        read = negotiation.next_read()
        data = recv(read)  # peek or consume up to read.size bytes; b"" at EOF (or nothing, see Read)
        step = negotiation.receive(data)
        send(step.reply)
        if step.outcome is not Outcome.CONTINUE:
            break
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dsqlkit import dsql as spec
from dsqlkit.local.wire import protocol as pg

__all__ = ["MAX_HELD", "Negotiation", "Outcome", "Read", "Step"]

#: The most bytes a connection can make the endpoint hold before TLS (a CancelRequest).
MAX_HELD = 16
_HEADER = pg.STARTUP_HEADER.size


class Outcome(enum.Enum):
    CONTINUE = "continue"  #: send ``reply``, then read again
    TLS = "tls"  #: send ``reply``, then the TLS handshake (``direct``: no SSLRequest came)
    CANCEL = "cancel"  #: carry out ``cancel``, then close
    REFUSE = "refuse"  #: send ``reply`` (may be empty), then close; ``reason`` for the log


@dataclass(frozen=True)
class Read:
    """What to read next: up to ``size`` bytes.

    ``peek``: look without consuming (the TLS handshake must still see the bytes). ``wait``: False
    means look only at what has already arrived, without waiting; then ``b""`` means nothing is
    there (EOF counts as nothing). With ``wait``, ``b""`` is EOF.
    """

    size: int
    peek: bool = False
    wait: bool = True


@dataclass(frozen=True)
class Step:
    outcome: Outcome
    reply: bytes = b""
    direct: bool = False
    cancel: pg.CancelRequest | None = None
    reason: str = ""


class _State(enum.Enum):
    FIRST_BYTE = "first byte"  # a new request or a TLS record?
    HEADER = "header"  # the 8-byte length and code
    CANCEL_BODY = "cancel body"  # process id and key
    AFTER_SSL_REQUEST = "after SSLRequest"  # anything already sent is an attack
    DONE = "done"


_CONTINUE = Step(Outcome.CONTINUE)
_GSSENC_REFUSED = Step(Outcome.CONTINUE, reply=b"N")


class Negotiation:
    """One connection's negotiation before TLS (see the module's docstring)."""

    def __init__(self) -> None:
        self._state = _State.FIRST_BYTE
        self._held = bytearray()
        self._gssenc_seen = False

    def next_read(self) -> Read:
        if self._state is _State.FIRST_BYTE:
            return Read(1, peek=True)
        if self._state is _State.HEADER:
            return Read(_HEADER - len(self._held))
        if self._state is _State.CANCEL_BODY:
            return Read(MAX_HELD - len(self._held))
        if self._state is _State.AFTER_SSL_REQUEST:
            return Read(1, peek=True, wait=False)
        raise RuntimeError("the negotiation is over")

    def receive(self, data: bytes) -> Step:
        """Take what the last :meth:`next_read` gave (``data`` no longer than it asked)."""
        state = self._state
        if state is _State.AFTER_SSL_REQUEST:
            if data:
                return self._end(Step(Outcome.REFUSE, reason="data_after_sslrequest"))
            return self._end(Step(Outcome.TLS, reply=b"S"))
        if not data:
            return self._end(Step(Outcome.REFUSE, reason="closed"))
        if state is _State.FIRST_BYTE:
            if data[0] == pg.TLS_HANDSHAKE_RECORD:
                return self._end(Step(Outcome.TLS, direct=True))
            self._state = _State.HEADER  # the byte was only peeked: the header read takes it
            return _CONTINUE
        self._held += data
        if state is _State.HEADER and len(self._held) == _HEADER:
            return self._request()
        if state is _State.CANCEL_BODY and len(self._held) == MAX_HELD:
            cancel = pg.parse_startup_packet(bytes(self._held[4:]))
            assert isinstance(cancel, pg.CancelRequest)
            return self._end(Step(Outcome.CANCEL, cancel=cancel))
        return _CONTINUE  # part of it: wait for more

    def _request(self) -> Step:
        length, code = pg.STARTUP_HEADER.unpack(self._held)
        if code == pg.SSL_REQUEST_CODE and length == _HEADER:
            self._state = _State.AFTER_SSL_REQUEST
            return _CONTINUE
        if code == pg.GSSENC_REQUEST_CODE and length == _HEADER:
            if self._gssenc_seen:
                reply = pg.error_response(spec.GSSENC_REPEATED)
                return self._end(Step(Outcome.REFUSE, reply=reply, reason="gssenc_repeated"))
            self._gssenc_seen = True
            self._held.clear()
            self._state = _State.FIRST_BYTE  # the client may now send an SSLRequest
            return _GSSENC_REFUSED
        if code == pg.CANCEL_REQUEST_CODE and length == MAX_HELD:
            self._state = _State.CANCEL_BODY
            return _CONTINUE
        reply = pg.error_response(spec.SSL_MANDATORY)
        return self._end(Step(Outcome.REFUSE, reply=reply, reason="plaintext"))

    def _end(self, step: Step) -> Step:
        self._state = _State.DONE
        self._held.clear()
        return step
