"""Resource bounds and strict parsing outside the session state machine, over real sockets (issue 11).

Before TLS: a GSSENCRequest loop is refused after the first; a client that sends part of a header
and goes silent costs the endpoint no CPU while it waits for the startup deadline (measured as
this process's CPU time: the endpoint runs in a thread here, and the test thread only blocks).
A long hostile statement (``SELECT 1,1,...,'server_version'``, 200 KB: it froze every session
for 7-9 s) is classified in the worker process while a good client keeps being served. An IAM
token signed over a date with a trailing newline is refused as DSQL refuses (FATAL 08006
with a hint). Each test also checks that a well-behaved client is served and sessions return to their baseline.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from dsqlkit import dsql as spec
from dsqlkit.local import LocalEndpoint
from dsqlkit.local.wire import protocol as pg
from tests.security.clients import (
    GoodClient,
    assert_back_to,
    baseline,
    errors,
    read_messages,
    tls_socket,
    wait_for,
)
from tests.security.tokens import signed_over

#: The module's endpoint gives up on a silent client after this (short: the tests wait for it).
STARTUP_TIMEOUT = 1.0
#: CPU the endpoint may spend while silent clients wait out the deadline. Spinning on their
#: readable sockets cost 65-97 % of a core (issue 11), i.e. ~650 ms or more over the deadline.
SILENT_CPU_BUDGET = 0.15


@pytest.fixture(scope="module")
def ep() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(
        trust_environment=False, startup_timeout_seconds=STARTUP_TIMEOUT
    ) as endpoint:
        yield endpoint


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the endpoint sends up to its close (a reset counts as the close)."""
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


def test_gssenc_loop_is_answered_once(ep: LocalEndpoint, good: GoodClient) -> None:
    base = baseline(ep)
    refused = ep.stats().connections_refused.get("gssenc_repeated", 0)
    with socket.create_connection(("127.0.0.1", ep.port), timeout=10) as sock:
        sock.sendall(pg.gssenc_request())
        assert sock.recv(1) == b"N"
        sock.sendall(pg.gssenc_request() * 1000)  # a loop: PostgreSQL allows one
        answer = _until_closed(sock)
    assert b"N" not in answer[:1], "a second GSSENCRequest was answered"
    (error,) = errors(_messages(answer))
    assert (error["S"], error["C"], error["M"]) == (
        "FATAL",
        spec.GSSENC_REPEATED.sqlstate,
        spec.GSSENC_REPEATED.message,
    )
    assert ep.stats().connections_refused.get("gssenc_repeated", 0) == refused + 1
    good.check()
    # One GSSENCRequest is still fine: SSLRequest then TLS as usual.
    with socket.create_connection(("127.0.0.1", ep.port), timeout=10) as sock:
        sock.sendall(pg.gssenc_request())
        assert sock.recv(1) == b"N"
        sock.sendall(pg.ssl_request())
        assert sock.recv(1) == b"S"
    assert_back_to(ep, base)


def _messages(data: bytes) -> list[tuple[str, bytes]]:
    reader = pg.MessageReader(frozenset(range(256)))
    return [(chr(kind), bytes(frame[5:])) for kind, frame in reader.feed(data)]


@pytest.mark.parametrize(
    "partial",
    [pg.ssl_request()[:7], pg.gssenc_request() + pg.ssl_request()[:5], b"\x00"],
    ids=["7-header-bytes", "after-gssenc", "1-byte"],
)
def test_silent_partial_header_costs_no_cpu(
    ep: LocalEndpoint, good: GoodClient, partial: bytes
) -> None:
    base = baseline(ep)
    clients = [socket.create_connection(("127.0.0.1", ep.port), timeout=10) for _ in range(5)]
    cpu = _cpu_seconds()
    for sock in clients:
        sock.sendall(partial)
    for sock in clients:  # the endpoint closes each at its startup deadline
        answer = _until_closed(sock)
        assert answer in (b"", b"N"), answer  # "N" to the GSSENCRequest, then nothing
        sock.close()
    spent = _cpu_seconds() - cpu
    assert spent < SILENT_CPU_BUDGET, f"{spent * 1000:.0f} ms of CPU for 5 silent clients"
    good.check()
    assert_back_to(ep, base)


@pytest.mark.parametrize("suffix", ["\n", "\u0669"], ids=["trailing-newline", "arabic-digit"])
def test_token_with_an_odd_date_is_refused_over_tls(
    ep: LocalEndpoint, good: GoodClient, suffix: str
) -> None:
    base = baseline(ep)
    creds = ep.credentials
    date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if suffix != "\n":  # a non-ASCII digit in place of the seconds' last digit
        date = date[:-2] + suffix + "Z"
    else:
        date += suffix
    token = signed_over(
        date,
        access_key=creds.access_key,
        secret=creds.secret_key,
        host=ep.host,
        region=ep.config.region,
    )
    with tls_socket(ep) as sock:
        sock.sendall(pg.startup_message({"user": spec.ADMIN_USER, "database": spec.DATABASE}))
        read_messages(sock, b"R")
        sock.sendall(pg.password_message(token))
        messages = read_messages(sock, b"")
    (error,) = errors(messages)
    assert (error["S"], error["C"], error["M"]) == (
        "FATAL",
        spec.ACCESS_DENIED.sqlstate,
        spec.ACCESS_DENIED.message,
    )
    assert error["H"] == spec.HINT_MALFORMED.format(what="X-Amz-Date is not yyyymmddTHHMMSSZ")
    assert creds.secret_key not in str(messages) and not any(k == "Z" for k, _ in messages)
    good.check()
    assert_back_to(ep, base)


def test_a_long_hostile_statement_stalls_no_one_else(ep: LocalEndpoint, good: GoodClient) -> None:
    import psycopg

    # The worker process starts on the first long text, and its pipes stay open: not a leak.
    assert good.conn.execute("SELECT " + "1 + " * 400 + "1").fetchone() == (401,)
    base = baseline(ep)
    hostile = "SELECT " + "1," * 100_000 + "'server_version'"  # 200 KB
    outcome: list[BaseException | None] = []

    def attack() -> None:
        with psycopg.connect(ep.dsn(), autocommit=True) as conn:
            try:
                conn.execute(hostile)
            except psycopg.Error as exc:  # PostgreSQL refuses 100,001 columns: its own error
                outcome.append(exc)
            else:
                outcome.append(None)

    attacker = threading.Thread(target=attack)
    attacker.start()
    served = 0
    while attacker.is_alive():  # each check asserts GOOD_CLIENT_BOUND, as the other tests do
        good.check()
        served += 1
    attacker.join()
    # Frozen, the loop answered the good client once or twice around the freeze; free, hundreds.
    assert served >= 20, f"the good client was served {served} times during the attack"
    (error,) = outcome
    assert isinstance(error, psycopg.Error) and error.sqlstate == "54011", error
    good.check()
    assert_back_to(ep, base)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


#: What 50 password floods may cost this process (endpoint and clients both), held and after:
#: the session caps each at the token's length as soon as its header is read (the ``wire`` part of
#: issue 11), so what remains is the TLS layers' buffers (uvloop reads 256 KiB at a time; ~0.5 MiB
#: a connection with the clients' side, measured). Uncapped, the 4 MiB each client pushes were all
#: buffered: 200 MiB.
FLOOD_CONNECTIONS = 50
FLOOD_PUSHED = 4 << 20
FLOOD_BOUND = FLOOD_CONNECTIONS << 20  # 1 MiB a connection


def test_unauthenticated_password_floods_stay_bounded(ep: LocalEndpoint, good: GoodClient) -> None:
    base, rss = baseline(ep), _rss()
    # The largest message the protocol allows (one shared buffer: the client side adds nothing).
    flood = b"p" + pg.INT32.pack(spec.MAX_MESSAGE_SIZE) + b"x" * FLOOD_PUSHED
    socks, held = [], 0
    for _ in range(FLOOD_CONNECTIONS):
        sock = tls_socket(ep)
        sock.sendall(pg.startup_message({"user": spec.ADMIN_USER, "database": spec.DATABASE}))
        read_messages(sock, b"R")
        sock.settimeout(2.0)
        with contextlib.suppress(OSError):  # refused: closed before all of it was sent
            sock.sendall(flood)
        socks.append(sock)
        held = max(held, _rss() - rss)
    good.check()
    for sock in socks:
        sock.close()
    assert held < FLOOD_BOUND, f"{held >> 20} MiB held by {FLOOD_CONNECTIONS} password floods"
    assert_back_to(ep, base)
    wait_for(lambda: _rss() - rss < FLOOD_BOUND, "memory back near its baseline")
    good.check()
