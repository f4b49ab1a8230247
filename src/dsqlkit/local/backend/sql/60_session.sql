-- Session functions of DSQL's sys schema (DSQL section 6) that clients call.
-- Applied by dsqlkit.local.backend at every start, as superuser, in database postgres; idempotent.

-- sys.current_session_id(): the session's id as text, stable for the session and different for
-- every concurrent session (the official Tortoise adapter's pool tests compare it across
-- connections). The format is an emulator decision (spec.SESSION_ID: 32 lowercase hex digits):
-- a digest of the backend's pid and start time, so it needs no state that a rollback, RESET ALL
-- or the backend pool's DISCARD ALL could lose; with the backend pool on, a later client of a
-- reused backend session sees the id of the earlier, closed one (as with pg_backend_pid()).
CREATE OR REPLACE FUNCTION sys.current_session_id() RETURNS text
LANGUAGE sql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog AS $fn$
    -- The epoch as numeric: a timestamp's (or a float's) text changes with the client's TimeZone,
    -- DateStyle or extra_float_digits.
    SELECT pg_catalog.md5(
        pg_catalog.pg_backend_pid()::text || '/' || EXTRACT(epoch FROM a.backend_start)::text)
    FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) AS a
$fn$;
REVOKE ALL ON FUNCTION sys.current_session_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sys.current_session_id() TO PUBLIC;
