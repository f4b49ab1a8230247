"""dsqlkit.sqlalchemy against the local endpoint: sync (psycopg, psycopg2) and async (asyncpg,
psycopg) engines doing ORM work, and the OCC retry helper under a real conflict."""

from __future__ import annotations

import asyncio
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from tests.threads import run_in_threads

import dsqlkit.sqlalchemy as dsa
from dsqlkit import stats
from dsqlkit.retry import OCCRetryConfig


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "sa_accounts"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    owner: Mapped[str]
    balance: Mapped[int]


@pytest.fixture
def kwargs(dsql_clean_database, dsql_connect_kwargs):
    return dsql_connect_kwargs


def create_schema(engine: sa.Engine) -> None:
    Base.metadata.create_all(engine)  # one DDL statement: DSQL allows one per transaction


def app_name(conn: sa.Connection) -> str:
    return conn.exec_driver_sql("SHOW application_name").scalar_one()


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_sync_engine_orm_work(kwargs, driver):
    engine = dsa.create_engine(driver=driver, **kwargs)
    try:
        create_schema(engine)
        Session = sessionmaker(engine)
        dsa.run_transaction(
            Session,
            lambda s: s.add_all([Account(id=i, owner=f"o{i}", balance=100) for i in range(1, 4)]),
        )

        def pay(session):
            session.get(Account, 1).balance -= 30
            session.get(Account, 2).balance += 30

        dsa.run_transaction(Session, pay)
        with Session() as session:
            balances = session.scalars(sa.select(Account.balance).order_by(Account.id)).all()
        assert balances == [70, 130, 100]
        with engine.connect() as conn:
            assert app_name(conn).startswith(f"sqlalchemy:dsqlkit-{driver}/")
            level = conn.exec_driver_sql("SHOW transaction_isolation").scalar_one()
            assert level == "repeatable read"
    finally:
        engine.dispose()


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg_async"])
async def test_async_engine_orm_work(kwargs, driver):
    engine = dsa.create_async_engine(driver=driver, **kwargs)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        Session = async_sessionmaker(engine, expire_on_commit=False)

        async def add(session):
            session.add_all([Account(id=i, owner=f"o{i}", balance=100) for i in range(1, 4)])

        await dsa.arun_transaction(Session, add)

        async def pay(session):
            (await session.get(Account, 1)).balance -= 30
            (await session.get(Account, 3)).balance += 30

        await dsa.arun_transaction(Session, pay)
        async with Session() as session:
            result = await session.scalars(sa.select(Account.balance).order_by(Account.id))
            assert result.all() == [70, 100, 130]
        async with engine.connect() as conn:
            name = (await conn.exec_driver_sql("SHOW application_name")).scalar_one()
            assert name.startswith(f"sqlalchemy:dsqlkit-{driver}/")
    finally:
        await engine.dispose()


def test_run_transaction_retries_a_wrapped_occ_conflict(kwargs):
    """Two sessions read the counter before either writes: one loses with OC000 (wrapped in
    sqlalchemy.exc.OperationalError) and is re-run."""
    engine = dsa.create_engine(**kwargs, engine_options={"pool_size": 2})
    try:
        create_schema(engine)
        Session = sessionmaker(engine)
        dsa.run_transaction(Session, lambda s: s.add(Account(id=1, owner="c", balance=0)))
        barrier = threading.Barrier(2)
        attempts = []

        def increment(session):
            attempts.append(threading.get_ident())
            account = session.get(Account, 1)
            if attempts.count(threading.get_ident()) == 1:
                barrier.wait(timeout=30)
            account.balance += 1
            session.flush()

        stats.reset()
        errors = run_in_threads(
            lambda: dsa.run_transaction(Session, increment, retry=OCCRetryConfig(max_retries=10))
        )
        assert not errors
        assert len(attempts) >= 3 and stats.snapshot()["occ_retries"] >= 1
        with Session() as session:
            assert session.get(Account, 1).balance == 2
    finally:
        engine.dispose()


def test_run_transaction_does_not_retry_other_errors(kwargs):
    engine = dsa.create_engine(**kwargs)
    calls = []

    def fail(conn):
        calls.append(1)
        conn.exec_driver_sql("SELECT 1 / 0")

    try:
        with pytest.raises(sa.exc.DataError):
            dsa.run_transaction(engine, fail)
        assert calls == [1]
    finally:
        engine.dispose()


def test_bad_arguments_fail_at_creation(kwargs):
    with pytest.raises(ValueError, match="driver must be one of"):
        dsa.create_engine(driver="asyncpg", **kwargs)
    with pytest.raises(ValueError, match="pool_recycle must be between"):
        dsa.create_engine(**kwargs, engine_options={"pool_recycle": 7200})
    with pytest.raises(ValueError, match="password"):
        dsa.create_engine(**kwargs, password="x")


def test_async_helper_accepts_engine(kwargs):
    engine = dsa.create_async_engine(**kwargs)

    async def main():
        async def one(conn):
            return (await conn.exec_driver_sql("SELECT 1")).scalar_one()

        try:
            return await dsa.arun_transaction(engine, one)
        finally:
            await engine.dispose()

    assert asyncio.run(main()) == 1
