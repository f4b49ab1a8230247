"""One client connection of the local endpoint: startup, IAM auth, the backend session, the relay.

:class:`~dsqlkit.local.server.Endpoint` accepts connections and settles TLS; each connection is
then a :class:`ClientSession` (an asyncio Protocol over the client's TLS transport) paired with a
:class:`BackendLink` (an asyncio Protocol over the Unix socket to PostgreSQL). See
:mod:`dsqlkit.local.server` for the steps; the relay itself is header-only: only the message types
in ``_CLIENT_INSPECT`` / ``_SERVER_INSPECT`` are decoded, everything else is forwarded as slices.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from dsqlkit import dsql as spec
from dsqlkit.auth.sigv4 import TokenRejected, verify_token
from dsqlkit.local.backend.pool import ParkedSession, PoolKey, pool_key
from dsqlkit.local.rules.policy import Action, Decision, SessionPolicy
from dsqlkit.local.tls import sni_of
from dsqlkit.local.wire import protocol as pg

if TYPE_CHECKING:
    from dsqlkit.local.server import Endpoint

__all__ = ["BackendLink", "ClientSession"]

log = logging.getLogger("dsqlkit.local")

#: Startup parameters passed on to the backend (when the policy allows the startup at all).
_FORWARDED_PARAMETERS = spec.SETTABLE_PARAMETERS | {"options"}
_REWRITTEN_STATUS = {
    "server_version": spec.SERVER_VERSION,
    "server_version_num": spec.SERVER_VERSION_NUM,
}

_Q, _P, _S, _X, _C, _E, _F, _B = (ord(c) for c in "QPSXCEFB")
_Z, _I, _SUSPENDED, _CLOSE_COMPLETE, _N = ord("Z"), ord("I"), ord("s"), ord("3"), ord("N")
_CLIENT_INSPECT = frozenset({_Q, _P, _S, _X, _C, _E, _F, _B})
_PASSWORD = ord("p")
#: Before the relay starts: the password, and the relay's own types so that anything a client
#: pipelines behind its password is already split for the policy when the relay starts.
_AUTH_INSPECT = _CLIENT_INSPECT | {_PASSWORD}
#: NoticeResponse too: the backend's catalog-change notices are for the rules (rare: DDL only).
_SERVER_INSPECT = frozenset({_C, _Z, _E, _I, _SUSPENDED, _CLOSE_COMPLETE, _N})
_BACKEND_STARTUP_INSPECT = frozenset({ord("R"), ord("S"), ord("K"), _Z, _E})
#: A statement name no client uses: closing it is a no-op whose CloseComplete marks a position.
_BARRIER_STATEMENT = "dsqlkit.barrier"
#: PostgreSQL's cannot_connect_now (starting up, recovering, shutting down).
_CANNOT_CONNECT_NOW = "57P03"
#: Named statements whose SQL a session keeps for the policy's check at a later Bind (the oldest
#: is forgotten beyond this: a client preparing more than this many is checked at Parse only).
MAX_TRACKED_STATEMENTS = 1000
#: Command tags after which the backend holds no prepared statement of the session.
_ALL_STATEMENTS_DROPPED = frozenset({"DISCARD ALL", "DEALLOCATE ALL"})
#: How a backend session is reset before it is parked for another client (backend_pool).
_RESET = pg.query("DISCARD ALL")
_READY_IDLE = pg.ready_for_query("I")


class _State(enum.Enum):
    STARTUP = 1
    AUTH = 2
    CONNECTING = 3
    RELAY = 4
    CLOSED = 5


class _Expect(enum.IntEnum):
    """What the backend owes the client, in order (so pipelined answers stay matched).

    An IntEnum: hashed in C (a plain Enum hashes in Python), and set lookups are on the hot path.
    """

    QUERY = 1  # simple Query or FunctionCall: CommandComplete(s) then ReadyForQuery
    REFUSED_QUERY = 2  # a refusal the backend raises: forward only its error and ReadyForQuery
    EXECUTE = 3  # one CommandComplete / EmptyQuery / PortalSuspended (or an error)
    CLOSE = 4  # a client Close: CloseComplete
    BARRIER = 5  # our Close of _BARRIER_STATEMENT: its CloseComplete becomes the refusal error
    SYNC = 6  # ReadyForQuery
    SYNC_REFUSED = 7  # ReadyForQuery of a batch we refused part of
    RAISE = 8  # our raise after a refused batch in a transaction: forward only ReadyForQuery


@dataclass(frozen=True)
class _Pending:
    kind: _Expect
    tag: str | None = None
    error: spec.DsqlError | None = None


#: One shared instance per kind for the common, tagless case: no allocation per message.
_PENDING = {kind: _Pending(kind) for kind in _Expect}
_ENDS_AT_READY = frozenset(
    {_Expect.QUERY, _Expect.REFUSED_QUERY, _Expect.SYNC, _Expect.SYNC_REFUSED, _Expect.RAISE}
)
#: Expectations whose backend rows and tags the client must not see (our own raises).
_SILENCED = frozenset({_Expect.REFUSED_QUERY, _Expect.RAISE})


def _pending(kind: _Expect, tag: str | None = None) -> _Pending:
    return _PENDING[kind] if tag is None else _Pending(kind, tag)


class ClientSession(asyncio.Protocol):
    """One client connection (after TLS) and its backend session."""

    def __init__(
        self,
        endpoint: Endpoint,
        peer: Any,
        refusal: spec.DsqlError | None,
        direct: bool,
        deadline: float,
    ) -> None:
        self.endpoint = endpoint
        self.peer = peer
        self.refusal = refusal
        self.direct = direct
        self.deadline = deadline
        self.state = _State.STARTUP
        self.user = ""
        self.sni: str | None = None
        self.parameters: dict[str, str] = {}
        self.policy: SessionPolicy | None = None
        self.pid: int | None = None
        self.key = b""
        self.backend_key: tuple[int, bytes] | None = None
        self.transport: asyncio.Transport | None = None
        self.backend: BackendLink | None = None
        # With the backend pool on: the key of this client's backend session and the
        # ParameterStatus frames its startup sent (the answer a later client of it gets).
        self._pool_key: PoolKey = ()
        self._startup_status: list[bytes] = []
        self._loop = endpoint._running_loop()
        self._reader = pg.MessageReader(_AUTH_INSPECT, startup=True)
        self._inbox: collections.deque[pg.Frame] = collections.deque()
        self._paused: set[str] = set()
        self._to_backend: list[bytes | memoryview] = []
        self._to_client: list[bytes | memoryview] = []
        self._expect: collections.deque[_Pending] = collections.deque()
        self._discarding = False  # extended protocol: skipping to Sync after a refusal
        self._refusal_sent = False
        self._refusal_rollback = False  # the refused batch held a COMMIT: end the transaction
        self._last_status = "I"
        self._statement_tags: dict[str, str] = {}
        self._portal_tags: dict[str, str] = {}
        # Named statements the policy forwarded as they are: their SQL is checked again when a
        # later Bind runs them without a new Parse (statement caches), except for the first Bind
        # after the Parse in the same transaction (``_fresh``: already counted at Parse).
        self._statement_sql: dict[str, str] = {}
        self._fresh: set[str] = set()
        self._lifetime_exceeded = False
        self._timers: list[asyncio.TimerHandle] = []
        self._delayed: collections.deque[tuple[float, bytes]] = collections.deque()
        self._delay_timer: asyncio.TimerHandle | None = None
        self._latency = endpoint.config.added_latency_ms / 1000.0

    def __repr__(self) -> str:
        return f"<ClientSession peer={self.peer} user={self.user!r} state={self.state.name}>"

    # --- asyncio callbacks (client side) --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.endpoint._register(self)
        self._timers.append(self._loop.call_at(self.deadline, self._startup_timeout))
        ssl_object = transport.get_extra_info("ssl_object")
        self.sni = sni_of(ssl_object)
        if self.direct and ssl_object.selected_alpn_protocol() != spec.ALPN_PROTOCOL:
            self._refuse(spec.ALPN_MISSING, "alpn")
        elif self.sni is None:
            self._refuse(spec.SNI_MISSING, "sni_missing")
        elif self.sni.lower() not in self.endpoint.hostnames:
            self._refuse(spec.UNKNOWN_HOST.format(host=self.sni), "unknown_host")

    def data_received(self, data: bytes) -> None:
        if self.state is _State.CLOSED:
            return
        try:
            self._inbox.extend(self._reader.feed(data))
            self._drain_client()
        except pg.ProtocolError as exc:
            self._refuse(exc.error, "protocol")

    def connection_lost(self, exc: Exception | None) -> None:
        self._release_backend()
        self.state = _State.CLOSED
        for timer in self._timers:
            timer.cancel()
        if self._delay_timer is not None:
            self._delay_timer.cancel()
        if self.policy is not None:
            self.policy.close()
        self.endpoint._forget(self)

    def pause_writing(self) -> None:
        if self.backend is not None:
            self.backend.pause_reading()

    def resume_writing(self) -> None:
        if self.backend is not None:
            self.backend.resume_reading()

    # --- reading control -------------------------------------------------------------------

    def pause_client(self, reason: str) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused.add(reason)

    def resume_client(self, reason: str) -> None:
        if reason not in self._paused:
            return
        self._paused.discard(reason)
        if not self._paused and self.transport is not None and self.state is not _State.CLOSED:
            self.transport.resume_reading()

    # --- closing -------------------------------------------------------------------------

    def fatal(self, error: spec.DsqlError) -> None:
        """Send ``error`` and close the session (the backend session at once)."""
        if self.state is _State.CLOSED or self.transport is None:
            return
        self.state = _State.CLOSED
        self._to_client.append(pg.error_response(error))
        self._flush_client(now=True)
        self._close_backend()
        self.transport.close()

    def _refuse(self, error: spec.DsqlError, reason: str) -> None:
        self.endpoint._refuse(error, self.peer, reason, self.user)
        self.fatal(error)

    def _startup_timeout(self) -> None:
        if self.state is not _State.RELAY:
            self._refuse(spec.STARTUP_TIMEOUT, "startup_timeout")

    def _close_backend(self) -> None:
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.close()

    def _release_backend(self) -> None:
        """The client left: reset and park its backend session when it can be reused, else end it."""
        backend = self.backend
        if (
            backend is None
            or not self._reusable()
            or not self.endpoint._backend_pool.start_reset(backend)
        ):
            self._close_backend()
            return
        assert self.backend_key is not None
        self.backend = None
        backend.reset(
            ParkedSession(backend, tuple(self._startup_status), self.backend_key), self._pool_key
        )

    def _reusable(self) -> bool:
        """Idle between transactions with nothing in flight: a DISCARD ALL can clean it."""
        assert self.backend is not None
        return (
            self.state is _State.RELAY
            and self._idle()
            and not self._discarding
            and not self._refusal_sent
            and not self._to_backend
            and "hold" not in self._paused
            and self.backend.is_open()
            and not self.backend._reader.buffered
        )

    # --- client messages -----------------------------------------------------------------

    def _drain_client(self) -> None:
        """Handle queued client frames in order until done or held (a wait, a refusal fix-up)."""
        try:
            self._handle_inbox()
        except pg.ProtocolError as exc:
            # Also reached from loop callbacks (after a hold or a wait), where nothing else would
            # catch it: the client must get its error and be closed, not left hanging.
            self._refuse(exc.error, "protocol")

    def _handle_inbox(self) -> None:
        inbox, paused, relay = self._inbox, self._paused, _State.RELAY
        waiting = (_State.CLOSED, _State.CONNECTING)  # CONNECTING: the rest waits for the relay
        while inbox and "hold" not in paused and self.state not in waiting:
            kind, data = inbox.popleft()
            if self.state is relay:
                self._relay_client(kind, data)
            elif self.state is _State.STARTUP and kind == pg.STARTUP:
                self._startup(pg.parse_startup_packet(data[4:]))
                self._inbox.extend(self._reader.feed(b""))
            elif self.state is _State.AUTH and kind == _PASSWORD:
                self._password(pg.parse_password(data[5:]))
            else:
                raise pg.ProtocolError(spec.PROTOCOL_VIOLATION.format(kind=chr(max(kind, 0))))
        self._flush_backend()

    def _startup(self, packet: pg.StartupPacket) -> None:
        if isinstance(packet, pg.CancelRequest):  # libpq 17 sends cancels over TLS too
            self.endpoint.cancel(packet)
            self.state = _State.CLOSED
            assert self.transport is not None
            self.transport.close()
            return
        if not isinstance(packet, pg.StartupMessage):
            raise pg.ProtocolError(spec.INVALID_STARTUP_PACKET)
        if self.refusal is not None:
            self._refuse(self.refusal, "rate" if self.refusal is spec.RATE_EXCEEDED else "cap")
            return
        if packet.minor > 0 or packet.protocol_options:
            self._write_client(pg.negotiate_protocol_version(0, packet.protocol_options))
        params = packet.parameters
        self.user = params.get("user", "")
        if not self.user:
            self._refuse(spec.USER_MISSING, "user_missing")
            return
        database = params.get("database") or self.user
        if database != spec.DATABASE:
            self._refuse(spec.DATABASE_MISSING.format(database=database), "database")
            return
        self.parameters = params
        self.policy = self.endpoint.rules.session(self.user)
        refused = self.policy.check_startup(params)
        if refused is not None:
            self._refuse(refused, "startup_parameters")
            return
        self.state = _State.AUTH
        self._reader.startup = False
        delay = self.endpoint.config.connect_delay_ms / 1000.0
        if delay > 0:
            self._timers.append(
                self._loop.call_later(
                    delay, self._write_client, pg.authentication_cleartext_password()
                )
            )
        else:
            self._write_client(pg.authentication_cleartext_password())

    def _password(self, token: str) -> None:
        self.state = _State.CONNECTING
        self.pause_client("connect")
        self.endpoint._spawn(self._authenticate(token))

    async def _authenticate(self, token: str) -> None:
        endpoint = self.endpoint
        try:
            verified = verify_token(
                token,
                host=self.sni or "",
                region=endpoint.region,
                user=self.user,
                lookup_secret=endpoint.identities.lookup,
            )
            arn = verified.arn or ""
            if self.user != spec.ADMIN_USER and not await endpoint.rules.role_allows(
                self.user, arn
            ):
                raise TokenRejected(spec.HINT_NOT_AUTHORIZED.format(arn=arn))
        except TokenRejected as exc:
            self._refuse(spec.ACCESS_DENIED.format(reason=exc.hint), "access_denied")
            return
        if self.state is _State.CLOSED:
            return
        parameters = self._backend_parameters()
        if endpoint._backend_pool.enabled:
            self._pool_key = pool_key(parameters)
            parked = endpoint._backend_pool.take(self._pool_key)
            if parked is not None:
                self._resume_parked(parked)
                return
        try:
            _, link = await endpoint.backend.create_connection(lambda: BackendLink(self))
        except OSError as exc:
            log.warning(
                "backend connect failed peer=%s user=%s error=%s", self.peer, self.user, exc
            )
            self._refuse(spec.BACKEND_UNAVAILABLE, "backend_down")
            return
        if self.state is _State.CLOSED:
            link.close()
            return
        self.backend = link
        link.write(pg.startup_message(parameters))

    def _resume_parked(self, parked: ParkedSession[BackendLink]) -> None:
        """Answer the startup from a parked session: its ParameterStatus, our fresh cancel key."""
        parked.link.attach(self)
        self.backend = parked.link
        self.backend_key = parked.backend_key
        self._startup_status = list(parked.status_frames)
        self.pid, self.key = self.endpoint._new_key(self)
        self._to_client += [pg.authentication_ok(), *parked.status_frames]
        self._to_client.append(pg.backend_key_data(self.pid, self.key))
        self._established()
        self._write_client(_READY_IDLE)

    def _backend_parameters(self) -> dict[str, str]:
        params = {"user": self.user, "database": spec.DATABASE}
        for name, value in self.parameters.items():
            if name.lower() in _FORWARDED_PARAMETERS:
                params[name] = value
        params.update(self.endpoint.rules.backend_startup_parameters())
        return params

    def _relay_client(self, kind: int, data: memoryview) -> None:
        if kind == pg.RAW:
            if not self._discarding:
                self._to_backend.append(data)
        elif kind == _Q:
            self._statement(data, pg.parse_query(data[5:]), extended=False)
        elif kind == _P:
            self._statement(data, pg.parse_parse(data[5:]), extended=True)
        elif kind == _S:
            self._sync(data)
        elif kind == _X:
            self._release_backend()
            self.state = _State.CLOSED
            assert self.transport is not None
            self.transport.close()
        elif self._discarding:
            pass  # Bind/Execute/Close after a refused Parse: skipped up to Sync, as PostgreSQL does
        elif kind == _B:
            if self._statement_tags or self._portal_tags or self._statement_sql:
                portal, statement = pg.parse_bind_names(data[5:])  # decoded only when needed
                if statement in self._statement_sql and not self._admit_bind(statement):
                    return
                self._tag_portal(portal, self._statement_tags.get(statement))
            self._to_backend.append(data)
        elif kind == _E:
            tag = self._portal_tags.get(pg.parse_execute_portal(data[5:]))
            self._expect.append(_pending(_Expect.EXECUTE, tag))
            self._to_backend.append(data)
        elif kind == _PASSWORD:  # a second password, queued behind the first
            raise pg.ProtocolError(spec.PROTOCOL_VIOLATION.format(kind="p"))
        else:  # Close or FunctionCall
            if kind == _C and self._statement_sql:
                what, name = pg.parse_close(data[5:])
                if what == "S":
                    self._forget_statement(name)
            self._expect.append(_PENDING[_Expect.CLOSE if kind == _C else _Expect.QUERY])
            self._to_backend.append(data)

    def _admit_bind(self, statement: str) -> bool:
        """Ask the policy about a prepared statement run again; False: refused (batch skipped)."""
        if statement in self._fresh:
            self._fresh.discard(statement)
            return True
        assert self.policy is not None
        decision = self.policy.on_statement(self._statement_sql[statement], extended=True)
        if decision.action is Action.REFUSE:
            assert decision.error is not None
            self._refuse_batch(decision.error)
            return False
        # Only plain FORWARDed statements are kept, so the verdict here is FORWARD as well; a
        # rule's wait (a statement parsed as forwarded cannot have one) is closed, not leaked.
        close = getattr(decision.wait, "close", None)
        if close is not None:
            close()
        return True

    def _remember_statement(self, name: str, sql: str | None) -> None:
        """Keep (``sql``) or drop (None) the SQL of named statement ``name``."""
        policy_class = type(self.policy)
        if not name or getattr(policy_class, "on_statement", None) is SessionPolicy.on_statement:
            return  # unnamed: re-parsed for each use; a policy that forwards all: nothing to ask
        self._forget_statement(name)
        if sql is None:
            return
        if len(self._statement_sql) >= MAX_TRACKED_STATEMENTS:
            self._forget_statement(next(iter(self._statement_sql)))
        self._statement_sql[name] = sql
        self._fresh.add(name)

    def _forget_statement(self, name: str) -> None:
        self._statement_sql.pop(name, None)
        self._fresh.discard(name)

    def _tag_portal(self, portal: str, tag: str | None) -> None:
        if tag is None:
            self._portal_tags.pop(portal, None)
        else:
            self._portal_tags[portal] = tag

    def _statement(self, data: memoryview, parsed: str | pg.Parse, *, extended: bool) -> None:
        if self._discarding:
            return
        if self._lifetime_exceeded:
            self._lifetime_close()
            return
        assert self.policy is not None
        sql = parsed.sql if isinstance(parsed, pg.Parse) else parsed
        decision = self.policy.on_statement(sql, extended=extended)
        self._carry_out(decision, data, parsed)

    def _carry_out(self, decision: Decision, data: memoryview, parsed: str | pg.Parse) -> None:
        """Carry out a policy decision about one Query or Parse (see dsqlkit.local.rules.policy)."""
        if decision.wait is not None:
            self.pause_client("hold")
            self.endpoint._spawn(self._after_wait(decision.wait, data, parsed))
            return
        if isinstance(parsed, pg.Parse):
            self._carry_out_parse(decision, data, parsed)
            return
        if decision.action is Action.REFUSE:
            assert decision.error is not None
            raised = pg.raise_sql(decision.error)
            # A refused COMMIT ends the transaction (as a failed one does): rolled back first.
            self._to_backend.append(
                pg.query(f"ROLLBACK; {raised}" if decision.rollback else raised)
            )
            self._expect.append(_PENDING[_Expect.REFUSED_QUERY])
            return
        if decision.action is Action.REWRITE and decision.sql is not None:
            self._to_backend.append(pg.query(decision.sql))
        else:
            self._to_backend.append(data)
        self._expect.append(_pending(_Expect.QUERY, decision.command_tag))

    def _carry_out_parse(self, decision: Decision, data: memoryview, parsed: pg.Parse) -> None:
        if decision.action is Action.REFUSE:
            assert decision.error is not None
            self._refuse_batch(decision.error, rollback=decision.rollback)
            return
        plain = decision.action is Action.FORWARD and decision.command_tag is None
        self._remember_statement(parsed.name, parsed.sql if plain else None)
        if decision.command_tag is not None:
            self._statement_tags[parsed.name] = decision.command_tag
        else:
            self._statement_tags.pop(parsed.name, None)
        if decision.action is Action.REWRITE and decision.sql is not None:
            self._to_backend.append(pg.parse(parsed.name, decision.sql, parsed.param_types))
        else:
            self._to_backend.append(data)

    def _refuse_batch(self, error: spec.DsqlError, *, rollback: bool = False) -> None:
        """Refuse a Parse or Bind: skip the rest of the batch to Sync; ``error`` in its place."""
        self._refusal_rollback = self._refusal_rollback or rollback
        # Not forwarded. The error reaches the client after the backend's answers to what
        # came before it in the batch (the barrier's CloseComplete marks that point).
        self._discarding = True
        self._to_backend.append(pg.close_statement(_BARRIER_STATEMENT) + pg.flush())
        self._expect.append(_Pending(_Expect.BARRIER, error=error))

    async def _after_wait(
        self, wait: Awaitable[Decision], data: memoryview, parsed: str | pg.Parse
    ) -> None:
        try:
            decision = await wait
        except Exception as exc:  # a rule's failure must not hang the client
            log.exception("policy wait failed peer=%s user=%s", self.peer, self.user)
            decision = Decision.refuse(spec.SERVER_UNAVAILABLE)
            del exc
        if self.state is _State.CLOSED:
            return
        self.resume_client("hold")
        self._carry_out(decision, data, parsed)
        self._drain_client()

    def _sync(self, data: memoryview) -> None:
        if not self._discarding:
            self._expect.append(_PENDING[_Expect.SYNC])
            self._to_backend.append(data)
            return
        self._discarding = False
        self._to_backend.append(data)
        # If the batch's ReadyForQuery says 'T' (a transaction begun before the batch, or by a
        # BEGIN earlier in it), the backend's transaction must be made to fail too; later client
        # messages wait until then.
        self._expect.append(_PENDING[_Expect.SYNC_REFUSED])
        self.pause_client("hold")

    # --- backend messages ---------------------------------------------------------------

    def backend_startup(self, kind: int, data: memoryview) -> None:
        """A message from the backend before its first ReadyForQuery."""
        if kind == ord("R"):
            if pg.parse_authentication(data[5:]) != 0:
                log.error("backend asked for a password user=%s: configure trust auth", self.user)
                self._refuse(spec.BACKEND_UNAVAILABLE, "backend_auth")
                return
            self._write_client(pg.authentication_ok())
        elif kind == ord("S"):
            name, _ = pg.parse_parameter_status(data[5:])
            status: bytes | memoryview = data
            if name in _REWRITTEN_STATUS:
                status = pg.parameter_status(name, _REWRITTEN_STATUS[name])
            if self._pool_key:  # kept with the session if it is parked later
                self._startup_status.append(bytes(status))
            self._write_client(status)
        elif kind == ord("K"):
            self.backend_key = pg.parse_backend_key_data(data[5:])
            self.pid, self.key = self.endpoint._new_key(self)
            self._write_client(pg.backend_key_data(self.pid, self.key))
        elif kind == _E:
            if pg.parse_error_fields(data[5:]).get("C") == _CANNOT_CONNECT_NOW:
                # PostgreSQL is starting or recovering (e.g. after a crash): DSQL's transient
                # "not running" answer, which connectors retry, not PostgreSQL's own 57P03.
                self._refuse(spec.BACKEND_UNAVAILABLE, "backend_down")
                return
            # The backend refused the session (e.g. the role does not exist): its FATAL as is.
            self._write_client(data)
            self._refuse_quietly("backend_refused")
        elif kind == _Z:
            self._established()
            self._write_client(data)
        else:
            self._write_client(data)

    def _refuse_quietly(self, reason: str) -> None:
        self.endpoint._refuse(None, self.peer, reason, self.user)
        self.state = _State.CLOSED
        self._flush_client(now=True)
        self._close_backend()
        assert self.transport is not None
        self.transport.close()

    def _established(self) -> None:
        endpoint = self.endpoint
        self.state = _State.RELAY
        endpoint._stats.connections_authenticated += 1
        log.info("connection peer=%s user=%s outcome=accepted", self.peer, self.user)
        self._reader.inspect = _CLIENT_INSPECT
        if self.backend is not None:  # the backend's answers are relayed from now on
            self.backend._reader.inspect = _SERVER_INSPECT
        lifetime = endpoint.config.quotas.connection_lifetime_seconds
        self._timers.append(
            self._loop.call_at(
                self.deadline - endpoint.config.startup_timeout_seconds + lifetime, self._expire
            )
        )
        self.resume_client("connect")
        self._loop.call_soon(self._drain_client)

    def backend_message(self, kind: int, data: memoryview) -> None:
        """A message from the backend in the relay phase (the hot path)."""
        expect = self._expect
        head = expect[0] if expect else None
        if kind == pg.RAW:
            if head is None or head.kind not in _SILENCED:
                self._to_client.append(data)
        elif kind == _C:
            self._command_complete(head, data)
        elif kind == _Z:
            self._ready_for_query(data)
        elif kind == _E:
            self._error(head, data)
        elif kind == _N:
            assert self.policy is not None
            consumed = self.policy.on_notice(pg.parse_error_fields(data[5:]))
            if not consumed and (head is None or head.kind not in _SILENCED):
                self._to_client.append(data)
        elif kind == _CLOSE_COMPLETE:
            if head is not None and head.kind in (_Expect.CLOSE, _Expect.BARRIER):
                expect.popleft()
                if head.kind is _Expect.BARRIER:
                    assert head.error is not None
                    self._refusal_sent = True
                    self._to_client.append(pg.error_response(head.error))
                    return
            self._to_client.append(data)
        else:  # EmptyQueryResponse, PortalSuspended
            if head is not None and head.kind is _Expect.EXECUTE:
                expect.popleft()
            self._to_client.append(data)

    def _command_complete(self, head: _Pending | None, data: memoryview) -> None:
        assert self.policy is not None
        tag = pg.parse_command_complete(data[5:])
        override = None
        if head is not None and head.kind in (_Expect.EXECUTE, _Expect.QUERY):
            override = head.tag
            if head.kind is _Expect.EXECUTE:
                self._expect.popleft()
        elif head is not None and head.kind in _SILENCED:
            return
        self.policy.on_command_complete(tag)
        if tag in _ALL_STATEMENTS_DROPPED:
            self._statement_sql.clear()
            self._fresh.clear()
        if override is not None:
            self._to_client.append(pg.command_complete(override))
        else:
            self._to_client.append(data)

    def _error(self, head: _Pending | None, data: memoryview) -> None:
        assert self.policy is not None
        if head is not None and head.kind is _Expect.RAISE:
            return  # our own raise after a refused batch: the client already has its error
        if head is not None and head.kind not in _ENDS_AT_READY:
            # The backend now skips to Sync: drop what it will never answer (a pending barrier
            # too: the client gets this error instead of the refusal, as PostgreSQL would).
            while self._expect and self._expect[0].kind not in _ENDS_AT_READY:
                self._expect.popleft()
        original = pg.parse_error_fields(data[5:])
        fields = dict(original)
        if head is not None and head.kind is _Expect.REFUSED_QUERY:
            fields.pop("W", None)  # the PL/pgSQL context of sys.dsqlkit_raise: not DSQL's
        rewritten = self.policy.rewrite_error(fields)
        # Re-encoded only when changed: the common case forwards the backend's bytes.
        self._to_client.append(data if rewritten == original else pg.error_response(rewritten))
        if original.get("V", original.get("S")) in ("FATAL", "PANIC"):
            # The backend ends the session (crash, terminate): its FATAL is the only one the
            # client gets, as from PostgreSQL; backend_lost must not add spec.BACKEND_LOST.
            self._refuse_quietly("backend_fatal")

    def _ready_for_query(self, data: memoryview) -> None:
        assert self.policy is not None
        status = pg.parse_ready_for_query(data[5:])
        done: _Pending | None = None
        while self._expect:
            done = self._expect.popleft()
            if done.kind in _ENDS_AT_READY:
                break
        refused, self._refusal_sent = self._refusal_sent, False
        rollback, self._refusal_rollback = self._refusal_rollback, False
        if done is not None and done.kind is _Expect.SYNC_REFUSED and refused and status == "T":
            # Make the backend's transaction fail as the refusal would have: it raises, we swallow
            # its error, and the client sees its ReadyForQuery 'E' (a refused COMMIT: rolled
            # back, 'I').
            assert self.backend is not None
            self._expect.append(_PENDING[_Expect.RAISE])
            ending = "ROLLBACK" if rollback else pg.raise_sql(spec.TRANSACTION_ABORTED)
            self.backend.write(pg.query(ending))
            return
        self._last_status = status
        self.policy.on_ready_for_query(status)
        if status == "I" and self._fresh:
            # The policy forgot what the ended transaction's Parses counted: count at next Bind.
            self._fresh.clear()
        self._to_client.append(data)
        if done is not None and done.kind in (_Expect.SYNC_REFUSED, _Expect.RAISE):
            self.resume_client("hold")
            self._loop.call_soon(self._drain_client)
        if self._lifetime_exceeded and self._idle():
            self._lifetime_close()

    def backend_lost(self) -> None:
        """The backend connection dropped (PostgreSQL stopped or crashed)."""
        self.backend = None
        # Parked sessions are likely dead too: never hand them out (they reconnect fresh).
        self.endpoint._backend_pool.clear()
        if self.state is not _State.CLOSED:
            self._refuse(spec.BACKEND_LOST, "backend_lost")

    # --- lifetime ---------------------------------------------------------------------------

    def _idle(self) -> bool:
        return self._last_status == "I" and not self._expect and not self._inbox

    def _expire(self) -> None:
        self._lifetime_exceeded = True
        if self._idle():
            self._lifetime_close()

    def _lifetime_close(self) -> None:
        seconds = self.endpoint.config.quotas.connection_lifetime_seconds
        log.info("connection peer=%s user=%s outcome=closed reason=lifetime", self.peer, self.user)
        self.fatal(spec.LIFETIME_EXCEEDED.format(seconds=f"{seconds:g}"))

    # --- writing ----------------------------------------------------------------------------

    def _write_client(self, data: bytes | memoryview) -> None:
        self._to_client.append(data)
        self._flush_client()

    def _flush_backend(self) -> None:
        if self._to_backend and self.backend is not None:
            out = self._to_backend
            self._to_backend = []
            self.backend.write(out[0] if len(out) == 1 else b"".join(out))

    def _flush_client(self, now: bool = False) -> None:
        """One write per batch; with simulated latency, the batch is delayed (per round trip)."""
        if not self._to_client or self.transport is None:
            return
        out = self._to_client
        self._to_client = []
        data = out[0] if len(out) == 1 else b"".join(out)
        if self._latency <= 0 or (now and not self._delayed):
            self.transport.write(data)
            return
        self._delayed.append((self._loop.time() + (0 if now else self._latency), bytes(data)))
        if self._delay_timer is None:
            self._delay_timer = self._loop.call_at(self._delayed[0][0], self._flush_delayed)

    def _flush_delayed(self) -> None:
        self._delay_timer = None
        now = self._loop.time()
        while self._delayed and self._delayed[0][0] <= now:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(self._delayed[0][1])
            self._delayed.popleft()
        if self._delayed:
            self._delay_timer = self._loop.call_at(self._delayed[0][0], self._flush_delayed)


class BackendLink(asyncio.Protocol):
    """The connection to PostgreSQL for one client session (or parked, without one)."""

    def __init__(self, session: ClientSession) -> None:
        self.session: ClientSession | None = session
        self.transport: asyncio.Transport | None = None
        self._reader = pg.MessageReader(_BACKEND_STARTUP_INSPECT)
        self._closed = False
        self._stats = session.endpoint._stats
        self._pool = session.endpoint._backend_pool
        # Being reset for the pool: what to park once DISCARD ALL is answered, and under what key.
        self._resetting: tuple[ParkedSession[BackendLink], PoolKey] | None = None
        self._discarded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._stats.backend_sessions_open += 1
        self._stats.backend_sessions_opened += 1

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None:
            self._detached_data(data)
            return
        try:
            frames = self._reader.feed(data)
        except pg.ProtocolError as exc:
            log.error("backend protocol error user=%s error=%s", session.user, exc)
            session.backend_lost()
            return
        relay = _State.RELAY
        for kind, frame in frames:
            state = session.state
            if state is relay:
                session.backend_message(kind, frame)
            elif state is _State.CONNECTING:
                session.backend_startup(kind, frame)
            else:
                return
        session._flush_client()

    def connection_lost(self, exc: Exception | None) -> None:
        session, self.session = self.session, None
        if session is None:  # parked or being reset
            self._pool.discard(self)
        else:
            self._stats.backend_sessions_open -= 1
        if not self._closed:
            self._closed = True
            if session is not None:
                session.backend_lost()

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.pause_client("flow")

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.resume_client("flow")

    # --- the backend pool -------------------------------------------------------------------

    def is_open(self) -> bool:
        return not self._closed and self.transport is not None and not self.transport.is_closing()

    def reset(self, parked: ParkedSession[BackendLink], key: PoolKey) -> None:
        """Detach from the client and send DISCARD ALL; parked under ``key`` if it succeeds."""
        self.session = None
        self._stats.backend_sessions_open -= 1
        self._resetting = (parked, key)
        self._discarded = False
        self.resume_reading()  # the client's flow control no longer applies
        self.write(_RESET)

    def attach(self, session: ClientSession) -> None:
        """Serve ``session`` (taken from the pool)."""
        self.session = session
        self._stats.backend_sessions_open += 1

    def _detached_data(self, data: bytes) -> None:
        """Answers to our DISCARD ALL; anything else (e.g. a FATAL while parked) drops the session."""
        try:
            frames = self._reader.feed(data)
        except pg.ProtocolError:
            frames = None
        if frames is None or not all(self._reset_answer(kind, frame) for kind, frame in frames):
            self._resetting = None
            self._pool.discard(self, close=True)

    def _reset_answer(self, kind: int, frame: memoryview) -> bool:
        """Handle one frame while detached; False: unexpected, the session must go."""
        if self._resetting is None:
            return False  # parked sessions get no messages
        if kind == pg.RAW:
            return True  # ParameterStatus or a notice from the reset
        if kind == _C and not self._discarded:
            self._discarded = pg.parse_command_complete(frame[5:]) == "DISCARD ALL"
            return self._discarded
        if kind != _Z or not self._discarded or pg.parse_ready_for_query(frame[5:]) != "I":
            return False
        parked, key = self._resetting
        self._resetting = None
        return self._pool.park(key, parked)

    def pause_reading(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()

    def write(self, data: bytes | memoryview) -> None:
        if self.transport is not None and not self._closed:
            self.transport.write(data)

    def close(self) -> None:
        """End the backend session now: Terminate, then close."""
        if self._closed or self.transport is None:
            return
        self._closed = True
        self.transport.write(pg.terminate())
        self.transport.close()
