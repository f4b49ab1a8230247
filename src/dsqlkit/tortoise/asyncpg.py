"""Tortoise engine ``dsqlkit.tortoise.asyncpg`` (see :mod:`dsqlkit.tortoise`)."""

from __future__ import annotations

from typing import Any

from aurora_dsql_tortoise.asyncpg import AuroraDSQLAsyncpgClient
from aurora_dsql_tortoise.common.config import DSQL_CONNECTOR_PARAMS

import dsqlkit.asyncpg


class DsqlkitAsyncpgClient(AuroraDSQLAsyncpgClient):  # type: ignore[misc]
    """aurora-dsql-tortoise-orm's asyncpg client, its pool from dsqlkit.asyncpg.create_pool."""

    async def create_pool(self, **kwargs: Any) -> Any:
        for key in DSQL_CONNECTOR_PARAMS:  # the connector's own settings, given as extras
            if key not in kwargs and key in self.extra:
                kwargs[key] = self.extra[key]
        kwargs.pop("loop", None)  # asyncpg's deprecated argument: the running loop is used
        return await dsqlkit.asyncpg.create_pool(None, **kwargs)


#: What Tortoise looks up in an engine module.
client_class = DsqlkitAsyncpgClient
