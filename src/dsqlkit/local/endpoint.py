"""``LocalEndpoint``: a local DSQL endpoint as a context manager, sync or async.

Sync: the endpoint's event loop runs in a daemon thread, so plain blocking code (and any driver)
can talk to it from the caller's thread::

    from dsqlkit.local import LocalEndpoint
    from dsqlkit.local import Quotas
    import dsqlkit.psycopg

    with LocalEndpoint(quotas=Quotas(max_rows_per_transaction=10)) as ep, ep.use_environment():
        conn = dsqlkit.psycopg.connect(**ep.connect_kwargs())

Async: the endpoint runs on the caller's running loop::

    async with LocalEndpoint() as ep:
        conn = await asyncpg.connect(**ep.asyncpg_kwargs())   # or dsqlkit.asyncpg.connect(...)

Credentials: the endpoint generates a local-only admin identity (``ep.credentials``) and, unless
``trust_environment=False``, also trusts the AWS credentials of this process's environment. The
dsqlkit drivers read credentials from the environment: ``ep.environ()`` gives the variables,
``ep.use_environment()`` sets them for a ``with`` block, and ``ep.token()`` makes a token for raw
drivers.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dsqlkit import dsql as spec
from dsqlkit.local.config import EndpointConfig

if TYPE_CHECKING:
    from types import TracebackType

    from dsqlkit.auth.credentials import Credentials
    from dsqlkit.local.address import EndpointAddress
    from dsqlkit.local.backend.postgres import Backend, ManagedBackend
    from dsqlkit.local.server import Endpoint, EndpointStats

T = TypeVar("T")


#: SQL run as the backend superuser by :meth:`LocalEndpoint.reset`: drops what users created in
#: schema public, in one round trip (views and functions first-class; CASCADE takes dependents).
_RESET_SQL = """
DO $reset$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.relname, c.relkind FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S', 'p', 'f')
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
  LOOP
    EXECUTE format('DROP %s IF EXISTS public.%I CASCADE',
      CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                     WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
      r.relname);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS sig, p.prokind FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
  LOOP
    EXECUTE format('DROP %s IF EXISTS %s CASCADE',
      CASE r.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, r.sig);
  END LOOP;
  FOR r IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE n.nspname = 'public' AND t.typtype IN ('d', 'e', 'c', 'r') AND t.typrelid = 0
  LOOP
    EXECUTE format('DROP TYPE IF EXISTS public.%I CASCADE', r.typname);
  END LOOP;
END
$reset$
"""


class LocalEndpoint:
    """A DSQL-compatible endpoint on this machine, started by ``with`` or ``async with``.

    Takes :class:`~dsqlkit.local.config.EndpointConfig` fields as keyword arguments (or a whole
    ``config=``); ``backend=`` passes a ready :class:`~dsqlkit.local.backend.postgres.Backend`.

    Example::

        with LocalEndpoint(region="eu-west-1") as ep:
            conn = psycopg.connect(ep.dsn())          # raw driver, token included
            print(ep.hostname, ep.port, ep.stats())
    """

    def __init__(
        self,
        config: EndpointConfig | None = None,
        *,
        backend: Backend | None = None,
        **fields: Any,
    ) -> None:
        if config is not None and fields:
            raise TypeError("LocalEndpoint: pass either config= or EndpointConfig fields, not both")
        self.config: EndpointConfig = config or _make_config(fields)
        self._backend = backend
        self._endpoint: Endpoint | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None  # set in sync mode only

    # --- sync lifecycle -----------------------------------------------------------------------

    def start(self) -> LocalEndpoint:
        """Start the endpoint with its event loop in a daemon thread; return self."""
        self._check_stopped()
        loop = new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name="dsqlkit-local-endpoint", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._endpoint = self._call(self._create_and_start())
        except BaseException:
            self._end_thread()
            raise
        # A daemon thread dies silently at exit: stop PostgreSQL first if the caller forgot to.
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Stop the endpoint and its PostgreSQL, release the port. Idempotent."""
        if self._thread is None:
            if self._endpoint is not None:
                raise RuntimeError(
                    "this endpoint was started with `async with`: use `await astop()`"
                )
            return
        atexit.unregister(self.stop)
        try:
            if self._endpoint is not None:
                self._call(self._endpoint.stop())
        finally:
            self._endpoint = None
            self._end_thread()

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- async lifecycle ----------------------------------------------------------------------

    async def astart(self) -> LocalEndpoint:
        """Start the endpoint on the running event loop; return self."""
        self._check_stopped()
        self._loop = asyncio.get_running_loop()
        try:
            self._endpoint = await self._create_and_start()
        except BaseException:
            self._loop = None
            raise
        return self

    async def astop(self) -> None:
        """Stop the endpoint and its PostgreSQL, release the port. Idempotent."""
        if self._thread is not None:
            raise RuntimeError("this endpoint was started with `with`: use `stop()`")
        endpoint, self._endpoint, self._loop = self._endpoint, None, None
        if endpoint is not None:
            await endpoint.stop()

    async def __aenter__(self) -> LocalEndpoint:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    # --- what clients need --------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._endpoint is not None

    @property
    def host(self) -> str:
        """``localhost``: the name to connect to (served in the certificate and for SNI)."""
        return self.config.hostnames[0]

    @property
    def hostname(self) -> str:
        """The DSQL-style name served too: ``<cluster-id>.dsql.<region>.on.aws``."""
        return self.config.dsql_hostname

    @property
    def hostnames(self) -> tuple[str, ...]:
        """Every host name served (SNI and the certificate)."""
        return self.config.hostnames

    @property
    def region(self) -> str:
        return self.config.region

    @property
    def port(self) -> int:
        """The TCP port listened on (the real one when the config asked for port 0)."""
        return self._running().port

    @property
    def ca_file(self) -> Path:
        """The CA certificate that signs the endpoint's certificate (for ``sslrootcert``)."""
        return Path(self._running().ca_file)

    @property
    def data_dir(self) -> Path:
        return Path(self._running().data_dir)

    @property
    def backend(self) -> Backend:
        """The PostgreSQL behind the endpoint, e.g. ``await ep.backend.execute_admin(sql)``."""
        return self._running().backend

    @property
    def address(self) -> EndpointAddress:
        """What clients need (address, CA, local identity, tokens): a plain picklable value."""
        from dsqlkit.local.address import EndpointAddress

        endpoint = self._running()
        admin = endpoint.identities.admin_credential
        return EndpointAddress(
            host=self.host,
            port=endpoint.port,
            region=self.region,
            hostname=self.hostname,
            hostnames=self.hostnames,
            ca_file=Path(endpoint.ca_file),
            access_key=admin.access_key,
            secret_key=admin.secret_key,
        )

    @property
    def credentials(self) -> Credentials:
        """The local-only admin identity's access key and secret (repr hides the secret)."""
        return self.address.credentials

    def connect_kwargs(self, user: str = spec.ADMIN_USER, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for ``dsqlkit.<driver>.connect``: see
        :meth:`EndpointAddress.connect_kwargs <dsqlkit.local.address.EndpointAddress.connect_kwargs>`.
        """
        return self.address.connect_kwargs(user, **extra)

    def environ(self) -> dict[str, str]:
        """The AWS_* and PGSSLROOTCERT variables that point clients at this endpoint."""
        return self.address.environ()

    def use_environment(self) -> contextlib.AbstractContextManager[dict[str, str]]:
        """Set :meth:`environ` in ``os.environ`` for a ``with`` block, then restore it."""
        return self.address.use_environment()

    def token(
        self,
        user: str = spec.ADMIN_USER,
        *,
        host: str | None = None,
        expires: int = spec.TOKEN_DEFAULT_EXPIRES,
    ) -> str:
        """An IAM auth token for ``user`` signed by the local admin identity, for raw drivers."""
        return self.address.token(user, host=host, expires=expires)

    def dsn(self, user: str = spec.ADMIN_USER) -> str:
        """A libpq connection string with a fresh token as password and verify-full TLS."""
        return self.address.dsn(user)

    def asyncpg_kwargs(self, user: str = spec.ADMIN_USER) -> dict[str, Any]:
        """Keyword arguments for a raw ``asyncpg.connect`` (token and verify-full TLS context)."""
        return self.address.asyncpg_kwargs(user)

    # --- observation and fault injection --------------------------------------------------------

    def stats(self) -> EndpointStats:
        """A snapshot of the endpoint's counters (connections, refusals, ...)."""
        endpoint = self._running()
        if self._thread is None:
            return endpoint.stats()
        return self._call(_async_call(endpoint.stats))

    def kill_backend(self) -> None:
        """SIGKILL PostgreSQL under the running endpoint, as a crash would (for fault tests).

        Clients then get errors; :meth:`restart_backend` brings it back with its data.
        """
        self._call(_async_call(self._managed_backend().kill))

    def restart_backend(self) -> None:
        """Start PostgreSQL again after :meth:`kill_backend` (PostgreSQL recovers its data)."""
        self._call(self._running().backend.start())

    async def akill_backend(self) -> None:
        """Async twin of :meth:`kill_backend`."""
        self._managed_backend().kill()  # SIGKILL and reap: milliseconds, fine on the loop

    async def arestart_backend(self) -> None:
        """Async twin of :meth:`restart_backend`."""
        await self._running().backend.start()

    def reset(self) -> None:
        """Drop the tables, views, sequences, functions and types in schema ``public``.

        One statement, run as the backend's superuser. Roles and IAM mappings are kept.
        """
        self._call(self.areset())

    async def areset(self) -> None:
        """Async twin of :meth:`reset`."""
        await self._running().backend.execute_admin(_RESET_SQL)

    def __repr__(self) -> str:
        if self._endpoint is None:
            return f"<LocalEndpoint {self.hostname} (stopped)>"
        return f"<LocalEndpoint {self.host}:{self.port} {self.hostname} region={self.region}>"

    # --- internals ------------------------------------------------------------------------------

    async def _create_and_start(self) -> Endpoint:
        from dsqlkit.local.server import Endpoint

        endpoint = Endpoint(self.config, self._backend)
        await endpoint.start()
        return endpoint

    def _running(self) -> Endpoint:
        if self._endpoint is None:
            raise RuntimeError(
                "the LocalEndpoint is not running: use `with LocalEndpoint() as ep:` "
                "or `async with LocalEndpoint() as ep:`"
            )
        return self._endpoint

    def _managed_backend(self) -> ManagedBackend:
        from dsqlkit.local.backend.postgres import ManagedBackend

        backend = self._running().backend
        if not isinstance(backend, ManagedBackend):
            raise RuntimeError(
                f"kill_backend needs a PostgreSQL run by the endpoint (backend 'embedded' or "
                f"'system'), not {backend!r}"
            )
        return backend

    def _check_stopped(self) -> None:
        if self._endpoint is not None or self._loop is not None:
            raise RuntimeError("this LocalEndpoint is already running")

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the endpoint's loop thread and wait for its result."""
        if self._thread is None or self._loop is None:
            coro.close()
            raise RuntimeError(
                "this endpoint runs on your event loop (`async with`): use the a-prefixed method"
            )
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _end_thread(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _make_config(fields: dict[str, Any]) -> EndpointConfig:
    known = {f.name for f in dataclasses.fields(EndpointConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise TypeError(
            f"LocalEndpoint: unknown option(s) {', '.join(unknown)}; "
            f"valid options are the EndpointConfig fields: {', '.join(sorted(known))}"
        )
    return EndpointConfig(**fields)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop a self-run endpoint uses (sync mode and ``dsqlkit local``).

    uvloop when it is importable (its relay path is several times cheaper per message), else
    the stdlib loop. Example::

        loop = new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _async_call(function: Any) -> Any:
    return function()
