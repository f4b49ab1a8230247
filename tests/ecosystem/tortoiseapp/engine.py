"""Tortoise backend module (``"engine": "tests.ecosystem.tortoiseapp.engine"``)."""

from __future__ import annotations

from typing import Any

from tortoise.backends.asyncpg.client import AsyncpgDBClient

import dsqlkit.asyncpg


class DsqlkitAsyncpgClient(AsyncpgDBClient):
    """Tortoise's asyncpg client on :func:`dsqlkit.asyncpg.create_pool`."""

    async def create_pool(self, **kwargs: Any) -> Any:
        kwargs.pop("password", None)  # dsqlkit signs a token for every new connection
        kwargs.pop("loop", None)
        return await dsqlkit.asyncpg.create_pool(**kwargs)


client_class = DsqlkitAsyncpgClient
