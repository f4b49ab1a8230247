"""dsqlkit's SQLAlchemy engines on the official ``auroradsql`` dialect, against the local endpoint.

The dialect's DDL (``CREATE INDEX ASYNC``: DSQL refuses a synchronous CREATE INDEX) comes from
aurora-dsql-sqlalchemy; every connection from dsqlkit's connect (its application name says so).
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

import dsqlkit.sqlalchemy as dsa


def _metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    table = sa.Table(
        "adapter_items",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
    )
    sa.Index("adapter_items_name", table.c.name)
    return metadata


def _record(engine: Any) -> list[str]:
    statements: list[str] = []
    sa.event.listen(
        engine, "before_cursor_execute", lambda conn, cur, sql, *a: statements.append(sql)
    )
    return statements


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_sync_engine_uses_the_official_dialect_and_dsqlkit_connect(
    dsql_clean_database, dsql_connect_kwargs, driver
):
    engine = dsa.create_engine(driver=driver, **dsql_connect_kwargs)
    statements = _record(engine)
    metadata = _metadata()
    try:
        assert engine.dialect.name == "auroradsql" and engine.dialect.driver == driver
        metadata.create_all(engine)
        assert any(s.startswith("CREATE INDEX ASYNC adapter_items_name") for s in statements)
        # The index builds in the background (a DSQL job): writes meanwhile may meet OCC.
        dsa.run_transaction(
            engine,
            lambda conn: conn.execute(
                metadata.tables["adapter_items"].insert(), [{"id": 1, "name": "a"}]
            ),
        )
        with engine.connect() as conn:
            name = conn.exec_driver_sql("SHOW application_name").scalar_one()
            assert name.startswith(f"sqlalchemy:dsqlkit-{driver}/")
            assert (
                conn.execute(
                    sa.select(sa.func.count()).select_from(metadata.tables["adapter_items"])
                ).scalar()
                == 1
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg_async"])
async def test_async_engine_uses_the_official_dialect_and_dsqlkit_connect(
    dsql_clean_database, dsql_connect_kwargs, driver
):
    engine = dsa.create_async_engine(driver=driver, **dsql_connect_kwargs)
    statements = _record(engine.sync_engine)
    metadata = _metadata()
    try:
        assert engine.dialect.name == "auroradsql" and engine.dialect.driver == driver
        async with engine.connect() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.commit()
        assert any(s.startswith("CREATE INDEX ASYNC adapter_items_name") for s in statements)
        await dsa.arun_transaction(
            engine,
            lambda conn: conn.execute(
                metadata.tables["adapter_items"].insert(), [{"id": 1, "name": "a"}]
            ),
        )
        async with engine.connect() as conn:
            name = (await conn.exec_driver_sql("SHOW application_name")).scalar_one()
            assert name.startswith(f"sqlalchemy:dsqlkit-{driver}/")
    finally:
        await engine.dispose()


def test_plain_url_with_the_registered_async_dialect_resolves():
    from sqlalchemy.dialects import registry

    from dsqlkit._sqlalchemy_dialects import AuroraDSQLDialect_asyncpg, register

    register()
    assert registry.load("auroradsql.asyncpg") is AuroraDSQLDialect_asyncpg
