"""Hostile clients over real sockets against a LocalEndpoint running in this process.

Each test: a well-behaved client keeps getting its ``SELECT 1`` answered within
``GOOD_CLIENT_BOUND`` while the others misbehave, and afterwards the endpoint's sessions,
PostgreSQL's ``pg_stat_activity`` and this process's open files return to their baseline.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator

import asyncpg
import psycopg
import pytest

from dsqlkit import dsql as spec
from dsqlkit.local import LocalEndpoint, Quotas
from dsqlkit.local.wire import protocol as pg
from tests.security import tokens
from tests.security.clients import (
    GoodClient,
    assert_back_to,
    authenticated,
    baseline,
    errors,
    read_messages,
    tls_socket,
)

CAP = 24  # open-connection cap of this module's endpoint: small, so a flood passes it cheaply


@pytest.fixture(scope="module")
def ep() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(trust_environment=False, quotas=Quotas(max_connections=CAP)) as endpoint:
        # DDL now, before any good client exists (DDL makes others' next statement fail: OC001).
        with psycopg.connect(endpoint.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE hostile_copy (v text PRIMARY KEY)")
        yield endpoint


def _closed_by_server(sock: socket.socket) -> list[tuple[str, bytes]]:
    """Everything the server still sends, up to its close (a timeout here is a hang: fails)."""
    return read_messages(sock, until=b"")


def _fatal(messages: list[tuple[str, bytes]], error: spec.DsqlError) -> None:
    found = errors(messages)
    assert found, f"no error before close: {messages}"
    assert found[-1]["S"] == "FATAL" and found[-1]["C"] == error.sqlstate, found
    assert found[-1]["M"] == error.message, found


@pytest.fixture
def impatient() -> Iterator[LocalEndpoint]:
    """An endpoint with a short startup phase, so slow clients time out quickly."""
    with LocalEndpoint(trust_environment=False, startup_timeout_seconds=1.5) as endpoint:
        yield endpoint


def test_slowloris_partial_startups_time_out(impatient: LocalEndpoint) -> None:
    ep, good = impatient, GoodClient(impatient)
    base = baseline(ep)
    silent = [socket.create_connection(("127.0.0.1", ep.port)) for _ in range(5)]
    half_request = [socket.create_connection(("127.0.0.1", ep.port)) for _ in range(5)]
    for sock in half_request:
        sock.sendall(pg.ssl_request()[:5])
    after_tls = [tls_socket(ep) for _ in range(5)]
    for sock in after_tls:
        sock.sendall(pg.startup_message({"user": "admin", "database": "postgres"})[:7])
    at_password = [tls_socket(ep) for _ in range(5)]
    for sock in at_password:
        sock.sendall(pg.startup_message({"user": "admin", "database": "postgres"}))
        sock.sendall(pg.password_message(ep.token())[:20])  # and never the rest
    for _ in range(5):
        good.check()
    for sock in after_tls + at_password:  # over TLS: told why
        _fatal(_closed_by_server(sock), spec.STARTUP_TIMEOUT)
    for sock in silent + half_request:  # before TLS: just closed (reset if bytes were unread)
        assert _drain_raw(sock) == b""
    for sock in silent + half_request + after_tls + at_password:
        sock.close()
    good.check()
    good.close()
    assert_back_to(ep, base)


def test_connection_flood_past_the_cap(ep: LocalEndpoint, good: GoodClient) -> None:
    base = baseline(ep)
    kwargs = ep.asyncpg_kwargs()

    async def flood() -> tuple[int, list[BaseException]]:
        results = await asyncio.gather(
            *(asyncpg.connect(**kwargs) for _ in range(CAP + 16)), return_exceptions=True
        )
        opened = [r for r in results if isinstance(r, asyncpg.Connection)]
        try:
            good.check()  # the open connection keeps working with the cap full (blocks: fine)
        finally:
            await asyncio.gather(*(c.close() for c in opened))
        return len(opened), [r for r in results if isinstance(r, BaseException)]

    opened, refused = asyncio.run(flood())
    assert opened == CAP - base.client_sessions  # exactly the free slots
    assert refused, "the cap let everyone in"
    for exc in refused:
        assert getattr(exc, "sqlstate", None) == spec.TOO_MANY_CONNECTIONS.sqlstate, exc
    good.check()
    assert_back_to(ep, base)
    GoodClient(ep).close()  # room again for a newcomer


def test_cancel_key_guessing_cancels_nothing(ep: LocalEndpoint, good: GoodClient) -> None:
    base = baseline(ep)
    victim = psycopg.connect(ep.dsn(), autocommit=True)
    pid = victim.info.backend_pid  # the endpoint's pid (the attacker's best case: it knows it)
    before = ep.stats().cancel_requests
    result: list[object] = []
    query = threading.Thread(
        target=lambda: result.append(victim.execute("SELECT pg_sleep(1.0), 7").fetchone())
    )
    query.start()
    guesses = [(pid, secrets.token_bytes(4)) for _ in range(150)]
    guesses += [(secrets.randbelow(2**31), secrets.token_bytes(4)) for _ in range(50)]
    for guess_pid, key in guesses:
        with socket.create_connection(("127.0.0.1", ep.port)) as sock:
            sock.sendall(pg.cancel_request(guess_pid, key))
            assert sock.recv(10) == b""
    with tls_socket(ep) as sock:  # over TLS too (libpq 17 sends cancels that way)
        sock.sendall(pg.cancel_request(pid, b"\0\0\0\0"))
        assert _closed_by_server(sock) == []
    query.join(30)
    assert result and result[0] == ("", 7), "the victim's query was cancelled"
    assert ep.stats().cancel_requests == before
    good.check()
    victim.close()
    assert_back_to(ep, base)


def test_huge_messages_are_refused_without_buffering(ep: LocalEndpoint, good: GoodClient) -> None:
    base = baseline(ep)
    rss_before = _rss()
    with authenticated(ep) as sock:  # relay state: a Query claiming more than the cap
        sock.sendall(b"Q" + pg.INT32.pack(spec.MAX_MESSAGE_SIZE + 1) + b"SELECT " * 1000)
        _fatal(_closed_by_server(sock), spec.INVALID_MESSAGE_LENGTH)
    with tls_socket(ep) as sock:  # auth state: a password claiming 100 MiB
        sock.sendall(pg.startup_message({"user": "admin", "database": "postgres"}))
        read_messages(sock, b"R")
        sock.sendall(b"p" + pg.INT32.pack(100 << 20) + b"x" * 65536)
        _fatal(_closed_by_server(sock), spec.INVALID_MESSAGE_LENGTH)
    with tls_socket(ep) as sock:  # startup packet past its cap
        sock.sendall(pg.INT32.pack(spec.MAX_STARTUP_PACKET + 1) + pg.INT32.pack(pg.PROTOCOL_3_0))
        _fatal(_closed_by_server(sock), spec.INVALID_STARTUP_PACKET)
    with authenticated(ep) as sock:  # COPY data past the cap mid-stream
        sock.sendall(pg.query("COPY hostile_copy FROM STDIN"))
        assert read_messages(sock, b"GE")[-1][0] == "G"
        sock.sendall(pg.message(b"d", b"a\n" * 100))
        sock.sendall(b"d" + pg.INT32.pack(2**31 - 1))
        _fatal(_closed_by_server(sock), spec.INVALID_MESSAGE_LENGTH)
    good.check()
    assert _rss() - rss_before < 64 << 20, "memory grew by more than 64 MiB"
    assert_back_to(ep, base)


def test_tls_garbage_and_bytes_after_sslrequest(ep: LocalEndpoint, good: GoodClient) -> None:
    base = baseline(ep)
    for attempt in range(10):
        # Garbage that can never be the start of a longer record the server must wait for: its
        # first byte is no TLS content type (0x14-0x18) nor an SSLv2 header (high bit), and after
        # 0x16 it is no TLS version (0x03): random bytes were such a prefix ~2% of runs, and the
        # server then rightly waits for the rest until the startup deadline.
        garbage = b"G" + os.urandom(63 + attempt * 100)
        with socket.create_connection(("127.0.0.1", ep.port), timeout=10) as sock:
            sock.sendall(pg.ssl_request())
            assert sock.recv(1) == b"S"
            sock.sendall(garbage)  # not a TLS ClientHello
            assert _drain_raw(sock) == b""
        with socket.create_connection(("127.0.0.1", ep.port), timeout=10) as sock:
            sock.sendall(bytes([pg.TLS_HANDSHAKE_RECORD]) + garbage)  # "direct TLS", broken
            assert _drain_raw(sock) == b""
        with socket.create_connection(("127.0.0.1", ep.port), timeout=10) as sock:
            sock.sendall(pg.ssl_request() + garbage)  # CVE-2021-23214: bytes before the handshake
            assert _drain_raw(sock) in (b"", b"S")  # closed (an S only if the bytes came late)
        good.check()
    with tls_socket(ep) as sock:  # TLS done, then a plaintext-looking mess
        sock.sendall(os.urandom(3000))
        messages = _closed_by_server(sock)
        assert not messages or errors(messages)[-1]["C"] in ("08P01", "0A000")
    good.check()
    assert_back_to(ep, base)


def test_refused_batch_then_malformed_message_ends_that_client(
    ep: LocalEndpoint, good: GoodClient
) -> None:
    # A refused Parse inside a transaction holds the client's later messages until the backend
    # has caught up; a malformed message among those must still end the client with an error.
    base = baseline(ep)
    with authenticated(ep) as sock:
        sock.sendall(pg.query("BEGIN"))
        read_messages(sock)
        malformed_parse = pg.message(b"P", b"s\0SELECT 1\0" + pg.INT16.pack(5))
        sock.sendall(pg.parse("", "SAVEPOINT a") + pg.sync() + malformed_parse + pg.sync())
        messages = _closed_by_server(sock)
        assert errors(messages)[-1]["C"] == spec.INVALID_MESSAGE_LENGTH.sqlstate, messages
    good.check()
    assert_back_to(ep, base)


def _pipelined_after_password(ep: LocalEndpoint, token: str, sql: str) -> list[tuple[str, bytes]]:
    """Startup, then the password and a simple query in one write, as a pipelining client may."""
    sock = tls_socket(ep)
    with sock:
        sock.sendall(pg.startup_message({"user": spec.ADMIN_USER, "database": spec.DATABASE}))
        assert read_messages(sock, b"RE")[-1][0] == "R", "no password request"
        sock.sendall(pg.password_message(token) + pg.query(sql))
        messages = read_messages(sock, b"Z")  # the startup's ReadyForQuery
        return messages + read_messages(sock, b"Z")  # the query's


def test_query_pipelined_behind_the_password_runs_after_auth(ep: LocalEndpoint) -> None:
    messages = _pipelined_after_password(ep, ep.token(), "SELECT 41 + 1")
    kinds = [kind for kind, _ in messages]
    assert not errors(messages), errors(messages)
    assert "R" in kinds and "T" in kinds and kinds.count("Z") == 2, kinds
    assert any(kind == "D" and body.endswith(b"42") for kind, body in messages), messages


def test_query_pipelined_behind_the_password_meets_the_dialect(ep: LocalEndpoint) -> None:
    # Split for the policy before the relay starts: not forwarded unchecked.
    messages = _pipelined_after_password(ep, ep.token(), "TRUNCATE hostile_copy")
    assert [e["M"] for e in errors(messages)] == ["unsupported statement: Truncate"], messages


def test_query_pipelined_behind_a_bad_password_never_runs(
    ep: LocalEndpoint, good: GoodClient
) -> None:
    base = baseline(ep)
    sock = tls_socket(ep)
    with sock:
        sock.sendall(pg.startup_message({"user": spec.ADMIN_USER, "database": spec.DATABASE}))
        read_messages(sock, b"RE")
        sock.sendall(pg.password_message("not-a-token") + pg.query("DROP TABLE hostile_copy"))
        _fatal(_closed_by_server(sock), spec.ACCESS_DENIED)
    good.check()
    assert_back_to(ep, base)
    with psycopg.connect(ep.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM hostile_copy").fetchone() is not None


def test_bad_tokens_over_real_connections(ep: LocalEndpoint, good: GoodClient) -> None:
    # A sample of the corpus, signed for this endpoint's admin identity where it matters.
    creds = ep.credentials
    now = time.time()
    sample = [bad.token.replace(tokens.AKID, creds.access_key) for bad in tokens.corpus(now)[::23]]
    good_token = ep.token()
    # One signature digit changed (to another digit: "0" on a signature ending in "0" would be
    # the valid token itself, one run in sixteen).
    sample.append(good_token[:-1] + ("1" if good_token.endswith("0") else "0"))
    base = baseline(ep)
    for token in sample:
        with tls_socket(ep) as sock:
            sock.sendall(pg.startup_message({"user": "admin", "database": "postgres"}))
            read_messages(sock, b"R")
            sock.sendall(pg.message(b"p", token.encode("utf-8", "surrogateescape") + b"\0"))
            messages = _closed_by_server(sock)
            found = errors(messages)
            assert found and found[-1]["C"] == spec.ACCESS_DENIED.sqlstate, (token[:80], found)
            assert found[-1]["M"] == spec.ACCESS_DENIED.message
            hint = found[-1].get("H", "")
            assert hint and creds.secret_key not in hint and len(hint) < 300
            assert not any(kind == "Z" for kind, _ in messages)
    good.check()
    assert_back_to(ep, base)


def _drain_raw(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
