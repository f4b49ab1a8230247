"""The local endpoint's asyncio server: TLS, IAM tokens, quotas, and a header-only relay.

A thin I/O shell around :mod:`dsqlkit.local.wire.protocol`. For each client connection:

1. **Accept**: the pre-TLS negotiation (:mod:`~dsqlkit.local.wire.negotiation` decides, this
   module only reads and writes): direct TLS (``0x16``; ALPN must be ``postgresql``), an
   SSLRequest answered ``S`` (bytes sent before the handshake close the connection:
   CVE-2021-23214), at most one GSSENCRequest answered ``N``, a CancelRequest carried out; a
   plaintext StartupMessage is refused. The whole startup phase is bounded in time.
2. **Startup** (over TLS): SNI must be one of the endpoint's names; user and database checked;
   connection quotas (:mod:`~dsqlkit.local.rules.quotas`); the policy's ``check_startup``.
3. **Auth**: AuthenticationCleartextPassword; the password is an IAM token, checked with
   :func:`dsqlkit.auth.sigv4.verify_token` against :mod:`~dsqlkit.local.identities`, then the rules'
   ``role_allows`` for roles other than admin.
4. **Backend session**: a Unix-socket connection to PostgreSQL as the client's role; its
   ParameterStatus relayed (``server_version`` rewritten), its BackendKeyData replaced by ours.
5. **Relay** (:mod:`~dsqlkit.local.relay`, steps 2-5 per connection): only 5-byte headers are parsed; client Query/Parse/Sync/Close/Execute/Terminate and
   server CommandComplete/ReadyForQuery/ErrorResponse/CloseComplete are decoded; everything else is
   forwarded as byte slices, one write per read. The :class:`~dsqlkit.local.rules.policy.SessionPolicy`
   is asked about each statement (and again when a prepared one is re-run by Bind alone) and told
   about each answer.

Example::

    endpoint = Endpoint(EndpointConfig(data_dir=Path("/tmp/ep")))
    await endpoint.start()
    print(endpoint.host, endpoint.port, endpoint.identities.admin_credential.access_key)
    await endpoint.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import shutil
import socket
import ssl
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsqlkit import dsql as spec
from dsqlkit.local.backend.pool import BackendPool
from dsqlkit.local.backend.postgres import Backend, backend_from_option
from dsqlkit.local.config import EndpointConfig, Quotas
from dsqlkit.local.identities import Identities
from dsqlkit.local.relay import BackendLink, ClientSession
from dsqlkit.local.rules import txn_quotas
from dsqlkit.local.rules.dsql_rules import rules_for
from dsqlkit.local.rules.policy import EndpointRules
from dsqlkit.local.rules.quotas import ConnectionQuotas
from dsqlkit.local.tls import ensure_certificates, server_context
from dsqlkit.local.wire import protocol as pg
from dsqlkit.local.wire.negotiation import Negotiation, Outcome, Read

__all__ = ["Endpoint", "EndpointConfig", "EndpointStats", "Quotas"]

log = logging.getLogger("dsqlkit.local")

#: Backend connections the endpoint itself may hold at once, which take PostgreSQL slots that
#: clients then cannot have: the job listener and runner, the IAM checks (2), one short-lived admin
#: connection, and a deferred job's connection as its submitting role.
OWN_BACKEND_CONNECTIONS = 6


@dataclass
class EndpointStats:
    """Counters of one endpoint (tests use them to check that nothing leaks)."""

    client_sessions_open: int = 0
    #: Backend sessions attached to a client (parked ones are ``backend_sessions_pooled``).
    backend_sessions_open: int = 0
    backend_sessions_pooled: int = 0
    backend_sessions_reused: int = 0
    backend_sessions_opened: int = 0
    connections_accepted: int = 0
    connections_authenticated: int = 0
    connections_refused: dict[str, int] = field(default_factory=dict)
    cancel_requests: int = 0

    def refused(self, reason: str) -> None:
        self.connections_refused[reason] = self.connections_refused.get(reason, 0) + 1


class Endpoint:
    """A DSQL-compatible endpoint: listens, authenticates, relays to a PostgreSQL backend.

    ``backend`` None: built from ``config.backend`` in ``<data_dir>/postgres`` and started/stopped
    with the endpoint; a given backend is started only if it is not running, and stopped only then.

    Example::

        endpoint = Endpoint(EndpointConfig(quotas=Quotas(connection_burst=10)))
        await endpoint.start()
        try:
            ...  # connect to endpoint.host:endpoint.port with server name "localhost"
        finally:
            await endpoint.stop()
    """

    def __init__(self, config: EndpointConfig, backend: Backend | None = None) -> None:
        self.config = config
        self.region = config.region
        self.hostnames = config.hostnames
        self._temporary_dir = config.data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="dsqlkit-local-"))
            if config.data_dir is None
            else Path(config.data_dir)
        )
        self.backend: Backend = backend or backend_from_option(
            config.backend, self.data_dir / "postgres"
        )
        self.host = config.listen_host
        self.port = config.port
        self.ca_file = self.data_dir / "tls" / "ca.pem"
        self.identities: Identities
        self.rules: EndpointRules = rules_for(config)
        self.quotas = ConnectionQuotas(config.quotas)
        self._stats = EndpointStats()
        self._sessions: set[ClientSession] = set()
        self._by_key: dict[int, ClientSession] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sock: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._started_backend = False
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self._backend_pool: BackendPool[BackendLink] = BackendPool(config.backend_pool_size)
        # The serving loop, kept: asyncio.get_running_loop() costs a getpid() syscall per call in
        # CPython 3.11, ~5% of the endpoint's busy time per new connection (py-spy).
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<Endpoint {self.host}:{self.port} region={self.region}>"

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Certificates, identities, backend, rules, then listen on ``config.listen_host``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        paths = await asyncio.to_thread(
            ensure_certificates, self.data_dir / "tls", list(self.hostnames)
        )
        self.ca_file = paths.ca_cert
        self._contexts = {d: server_context(paths, direct=d) for d in (False, True)}
        self.identities = Identities.load_or_create(
            self.data_dir, trust_environment=self.config.trust_environment
        )
        if not self.backend.is_running:
            await self.backend.start()
            self._started_backend = True
        await txn_quotas.install(self.backend, self.config)
        await self.rules.start(self.backend)
        # Refuse with DSQL's 53300 before PostgreSQL would with its own FATAL: its free slots less
        # the parked sessions and the endpoint's own connections.
        capacity = await self.backend.client_capacity()
        self.quotas.limit(capacity - self._backend_pool.size - OWN_BACKEND_CONNECTIONS)
        sock = socket.create_server((self.config.listen_host, self.config.port), backlog=1024)
        sock.setblocking(False)
        self._sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self._accept_task = self._loop.create_task(self._accept_loop(sock))
        log.info("endpoint started host=%s port=%s region=%s", self.host, self.port, self.region)

    async def stop(self) -> None:
        """Stop accepting, end every session with FATAL 57P01, stop the rules and our backend."""
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
            self._accept_task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for task in list(self._tasks):
            task.cancel()
        for session in list(self._sessions):
            session.fatal(spec.ADMIN_SHUTDOWN)
        await self._wait_sessions_closed()
        self._backend_pool.clear()
        await self.rules.stop()
        if self._started_backend:
            await self.backend.stop()
            self._started_backend = False
        if self._temporary_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        log.info("endpoint stopped host=%s port=%s", self.host, self.port)

    async def _wait_sessions_closed(self) -> None:
        # Transports close asynchronously; give them a few loop turns (bounded) to report it.
        for _ in range(200):
            if not self._sessions:
                return
            await asyncio.sleep(0.01)

    def stats(self) -> EndpointStats:
        """A snapshot of the counters."""
        snapshot = EndpointStats(**vars(self._stats))
        snapshot.connections_refused = dict(self._stats.connections_refused)
        snapshot.client_sessions_open = len(self._sessions)
        snapshot.backend_sessions_pooled = len(self._backend_pool)
        snapshot.backend_sessions_reused = self._backend_pool.reused
        return snapshot

    # --- accept and pre-TLS negotiation -----------------------------------------------------

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = self._running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except OSError as exc:  # e.g. EMFILE: keep serving the others
                log.warning("accept failed error=%s", exc)
                await asyncio.sleep(0.1)
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._stats.connections_accepted += 1
            self._spawn(self._negotiate(conn, peer))

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "Endpoint.start() not called"
        return self._loop

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self._running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _negotiate(self, conn: socket.socket, peer: Any) -> None:
        """Everything before TLS: peek, answer SSLRequest/GSSENCRequest, then hand over to TLS."""
        loop = self._running_loop()
        deadline = loop.time() + self.config.startup_timeout_seconds
        # Rate and cap are counted now (before any expensive work); the refusal itself is sent
        # after TLS so the client can read it (libpq ignores errors sent before TLS).
        refusal = self.quotas.admit()
        try:
            direct = await self._before_tls(conn, peer, deadline)
            if direct is None:
                self._release_quota(refusal)
                conn.close()
                return
            await loop.connect_accepted_socket(
                lambda: ClientSession(self, peer, refusal, direct, deadline),
                sock=conn,
                ssl=self._contexts[direct],
                ssl_handshake_timeout=max(0.1, deadline - loop.time()),
            )
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError) as exc:
            self._stats.refused("handshake")
            log.info("connection peer=%s outcome=refused reason=handshake error=%s", peer, exc)
            self._release_quota(refusal)
            conn.close()

    def _release_quota(self, refusal: spec.DsqlError | None) -> None:
        if refusal is None:
            self.quotas.release()

    async def _before_tls(self, conn: socket.socket, peer: Any, deadline: float) -> bool | None:
        """True: direct TLS; False: TLS after SSLRequest; None: done (refused or cancel)."""
        loop = self._running_loop()
        negotiation = Negotiation()
        while True:
            read = negotiation.next_read()
            step = negotiation.receive(await _recv(loop, conn, read, deadline))
            if step.reply:
                with contextlib.suppress(OSError):
                    conn.send(step.reply)  # at most a short error: the kernel's buffer takes it
            if step.outcome is Outcome.CONTINUE:
                continue
            if step.outcome is Outcome.TLS:
                return step.direct
            if step.outcome is Outcome.CANCEL:
                assert step.cancel is not None
                self.cancel(step.cancel)
            elif step.reason != "closed":
                self._refuse(None, peer, step.reason)
            return None

    def _refuse(self, error: spec.DsqlError | None, peer: Any, reason: str, user: str = "") -> None:
        self._stats.refused(reason)
        log.info("connection peer=%s user=%s outcome=refused reason=%s", peer, user, reason)

    # --- cancel ---------------------------------------------------------------------------------

    def cancel(self, request: pg.StartupPacket) -> None:
        """Carry out a CancelRequest (unknown keys are ignored silently, as PostgreSQL does)."""
        if not isinstance(request, pg.CancelRequest):
            return
        session = self._by_key.get(request.process_id)
        if session is None or not hmac.compare_digest(request.secret_key, session.key):
            return
        self._stats.cancel_requests += 1
        if session.backend_key is not None:
            self._spawn(self._send_cancel(*session.backend_key))

    async def _send_cancel(self, pid: int, secret: bytes) -> None:
        with contextlib.suppress(OSError):
            transport, _ = await self.backend.create_connection(asyncio.Protocol)
            transport.write(pg.cancel_request(pid, secret))
            transport.close()

    # --- relay.SessionHost: what each ClientSession uses ---------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._running_loop()

    @property
    def counters(self) -> EndpointStats:
        return self._stats

    @property
    def backend_pool(self) -> BackendPool[BackendLink]:
        return self._backend_pool

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._spawn(coro)

    def refused(self, error: spec.DsqlError | None, peer: Any, reason: str, user: str = "") -> None:
        self._refuse(error, peer, reason, user)

    def register(self, session: ClientSession) -> None:
        self._sessions.add(session)

    def new_key(self, session: ClientSession) -> tuple[int, bytes]:
        while True:
            pid = secrets.randbelow(2**31 - 2) + 1
            if pid not in self._by_key:
                break
        self._by_key[pid] = session
        return pid, secrets.token_bytes(4)

    def forget(self, session: ClientSession) -> None:
        self._sessions.discard(session)
        if session.pid is not None:
            self._by_key.pop(session.pid, None)
        self._release_quota(session.refusal)


async def _recv(
    loop: asyncio.AbstractEventLoop, conn: socket.socket, read: Read, deadline: float
) -> bytes:
    """What ``read`` asks for: waits until at least one byte (or EOF) is there, never spins.

    Each wait ends with bytes to consume or to peek at for the first time: a partial header is
    consumed into the negotiation's buffer, so the socket is not readable again until more comes.
    """
    flags = socket.MSG_PEEK if read.peek else 0
    while True:
        try:
            return conn.recv(read.size, flags)
        except BlockingIOError:
            if not read.wait:
                return b""
        if loop.time() >= deadline:  # also ends a client trickling bytes
            raise asyncio.TimeoutError
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(conn.fileno(), _set_done, ready)
        # A timer rather than asyncio.wait_for: no extra task/future per wait on the accept path.
        timer = loop.call_at(deadline, _set_timed_out, ready)
        try:
            await ready
        finally:
            timer.cancel()
            loop.remove_reader(conn.fileno())


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _set_timed_out(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())
