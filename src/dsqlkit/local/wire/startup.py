"""A session's startup and password phase as a sans-I/O state machine: bytes in, actions out.

:class:`Startup` reads the client's bytes after TLS (its own
:class:`~dsqlkit.local.wire.protocol.MessageReader`), checks the StartupMessage (user, database,
the rules' ``check_startup``) and takes the password, and queues what the shell must do in
``events``: :class:`AskPassword`, :class:`Authenticate` (check the IAM token: asynchronous, the
shell's), :class:`Cancel` (a CancelRequest over TLS) or a :class:`~dsqlkit.local.wire.session.Close`.
Bytes for the client go to ``to_client``. Example::

    startup = Startup(policy_for=lambda user: SessionPolicy())
    startup.receive(protocol.startup_message({"user": "admin", "database": "postgres"}))
    assert isinstance(startup.events[-1], AskPassword)

Bounds before authentication (issue 11): the reader refuses any message longer than a maximal
token's PasswordMessage at its 5-byte header (``FATAL 08P01 invalid message length``), splits
one message at a time (what a client pipelines behind its password stays as the bytes of one
read), and the password must be exactly one C string.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dsqlkit import dsql as spec
from dsqlkit.auth.sigv4 import MAX_TOKEN_LENGTH
from dsqlkit.local.rules.policy import SessionPolicy
from dsqlkit.local.wire import protocol as pg
from dsqlkit.local.wire.session import CLIENT_INSPECT, Close

__all__ = ["AUTH_MAX_MESSAGE", "AskPassword", "Authenticate", "Cancel", "Startup"]

_PASSWORD = ord("p")
#: Before authentication every message is at most a maximal token's PasswordMessage.
AUTH_MAX_MESSAGE = MAX_TOKEN_LENGTH + 5


@dataclass(frozen=True)
class AskPassword:
    """Send AuthenticationCleartextPassword (the shell may delay it: ``connect_delay_ms``)."""


@dataclass(frozen=True)
class Authenticate:
    """Check ``token`` for the session's user; then connect the backend (the shell's work)."""

    token: str


@dataclass(frozen=True)
class Cancel:
    """A CancelRequest (sent over TLS): carry it out, then close."""

    request: pg.CancelRequest


StartupEvent = AskPassword | Authenticate | Cancel | Close


class Startup:
    """The startup and password phase of one session (see the module docstring).

    ``policy_for(user)``: the rules' SessionPolicy for a user; ``refusal``: the connection quota's
    answer, sent once the client has said who it is (None: admitted).
    """

    def __init__(
        self,
        *,
        policy_for: Callable[[str], SessionPolicy],
        refusal: spec.DsqlError | None = None,
    ) -> None:
        self.reader = pg.MessageReader(
            CLIENT_INSPECT | {_PASSWORD}, startup=True, max_size=AUTH_MAX_MESSAGE
        )
        self.to_client: list[bytes] = []
        self.events: list[StartupEvent] = []
        self.user = ""
        self.parameters: dict[str, str] = {}
        self.policy: SessionPolicy | None = None
        self.done = False  # a password taken, or the session refused
        self._policy_for = policy_for
        self._refusal = refusal

    def receive(self, data: bytes) -> None:
        """Client bytes; at most the startup packet and then the password are acted on."""
        try:
            frames = self.reader.feed(data)  # one frame at most: the reader's startup/single mode
            while frames and not self.done:
                for kind, frame in frames:
                    self._frame(kind, frame)
                frames = [] if self.done else self.reader.feed(b"")
        except pg.ProtocolError as exc:
            self._close(exc.error, "protocol")

    def pipelined(self) -> list[pg.Frame]:
        """Authenticated: what the client sent after its password, split for the relay.

        The reader is switched to the relay's mode (its types, the full message cap).
        """
        self.reader.inspect = CLIENT_INSPECT
        self.reader.max_size = spec.MAX_MESSAGE_SIZE
        self.reader.single = False
        return self.reader.feed(b"")

    def _frame(self, kind: int, frame: memoryview) -> None:
        if self.reader.startup and kind == pg.STARTUP:
            self._startup(pg.parse_startup_packet(frame[4:]))
        elif not self.reader.startup and kind == _PASSWORD:
            self.done = True
            self.events.append(Authenticate(pg.parse_password(frame[5:])))
        else:
            raise pg.ProtocolError(spec.PROTOCOL_VIOLATION.format(kind=chr(max(kind, 0))))

    def _startup(self, packet: pg.StartupPacket) -> None:
        if isinstance(packet, pg.CancelRequest):  # libpq 17 sends cancels over TLS too
            self.done = True
            self.events.append(Cancel(packet))
            return
        if not isinstance(packet, pg.StartupMessage):
            raise pg.ProtocolError(spec.INVALID_STARTUP_PACKET)
        if self._refusal is not None:
            reason = "rate" if self._refusal is spec.RATE_EXCEEDED else "cap"
            self._close(self._refusal, reason)
            return
        if packet.minor > 0 or packet.protocol_options:
            self.to_client.append(pg.negotiate_protocol_version(0, packet.protocol_options))
        params = packet.parameters
        self.user = params.get("user", "")
        database = params.get("database") or self.user
        if not self.user:
            self._close(spec.USER_MISSING, "user_missing")
        elif database != spec.DATABASE:
            self._close(spec.DATABASE_MISSING.format(database=database), "database")
        else:
            self.parameters = params
            self.policy = self._policy_for(self.user)
            refused = self.policy.check_startup(params)
            if refused is not None:
                self._close(refused, "startup_parameters")
                return
            self.reader.startup = False
            self.reader.single = True  # the password, one message; the rest waits as bytes
            self.events.append(AskPassword())

    def _close(self, error: spec.DsqlError, reason: str) -> None:
        self.done = True
        self.events.append(Close(error, reason))
