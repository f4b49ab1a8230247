"""dsqlkit: the Python toolkit for Amazon Aurora DSQL.

Import the driver module you use; importing ``dsqlkit`` itself is free::

    import dsqlkit.psycopg as dsql
    conn = dsql.connect(host="abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws")
"""

__version__ = "0.1.0"
