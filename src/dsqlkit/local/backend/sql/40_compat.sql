-- dsqlkit compatibility: what DSQL answers where PostgreSQL 18 (the backend) would answer otherwise.
-- Applied by dsqlkit.local.backend at every start, as superuser, in database postgres; idempotent.

-- sys.dsql_version(): version() as DSQL reports it. The endpoint runs it in place of version() /
-- pg_catalog.version() (dsqlkit.local.dialect.version_rewrite). The version number comes from the
-- setting dsqlkit.server_version, which the endpoint puts in every backend session's startup
-- packet from spec.SERVER_VERSION (dialect.BACKEND_PARAMETERS), so it is written in one place only;
-- the rest (" on x86_64-pc-linux-gnu, compiled by ...") is the backend's own. Sessions without the
-- setting (psql on the backend) see the backend's real version.
CREATE OR REPLACE FUNCTION sys.dsql_version() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT pg_catalog.regexp_replace(
        pg_catalog.version(),
        '^PostgreSQL \S+',
        'PostgreSQL ' || coalesce(
            nullif(pg_catalog.current_setting('dsqlkit.server_version', true), ''),
            pg_catalog.current_setting('server_version')))
$fn$;
GRANT EXECUTE ON FUNCTION sys.dsql_version() TO PUBLIC;
