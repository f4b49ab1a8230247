"""A money-transfer workload over the three dsqlkit connectors, with its invariants.

Shared by ``tests/stress`` (short runs in the suite, long ones under ``-m stress``) and
``benchmarks/stress.py`` (figures). Each client runs on one asyncio loop: asyncpg and psycopg
async connections natively, psycopg2 through ``asyncio.to_thread``. A client loops until the
deadline: mostly transfers (INSERT the transfer's unique id, debit, credit: one transaction, with
the connector's OCC retry), sometimes a read of the total, which snapshot isolation keeps constant.

Afterwards :func:`check_invariants` proves through a superuser connection to PostgreSQL that the
total is unchanged, that every account's balance is exactly its initial balance plus the transfers
recorded (nothing half-applied), that no transfer id appears twice (nothing applied twice), and
that every transfer a client saw committed is there.

Example::

    figures = asyncio.run(run_load(ep, LoadConfig(clients=50, seconds=10)))
    check_invariants(ep, LoadConfig(), figures)
    print(figures.summary())
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import psycopg
import psycopg2

import dsqlkit.asyncpg
import dsqlkit.psycopg
import dsqlkit.psycopg2
from dsqlkit.local import LocalEndpoint
from dsqlkit.retry import OCCRetryConfig, is_occ_error, sqlstate

DRIVERS = ("asyncpg", "psycopg", "psycopg2")
#: Patient OCC retry: transfers between few accounts conflict often under load.
RETRY = OCCRetryConfig(max_retries=8, base_delay_ms=2, max_delay_ms=100)
#: Errors that mean "the connection is gone" (backend killed, lifetime, dropped).
_CONNECTION_ERRORS = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    ConnectionError,
    OSError,
)


@dataclass(frozen=True)
class LoadConfig:
    """How many clients of which driver, for how long, on how many accounts."""

    clients: int = 50
    seconds: float = 10.0
    accounts: int = 100
    initial_balance: int = 1_000
    #: Shares of the clients per driver (the rest are asyncpg: light on a 2-core machine).
    psycopg_share: float = 0.15
    psycopg2_share: float = 0.05
    read_share: float = 0.2
    #: An operation taking longer than this is counted as a hang.
    op_timeout: float = 15.0
    #: Pause between the debit and the credit (widens the window for faults mid-transaction).
    pause_in_transaction: float = 0.0
    #: After a connection error, retry the same transfer (same id) on a new connection.
    retry_same_transfer: bool = False

    def drivers(self) -> list[str]:
        n_pg = round(self.clients * self.psycopg_share)
        n_pg2 = round(self.clients * self.psycopg2_share)
        return (
            ["psycopg"] * n_pg + ["psycopg2"] * n_pg2 + ["asyncpg"] * (self.clients - n_pg - n_pg2)
        )


@dataclass
class Figures:
    """What a run did: counts by outcome, errors by kind, the transfers clients saw committed."""

    clients: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    transfers: int = 0
    reads: int = 0
    bad_totals: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    #: The first error of each kind, for the report (``repr``, cut).
    samples: dict[str, str] = field(default_factory=dict)
    committed: set[str] = field(default_factory=set)
    #: Connection errors that struck after the transaction had begun.
    mid_transaction: int = 0
    #: monotonic time of each committed transfer (to show progress after a fault).
    commit_times: list[float] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.transfers / self.seconds if self.seconds else 0.0
        errors = ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none"
        clients = ", ".join(f"{k}={v}" for k, v in sorted(self.clients.items()))
        return (
            f"clients {sum(self.clients.values())} ({clients}), {self.seconds:.1f}s: "
            f"{self.transfers} transfers ({rate:.0f}/s), {self.reads} reads, "
            f"bad totals {self.bad_totals}, errors: {errors}"
        )


@dataclass(frozen=True)
class Transfer:
    id: str
    src: int
    dst: int
    amount: int


# --- schema and invariants ---------------------------------------------------------------------

_SCHEMA = (
    "DROP TABLE IF EXISTS accounts",
    "DROP TABLE IF EXISTS transfers",
    "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)",
    # No unique constraint on id on purpose: a transfer applied twice must show as count 2.
    "CREATE TABLE transfers (id text NOT NULL, src int NOT NULL, dst int NOT NULL,"
    " amount int NOT NULL, seq uuid PRIMARY KEY DEFAULT gen_random_uuid())",
)


def admin_connect(ep: LocalEndpoint) -> psycopg.Connection[Any]:
    """A superuser connection straight to PostgreSQL (the checks bypass the endpoint)."""
    return psycopg.connect(ep.backend.dsn(), autocommit=True)


def create_schema(ep: LocalEndpoint, config: LoadConfig) -> None:
    with admin_connect(ep) as conn:
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO accounts SELECT g, %s FROM generate_series(1, %s) g",
            (config.initial_balance, config.accounts),
        )
        conn.execute("GRANT ALL ON accounts, transfers TO PUBLIC")


def check_invariants(ep: LocalEndpoint, config: LoadConfig, figures: Figures) -> None:
    """Raise AssertionError if money appeared, vanished, or a transfer was half/doubly applied."""
    with admin_connect(ep) as conn:
        total = conn.execute("SELECT sum(balance) FROM accounts").fetchone()
        assert total == (config.accounts * config.initial_balance,), f"total changed: {total}"
        wrong = conn.execute(
            "SELECT a.id FROM accounts a WHERE a.balance <> %s"
            " - coalesce((SELECT sum(amount) FROM transfers WHERE src = a.id), 0)"
            " + coalesce((SELECT sum(amount) FROM transfers WHERE dst = a.id), 0)",
            (config.initial_balance,),
        ).fetchall()
        assert not wrong, f"balances that do not match their transfers: {wrong[:5]}"
        twice = conn.execute(
            "SELECT id, count(*) FROM transfers GROUP BY id HAVING count(*) > 1"
        ).fetchall()
        assert not twice, f"transfers applied more than once: {twice[:5]}"
        present = {row[0] for row in conn.execute("SELECT id FROM transfers").fetchall()}
    missing = figures.committed - present
    assert not missing, f"{len(missing)} transfers seen committed are missing"
    assert figures.bad_totals == 0, f"{figures.bad_totals} reads saw a wrong total"


# --- one client ----------------------------------------------------------------------------------


class Client:
    """One connection of one driver; ``transfer`` and ``total`` are its two operations."""

    def __init__(self, driver: str, kwargs: dict[str, Any], config: LoadConfig) -> None:
        self.driver = driver
        self.kwargs = kwargs
        self.config = config
        self.conn: Any = None
        self.began = False  # the current transaction got past BEGIN

    async def connect(self) -> None:
        if self.driver == "asyncpg":
            self.conn = await dsqlkit.asyncpg.connect(**self.kwargs)
        elif self.driver == "psycopg":
            self.conn = await dsqlkit.psycopg.connect_async(**self.kwargs, autocommit=True)
        else:
            self.conn = await asyncio.to_thread(dsqlkit.psycopg2.connect, **self.kwargs)
            self.conn.autocommit = True

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if self.driver == "psycopg2":
                await asyncio.to_thread(conn.close)
            elif self.driver == "asyncpg":
                conn.terminate() if conn.is_closed() else await conn.close(timeout=5)
            else:
                await conn.close()
        except Exception:  # closing a broken connection: nothing more to do
            pass

    def is_broken(self) -> bool:
        """Whether the driver considers the connection closed."""
        if self.conn is None:
            return True
        if self.driver == "asyncpg":
            return bool(self.conn.is_closed())
        return bool(self.conn.closed)

    async def transfer(self, t: Transfer) -> None:
        pause = self.config.pause_in_transaction
        sql = (
            "INSERT INTO transfers (id, src, dst, amount) VALUES ({0}, {1}, {2}, {3})",
            "UPDATE accounts SET balance = balance - {0} WHERE id = {1}",
            "UPDATE accounts SET balance = balance + {0} WHERE id = {1}",
        )
        # Placeholders in textual order: psycopg's %s are positional.
        rows = ((t.id, t.src, t.dst, t.amount), (t.amount, t.src), (t.amount, t.dst))
        if self.driver == "asyncpg":
            marks = [s.format(*(f"${i + 1}" for i in range(4))) for s in sql]

            async def work_asyncpg(conn: Any) -> None:
                self.began = True
                for i, (statement, args) in enumerate(zip(marks, rows, strict=True)):
                    await conn.execute(statement, *args)
                    if i == 1 and pause:
                        await asyncio.sleep(pause)

            await dsqlkit.asyncpg.transaction(self.conn, work_asyncpg, retry=RETRY)
        elif self.driver == "psycopg":
            marks = [s.format(*["%s"] * 4) for s in sql]

            async def work_psycopg(conn: Any) -> None:
                self.began = True
                for i, (statement, args) in enumerate(zip(marks, rows, strict=True)):
                    await conn.execute(statement, args)
                    if i == 1 and pause:
                        await asyncio.sleep(pause)

            await dsqlkit.psycopg.atransaction(self.conn, work_psycopg, retry=RETRY)
        else:
            marks = [s.format(*["%s"] * 4) for s in sql]

            def work_psycopg2(conn: Any) -> None:
                self.began = True
                with conn.cursor() as cur:
                    for i, (statement, args) in enumerate(zip(marks, rows, strict=True)):
                        cur.execute(statement, args)
                        if i == 1 and pause:
                            time.sleep(pause)

            await asyncio.to_thread(
                dsqlkit.psycopg2.transaction, self.conn, work_psycopg2, retry=RETRY
            )

    async def total(self) -> int:
        query = "SELECT sum(balance) FROM accounts"
        if self.driver == "asyncpg":
            return int(await self.conn.fetchval(query))
        if self.driver == "psycopg":
            row = await (await self.conn.execute(query)).fetchone()
            return int(row[0])

        def read() -> int:
            with self.conn.cursor() as cur:
                cur.execute(query)
                return int(cur.fetchone()[0])

        return await asyncio.to_thread(read)


def classify(exc: BaseException) -> str:
    """An error's kind for the figures: occ, connection, timeout, or other:<type>:<sqlstate>."""
    if isinstance(exc, asyncio.TimeoutError):
        return "hang"
    if is_occ_error(exc):
        return "occ"
    if isinstance(exc, _CONNECTION_ERRORS):
        return "connection"
    return f"other:{type(exc).__name__}:{sqlstate(exc)}"


async def _bounded(step: Awaitable[Any], timeout: float) -> Any:
    return await asyncio.wait_for(step, timeout)


async def run_client(
    client: Client, config: LoadConfig, figures: Figures, deadline: float, rng: random.Random
) -> None:
    """Loop transfers and reads until ``deadline``; count every outcome, never raise."""
    pending: Transfer | None = None
    total = config.accounts * config.initial_balance
    while time.monotonic() < deadline:
        client.began = False
        try:
            if client.conn is None:
                await _bounded(client.connect(), config.op_timeout)
            if pending is None and rng.random() < config.read_share:
                if await _bounded(client.total(), config.op_timeout) != total:
                    figures.bad_totals += 1
                figures.reads += 1
                continue
            if pending is None:
                src, dst = rng.sample(range(1, config.accounts + 1), 2)
                pending = Transfer(uuid.uuid4().hex, src, dst, rng.randint(1, 50))
            await _bounded(client.transfer(pending), config.op_timeout)
            figures.committed.add(pending.id)
            figures.commit_times.append(time.monotonic())
            figures.transfers += 1
            pending = None
        except Exception as exc:
            kind = classify(exc)
            if kind.startswith("other:") and client.is_broken():
                # e.g. asyncpg's InternalClientError after an unsolicited FATAL: the connection
                # is gone, whatever the driver calls the error.
                kind = "connection"
            figures.errors[kind] += 1
            figures.samples.setdefault(kind, repr(exc)[:300])
            if kind == "connection" and client.began:
                figures.mid_transaction += 1
            if kind != "occ":
                await client.close()
                if not (kind == "connection" and config.retry_same_transfer):
                    pending = None
            else:
                pending = None  # retries exhausted: the transfer was rolled back, give it up
    await client.close()


async def run_load(
    ep: LocalEndpoint,
    config: LoadConfig,
    *,
    during: Callable[[Figures], Awaitable[None]] | None = None,
    seed: int = 7,
) -> Figures:
    """Run ``config.clients`` clients for ``config.seconds``; ``during`` runs alongside
    (fault injection). The environment must hold the endpoint's credentials
    (``ep.use_environment()``)."""
    figures = Figures()
    kwargs = ep.connect_kwargs(rate_limit=None)
    clients = [Client(driver, kwargs, config) for driver in config.drivers()]
    figures.clients.update(c.driver for c in clients)
    # psycopg2 clients each hold a thread for their calls: enough threads for all of them.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=figures.clients["psycopg2"] + 4)
    )
    started = time.monotonic()
    deadline = started + config.seconds
    tasks = [
        run_client(c, config, figures, deadline, random.Random(seed + i))
        for i, c in enumerate(clients)
    ]
    if during is not None:
        tasks.append(during(figures))
    await asyncio.gather(*tasks)
    figures.seconds = time.monotonic() - started
    return figures
