"""One client connection of the local endpoint: startup, IAM auth, the backend session, the relay.

:class:`~dsqlkit.local.server.Endpoint` accepts connections and settles TLS; each connection is
then a :class:`ClientSession` (an asyncio Protocol over the client's TLS transport) paired with a
:class:`BackendLink` (an asyncio Protocol over the Unix socket to PostgreSQL). Both are thin
shells: once the client is authenticated, every protocol decision is the sans-I/O
:class:`~dsqlkit.local.wire.session.Relay`'s; this module feeds it frames, writes what it queues
and carries out its events. The relay depends on the endpoint only through :class:`SessionHost`.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import Coroutine
from typing import Any, Protocol, cast

from dsqlkit import dsql as spec
from dsqlkit.auth.sigv4 import TokenRejected, verify_token
from dsqlkit.local.backend.pool import BackendPool, ParkedSession, PoolKey, pool_key
from dsqlkit.local.config import EndpointConfig
from dsqlkit.local.identities import Identities
from dsqlkit.local.rules.policy import Decision, EndpointRules, SessionPolicy
from dsqlkit.local.tls import sni_of
from dsqlkit.local.wire import protocol as pg
from dsqlkit.local.wire.session import CLIENT_INSPECT, SERVER_INSPECT, Close, Relay, Wait
from dsqlkit.local.wire.startup import AskPassword, Authenticate, Cancel, Startup

__all__ = ["BackendLink", "ClientSession", "SessionHost"]

log = logging.getLogger("dsqlkit.local")

#: Startup parameters passed on to the backend (when the policy allows the startup at all).
_FORWARDED_PARAMETERS = spec.SETTABLE_PARAMETERS | {"options"}
_REWRITTEN_STATUS = {
    "server_version": spec.SERVER_VERSION,
    "server_version_num": spec.SERVER_VERSION_NUM,
}
_C, _Z, _E = ord("C"), ord("Z"), ord("E")
_CLIENT_INSPECT = CLIENT_INSPECT
_SERVER_INSPECT = SERVER_INSPECT
_BACKEND_STARTUP_INSPECT = frozenset({ord("R"), ord("S"), ord("K"), _Z, _E})
#: PostgreSQL's cannot_connect_now (starting up, recovering, shutting down).
_CANNOT_CONNECT_NOW = "57P03"
#: How a backend session is reset before it is parked for another client (backend_pool).
_RESET = pg.query("DISCARD ALL")
_READY_IDLE = pg.ready_for_query("I")


class SessionHost(Protocol):
    """What a session needs of the endpoint (``server.Endpoint`` implements it)."""

    config: EndpointConfig
    region: str
    hostnames: tuple[str, ...]
    identities: Identities
    rules: EndpointRules
    backend: Any  # backend.postgres.Backend: create_connection()

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def counters(self) -> Any: ...  # server.EndpointStats, live (stats() is a snapshot)

    @property
    def backend_pool(self) -> BackendPool[BackendLink]: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...

    def register(self, session: ClientSession) -> None: ...

    def forget(self, session: ClientSession) -> None: ...

    def new_key(self, session: ClientSession) -> tuple[int, bytes]: ...

    def refused(
        self, error: spec.DsqlError | None, peer: Any, reason: str, user: str = ""
    ) -> None: ...

    def cancel(self, request: pg.StartupPacket) -> None: ...


class _State(enum.Enum):
    STARTUP = 1
    AUTH = 2
    CONNECTING = 3
    RELAY = 4
    CLOSED = 5


class ClientSession(asyncio.Protocol):
    """One client connection (after TLS) and its backend session."""

    def __init__(
        self,
        endpoint: SessionHost,
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
        self.relay: Relay | None = None
        self.pid: int | None = None
        self.key = b""
        self.backend_key: tuple[int, bytes] | None = None
        self.transport: asyncio.Transport | None = None
        self.backend: BackendLink | None = None
        # With the backend pool on: the key of this client's backend session and the
        # ParameterStatus frames its startup sent (the answer a later client of it gets).
        self._pool_key: PoolKey = ()
        self._startup_status: list[bytes] = []
        self._encoding = "UTF8"  # the backend's client_encoding at startup
        self._loop = endpoint.loop
        self._startup = Startup(policy_for=endpoint.rules.session, refusal=refusal)
        self._reader = self._startup.reader  # the relay's too, once authenticated
        self._relay_started = False
        self._inbox: collections.deque[pg.Frame] = collections.deque()
        self._paused: set[str] = set()
        self._to_client: list[bytes | memoryview] = []
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
        self.endpoint.register(self)
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
        state = self.state
        if state is _State.RELAY and self.relay is not None:
            if not self._relay_started:
                self._start_relay()
            try:
                frames = self._reader.feed(data)
            except pg.ProtocolError as exc:
                self._refuse(exc.error, "protocol")
                return
            self.relay.client(frames)
            self._after_relay(self.relay)
            self._flush_client()
        elif state is _State.STARTUP or state is _State.AUTH:
            self._startup.receive(data)
            self._after_startup()
        elif state is _State.CONNECTING:  # read before the pause took effect: kept in order
            try:
                self._inbox.extend(self._reader.feed(data))
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
        self.endpoint.forget(self)

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
        self.endpoint.refused(error, self.peer, reason, self.user)
        self.fatal(error)

    def _refuse_quietly(self, reason: str) -> None:
        """Close after what is queued (the backend's own FATAL, already on its way)."""
        self.endpoint.refused(None, self.peer, reason, self.user)
        self.state = _State.CLOSED
        self._flush_client(now=True)
        self._close_backend()
        assert self.transport is not None
        self.transport.close()

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
            or not self.endpoint.backend_pool.start_reset(backend)
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
            self.relay is not None
            and self.relay.reusable
            and self.backend.is_open()
            and not self.backend.buffered
        )

    # --- the relay phase: carry out what the state machine asks ------------------------------

    def _after_relay(self, relay: Relay) -> None:
        """Write what ``relay`` queued and carry out its events (after each of its inputs)."""
        if relay.to_backend and self.backend is not None:
            out = relay.to_backend
            relay.to_backend = []
            self.backend.write(out[0] if len(out) == 1 else b"".join(out))
        if relay.events:
            events, relay.events = relay.events, []
            for event in events:
                self._carry_out(relay, event)
        if self.state is _State.CLOSED:
            return
        if relay.held:
            self.pause_client("hold")
        else:
            self.resume_client("hold")

    def _carry_out(self, relay: Relay, event: Wait | Close) -> None:
        if isinstance(event, Wait):
            self.endpoint.spawn(self._resolve(relay, event))
        elif event.park:  # Terminate: the backend session may serve another client
            self._flush_client(now=True)
            self._release_backend()
            self.state = _State.CLOSED
            assert self.transport is not None
            self.transport.close()
        elif event.error is None:
            self._refuse_quietly(event.reason)
        else:
            if event.reason == "lifetime":
                log.info(
                    "connection peer=%s user=%s outcome=closed reason=lifetime",
                    self.peer,
                    self.user,
                )
                self.fatal(event.error)
            else:
                self._refuse(event.error, event.reason)

    async def _resolve(self, relay: Relay, wait: Wait) -> None:
        try:
            decision = await wait.decision
        except Exception:  # a rule's failure must not hang the client
            log.exception("policy wait failed peer=%s user=%s", self.peer, self.user)
            decision = Decision.refuse(spec.SERVER_UNAVAILABLE)
        if self.state is _State.CLOSED:
            return
        relay.resolved(decision, wait)
        self._after_relay(relay)
        self._flush_client()

    def backend_message(self, kind: int, data: memoryview) -> None:
        """A message from the backend in the relay phase (the hot path)."""
        # Its bytes for the client go to self._to_client (shared); the rest is carried out
        # once per backend read, in flush().
        self.relay.backend(kind, data)  # type: ignore[union-attr]

    def backend_lost(self) -> None:
        """The backend connection dropped (PostgreSQL stopped or crashed)."""
        self.backend = None
        # Parked sessions are likely dead too: never hand them out (they reconnect fresh).
        self.endpoint.backend_pool.clear()
        if self.state is not _State.CLOSED:
            self._refuse(spec.BACKEND_LOST, "backend_lost")

    def _expire(self) -> None:
        if self.relay is None or self.state is _State.CLOSED:
            return
        seconds = self.endpoint.config.quotas.connection_lifetime_seconds
        self.relay.expire(spec.LIFETIME_EXCEEDED.format(seconds=f"{seconds:g}"))
        self._after_relay(self.relay)

    # --- startup and authentication ----------------------------------------------------------

    def _after_startup(self) -> None:
        """Carry out what the startup machine asked (its bytes, then its events)."""
        startup = self._startup
        if startup.to_client:
            self._to_client += startup.to_client
            startup.to_client.clear()
        events, startup.events = startup.events, []
        for event in events:
            if isinstance(event, AskPassword):
                self.state = _State.AUTH
                self.user, self.parameters, self.policy = (
                    startup.user,
                    startup.parameters,
                    startup.policy,
                )
                self._ask_password()
            elif isinstance(event, Authenticate):
                self.state = _State.CONNECTING
                self.pause_client("connect")
                self.endpoint.spawn(self._authenticate(event.token))
            elif isinstance(event, Cancel):
                self.endpoint.cancel(event.request)
                self.state = _State.CLOSED
                assert self.transport is not None
                self.transport.close()
            else:
                self.user = startup.user
                assert event.error is not None
                self._refuse(event.error, event.reason)
        self._flush_client()

    def _ask_password(self) -> None:
        delay = self.endpoint.config.connect_delay_ms / 1000.0
        request = pg.authentication_cleartext_password()
        if delay > 0:
            self._timers.append(self._loop.call_later(delay, self._write_client, request))
        else:
            self._write_client(request)

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
        if endpoint.backend_pool.enabled:
            self._pool_key = pool_key(parameters)
            parked = endpoint.backend_pool.take(self._pool_key)
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
        for frame in parked.status_frames:
            self._note_status(frame)
        self.pid, self.key = self.endpoint.new_key(self)
        self._to_client += [pg.authentication_ok(), *parked.status_frames]
        self._to_client.append(pg.backend_key_data(self.pid, self.key))
        self._write_client(_READY_IDLE)
        self._established()

    def _backend_parameters(self) -> dict[str, str]:
        params = {"user": self.user, "database": spec.DATABASE}
        for name, value in self.parameters.items():
            if name.lower() in _FORWARDED_PARAMETERS:
                params[name] = value
        params.update(self.endpoint.rules.backend_startup_parameters())
        return params

    def _note_status(self, frame: bytes | memoryview) -> None:
        name, value = pg.parse_parameter_status(frame[5:])
        if name == "client_encoding":
            self._encoding = value

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
            self._note_status(data)
            status: bytes | memoryview = data
            if name in _REWRITTEN_STATUS:
                status = pg.parameter_status(name, _REWRITTEN_STATUS[name])
            if self._pool_key:  # kept with the session if it is parked later
                self._startup_status.append(bytes(status))
            self._write_client(status)
        elif kind == ord("K"):
            self.backend_key = pg.parse_backend_key_data(data[5:])
            self.pid, self.key = self.endpoint.new_key(self)
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
            self._write_client(data)
            self._established()
        else:
            self._write_client(data)

    def _established(self) -> None:
        endpoint = self.endpoint
        assert self.policy is not None
        self.state = _State.RELAY
        endpoint.counters.connections_authenticated += 1
        log.info("connection peer=%s user=%s outcome=accepted", self.peer, self.user)
        if self.backend is not None:  # the backend's answers are relayed from now on
            self.backend.relaying()
        self.relay = Relay(self.policy, encoding=self._encoding)
        self.relay.to_client = self._to_client  # one list: flushed in place, never copied
        lifetime = endpoint.config.quotas.connection_lifetime_seconds
        self._timers.append(
            self._loop.call_at(
                self.deadline - endpoint.config.startup_timeout_seconds + lifetime, self._expire
            )
        )
        self.resume_client("connect")
        self._loop.call_soon(self._start_relay)

    def _start_relay(self) -> None:
        """Hand the frames pipelined behind the password (and the rest of their read) to the relay."""
        relay = self.relay
        if relay is None or self.state is not _State.RELAY or self._relay_started:
            return
        self._relay_started = True
        frames = list(self._inbox)
        self._inbox.clear()
        try:
            frames += self._startup.pipelined()
        except pg.ProtocolError as exc:
            self._refuse(exc.error, "protocol")
            return
        relay.client(frames)
        self._after_relay(relay)
        self._flush_client()

    # --- writing ----------------------------------------------------------------------------

    def flush(self) -> None:
        """After a backend read: carry out what the relay asked, write the client's batch."""
        relay = self.relay
        if relay is not None and (
            relay.to_backend or relay.events or relay.held != ("hold" in self._paused)
        ):
            self._after_relay(relay)
        self._flush_client()

    def _write_client(self, data: bytes | memoryview) -> None:
        self._to_client.append(data)
        self._flush_client()

    def _flush_client(self, now: bool = False) -> None:
        """One write per batch; with simulated latency, the batch is delayed (per round trip)."""
        if not self._to_client or self.transport is None:
            return
        out = self._to_client
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()  # in place: the relay appends to this same list
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
        self._stats = session.endpoint.counters
        self._pool = session.endpoint.backend_pool
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
        session.flush()

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

    def relaying(self) -> None:
        """The session's relay phase starts: split the messages the relay decodes."""
        self._reader.inspect = SERVER_INSPECT

    @property
    def buffered(self) -> int:
        """Bytes of a backend message read only in part."""
        return self._reader.buffered

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
        if kind not in (_C, _Z, _E):
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
