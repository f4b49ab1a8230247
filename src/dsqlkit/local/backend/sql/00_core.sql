-- dsqlkit core bootstrap: applied by dsqlkit.local.backend at every start, as superuser, in database
-- postgres. Every statement is idempotent.

-- Schema sys: DSQL's system objects (rules add sys.jobs, sys.iam_pg_role_mappings, ...).
CREATE SCHEMA IF NOT EXISTS sys;
REVOKE ALL ON SCHEMA sys FROM PUBLIC;
GRANT USAGE ON SCHEMA sys TO PUBLIC;
-- Functions the bootstrap creates are not executable by PUBLIC unless granted (90_privileges.sql).
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- sys.dsqlkit_raise: raise exactly the error DSQL would, so that the endpoint can make the backend
-- itself refuse a statement (its transaction state then stays PostgreSQL's own). A NULL detail or
-- hint is left out of the error (RAISE refuses NULL options, hence the four branches).
CREATE OR REPLACE FUNCTION sys.dsqlkit_raise(
    sqlstate text, message text, detail text DEFAULT NULL, hint text DEFAULT NULL
) RETURNS void LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    IF $3 IS NULL AND $4 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = $1, MESSAGE = $2;
    ELSIF $4 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = $1, MESSAGE = $2, DETAIL = $3;
    ELSIF $3 IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = $1, MESSAGE = $2, HINT = $4;
    ELSE
        RAISE EXCEPTION USING ERRCODE = $1, MESSAGE = $2, DETAIL = $3, HINT = $4;
    END IF;
END
$fn$;
GRANT EXECUTE ON FUNCTION sys.dsqlkit_raise(text, text, text, text) TO PUBLIC;

-- Role admin (spec.ADMIN_USER). DSQL's admin creates roles and owns the schema, but it is not a
-- PostgreSQL superuser (nor REPLICATION, nor BYPASSRLS, nor a member of pg_execute_server_program
-- or the other predefined roles): it gets CREATEROLE and owns database postgres. The endpoint keeps
-- its own bootstrap superuser (postgres), which no client can log in as (30_iam.sql). Since PostgreSQL 15, schema
-- public belongs to pg_database_owner, so owning the database gives admin schema public too
-- (CREATE, and GRANT to other roles).
DO $do$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'admin') THEN
        CREATE ROLE admin WITH LOGIN CREATEROLE;
    END IF;
    -- An older data directory, or an external server where admin was made by hand.
    ALTER ROLE admin WITH NOSUPERUSER NOREPLICATION NOBYPASSRLS LOGIN CREATEROLE;
    IF (SELECT datdba FROM pg_catalog.pg_database WHERE datname = 'postgres')
            <> 'admin'::regrole THEN
        ALTER DATABASE postgres OWNER TO admin;
    END IF;
END
$do$;
