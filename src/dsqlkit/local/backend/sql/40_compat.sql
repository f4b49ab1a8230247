-- dsqlkit compatibility: what DSQL answers where PostgreSQL 18 (the backend) would answer otherwise.
-- Applied by dsqlkit.local.backend at every start, as superuser, in database postgres; idempotent.

-- sys.dsql_version(): version() as DSQL reports it (sys.version() below, which the endpoint calls in
-- place of version(), answers with it: dsqlkit.local.rules.dialect.version_rewrite). The number comes from the
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

-- sys.version() and sys.current_setting(name[, missing_ok]): what the endpoint calls in place of
-- version() and current_setting('server_version[_num]'[, ...]). dialect.version_rewrite renames
-- only the call in the client's text, so the column keeps its name (PostgreSQL names it after
-- the function's last name) and the arguments, parameters included, stay as they were.
-- Both must be callable by every client role: the rewritten statement runs as the client.
CREATE OR REPLACE FUNCTION sys.version() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT sys.dsql_version()
$fn$;
GRANT EXECUTE ON FUNCTION sys.version() TO PUBLIC;

CREATE OR REPLACE FUNCTION sys.current_setting(setting_name text, missing_ok boolean DEFAULT false)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT coalesce(
        CASE pg_catalog.lower(setting_name)
            WHEN 'server_version' THEN
                nullif(pg_catalog.current_setting('dsqlkit.server_version', true), '')
            WHEN 'server_version_num' THEN
                nullif(pg_catalog.current_setting('dsqlkit.server_version_num', true), '')
        END,
        pg_catalog.current_setting(setting_name, missing_ok))
$fn$;
GRANT EXECUTE ON FUNCTION sys.current_setting(text, boolean) TO PUBLIC;
