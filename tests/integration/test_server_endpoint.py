"""The endpoint's server against a real PostgreSQL, real TLS, real tokens and real drivers.

One embedded PostgreSQL for the module; endpoints run on an event loop in a background thread so
that the blocking drivers (psycopg2, psycopg) can be used from the test itself. Raw-socket tests
speak the protocol with dsqlkit.local.wire.protocol's builders.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import psycopg
import psycopg2
import pytest
from tests.security import clients

from dsqlkit import dsql as spec
from dsqlkit.auth.sigv4 import presign_token
from dsqlkit.local.backend.postgres import EmbeddedBackend
from dsqlkit.local.config import EndpointConfig, Quotas
from dsqlkit.local.rules.policy import Decision, EndpointRules, SessionPolicy
from dsqlkit.local.server import Endpoint
from dsqlkit.local.tls import client_context
from dsqlkit.local.wire import protocol as pg

T = TypeVar("T")


class LoopThread:
    """An event loop running in a thread; ``run`` executes a coroutine there and waits."""

    def __init__(self) -> None:
        # uvloop when installed (what `dsqlkit local` runs on); other suites cover the default loop.
        try:
            import uvloop

            self.loop = uvloop.new_event_loop()
        except ImportError:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="module")
def backend(loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pg_backend = EmbeddedBackend(tmp_path_factory.mktemp("pg"))
    loop_thread.run(pg_backend.start())
    yield pg_backend
    loop_thread.run(pg_backend.stop())


class RefusingPolicy(SessionPolicy):
    """Test rules: statements starting with ``refuse`` are refused, ``rewrite`` rewritten."""

    def on_statement(self, sql: str, *, extended: bool) -> Decision:
        text = sql.strip().lower()
        if text.startswith("refuse"):
            return Decision.refuse(spec.DsqlError(spec.UNSUPPORTED_SQLSTATE, "refused: it's test"))
        if text.startswith("rewrite"):
            return Decision.rewrite("SELECT 42", command_tag="REWRITTEN 1")
        if text.startswith("wait"):
            return Decision.later(_later(Decision.rewrite("SELECT 7")))
        return super().on_statement(sql, extended=extended)


async def _later(decision: Decision) -> Decision:
    await asyncio.sleep(0)
    return decision


class RefusingRules(EndpointRules):
    def session(self, user: str) -> SessionPolicy:
        return RefusingPolicy()


class Running:
    """A started Endpoint plus helpers to connect to it."""

    def __init__(self, lt: LoopThread, endpoint: Endpoint) -> None:
        self.lt = lt
        self.ep = endpoint

    def token(self, user: str = "admin", **kwargs: Any) -> str:
        cred = self.ep.identities.admin_credential
        return presign_token(
            host=kwargs.pop("host", "localhost"),
            region=self.ep.region,
            action=kwargs.pop("action", spec.action_for_user(user)),
            access_key=cred.access_key,
            secret_key=cred.secret_key,
            **kwargs,
        )

    def kwargs(self, **extra: Any) -> dict[str, Any]:
        params = {
            "host": "localhost",
            "port": self.ep.port,
            "user": "admin",
            "dbname": spec.DATABASE,
            "password": self.token(),
            "sslmode": "verify-full",
            "sslrootcert": str(self.ep.ca_file),
        }
        params.update(extra)
        return params

    def psycopg(self, **extra: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(**self.kwargs(**extra), autocommit=True)

    def stats(self) -> Any:
        return self.ep.stats()

    def wait_until(self, check: Callable[[], bool], what: str) -> None:
        # Sessions close asynchronously on the server's loop: poll (bounded) for the state.
        deadline = time.monotonic() + 10
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.stats()}"
            time.sleep(0.01)

    def sessions_closed(self) -> None:
        self.wait_until(
            lambda: (
                self.stats().client_sessions_open == 0 and self.stats().backend_sessions_open == 0
            ),
            "sessions to close",
        )


def _start(lt: LoopThread, backend: Any, tmp: Path, **config: Any) -> Running:
    cfg = EndpointConfig(data_dir=tmp, trust_environment=False, dialect_checks=False, **config)
    endpoint = Endpoint(cfg, backend)
    endpoint.rules = RefusingRules(cfg)
    lt.run(endpoint.start())
    return Running(lt, endpoint)


@pytest.fixture(scope="module")
def server(
    loop_thread: LoopThread, backend: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    running = _start(loop_thread, backend, tmp_path_factory.mktemp("ep"))
    yield running
    loop_thread.run(running.ep.stop())


# --- raw protocol helpers ---------------------------------------------------------------------


def raw_tls(
    server: Running, *, server_hostname: str | None = "localhost", direct: bool = False
) -> ssl.SSLSocket:
    sock = socket.create_connection((server.ep.host, server.ep.port), timeout=10)
    if not direct:
        sock.sendall(pg.ssl_request())
        assert sock.recv(1) == b"S"
    ctx = client_context(server.ep.ca_file)
    if server_hostname is None:
        ctx.check_hostname = False
    return ctx.wrap_socket(sock, server_hostname=server_hostname)


def read_messages(sock: socket.socket, until: bytes = b"EZ") -> list[tuple[str, bytes]]:
    """Read messages until one whose type is in ``until`` (or EOF)."""
    return clients.read_messages(sock, until)


def error_of(messages: list[tuple[str, bytes]]) -> dict[str, str]:
    errors = [pg.parse_error_fields(body) for kind, body in messages if kind == "E"]
    assert errors, f"expected an ErrorResponse, got {messages}"
    return errors[0]


def startup_error(server: Running, params: dict[str, str], password: str | None = None) -> Any:
    with raw_tls(server) as sock:
        sock.sendall(pg.startup_message(params))
        messages = read_messages(sock, until=b"ER")
        if password is not None and messages[-1][0] == "R":
            sock.sendall(pg.password_message(password))
            messages = read_messages(sock)
        return error_of(messages)


def assert_error(fields: dict[str, str], error: spec.DsqlError) -> None:
    assert (fields["C"], fields["M"]) == (error.sqlstate, error.message)
    assert fields["S"] == error.severity


# --- drivers --------------------------------------------------------------------------------


def test_psycopg3_verify_full(server: Running) -> None:
    with server.psycopg() as conn:
        assert conn.info.parameter_status("server_version") == spec.SERVER_VERSION
        assert conn.execute("SELECT current_user, %s::int", (5,)).fetchone() == ("admin", 5)
        assert conn.pgconn.ssl_in_use


def test_psycopg3_direct_tls(server: Running) -> None:
    with server.psycopg(sslnegotiation="direct") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_psycopg2(server: Running) -> None:
    conn = psycopg2.connect(**server.kwargs())
    try:
        cur = conn.cursor()
        cur.execute("SELECT %s || 'b'", ("a",))
        assert cur.fetchone() == ("ab",)
        conn.rollback()
    finally:
        conn.close()


def test_asyncpg(server: Running) -> None:
    async def go() -> Any:
        ctx = ssl.create_default_context(cafile=str(server.ep.ca_file))
        kw = server.kwargs()
        conn = await asyncpg.connect(
            host="localhost",
            port=kw["port"],
            user="admin",
            database=spec.DATABASE,
            password=kw["password"],
            ssl=ctx,
        )
        try:
            rows = await conn.fetch("SELECT generate_series(1, $1::int) AS n", 3000)
            return len(rows), conn.get_server_version().major
        finally:
            await conn.close()

    assert asyncio.run(go()) == (3000, 16)


def test_large_results_and_pipelining(server: Running) -> None:
    with server.psycopg() as conn:
        big = conn.execute("SELECT repeat('x', 3000000)").fetchone()
        assert big is not None and len(big[0]) == 3_000_000
        with conn.pipeline():
            cursors = [conn.execute("SELECT %s::int", (i,)) for i in range(50)]
        assert [c.fetchone() for c in cursors] == [(i,) for i in range(50)]


# --- policy decisions ---------------------------------------------------------------------------


def test_refuse_simple_protocol_keeps_transaction_state(server: Running) -> None:
    conn = psycopg2.connect(**server.kwargs())  # psycopg2 speaks the simple protocol only
    try:
        cur = conn.cursor()
        conn.autocommit = True
        with pytest.raises(psycopg2.errors.FeatureNotSupported, match="refused: it's test"):
            cur.execute("refuse me")
        cur.execute("SELECT 1")  # autocommit: not poisoned
        conn.autocommit = False
        cur.execute("SELECT 1")
        with pytest.raises(psycopg2.errors.FeatureNotSupported) as info:
            cur.execute("refuse me")
        assert info.value.diag.context is None  # the raise's PL/pgSQL context is hidden
        with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
            cur.execute("SELECT 1")
        conn.rollback()
        cur.execute("rewrite me")
        assert cur.fetchone() == (42,)
        assert cur.statusmessage == "REWRITTEN 1"
    finally:
        conn.close()


def test_refuse_extended_protocol(server: Running) -> None:
    with server.psycopg() as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="refused"):
            conn.execute("refuse %s", (1,))
        assert conn.execute("SELECT %s::int", (2,)).fetchone() == (2,)
        conn.execute("BEGIN")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            conn.execute("refuse %s", (1,))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT %s::int", (3,))
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT %s::int", (4,)).fetchone() == (4,)


def test_refuse_inside_pipeline_comes_in_order(server: Running) -> None:
    with server.psycopg() as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported), conn.pipeline():
            first = conn.execute("SELECT %s::int", (1,))
            conn.execute("refuse %s", (1,))
        assert first.fetchone() == (1,)
        assert conn.execute("SELECT 5").fetchone() == (5,)


def test_rewrite_and_tag_override(server: Running) -> None:
    with server.psycopg() as conn:
        cur = conn.execute("rewrite %s", (1,))
        assert cur.fetchone() == (42,)
        assert cur.statusmessage == "REWRITTEN 1"
        assert conn.execute("wait for it").fetchone() == (7,)


# --- refusals before the session ------------------------------------------------------------


def test_plaintext_is_refused(server: Running) -> None:
    with socket.create_connection((server.ep.host, server.ep.port), timeout=10) as sock:
        sock.sendall(pg.startup_message({"user": "admin", "database": spec.DATABASE}))
        assert_error(error_of(read_messages(sock)), spec.SSL_MANDATORY)


def test_gssenc_answered_n_then_ssl_works(server: Running) -> None:
    with socket.create_connection((server.ep.host, server.ep.port), timeout=10) as sock:
        sock.sendall(pg.gssenc_request())
        assert sock.recv(1) == b"N"
        sock.sendall(pg.ssl_request())
        assert sock.recv(1) == b"S"


def test_bytes_after_sslrequest_close_the_connection(server: Running) -> None:
    with socket.create_connection((server.ep.host, server.ep.port), timeout=10) as sock:
        sock.sendall(pg.ssl_request() + pg.startup_message({"user": "admin"}))
        try:
            answer = sock.recv(10)
        except ConnectionResetError:  # closed with our bytes unread: the kernel sends RST
            answer = b""
        assert answer == b""  # no 'S': no handshake with injected bytes
    server.wait_until(
        lambda: server.stats().connections_refused.get("data_after_sslrequest") == 1, "refusal"
    )


def test_sni_required(server: Running) -> None:
    with raw_tls(server, server_hostname=None) as sock:
        assert_error(error_of(read_messages(sock)), spec.SNI_MISSING)


def test_direct_tls_requires_alpn(server: Running) -> None:
    sock = socket.create_connection((server.ep.host, server.ep.port), timeout=10)
    ctx = client_context(server.ep.ca_file, alpn=None)
    with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
        assert_error(error_of(read_messages(tls)), spec.ALPN_MISSING)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"database": spec.DATABASE}, spec.USER_MISSING),
        (
            {"user": "admin", "database": "other"},
            spec.DATABASE_MISSING.format(database="other"),
        ),
    ],
)
def test_startup_checks(server: Running, params: dict[str, str], error: spec.DsqlError) -> None:
    assert_error(startup_error(server, params), error)


def test_oversized_startup_packet(server: Running) -> None:
    with raw_tls(server) as sock:
        sock.sendall(pg.startup_message({"user": "admin", "x": "y" * spec.MAX_STARTUP_PACKET}))
        assert_error(error_of(read_messages(sock)), spec.INVALID_STARTUP_PACKET)


def _denied(server: Running, token: str, user: str = "admin") -> str:
    fields = startup_error(server, {"user": user, "database": spec.DATABASE}, token)
    assert_error(fields, spec.ACCESS_DENIED.format(reason=""))
    return fields["H"]


def test_bad_tokens_are_denied_with_a_hint(server: Running) -> None:
    good = server.token()
    forged = good[:-4] + ("ffff" if good.endswith("0000") else "0000")  # never the valid token
    assert _denied(server, forged) == spec.HINT_BAD_SIGNATURE
    expired = server.token(now=time.time() - 3600, expires=60)
    assert _denied(server, expired).startswith("Signature expired")
    wrong = server.token(action=spec.ACTION_USER)
    assert _denied(server, wrong) == spec.HINT_WRONG_ACTION.format(
        user="admin", action=spec.ACTION_USER
    )
    secret = server.ep.identities.admin_credential.secret_key
    assert secret not in _denied(server, "not a token")


def test_terminate_frees_the_backend_session(server: Running) -> None:
    server.sessions_closed()
    conn = server.psycopg()
    server.wait_until(lambda: server.stats().backend_sessions_open == 1, "backend session")
    conn.close()  # sends Terminate
    server.sessions_closed()


def test_cancel(server: Running) -> None:
    with server.psycopg() as conn:
        timer = threading.Timer(0.3, conn.cancel_safe)
        timer.start()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(30)")
        finally:
            timer.cancel()
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert server.stats().cancel_requests >= 1


def test_unknown_cancel_key_is_ignored(server: Running) -> None:
    with socket.create_connection((server.ep.host, server.ep.port), timeout=10) as sock:
        sock.sendall(pg.cancel_request(12345, b"\0\0\0\0"))
        assert sock.recv(10) == b""


# --- quotas ---------------------------------------------------------------------------------


@pytest.fixture
def small(
    loop_thread: LoopThread, backend: Any, tmp_path: Path
) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def make(**quotas: Any) -> Running:
        running = _start(
            loop_thread, backend, tmp_path / str(len(started)), quotas=Quotas(**quotas)
        )
        started.append(running)
        return running

    yield make
    for running in started:
        loop_thread.run(running.ep.stop())


def test_rate_limit(small: Callable[..., Running]) -> None:
    server = small(connection_rate_per_second=0.001, connection_burst=2)
    with server.psycopg(), server.psycopg():
        pass
    with pytest.raises(psycopg.OperationalError, match=spec.RATE_EXCEEDED.message) as info:
        server.psycopg()
    assert "53400" in str(info.value) or info.value.sqlstate in (None, "53400")
    assert server.stats().connections_refused["rate"] == 1


def test_connection_cap(small: Callable[..., Running]) -> None:
    server = small(max_connections=1)
    with (
        server.psycopg(),
        pytest.raises(psycopg.OperationalError, match=spec.TOO_MANY_CONNECTIONS.message),
    ):
        server.psycopg()
    server.sessions_closed()
    with server.psycopg() as conn:  # the slot is free again
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_connection_lifetime(small: Callable[..., Running]) -> None:
    server = small(connection_lifetime_seconds=1)
    conn = server.psycopg()
    assert conn.execute("SELECT 1").fetchone() == (1,)
    # Idle: the server sends the FATAL on its own. Wait for it without writing (a write racing
    # the close would get an RST, which discards the FATAL before libpq reads it).
    readable, _, _ = select.select([conn.fileno()], [], [], 10)
    assert readable, "the server did not end the connection"
    message = spec.LIFETIME_EXCEEDED.format(seconds=1).message
    with pytest.raises(psycopg.OperationalError, match=message):
        conn.execute("SELECT 1")
    conn.close()
    server.sessions_closed()


# --- the backend dies (keep last: it restarts the module's PostgreSQL) ------------------------


def test_backend_killed_then_restarted(server: Running, backend: Any) -> None:
    conn = server.psycopg()
    backend.kill()
    # The session's end comes unsolicited (PostgreSQL's backend noticing the postmaster's death,
    # or the endpoint seeing the socket drop): wait for it without writing.
    readable, _, _ = select.select([conn.fileno()], [], [], 10)
    assert readable, "the client was left hanging after the backend died"
    with pytest.raises(psycopg.OperationalError) as lost:
        conn.execute("SELECT 1")
    # A clean FATAL: PostgreSQL's own (57P01) when it got to say it, else the endpoint's.
    assert lost.value.sqlstate in ("57P01", spec.BACKEND_LOST.sqlstate), str(lost.value)
    conn.close()
    with pytest.raises(psycopg.OperationalError) as info:
        server.psycopg()
    assert spec.BACKEND_UNAVAILABLE.message in str(info.value), str(info.value)
    server.lt.run(backend.start())
    with server.psycopg() as again:
        assert again.execute("SELECT 1").fetchone() == (1,)
    server.sessions_closed()
