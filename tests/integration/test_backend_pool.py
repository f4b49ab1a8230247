"""The endpoint's pool of reset backend sessions (``backend_pool_size``), with real clients.

Real PostgreSQL, real TLS, real tokens, psycopg and asyncpg through the endpoint. A session is
parked asynchronously after its client leaves (DISCARD ALL, then its answer), so the tests wait
(bounded) for the pool to report it before connecting the next client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import psycopg
import pytest

from dsqlkit.local import LocalEndpoint
from dsqlkit.local.backend.postgres import Backend
from dsqlkit.local.config import EndpointConfig
from dsqlkit.local.identities import ADMIN_ARN

POOL_SIZE = 4
SETTLE_SECONDS = 15.0
PREPARED = "SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT 42'"


@pytest.fixture(scope="module")
def ep() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(trust_environment=False, backend_pool_size=POOL_SIZE) as endpoint:
        with psycopg.connect(endpoint.dsn(), autocommit=True) as admin:
            admin.execute("CREATE ROLE app WITH LOGIN")
            admin.execute(f"AWS IAM GRANT app TO '{ADMIN_ARN}'")
        yield endpoint


def wait_for(check: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + SETTLE_SECONDS
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def pooled(ep: LocalEndpoint) -> int:
    return ep.stats().backend_sessions_pooled


def backend_rows(backend: Backend, application_name: str) -> list[Any]:
    """PostgreSQL's own view of the client backends with ``application_name``."""
    return asyncio.run(
        backend.fetch_admin(
            "SELECT pid, state FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND application_name = $1",
            application_name,
        )
    )


def drain_pool(ep: LocalEndpoint) -> None:
    """Empty the pool (a backend restart) so each test starts from no parked session.

    Always restarted: a session of the previous test may still be in its reset, not yet counted.
    """
    ep.kill_backend()
    ep.restart_backend()
    wait_for(lambda: pooled(ep) == 0, "pool emptied")


def pid_of(ep: LocalEndpoint, user: str = "admin", **kwargs: Any) -> int:
    """A client's backend pid; the client leaves cleanly (Terminate) and its session is parked."""
    with psycopg.connect(ep.dsn(user), autocommit=True, **kwargs) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        before = pooled(ep)  # ours taken (if it was parked), not yet back
    assert row is not None
    wait_for(lambda: pooled(ep) > before or pooled(ep) == POOL_SIZE, "session parked")
    return int(row[0])


def test_sequential_clients_share_one_backend_session(ep: LocalEndpoint) -> None:
    drain_pool(ep)
    reused = ep.stats().backend_sessions_reused
    first = pid_of(ep, application_name="seq")
    assert pid_of(ep, application_name="seq") == first
    assert pid_of(ep, application_name="seq") == first
    stats = ep.stats()
    assert stats.backend_sessions_reused == reused + 2
    assert stats.backend_sessions_pooled == 1
    assert stats.backend_sessions_open == 0  # attached to a client: none now


async def test_asyncpg_client_reuses_and_gets_a_fresh_startup(ep: LocalEndpoint) -> None:
    drain_pool(ep)
    kwargs = ep.asyncpg_kwargs()
    first = await asyncpg.connect(**kwargs, server_settings={"application_name": "apg"})
    pid = await first.fetchval("SELECT pg_backend_pid()")
    assert await first.fetchval("SELECT 'first client'::text") == "first client"  # cached
    await first.close()
    await asyncio.to_thread(wait_for, lambda: pooled(ep) == 1, "session parked")
    second = await asyncpg.connect(
        **ep.asyncpg_kwargs(), server_settings={"application_name": "apg"}
    )
    try:
        assert await second.fetchval("SELECT pg_backend_pid()") == pid
        # The startup answer is the first session's (server_version rewritten as DSQL's).
        assert second.get_server_version() == first.get_server_version()
        assert await second.fetchval("SHOW application_name") == "apg"
        # Prepared statements (asyncpg's cache) of the first client are gone.
        leftover = "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1"
        assert await second.fetchval(leftover, "SELECT 'first client'::text") == 0
    finally:
        await second.close()


def test_no_state_leaks_to_the_next_client(ep: LocalEndpoint) -> None:
    drain_pool(ep)
    with psycopg.connect(ep.dsn(), autocommit=True, application_name="leak") as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        zone = conn.execute("SHOW timezone").fetchone()
        conn.execute("SELECT 42", prepare=True)  # a named prepared statement in the backend
        assert conn.execute(PREPARED).fetchone() == (1,)
        conn.execute("SET search_path = pg_catalog")
        conn.execute("SELECT set_config('timezone', 'Asia/Tokyo', false)")
    wait_for(lambda: pooled(ep) == 1, "session parked")
    with psycopg.connect(ep.dsn(), autocommit=True, application_name="leak") as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone() == pid  # really reused
        assert conn.execute(PREPARED).fetchone() == (0,)
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert conn.execute("SHOW timezone").fetchone() == zone != ("Asia/Tokyo",)


def test_client_leaving_mid_transaction_is_not_pooled(ep: LocalEndpoint) -> None:
    drain_pool(ep)
    opened = ep.stats().backend_sessions_opened
    conn = psycopg.connect(ep.dsn(), application_name="midtx")  # not autocommit
    row = conn.execute("SELECT pg_backend_pid()").fetchone()  # transaction now open
    assert row is not None
    conn.close()  # Terminate with the transaction open
    wait_for(lambda: not backend_rows(ep.backend, "midtx"), "backend session ended")
    assert pooled(ep) == 0
    with psycopg.connect(ep.dsn(), autocommit=True, application_name="midtx") as conn:
        assert conn.execute("SELECT pg_backend_pid()").fetchone() != (row[0],)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert ep.stats().backend_sessions_opened == opened + 2


def test_abrupt_disconnect_in_error_state_is_not_pooled(ep: LocalEndpoint) -> None:
    drain_pool(ep)
    conn = psycopg.connect(ep.dsn(), application_name="failed")
    with pytest.raises(psycopg.Error):
        conn.execute("SELECT 1/0")  # transaction in error state
    conn.pgconn.finish()
    wait_for(lambda: not backend_rows(ep.backend, "failed"), "backend session ended")
    assert pooled(ep) == 0


def test_roles_and_application_names_never_share(ep: LocalEndpoint) -> None:
    drain_pool(ep)
    admin_pid = pid_of(ep, application_name="one")
    other_name = pid_of(ep, application_name="two")
    app_pid = pid_of(ep, "app", application_name="one")
    assert len({admin_pid, other_name, app_pid}) == 3
    assert pooled(ep) == 3
    # Each key gets its own session back.
    assert pid_of(ep, "app", application_name="one") == app_pid
    assert pid_of(ep, application_name="two") == other_name
    assert pid_of(ep, application_name="one") == admin_pid
    with psycopg.connect(ep.dsn("app"), autocommit=True, application_name="one") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)


def test_the_cap_holds(ep: LocalEndpoint) -> None:
    drain_pool(ep)
    conns = [
        psycopg.connect(ep.dsn(), autocommit=True, application_name="cap")
        for _ in range(POOL_SIZE + 2)
    ]
    pids = {conn.execute("SELECT pg_backend_pid()").fetchone() for conn in conns}
    assert len(pids) == POOL_SIZE + 2
    for conn in conns:
        conn.close()
    wait_for(lambda: len(backend_rows(ep.backend, "cap")) == POOL_SIZE, "sessions beyond cap end")
    assert pooled(ep) == POOL_SIZE
    assert ep.stats().backend_sessions_open == 0


def test_backend_kill_empties_the_pool(ep: LocalEndpoint) -> None:
    drain_pool(ep)
    pid_of(ep, application_name="kill")
    pid_of(ep, application_name="kill2")
    assert pooled(ep) == 2
    with psycopg.connect(ep.dsn(), autocommit=True) as victim:
        ep.kill_backend()
        wait_for(lambda: pooled(ep) == 0, "pool emptied")
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
    ep.restart_backend()
    with psycopg.connect(ep.dsn(), autocommit=True, application_name="kill") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    wait_for(lambda: pooled(ep) == 1, "new session parked")


def test_stop_closes_pooled_sessions(ep: LocalEndpoint) -> None:
    # A second endpoint on the same (running) PostgreSQL: stopping it leaves PostgreSQL up, so
    # PostgreSQL's own view can tell whether the pooled sessions really ended.
    second = LocalEndpoint(
        EndpointConfig(trust_environment=False, backend_pool_size=POOL_SIZE), backend=ep.backend
    )
    with second:
        for name in ("stop1", "stop2"):
            pid_of(second, application_name=name)
        assert pooled(second) == 2
        assert len(backend_rows(ep.backend, "stop1")) == 1
    wait_for(
        lambda: not backend_rows(ep.backend, "stop1") and not backend_rows(ep.backend, "stop2"),
        "pooled backend sessions ended at stop",
    )


def test_pool_off_by_default_keeps_one_session_per_client() -> None:
    assert EndpointConfig().backend_pool_size == 0
    with pytest.raises(ValueError, match="backend_pool_size must be an integer >= 0"):
        EndpointConfig(backend_pool_size=-1)
