-- Least privilege (DESIGN.md): of the functions the endpoint installs in schema sys, client roles
-- may execute only those below, each of which either must be reachable from a client's statement
-- (the endpoint's rewrites, the event triggers that run as the client) or only raises or reads.
-- Every other one (the SECURITY DEFINER helpers, trigger and event trigger functions, role checks)
-- is revoked from PUBLIC. Applied last, at every start; 00_core.sql also makes new functions
-- non-executable by default. tests/security/test_privileges.py checks the list.
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
        'dsql_version',            -- version() as DSQL reports it
        'current_session_id'       -- sys.current_session_id(), as DSQL has it
    ];
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig, p.proname, p.prokind
             FROM pg_proc p WHERE p.pronamespace = 'sys'::regnamespace
    LOOP
        EXECUTE format('%s EXECUTE ON %s %s %s PUBLIC',
            CASE WHEN f.proname = ANY (callable) THEN 'GRANT' ELSE 'REVOKE' END,
            CASE f.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, f.sig,
            CASE WHEN f.proname = ANY (callable) THEN 'TO' ELSE 'FROM' END);
    END LOOP;
END $$;
