"""Defaults where dsqlkit differs from the official connector on purpose (README's migration table).

Pools are built without connecting (minimum size 0, or not opened) and their settings read.
"""

from __future__ import annotations

import inspect

import dsqlkit.asyncpg
import dsqlkit.psycopg
import dsqlkit.psycopg2
from dsqlkit import dsql as spec

LIFETIME = spec.CONNECTION_LIFETIME_SECONDS - spec.TRANSACTION_MAX_AGE_SECONDS  # 55 minutes
KWARGS = {"host": "localhost", "region": "us-east-1"}


def test_pool_max_lifetime_and_idle_defaults():
    pool = dsqlkit.psycopg.create_pool(kwargs=KWARGS)
    assert (pool.max_lifetime, pool.max_idle) == (LIFETIME, 600)
    threaded = dsqlkit.psycopg2.AuroraDSQLThreadedConnectionPool(0, 1, **KWARGS)
    assert threaded.max_lifetime == LIFETIME
    asyncpg_defaults = inspect.signature(dsqlkit.asyncpg.create_pool).parameters
    assert asyncpg_defaults["max_lifetime"].default == LIFETIME
    assert asyncpg_defaults["max_inactive_connection_lifetime"].default == 600
    # The official asyncpg pool opens 10 connections at once; dsqlkit's starts with one.
    assert asyncpg_defaults["min_size"].default == 1


def test_token_duration_default_is_the_sdks():
    from dsqlkit.config import resolve_params

    assert resolve_params(**KWARGS).token_duration_secs == spec.TOKEN_DEFAULT_EXPIRES == 900
