-- Least privilege (DESIGN.md): functions the bootstrap creates are not executable by PUBLIC by
-- default (00_core.sql); a file that creates one a client must call GRANTs it explicitly (as
-- 40_compat.sql and 60_session.sql do). The list below is of the endpoint's own functions a
-- client's statement must reach (the endpoint's rewrites, the event triggers that run as the
-- client) or that only raise or read; each gets EXECUTE. Any other function of schema sys with the
-- implicit default (PUBLIC may execute: a data directory made before these rules) is revoked, so
-- the SECURITY DEFINER helpers, trigger and event trigger functions and role checks are never
-- callable by clients. Applied last, at every start; tests/security/test_privileges.py checks
-- that no SECURITY DEFINER function outside this list, and no trigger function, is executable.
DO $$
DECLARE
    f record;
    callable constant text[] := ARRAY[
        'dsqlkit_raise',           -- the endpoint's refusals, raised in the client's session
        'dsqlkit_fail',            -- DSQL's errors raised by the guards (the texts only)
        'dsqlkit_enforced',        -- read by the event triggers, which run as the client
        'dsqlkit_is_user_table',
        'dsqlkit_quota_trigger_names',
        'dsqlkit_note_ddl',        -- counts a DDL command: can only make the rules stricter
        'dsqlkit_submit_job',      -- CREATE INDEX ASYNC (SECURITY INVOKER: runs as the client)
        'dsqlkit_record_job',      -- checks the caller owns the table and made the index
        'dsqlkit_wait_for_job',    -- CALL sys.wait_for_job (reads sys.jobs)
        'wait_for_job',            -- raises DSQL's 42809
        'dsqlkit_iam_grant',       -- AWS IAM GRANT / REVOKE: admin only, checked inside
        'dsqlkit_iam_revoke',
        'dsql_version'             -- version() as DSQL reports it
    ];
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig, p.proname, p.prokind
             FROM pg_proc p WHERE p.pronamespace = 'sys'::regnamespace
               AND (p.proname = ANY (callable) OR p.proacl IS NULL)
    LOOP
        EXECUTE format('%s EXECUTE ON %s %s %s PUBLIC',
            CASE WHEN f.proname = ANY (callable) THEN 'GRANT' ELSE 'REVOKE' END,
            CASE f.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f.sig,
            CASE WHEN f.proname = ANY (callable) THEN 'TO' ELSE 'FROM' END);
    END LOOP;
END $$;
