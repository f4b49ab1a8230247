"""A Tortoise ORM app for the ecosystem suite, and the engine that runs it on dsqlkit's asyncpg pool.

Tortoise's own asyncpg client opens a raw ``asyncpg.Pool``, whose reset on release
(``pg_advisory_unlock_all()``, ``UNLISTEN *``) DSQL refuses; ``engine`` gives it dsqlkit's pool
(IAM token per connection, a reset DSQL accepts), as the official Tortoise adapter does with the
official connector.
"""
