"""Raw clients and leak checks shared by the security, fuzz and stress tests.

A raw client speaks the wire protocol itself (``dsqlkit.local.wire.protocol``'s builders) over a real
TLS socket, so a test can stop at any state or send what no driver would. The checks compare the
endpoint's sessions (``stats()``), PostgreSQL's own view (``pg_stat_activity`` through a superuser
connection) and this process's open file descriptors with a baseline, polling with a deadline.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from dsqlkit import dsql as spec
from dsqlkit.local import LocalEndpoint
from dsqlkit.local.tls import client_context
from dsqlkit.local.wire import protocol as pg

#: A well-behaved client's statement must come back within this while others misbehave.
GOOD_CLIENT_BOUND = 3.0
SETTLE_DEADLINE = 20.0


def tls_socket(ep: LocalEndpoint, *, timeout: float = 10.0) -> ssl.SSLSocket:
    """SSLRequest, ``S``, then a verify-full TLS handshake with SNI ``localhost``."""
    sock = socket.create_connection(("127.0.0.1", ep.port), timeout=timeout)
    sock.sendall(pg.ssl_request())
    if sock.recv(1) != b"S":
        sock.close()
        raise ConnectionError("the endpoint did not answer S to the SSLRequest")
    return client_context(ep.ca_file).wrap_socket(sock, server_hostname="localhost")


def read_messages(sock: socket.socket, until: bytes = b"Z") -> list[tuple[str, bytes]]:
    """Messages (type, payload) up to one whose type is in ``until``, or to EOF."""
    reader = pg.MessageReader(frozenset(range(256)))
    out: list[tuple[str, bytes]] = []
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return out
        if not data:
            return out
        for kind, frame in reader.feed(data):
            out.append((chr(kind), bytes(frame[5:])))
            if kind in until:
                return out


def errors(messages: list[tuple[str, bytes]]) -> list[dict[str, str]]:
    return [pg.parse_error_fields(body) for kind, body in messages if kind == "E"]


def authenticated(ep: LocalEndpoint, user: str = spec.ADMIN_USER) -> ssl.SSLSocket:
    """A raw client in the relay state (after its first ReadyForQuery)."""
    sock = tls_socket(ep)
    sock.sendall(pg.startup_message({"user": user, "database": spec.DATABASE}))
    assert read_messages(sock, b"RE")[-1][0] == "R", "no password request"
    sock.sendall(pg.password_message(ep.token(user)))
    messages = read_messages(sock, b"ZE")
    assert messages and messages[-1][0] == "Z", errors(messages)
    return sock


@dataclass(frozen=True)
class Baseline:
    client_sessions: int
    backend_sessions: int
    pg_sessions: int
    fds: int


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def pg_sessions(ep: LocalEndpoint) -> int:
    """Client backends in PostgreSQL itself, not counting the asking connection."""
    with psycopg.connect(ep.backend.dsn(), autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def baseline(ep: LocalEndpoint) -> Baseline:
    stats = ep.stats()
    return Baseline(
        stats.client_sessions_open, stats.backend_sessions_open, pg_sessions(ep), open_fds()
    )


def wait_for(check: Callable[[], bool], what: str, deadline: float = SETTLE_DEADLINE) -> None:
    """Poll ``check`` until true; fail with ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def assert_back_to(ep: LocalEndpoint, base: Baseline) -> None:
    """Sessions (endpoint and PostgreSQL) and open files return to ``base``."""
    wait_for(
        lambda: (
            ep.stats().client_sessions_open <= base.client_sessions
            and ep.stats().backend_sessions_open <= base.backend_sessions
        ),
        f"endpoint sessions back to {base}: {ep.stats()}",
    )
    wait_for(lambda: pg_sessions(ep) <= base.pg_sessions, f"pg_stat_activity back to {base}")
    wait_for(lambda: open_fds() <= base.fds, f"open files back to {base.fds}: {open_fds()}")


class GoodClient:
    """A well-behaved psycopg connection whose statements are timed while others misbehave."""

    def __init__(self, ep: LocalEndpoint) -> None:
        self.conn = psycopg.connect(ep.dsn(), autocommit=True)
        self.slowest = 0.0
        self.count = 0

    def check(self) -> None:
        started = time.monotonic()
        row = self.conn.execute("SELECT 1").fetchone()
        elapsed = time.monotonic() - started
        assert row == (1,)
        self.slowest = max(self.slowest, elapsed)
        self.count += 1
        assert elapsed < GOOD_CLIENT_BOUND, f"a good client's SELECT 1 took {elapsed:.2f}s"

    def close(self) -> None:
        self.conn.close()
