"""Django database backend ``dsqlkit.django``: aurora-dsql-django's backend, dsqlkit's connections.

Everything DSQL-specific in Django (UUID or identity primary keys, ``CREATE INDEX ASYNC``, one DDL
per transaction, no server-side cursors, ...) comes from the official adapter, aurora-dsql-django;
each connection is opened by ``dsqlkit.psycopg.connect`` (or ``dsqlkit.psycopg2.connect`` when
Django runs on psycopg2): a locally signed token, TLS from the settings, then libpq's environment,
then verify-full with the system CAs, connect backoff and the rate limit. Settings::

    DATABASES = {
        "default": {
            "ENGINE": "dsqlkit.django",
            "NAME": "postgres",
            "USER": "admin",
            "HOST": "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws",
            "OPTIONS": {"region": "us-east-1"},   # any dsqlkit or libpq connect argument
        }
    }

Install with ``pip install 'dsqlkit[django]'``. The official adapter's module imports the
official connector (and so botocore) when Django loads the backend: dsqlkit never calls it.
"""
