"""A small Django app for the ecosystem suite: UUID primary keys, DSQL-ready migrations.

Every migration is ``atomic = False`` with one DDL operation (DSQL runs one DDL per transaction and
never DDL with DML), as the official Django adapter's documentation requires.
"""
