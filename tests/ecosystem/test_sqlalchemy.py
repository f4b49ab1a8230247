"""SQLAlchemy 2.x on ``dsqlkit local`` through ``dsqlkit.sqlalchemy``'s engines, as applications use it.

A real pool of several connections: DDL (``create_all`` / ``drop_all``, in AUTOCOMMIT: DSQL runs one
DDL per transaction) and DML alternate between pooled connections; ORM sessions with relationships,
Core inserts with RETURNING, sequences and identity columns with ``CACHE 65536``, and the async
engines on asyncpg and psycopg. Shared endpoint, DSQL's default quotas.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

import dsqlkit.sqlalchemy as dsa
from dsqlkit import dsql as spec
from dsqlkit.retry import OCCRetryConfig

POOL = {"pool_size": 3, "max_overflow": 0}
#: The official SQLAlchemy adapter's assertion on a bad explicit CACHE.
DSQL_CACHE_TEXT = re.compile(r"CACHE.*must be greater than or equal to.*65536.*or equal to 1")


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "eco_customers"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str]
    orders: Mapped[list[Order]] = relationship(back_populates="customer", order_by="Order.total")


class Order(Base):
    __tablename__ = "eco_orders"
    id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.Identity(cache=spec.MIN_LARGE_CACHE), primary_key=True
    )
    customer_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("eco_customers.id"))
    total: Mapped[int]
    customer: Mapped[Customer] = relationship(back_populates="orders")


TICKETS = sa.Sequence("eco_ticket_seq", cache=spec.MIN_LARGE_CACHE, metadata=Base.metadata)


class Ticket(Base):
    __tablename__ = "eco_tickets"
    number: Mapped[int] = mapped_column(
        sa.BigInteger, TICKETS, server_default=TICKETS.next_value(), primary_key=True
    )
    note: Mapped[str]


TABLES = {"eco_customers", "eco_orders", "eco_tickets"}


@pytest.fixture
def engine(dsql_clean_database: Any, dsql_connect_kwargs: dict[str, Any]) -> Any:
    engine = dsa.create_engine(driver="psycopg", engine_options=dict(POOL), **dsql_connect_kwargs)
    yield engine
    engine.dispose()


def autocommit(engine: sa.Engine) -> sa.Engine:
    """The engine's pool, each statement its own transaction: how DDL runs on DSQL."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def test_create_all_and_drop_all_across_pooled_connections(engine: sa.Engine) -> None:
    with engine.connect() as held:  # a pooled connection, checked out before the DDL
        Base.metadata.create_all(autocommit(engine))  # another pooled connection
        assert engine.pool.checkedout() == 1 and engine.pool.checkedin() >= 1  # type: ignore[attr-defined]
        # DML on the held connection, right after another connection's DDL committed: it starts
        # after the change, so DSQL gives it the new catalog (no OC001).
        held.execute(sa.insert(Customer.__table__).values(id=uuid.uuid4(), name="held"))
        held.commit()
        with engine.connect() as other:
            assert other.execute(sa.select(sa.func.count()).select_from(Customer)).scalar() == 1
            other.execute(sa.text("ALTER TABLE eco_customers ADD COLUMN city text"))
            other.commit()
        held.execute(sa.text("UPDATE eco_customers SET city = 'Oslo'"))
        held.commit()
        assert held.execute(sa.text("SELECT city FROM eco_customers")).scalar() == "Oslo"
    assert set(sa.inspect(engine).get_table_names()) >= TABLES
    Base.metadata.drop_all(autocommit(engine))
    assert not TABLES & set(sa.inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('eco_ticket_seq')")).scalar() is None


def test_orm_session_core_returning_identity_and_sequence(engine: sa.Engine) -> None:
    Base.metadata.create_all(autocommit(engine))
    Session = sessionmaker(engine)

    def place(session: Any) -> uuid.UUID:
        ada = Customer(name="Ada", orders=[Order(total=30), Order(total=10)])
        session.add(ada)
        session.flush()
        return ada.id

    ada_id = dsa.run_transaction(Session, place)
    with Session() as session:
        ada = session.get(Customer, ada_id)
        assert ada is not None and [o.total for o in ada.orders] == [10, 30]
        assert all(isinstance(o.id, int) and o.id > 0 for o in ada.orders)

    orders = Order.__table__
    with engine.begin() as conn:
        rows = conn.execute(
            sa.insert(orders).returning(orders.c.id, orders.c.total),
            [{"customer_id": ada_id, "total": t} for t in (5, 6, 7)],
        ).all()
    assert sorted(total for _, total in rows) == [5, 6, 7]
    assert len({order_id for order_id, _ in rows}) == 3
    with engine.begin() as conn:
        tickets = conn.execute(
            sa.insert(Ticket.__table__).returning(Ticket.__table__.c.number),
            [{"note": "a"}, {"note": "b"}],
        ).scalars()
        assert sorted(tickets) == [1, 2]
        assert conn.execute(TICKETS.next_value()).scalar() == 3
    with engine.connect() as conn:
        cache = conn.execute(
            sa.text("SELECT cache_size FROM pg_sequences WHERE sequencename = 'eco_ticket_seq'")
        ).scalar()
        assert cache == spec.MIN_LARGE_CACHE


def test_run_transaction_retries_an_occ_conflict(engine: sa.Engine) -> None:
    Base.metadata.create_all(autocommit(engine))
    Session = sessionmaker(engine)
    with engine.begin() as conn:
        cid = conn.execute(
            sa.insert(Customer.__table__)
            .values(id=uuid.uuid4(), name="v0")
            .returning(sa.text("id"))
        ).scalar_one()
    seen: list[str] = []

    def rename(session: Any) -> None:
        customer = session.get(Customer, cid)
        seen.append(customer.name)
        if len(seen) == 1:  # another pooled connection commits a change to the row meanwhile
            with engine.begin() as other:
                other.execute(
                    sa.text("UPDATE eco_customers SET name = 'other' WHERE id = :i"), {"i": cid}
                )
        customer.name = customer.name + "+1"

    dsa.run_transaction(Session, rename, retry=OCCRetryConfig(max_retries=3))
    assert seen == ["v0", "other"]
    with Session() as session:
        assert session.get(Customer, cid).name == "other+1"  # type: ignore[union-attr]


def test_refused_sequences_are_data_errors(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.DataError) as caught:
        sa.Sequence("eco_bad_cache", cache=1000).create(autocommit(engine))
    assert DSQL_CACHE_TEXT.search(str(caught.value.orig))
    bad_identity = sa.Table(
        "eco_bad_identity",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, sa.Identity(cache=1000), primary_key=True),
    )
    with pytest.raises(sa.exc.DataError) as caught:
        bad_identity.create(autocommit(engine))
    assert DSQL_CACHE_TEXT.search(str(caught.value.orig))
    # The official auroradsql dialect (dsqlkit's engines use it) makes an INTEGER sequence BIGINT.
    sa.Sequence("eco_int_seq", data_type=sa.Integer, cache=65536).create(autocommit(engine))
    with engine.connect() as conn:
        kind = (
            "SELECT data_type FROM information_schema.sequences WHERE sequence_name = 'eco_int_seq'"
        )
        assert conn.exec_driver_sql(kind).scalar() == "bigint"
    assert not {"eco_bad_identity"} & set(sa.inspect(engine).get_table_names())


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg_async"])
def test_async_engine(
    dsql_clean_database: Any, dsql_connect_kwargs: dict[str, Any], driver: str
) -> None:
    async def run() -> None:
        aengine = dsa.create_async_engine(
            driver=driver, engine_options=dict(POOL), **dsql_connect_kwargs
        )
        try:
            async with aengine.execution_options(isolation_level="AUTOCOMMIT").connect() as ddl:
                await ddl.run_sync(Base.metadata.create_all)
            Session = async_sessionmaker(aengine, expire_on_commit=False)

            async def place(session: Any) -> uuid.UUID:
                grace = Customer(name="Grace", orders=[Order(total=3), Order(total=4)])
                session.add(grace)
                await session.flush()
                return grace.id

            gid = await dsa.arun_transaction(Session, place)
            async with Session() as session:
                totals = (
                    await session.scalars(
                        sa.select(Order.total).where(Order.customer_id == gid).order_by(Order.total)
                    )
                ).all()
                assert totals == [3, 4]
            async with aengine.begin() as conn:
                numbers = (
                    await conn.execute(
                        sa.insert(Ticket.__table__).returning(Ticket.__table__.c.number),
                        [{"note": "x"}, {"note": "y"}, {"note": "z"}],
                    )
                ).scalars()
                assert sorted(numbers) == [1, 2, 3]
            async with aengine.execution_options(isolation_level="AUTOCOMMIT").connect() as ddl:
                await ddl.run_sync(Base.metadata.drop_all)
                names = await ddl.run_sync(lambda c: sa.inspect(c).get_table_names())
            assert not TABLES & set(names)
        finally:
            await aengine.dispose()

    asyncio.run(run())
