"""Tortoise ORM with dsqlkit's asyncpg pools, on the official adapter (aurora-dsql-tortoise-orm).

The official adapter's client (its DSQL schema generator: UUID keys, ``CREATE INDEX ASYNC``, one
DDL per statement) with its pool created by :func:`dsqlkit.asyncpg.create_pool` (local tokens,
TLS from the arguments or libpq's environment, backoff, rate limit, max lifetime)::

    await Tortoise.init(config={
        "connections": {"default": {
            "engine": "dsqlkit.tortoise.asyncpg",
            "credentials": {"host": "<id>.dsql.us-east-1.on.aws", "user": "admin",
                            "region": "us-east-1"},
        }},
        "apps": {"models": {"models": ["app.models"]}},
    })

Install with ``pip install 'dsqlkit[tortoise]'``. The official adapter's module imports the
official connector (and so botocore) when Tortoise loads it; dsqlkit never calls it.
"""
