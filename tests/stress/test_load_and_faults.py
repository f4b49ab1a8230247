"""Load and faults against a LocalEndpoint, with the money-transfer invariants checked after each.

Short versions run in the normal suite; ``-m stress`` runs the long ones (200 clients, minutes).
Only expected errors may appear: OCC conflicts under load (counted), and connection errors
while a fault is active. No client hangs (every operation is bounded: a timeout counts as
``hang``), the total never changes, nothing is half-applied or applied twice, no session leaks.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

import dsqlkit.asyncpg
from dsqlkit.local import LocalEndpoint, Quotas
from dsqlkit.local.wire import protocol as pg
from tests.security.clients import (
    assert_back_to,
    authenticated,
    baseline,
    read_messages,
    wait_for,
)
from tests.stress.workload import (
    Figures,
    LoadConfig,
    admin_connect,
    check_invariants,
    classify,
    create_schema,
    run_load,
)


@pytest.fixture(scope="module")
def ep() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(trust_environment=False) as endpoint, endpoint.use_environment():
        yield endpoint


def _run(ep: LocalEndpoint, config: LoadConfig, during: object = None) -> Figures:
    create_schema(ep, config)
    base = baseline(ep)
    figures = asyncio.run(run_load(ep, config, during=during))  # type: ignore[arg-type]
    print(figures.summary())
    check_invariants(ep, config, figures)
    assert_back_to(ep, base)
    return figures


def _only(figures: Figures, *kinds: str) -> None:
    unexpected = {k: v for k, v in figures.errors.items() if k not in kinds}
    samples = {k: figures.samples.get(k) for k in unexpected}
    assert not unexpected, f"unexpected errors: {samples}; {figures.summary()}"


def test_load_mixed_drivers(ep: LocalEndpoint) -> None:
    config = LoadConfig(clients=40, seconds=8)
    figures = _run(ep, config)
    _only(figures, "occ")
    assert figures.transfers > 100 and figures.reads > 10, figures.summary()
    assert set(figures.clients) == {"asyncpg", "psycopg", "psycopg2"}


@pytest.mark.stress
def test_load_stress(ep: LocalEndpoint) -> None:
    figures = _run(ep, LoadConfig(clients=200, seconds=180))
    _only(figures, "occ")


def _backend_outage(ep: LocalEndpoint, after: float, down: float) -> object:
    async def fault(figures: Figures) -> None:
        await asyncio.sleep(after)  # let the load run first (workload shaping, not a wait-to-pass)
        await asyncio.to_thread(ep.kill_backend)
        await asyncio.sleep(down)
        await asyncio.to_thread(ep.restart_backend)
        figures.commit_times.append(-time.monotonic())  # marks the restart

    return fault


def test_backend_killed_and_restarted_mid_load(ep: LocalEndpoint) -> None:
    config = LoadConfig(clients=20, seconds=9, op_timeout=10)
    figures = _run(ep, config, _backend_outage(ep, after=2.5, down=0.5))
    _only(figures, "occ", "connection")
    assert figures.errors["connection"] > 0, "the kill did not reach the clients"
    restarted = -min(t for t in figures.commit_times if t < 0)
    after = [t for t in figures.commit_times if t > restarted]
    assert after, f"no transfer committed after the restart: {figures.summary()}"


@pytest.mark.stress
def test_backend_killed_repeatedly_stress(ep: LocalEndpoint) -> None:
    async def faults(figures: Figures) -> None:
        for _ in range(5):
            await _backend_outage(ep, after=20, down=2)(figures)  # type: ignore[operator]

    figures = _run(ep, LoadConfig(clients=100, seconds=130, op_timeout=20), faults)
    _only(figures, "occ", "connection")


def test_connections_dropped_mid_transaction_roll_back(ep: LocalEndpoint) -> None:
    config = LoadConfig(clients=10, seconds=5)
    dropped: list[str] = []

    async def drop_mid_transaction(figures: Figures) -> None:
        kwargs = ep.connect_kwargs(rate_limit=None)
        for i in range(30):
            transfer_id = f"dropped-{uuid.uuid4().hex}"
            if i % 2:  # a raw client: the transaction's statements, then half a COMMIT
                await asyncio.to_thread(_drop_raw, ep, transfer_id)
                dropped.append(transfer_id)
                continue
            conn = await dsqlkit.asyncpg.connect(**kwargs)
            try:
                await conn.execute("BEGIN")
                await conn.execute(
                    "INSERT INTO transfers (id, src, dst, amount) VALUES ($1, 1, 2, 5)",
                    transfer_id,
                )
                await conn.execute("UPDATE accounts SET balance = balance - 5 WHERE id = 1")
            except Exception as exc:  # an OCC conflict with the load: nothing to drop
                assert classify(exc) == "occ", exc
                await conn.close()
                continue
            conn.terminate()  # the socket closed mid-transaction, no Terminate message
            dropped.append(transfer_id)

    _run(ep, config, drop_mid_transaction)
    with admin_connect(ep) as conn:
        found = conn.execute(
            "SELECT count(*) FROM transfers WHERE id = ANY(%s)", (dropped,)
        ).fetchone()
    assert len(dropped) >= 15 and found == (0,), f"dropped transactions applied: {found}"


def _drop_raw(ep: LocalEndpoint, transfer_id: str) -> None:
    sock = authenticated(ep)
    sock.sendall(
        pg.query(
            f"BEGIN; INSERT INTO transfers (id, src, dst, amount) VALUES ('{transfer_id}', 1, 2, 5)"
        )
    )
    read_messages(sock)
    sock.sendall(pg.query("UPDATE accounts SET balance = balance - 5 WHERE id = 1"))
    read_messages(sock)
    sock.sendall(pg.query("COMMIT")[:7])  # the COMMIT never arrives whole
    sock.close()


@pytest.mark.parametrize("seconds", [pytest.param(6, id="ci")])
def test_lifetime_expiring_mid_transaction(seconds: float) -> None:
    # A 1 s connection lifetime and a pause inside each transaction: the endpoint ends sessions
    # mid-transaction; clients retry the same transfer (same id) on a new connection.
    with (
        LocalEndpoint(trust_environment=False, quotas=Quotas(connection_lifetime_seconds=1)) as ep,
        ep.use_environment(),
    ):
        config = LoadConfig(
            clients=12, seconds=seconds, pause_in_transaction=0.2, retry_same_transfer=True
        )
        figures = _run(ep, config)
        _only(figures, "occ", "connection")
        assert figures.mid_transaction > 0, f"no lifetime expiry mid-transaction: {figures}"
        assert figures.transfers > 0
        wait_for(lambda: ep.stats().client_sessions_open == 0, "sessions closed")
