"""The benchmark's connection patterns, and the small adapters that let one pattern run on every
driver and implementation.

Patterns (one async function each, the same for every driver):

- ``connect``: open a connection, run the query, close it, every iteration.
- ``reuse``: one connection kept open across iterations and rounds (a Lambda module global).
- ``pool``: the driver's own pool (min = max = concurrency); each iteration takes ``concurrency``
  connections from it in parallel (threads for sync drivers, ``asyncio.gather`` for async ones).

Implementations: ``dsqlkit`` (this package's connectors), ``raw`` (the bare driver given a token
computed beforehand: the limit) and ``official`` (aurora-dsql-python-connector, when installed).
Drivers differ only in the :class:`Driver` table below; sync drivers' calls are made directly
(blocking, nothing else runs meanwhile) so that one async code path times all of them.

Example::

    client = make_client("psycopg2", "dsqlkit", Target(host="localhost", port=5432, ...))
    sample = await connect_each_time(client, "SELECT 1", 30, 1, PatternState())
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import json
import os
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

from dsqlkit import dsql as spec
from dsqlkit.bench import resolver
from dsqlkit.bench.process import ClientModel, run_python

if TYPE_CHECKING:
    from dsqlkit.local.address import EndpointAddress
    from dsqlkit.local.endpoint import LocalEndpoint

PATTERNS = ("connect", "reuse", "pool")
IMPLEMENTATIONS = ("dsqlkit", "raw", "official")
OFFICIAL_DISTRIBUTION = "aurora-dsql-python-connector"
#: Seconds a psycopg_pool may take to open its first connections before the row fails.
POOL_OPEN_TIMEOUT = 10.0


class Skip(Exception):
    """A row that does not apply here (not a failure): the message says why."""


@dataclass(frozen=True)
class Target:
    """Where to connect. ``dsql_host`` is the DSQL-style name the official connector needs (it
    takes any other host for a cluster id); ``hostaddr`` is the address libpq dials instead of
    resolving it (the local endpoint). ``token`` makes the raw rows' token (called before timing).
    """

    host: str
    region: str
    port: int = spec.DEFAULT_PORT
    user: str = spec.ADMIN_USER
    sslrootcert: str | None = None
    profile: str | None = None
    dsql_host: str | None = None
    hostaddr: str | None = None
    token: Callable[[], str] | None = field(default=None, repr=False)

    def dsqlkit_kwargs(self) -> dict[str, Any]:
        kwargs = {"host": self.host, "port": self.port, "region": self.region, "user": self.user}
        return _with_optional(kwargs, sslrootcert=self.sslrootcert, profile=self.profile)

    def official_kwargs(self, libpq: bool) -> dict[str, Any]:
        kwargs = {
            "host": self.dsql_host or self.host,
            "port": self.port,
            "region": self.region,
            "user": self.user,
            "sslmode": "verify-full",
        }
        # asyncpg has no hostaddr: the DSQL-style name must resolve (a real cluster).
        hostaddr = self.hostaddr if libpq else None
        return _with_optional(
            kwargs, sslrootcert=self.sslrootcert, profile=self.profile, hostaddr=hostaddr
        )

    def raw_kwargs(self, libpq: bool, token: str) -> dict[str, Any]:
        common = {"host": self.host, "port": self.port, "user": self.user, "password": token}
        if libpq:
            return {
                **common,
                "dbname": spec.DATABASE,
                "sslmode": "verify-full",
                # libpq >= 16 reads "system" as the operating system's CA store.
                "sslrootcert": self.sslrootcert or "system",
            }
        context = ssl.create_default_context(cafile=self.sslrootcert)
        return {**common, "database": spec.DATABASE, "ssl": context}

    def resolve_mapping(self) -> dict[str, str]:
        """The DSQL-style name -> the address to dial instead (local endpoint), else nothing."""
        if self.dsql_host and self.hostaddr and self.dsql_host != self.hostaddr:
            return {self.dsql_host: self.hostaddr}
        return {}

    def to_json(self) -> dict[str, Any]:
        """The fields a child process needs, without the ``token`` function."""
        return {name: value for name, value in vars(self).items() if name != "token"}

    def raw_token(self) -> str:
        if self.token is not None:
            return self.token()
        from dsqlkit.auth.tokens import TokenFactory
        from dsqlkit.config import resolve_params

        params = resolve_params(
            host=self.host, port=self.port, region=self.region, user=self.user, profile=self.profile
        )
        return TokenFactory(params).token()


def local_target(endpoint: LocalEndpoint | EndpointAddress, user: str = spec.ADMIN_USER) -> Target:
    """The :class:`Target` of a running :class:`~dsqlkit.local.LocalEndpoint` or the address of
    an :class:`~dsqlkit.local.process.EndpointProcess` (whose ``use_environment()`` must be active
    for the dsqlkit and official rows).

    Example::

        with LocalEndpoint() as ep, endpoint.use_environment():
            report = run_benchmark(BenchConfig(), local_target(ep))
    """
    return Target(
        host=endpoint.host,
        port=endpoint.port,
        region=endpoint.region,
        user=user,
        sslrootcert=str(endpoint.ca_file),
        dsql_host=endpoint.hostname,
        hostaddr="127.0.0.1",
        token=lambda: endpoint.token(user),
    )


def _with_optional(kwargs: dict[str, Any], **optional: Any) -> dict[str, Any]:
    return {**kwargs, **{k: v for k, v in optional.items() if v is not None}}


# --- drivers ------------------------------------------------------------------------------------


def _psycopg2_query(conn: Any, sql: str) -> None:
    with conn.cursor() as cur:
        cur.execute(sql)
        cur.fetchall()


def _psycopg_query(conn: Any, sql: str) -> None:
    conn.execute(sql).fetchall()


async def _psycopg_async_query(conn: Any, sql: str) -> None:
    cur = await conn.execute(sql)
    await cur.fetchall()


async def _asyncpg_query(conn: Any, sql: str) -> None:
    await conn.fetch(sql)


async def _asyncpg_reset(conn: Any) -> None:
    # asyncpg's default pool reset calls pg_advisory_unlock_all() and UNLISTEN, which DSQL
    # refuses; the raw pool gets the reset both connectors use, so the rows compare like for like.
    await conn.execute("RESET ALL")


def _psycopg2_autocommit(conn: Any) -> Any:
    # psycopg2.connect takes no autocommit argument; setting it on an idle connection costs no
    # round trip. Without it every SELECT would leave a transaction open on a reused connection.
    conn.autocommit = True
    return conn


def _same(conn: Any) -> Any:
    return conn


@dataclass(frozen=True)
class Driver:
    """What differs between drivers. ``connect`` and ``pool`` map an implementation to
    ``"module:attribute.path"``; ``pool_style`` says how that pool factory is called."""

    name: str
    package: str  # the import name whose absence means "not installed"
    extra: str  # the dsqlkit extra that installs it
    distribution: str  # for the version in the report
    is_async: bool
    libpq: bool
    query: Callable[[Any, str], Any]
    connect: Mapping[str, str]
    pool: Mapping[str, str]
    pool_style: str  # "threaded" | "psycopg_pool" | "asyncpg"
    cold_query: str  # the query as code, for the cold-start child process
    prepare: Callable[[Any], Any] = _same
    extra_kwargs: Mapping[str, Any] = field(default_factory=dict)
    raw_pool_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pool_methods(self) -> tuple[str, str, str]:
        """(take a connection, give it back, close the pool)."""
        return {
            "threaded": ("getconn", "putconn", "closeall"),
            "psycopg_pool": ("getconn", "putconn", "close"),
            "asyncpg": ("acquire", "release", "close"),
        }[self.pool_style]


DRIVERS: dict[str, Driver] = {
    "psycopg2": Driver(
        "psycopg2",
        "psycopg2",
        "psycopg2",
        "psycopg2-binary",
        is_async=False,
        libpq=True,
        query=_psycopg2_query,
        connect={
            "dsqlkit": "dsqlkit.psycopg2:connect",
            "raw": "psycopg2:connect",
            "official": "aurora_dsql_psycopg2:connect",
        },
        pool={
            "dsqlkit": "dsqlkit.psycopg2:AuroraDSQLThreadedConnectionPool",
            "raw": "psycopg2.pool:ThreadedConnectionPool",
            "official": "aurora_dsql_psycopg2:AuroraDSQLThreadedConnectionPool",
        },
        pool_style="threaded",
        cold_query="cur = c.cursor(); cur.execute(q); cur.fetchall()",
        prepare=_psycopg2_autocommit,
    ),
    "psycopg": Driver(
        "psycopg",
        "psycopg",
        "psycopg",
        "psycopg",
        is_async=False,
        libpq=True,
        query=_psycopg_query,
        connect={
            "dsqlkit": "dsqlkit.psycopg:connect",
            "raw": "psycopg:Connection.connect",
            "official": "aurora_dsql_psycopg:connect",
        },
        pool={
            "dsqlkit": "dsqlkit.psycopg:create_pool",
            "raw": "psycopg_pool:ConnectionPool",
            "official": "aurora_dsql_psycopg:create_pool",
        },
        pool_style="psycopg_pool",
        cold_query="c.execute(q).fetchall()",
        extra_kwargs={"autocommit": True},
    ),
    "psycopg_async": Driver(
        "psycopg_async",
        "psycopg",
        "psycopg",
        "psycopg",
        is_async=True,
        libpq=True,
        query=_psycopg_async_query,
        connect={
            "dsqlkit": "dsqlkit.psycopg:connect_async",
            "raw": "psycopg:AsyncConnection.connect",
            "official": "aurora_dsql_psycopg:DSQLAsyncConnection.connect",
        },
        pool={
            "dsqlkit": "dsqlkit.psycopg:create_async_pool",
            "raw": "psycopg_pool:AsyncConnectionPool",
            "official": "aurora_dsql_psycopg:create_async_pool",
        },
        pool_style="psycopg_pool",
        cold_query="await (await c.execute(q)).fetchall()",
        extra_kwargs={"autocommit": True},
    ),
    "asyncpg": Driver(
        "asyncpg",
        "asyncpg",
        "asyncpg",
        "asyncpg",
        is_async=True,
        libpq=False,
        query=_asyncpg_query,
        connect={
            "dsqlkit": "dsqlkit.asyncpg:connect",
            "raw": "asyncpg:connect",
            "official": "aurora_dsql_asyncpg:connect",
        },
        pool={
            "dsqlkit": "dsqlkit.asyncpg:create_pool",
            "raw": "asyncpg:create_pool",
            "official": "aurora_dsql_asyncpg:create_pool",
        },
        pool_style="asyncpg",
        cold_query="await c.fetch(q)",
        raw_pool_kwargs={"reset": _asyncpg_reset},
    ),
}


def resolve(entry: str) -> Any:
    """``"package.module:Attr.path"`` -> the object (imports the module)."""
    module_name, _, path = entry.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def driver_versions() -> dict[str, str]:
    """Installed versions of dsqlkit, the drivers and the official connector."""
    names = ["dsqlkit", *dict.fromkeys(d.distribution for d in DRIVERS.values())]
    names += ["psycopg-pool", OFFICIAL_DISTRIBUTION]
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# --- clients: one (driver, implementation) bound to a target -------------------------------------


async def _result(value: Any) -> Any:
    """Await ``value`` if the driver's call was async; sync drivers' results pass through."""
    return await value if inspect.isawaitable(value) else value


@dataclass
class Client:
    """One driver and implementation, bound to the connection arguments of a target."""

    driver: Driver
    implementation: str
    kwargs: dict[str, Any]
    connect_fn: Callable[..., Any]
    pool_fn: Callable[..., Any] | None
    pool_error: str | None = None

    async def connect(self) -> Any:
        return self.driver.prepare(await _result(self.connect_fn(**self.kwargs)))

    async def query(self, conn: Any, sql: str) -> None:
        await _result(self.driver.query(conn, sql))

    async def close(self, conn: Any) -> None:
        await _result(conn.close())

    async def open_pool(self, size: int) -> Any:
        """Create the pool with ``size`` connections open (min = max = size)."""
        if self.pool_fn is None:
            raise RuntimeError(self.pool_error or "no pool for this implementation")
        style = self.driver.pool_style
        if style == "threaded":
            return self.pool_fn(size, size, **self.kwargs)
        if style == "asyncpg":
            extra = self.driver.raw_pool_kwargs if self.implementation == "raw" else {}
            return await self.pool_fn(min_size=size, max_size=size, **self.kwargs, **extra)
        pool = self.pool_fn(kwargs=self.kwargs, min_size=size, max_size=size, open=False)
        # A bounded wait: psycopg_pool retries failed connections until its timeout.
        await _result(pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT))
        return pool

    async def close_pool(self, pool: Any) -> None:
        await _result(getattr(pool, self.driver.pool_methods[2])())

    async def lease(self, pool: Any, sql: str) -> tuple[float, float]:
        """Take a connection, run ``sql``, give it back: (take seconds, query seconds)."""
        take, give, _ = self.driver.pool_methods
        t0 = time.perf_counter()
        conn = self.driver.prepare(await _result(getattr(pool, take)()))
        t1 = time.perf_counter()
        await self.query(conn, sql)
        t2 = time.perf_counter()
        await _result(getattr(pool, give)(conn))
        return t1 - t0, t2 - t1

    def lease_sync(self, pool: Any, sql: str) -> tuple[float, float]:
        """The sync twin of :meth:`lease`, for sync drivers in worker threads."""
        take, give, _ = self.driver.pool_methods
        t0 = time.perf_counter()
        conn = self.driver.prepare(getattr(pool, take)())
        t1 = time.perf_counter()
        self.driver.query(conn, sql)
        t2 = time.perf_counter()
        getattr(pool, give)(conn)
        return t1 - t0, t2 - t1


def make_client(driver_name: str, implementation: str, target: Target) -> Client:
    """Bind a driver and implementation to ``target``. Raises :class:`Skip` for rows that do not
    apply here and ``RuntimeError`` (with the fix) for a driver that is not installed."""
    if driver_name not in DRIVERS or implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"unknown driver or implementation {driver_name!r}/{implementation!r}: drivers are "
            f"{', '.join(DRIVERS)}; implementations are {', '.join(IMPLEMENTATIONS)}"
        )
    driver = DRIVERS[driver_name]
    if importlib.util.find_spec(driver.package) is None:
        raise RuntimeError(
            f"{driver.package} is not installed: pip install 'dsqlkit[{driver.extra}]'"
        )
    if implementation == "official":
        _check_official(driver, target, _resolved_here())
        kwargs = target.official_kwargs(driver.libpq)
    elif implementation == "raw":
        kwargs = target.raw_kwargs(driver.libpq, target.raw_token())
    else:
        kwargs = target.dsqlkit_kwargs()
    kwargs.update(driver.extra_kwargs)
    connect_fn = resolve(driver.connect[implementation])
    try:
        pool_fn, pool_error = resolve(driver.pool[implementation]), None
    except (ImportError, AttributeError) as exc:
        pool_fn, pool_error = None, f"{driver.pool[implementation]} is not available: {exc}"
    return Client(driver, implementation, kwargs, connect_fn, pool_fn, pool_error)


def _resolved_here() -> dict[str, str]:
    """The names this process's resolver shim answers (none outside the benchmark's children)."""
    return resolver.parse_mapping(os.environ.get(resolver.ENVIRONMENT_VARIABLE, ""))


def _check_official(driver: Driver, target: Target, resolved: Mapping[str, str]) -> None:
    module = driver.connect["official"].partition(":")[0]
    if importlib.util.find_spec(module) is None:
        raise Skip(
            f"{OFFICIAL_DISTRIBUTION} is not installed (pip install {OFFICIAL_DISTRIBUTION})"
        )
    name = (target.dsql_host or "").lower()
    if not driver.libpq and target.hostaddr is not None and name not in resolved:
        raise Skip(
            "aurora_dsql_asyncpg dials the DSQL host name and asyncpg has no hostaddr: run it "
            "through run_benchmark, whose child processes resolve that name to the local endpoint"
        )


# --- patterns ---------------------------------------------------------------------------------


@dataclass
class Sample:
    """One round's timings, in milliseconds, and its wall time."""

    connect_ms: list[float] = field(default_factory=list)
    query_ms: list[float] = field(default_factory=list)
    wall_ms: float = 0.0

    def add(self, connect_s: float, query_s: float) -> None:
        self.connect_ms.append(connect_s * 1000)
        self.query_ms.append(query_s * 1000)


@dataclass
class PatternState:
    """What a row keeps between rounds: the reused connection or the pool."""

    connection: Any = None
    pool: Any = None
    pool_create_ms: float | None = None

    async def close(self, client: Client) -> None:
        connection, pool, self.connection, self.pool = self.connection, self.pool, None, None
        if connection is not None:
            await client.close(connection)
        if pool is not None:
            await client.close_pool(pool)


async def connect_each_time(
    client: Client, sql: str, iterations: int, concurrency: int, state: PatternState
) -> Sample:
    """Open, query, close, every iteration (concurrency does not apply)."""
    sample = Sample()
    start = time.perf_counter()
    for _ in range(iterations):
        t0 = time.perf_counter()
        conn = await client.connect()
        t1 = time.perf_counter()
        try:
            await client.query(conn, sql)
            t2 = time.perf_counter()
        finally:
            await client.close(conn)
        sample.add(t1 - t0, t2 - t1)
    sample.wall_ms = (time.perf_counter() - start) * 1000
    return sample


async def reuse_connection(
    client: Client, sql: str, iterations: int, concurrency: int, state: PatternState
) -> Sample:
    """One connection for every iteration; "connect" is the check a handler makes before use
    (connect only if there is none or it was closed)."""
    sample = Sample()
    start = time.perf_counter()
    for _ in range(iterations):
        t0 = time.perf_counter()
        if state.connection is None or _is_closed(state.connection):
            state.connection = await client.connect()
        t1 = time.perf_counter()
        await client.query(state.connection, sql)
        sample.add(t1 - t0, time.perf_counter() - t1)
    sample.wall_ms = (time.perf_counter() - start) * 1000
    return sample


def _is_closed(conn: Any) -> bool:
    closed = getattr(conn, "closed", None)
    if closed is None:  # asyncpg
        return bool(conn.is_closed())
    return bool(closed)


async def use_pool(
    client: Client, sql: str, iterations: int, concurrency: int, state: PatternState
) -> Sample:
    """The driver's pool, created once per row (its creation time is reported separately);
    ``concurrency`` leases in parallel per iteration; "connect" is the time to take a connection."""
    if state.pool is None:
        t0 = time.perf_counter()
        state.pool = await client.open_pool(concurrency)
        state.pool_create_ms = (time.perf_counter() - t0) * 1000
    sample = Sample()
    start = time.perf_counter()
    for _ in range(iterations):
        for take_s, query_s in await _leases(client, state.pool, sql, concurrency):
            sample.add(take_s, query_s)
    sample.wall_ms = (time.perf_counter() - start) * 1000
    return sample


async def _leases(
    client: Client, pool: Any, sql: str, concurrency: int
) -> list[tuple[float, float]]:
    if concurrency == 1:
        return [await client.lease(pool, sql)]
    if client.driver.is_async:
        return list(await asyncio.gather(*(client.lease(pool, sql) for _ in range(concurrency))))
    threads = (asyncio.to_thread(client.lease_sync, pool, sql) for _ in range(concurrency))
    return list(await asyncio.gather(*threads))


PatternFunction = Callable[[Client, str, int, int, PatternState], Awaitable[Sample]]
PATTERN_FUNCTIONS: dict[str, PatternFunction] = {
    "connect": connect_each_time,
    "reuse": reuse_connection,
    "pool": use_pool,
}


# --- cold start: a fresh process per measurement ------------------------------------------------

_COLD_START_SCRIPT = """\
import json, sys, time
kw = json.loads(sys.stdin.read())
q = kw.pop("__query__")
t0 = time.perf_counter()
import {module}
connect = {module}.{attribute}
t1 = time.perf_counter()
{body}
print(json.dumps({{"import": t1 - t0, "connect": t2 - t1, "query": t3 - t2}}))
"""
_SYNC_BODY = """\
c = connect(**kw)
t2 = time.perf_counter()
{query}
t3 = time.perf_counter()
c.close()
"""
_ASYNC_BODY = """\
import asyncio
async def main():
    c = await connect(**kw)
    t2 = time.perf_counter()
    {query}
    t3 = time.perf_counter()
    await c.close()
    return t2, t3
t2, t3 = asyncio.run(main())
"""


def cold_start_cases(
    drivers: tuple[str, ...], implementations: tuple[str, ...]
) -> list[tuple[str, str]]:
    """(driver, implementation) pairs of the cold-start table: dsqlkit and official only."""
    return [(d, i) for d in drivers for i in ("dsqlkit", "official") if i in implementations]


def cold_start_once(
    driver_name: str,
    implementation: str,
    sql: str,
    target: Target,
    model: ClientModel | None = None,
) -> dict[str, float]:
    """Run import + first connection + first query in a new Python process under ``model`` (the
    CPU share and resolver of a client); milliseconds of each, their total inside the process,
    and ``process`` (the parent's wall time, interpreter start included)."""
    model = model or ClientModel(resolve=target.resolve_mapping())
    driver = DRIVERS[driver_name]
    if implementation == "official":
        _check_official(driver, target, model.resolve)
        kwargs = target.official_kwargs(driver.libpq)
    else:
        kwargs = target.dsqlkit_kwargs()
    module, _, attribute = driver.connect[implementation].partition(":")
    body = _ASYNC_BODY if driver.is_async else _SYNC_BODY
    script = _COLD_START_SCRIPT.format(
        module=module, attribute=attribute, body=body.format(query=driver.cold_query)
    )
    payload = {**kwargs, **driver.extra_kwargs, "__query__": sql}
    done = run_python(["-c", script], model, stdin=json.dumps(payload), timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"cold-start process failed: {done.last_error_line()}")
    times = {name: seconds * 1000 for name, seconds in json.loads(done.stdout).items()}
    return {**times, "total": sum(times.values()), "process": done.wall_ms}


# --- errors -----------------------------------------------------------------------------------

_SIGNATURE = re.compile(r"(X-Amz-(?:Signature|Security-Token|Credential)=)[^&\s'\"]+")


def describe_error(exc: BaseException) -> str:
    """``Type: message`` on one line, with anything token-like removed."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return _SIGNATURE.sub(r"\1<redacted>", text)
