"""Issue 11's limits inside the session state machine, over real sockets against a real endpoint.

- The password message is capped at a maximal IAM token from its 5-byte header: 25 clients each
  announcing a 10 MiB password are refused (FATAL 08P01) before the endpoint buffers the rest.
- The password packet is exactly one C string: ``<token>\\0junk`` is refused.
- A session's kept prepared statements are capped (count and bytes), with a clear error.
- Backend errors reach clients with DSQL's fields only (no PostgreSQL F/L/R source location).

Each test also checks that a well-behaved client is served and that the endpoint's sessions,
PostgreSQL's and this process's open files and memory return to their baseline.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import pytest

from dsqlkit import dsql as spec
from dsqlkit.local import LocalEndpoint
from dsqlkit.local.wire import protocol as pg
from tests.security.clients import (
    GoodClient,
    assert_back_to,
    authenticated,
    baseline,
    errors,
    read_messages,
    tls_socket,
)

ATTACKERS = 25
PASSWORD_CLAIM = 10 * 1024 * 1024 - 16  # the attack: a 10 MiB - 16 byte password
SENT_OF_IT = 64 * 1024  # what each attacker actually sends of it before waiting


@pytest.fixture(scope="module")
def ep() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(trust_environment=False) as endpoint:
        yield endpoint


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fatal(messages: list[tuple[str, bytes]], error: spec.DsqlError) -> None:
    found = errors(messages)
    assert found, f"no error before close: {messages}"
    assert (found[-1]["S"], found[-1]["C"], found[-1]["M"]) == (
        "FATAL",
        error.sqlstate,
        error.message,
    )


def test_password_longer_than_a_token_is_refused_at_its_header(
    ep: LocalEndpoint, good: GoodClient
) -> None:
    base = baseline(ep)
    rss_before = _rss()
    socks = []
    try:
        for _ in range(ATTACKERS):
            sock = tls_socket(ep)
            sock.sendall(pg.startup_message({"user": "admin", "database": "postgres"}))
            assert read_messages(sock, b"R")[-1][0] == "R"
            sock.sendall(b"p" + pg.INT32.pack(PASSWORD_CLAIM + 4) + b"x" * SENT_OF_IT)
            socks.append(sock)
        for sock in socks:  # each refused at once, without waiting for the rest
            _fatal(read_messages(sock, until=b""), spec.INVALID_MESSAGE_LENGTH)
        good.check()
    finally:
        for sock in socks:
            sock.close()
    # The old endpoint buffered every announced password (~266 MiB for these 25).
    assert _rss() - rss_before < 32 << 20, "memory grew by more than 32 MiB"
    assert_back_to(ep, base)


def test_password_packet_must_be_exactly_one_c_string(ep: LocalEndpoint, good: GoodClient) -> None:
    base = baseline(ep)
    with tls_socket(ep) as sock:
        sock.sendall(pg.startup_message({"user": "admin", "database": "postgres"}))
        read_messages(sock, b"R")
        token = ep.token("admin").encode()
        sock.sendall(pg.message(b"p", token + b"\0junk"))
        _fatal(read_messages(sock, until=b""), spec.INVALID_PASSWORD_PACKET)
    good.check()
    assert_back_to(ep, base)


def test_kept_prepared_statements_are_capped_with_a_clear_error(
    ep: LocalEndpoint, good: GoodClient
) -> None:
    base = baseline(ep)
    with authenticated(ep) as sock:
        batch = b"".join(pg.parse(f"s{i}", "SELECT 1") for i in range(spec.MAX_KEPT_STATEMENTS + 1))
        sock.sendall(batch + pg.sync())
        answer = read_messages(sock)
        assert [kind for kind, _ in answer].count("1") == spec.MAX_KEPT_STATEMENTS
        (error,) = errors(answer)
        expected = spec.TOO_MANY_PREPARED.format(
            count=spec.MAX_KEPT_STATEMENTS, size=spec.MAX_KEPT_STATEMENT_BYTES // 1024
        )
        assert (error["C"], error["M"]) == (expected.sqlstate, expected.message)
        assert error["H"] == expected.hint
        # The session goes on, and closing statements makes room again.
        sock.sendall(pg.close_statement("s0") + pg.parse("again", "SELECT 2") + pg.sync())
        assert [kind for kind, _ in read_messages(sock)] == ["3", "1", "Z"]
    good.check()
    assert_back_to(ep, base)


def test_errors_carry_only_the_fields_dsql_sends(ep: LocalEndpoint, good: GoodClient) -> None:
    base = baseline(ep)
    with authenticated(ep) as sock:
        found = []
        for message in (
            pg.query("SELECT 1/0"),  # the backend's own error
            pg.query("VACUUM"),  # a refusal the backend raises for the endpoint
            pg.message(b"F", struct.pack("!IHHIH", 1598, 0, 1, 0, 0)),  # FunctionCall
        ):
            sock.sendall(message)
            found += errors(read_messages(sock))
        assert [e["C"] for e in found] == ["22012", "0A000", "0A000"]
        for fields in found:
            assert not {"F", "L", "R", "W"} & set(fields), fields
    good.check()
    assert_back_to(ep, base)
