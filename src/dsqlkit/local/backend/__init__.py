"""The PostgreSQL behind the local endpoint: its lifecycle and service account (``postgres``), the SQL
bootstrap applied at every start (``sql/``) and the pool of reset sessions (``pool``)."""
