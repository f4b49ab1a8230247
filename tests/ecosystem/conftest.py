"""The ecosystem suite: real frameworks (Django, SQLAlchemy, Tortoise, asyncpg and psycopg_pool
pools) drive ``dsqlkit local`` the way applications do, through dsqlkit's connectors, with DSQL's
default quotas. The endpoint fixtures come from ``dsqlkit.pytest_plugin``.
"""
