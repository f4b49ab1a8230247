"""Tortoise ORM on ``dsqlkit local`` through dsqlkit's asyncpg pool (``tortoiseapp.engine``).

Schema generation sends all CREATE TABLEs as one script, which DSQL refuses (one DDL per
transaction); applied one statement at a time it works. Then CRUD with a relation, a transaction
re-run on an OCC conflict, and the pool's connections told apart by ``sys.current_session_id()``,
as the official Tortoise adapter's pool tests do.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from tortoise import Tortoise
from tortoise.transactions import in_transaction
from tortoise.utils import get_schema_sql

import dsqlkit.asyncpg
from dsqlkit import dsql as spec
from dsqlkit.retry import OCCRetryConfig, arun_with_occ_retry
from tests.ecosystem.tortoiseapp.models import Player, Team

POOL_SIZE = 3


async def init(connect_kwargs: dict[str, Any]) -> None:
    credentials = {**connect_kwargs, "database": spec.DATABASE, "maxsize": POOL_SIZE}
    await Tortoise.init(
        config={
            "connections": {
                "default": {
                    "engine": "tests.ecosystem.tortoiseapp.engine",
                    "credentials": credentials,
                }
            },
            "apps": {"eco": {"models": ["tests.ecosystem.tortoiseapp.models"]}},
        }
    )


async def create_schema() -> None:
    """Tortoise's script is refused as DSQL would; its statements one by one are accepted."""
    with pytest.raises(asyncpg.PostgresError) as caught:
        await Tortoise.generate_schemas()
    assert (caught.value.sqlstate, caught.value.args[0]) == (
        spec.MULTIPLE_DDL.sqlstate,
        spec.MULTIPLE_DDL.message,
    )
    conn = Tortoise.get_connection("default")
    statements = get_schema_sql(conn, safe=True).rstrip(";").split(";\n")
    assert len(statements) == 2
    for statement in statements:
        await conn.execute_script(statement)


async def other_writer(connect_kwargs: dict[str, Any], team_id: Any) -> None:
    # Its own connection: inside in_transaction() Tortoise routes every query to the transaction.
    conn = await dsqlkit.asyncpg.connect(**connect_kwargs)
    try:
        await conn.execute("UPDATE eco_tortoise_team SET score = 10 WHERE id = $1", team_id)
    finally:
        await conn.close()


def test_tortoise_schema_crud_occ_retry_and_pool_sessions(
    dsql_clean_database: Any, dsql_connect_kwargs: dict[str, Any]
) -> None:
    async def run() -> None:
        await init(dsql_connect_kwargs)
        try:
            await create_schema()
            reds = await Team.create(name="reds")
            await Player.bulk_create([Player(name=f"p{i}", team=reds) for i in range(5)])
            assert await Player.filter(team=reds).count() == 5
            assert sorted(await reds.players.all().values_list("name", flat=True)) == [
                f"p{i}" for i in range(5)
            ]
            await Player.filter(name="p0").delete()
            assert await Team.filter(players__name="p1").first() == reds

            seen: list[int] = []

            async def score() -> None:
                async with in_transaction() as tx:
                    team = await Team.get(id=reds.id).using_db(tx)
                    seen.append(team.score)
                    if len(seen) == 1:  # another client commits a change to the row meanwhile
                        await other_writer(dsql_connect_kwargs, reds.id)
                    team.score += 1
                    await team.save(using_db=tx, update_fields=["score"])

            await arun_with_occ_retry(score, OCCRetryConfig(max_retries=3))
            assert seen == [0, 10]
            assert (await Team.get(id=reds.id)).score == 11

            # Two transactions at once, each in its own task (nested ones would be SAVEPOINTs).
            both_in = asyncio.Barrier(2)

            async def session_id() -> str:
                async with in_transaction() as tx:
                    await both_in.wait()  # both connections are held now
                    rows = await tx.execute_query_dict("SELECT sys.current_session_id() AS id")
                    return str(rows[0]["id"])

            ids = await asyncio.gather(session_id(), session_id())
            assert len(set(ids)) == 2 and all(spec.SESSION_ID.match(i) for i in ids)
        finally:
            await Tortoise.close_connections()

    asyncio.run(run())
