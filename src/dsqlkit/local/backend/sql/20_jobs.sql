-- Asynchronous jobs (DSQL section 6): CREATE [UNIQUE] INDEX ASYNC, ALTER TABLE ASYNC ... VALIDATE
-- CONSTRAINT. The endpoint (dsqlkit.local.rules.jobs) rewrites such a statement into a call of
-- sys.dsqlkit_submit_job, which runs as the client, in the client's transaction:
-- - CREATE INDEX ASYNC builds the index there (so it is in pg_indexes as soon as the transaction
--   commits, as in DSQL) and marks it not valid; the job then only marks it valid. If a writer holds
--   the table (the build would wait), or for VALIDATE CONSTRAINT, the job does the work later.
-- - The job is recorded in sys.jobs and channel dsqlkit_jobs is notified (delivered at commit).
-- The endpoint's job runner never executes a client's text as superuser: deferred work runs on a
-- connection of the submitting role (under SET ROLE to the table's owner when that differs).

CREATE TABLE IF NOT EXISTS sys.jobs (
    job_id text PRIMARY KEY,
    status text NOT NULL DEFAULT 'submitted'
        CHECK (status IN ('submitted', 'processing', 'completed', 'failed')),
    details text,
    job_type text NOT NULL
        CHECK (job_type IN ('INDEX_BUILD', 'ANALYZE', 'DROP', 'VALIDATE_CONSTRAINT')),
    class_id oid,
    object_id oid,
    object_name text,
    start_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON sys.jobs FROM PUBLIC;
GRANT SELECT ON sys.jobs TO PUBLIC;

-- What the runner executes, kept apart so that sys.jobs has exactly DSQL's columns. run_as: the
-- submitting role; index_oid: the index built at submit (then the job only marks it valid).
CREATE TABLE IF NOT EXISTS sys.dsqlkit_job_work (
    job_id text PRIMARY KEY REFERENCES sys.jobs ON DELETE CASCADE,
    statement text NOT NULL,
    search_path text NOT NULL
);
ALTER TABLE sys.dsqlkit_job_work ADD COLUMN IF NOT EXISTS run_as oid;
ALTER TABLE sys.dsqlkit_job_work ADD COLUMN IF NOT EXISTS index_oid oid;
REVOKE ALL ON sys.dsqlkit_job_work FROM PUBLIC;

-- The old signature ran as superuser (SECURITY DEFINER) and trusted a NULL ownership check.
DROP FUNCTION IF EXISTS sys.dsqlkit_submit_job(text, regclass, text, text, text);

-- Record a job for the caller; returns its id (26 lowercase base32 characters, like DSQL's).
-- p_index: the index the caller built in this transaction, or NULL; p_failure: the error of a
-- build that failed at submit (the job is then recorded as failed). Checks, without NULL holes:
-- the table exists, the session's role has the privileges of its owner, and p_index is an index
-- of that table that this transaction holds exclusively (as it does the index it just created).
CREATE OR REPLACE FUNCTION sys.dsqlkit_record_job(
    p_type text, p_rel regclass, p_object text, p_statement text, p_search_path text,
    p_index oid, p_failure text
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    id text;
    owner oid := (SELECT relowner FROM pg_class WHERE oid = p_rel);
    status text := CASE WHEN p_failure IS NULL THEN 'submitted' ELSE 'failed' END;
BEGIN
    IF p_type IS NULL OR p_type NOT IN ('INDEX_BUILD', 'VALIDATE_CONSTRAINT') OR owner IS NULL
            OR p_statement IS NULL OR p_search_path IS NULL THEN
        PERFORM sys.dsqlkit_raise('22023', 'sys.dsqlkit_record_job: invalid job', NULL,
            'Submit jobs with CREATE INDEX ASYNC or ALTER TABLE ASYNC ... VALIDATE CONSTRAINT.');
    END IF;
    IF pg_has_role(session_user, owner, 'USAGE') IS NOT TRUE THEN
        PERFORM sys.dsqlkit_raise('42501', format('must be owner of table %s', p_rel));
    END IF;
    IF p_index IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_index i JOIN pg_locks l ON l.relation = i.indexrelid
            WHERE i.indexrelid = p_index AND i.indrelid = p_rel AND l.pid = pg_backend_pid()
              AND l.mode = 'AccessExclusiveLock' AND l.granted) THEN
        PERFORM sys.dsqlkit_raise('22023', 'sys.dsqlkit_record_job: not an index of this job');
    END IF;
    SELECT string_agg(substr('abcdefghijklmnopqrstuvwxyz234567', 1 + floor(random() * 32)::int, 1), '')
        INTO id FROM generate_series(1, 26);
    INSERT INTO sys.jobs (job_id, status, details, job_type, class_id, object_id, object_name)
        VALUES (id, status, p_failure, p_type, 'pg_class'::regclass, p_rel, p_object);
    IF p_failure IS NOT NULL THEN
        RETURN id;
    END IF;
    INSERT INTO sys.dsqlkit_job_work (job_id, statement, search_path, run_as, index_oid)
        VALUES (id, p_statement, p_search_path,
                (SELECT oid FROM pg_roles WHERE rolname = session_user), p_index);
    IF p_index IS NOT NULL THEN
        UPDATE pg_index SET indisvalid = false WHERE indexrelid = p_index;
    END IF;
    PERFORM pg_notify('dsqlkit_jobs', id);
    RETURN id;
END $$;

-- What the endpoint's rewrite of an ASYNC statement calls. SECURITY INVOKER: the build runs with
-- the client's own privileges, in its transaction (and counts as its one DDL statement).
CREATE OR REPLACE FUNCTION sys.dsqlkit_submit_job(
    p_type text, p_rel regclass, p_object text, p_statement text, p_search_path text
) RETURNS TABLE (job_id text)
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    before oid[];
    index_oid oid;
    failure text;
    message text;
    detail text;
BEGIN
    IF p_type = 'INDEX_BUILD' AND p_rel IS NOT NULL THEN
        before := ARRAY(SELECT indexrelid FROM pg_catalog.pg_index WHERE indrelid = p_rel);
        BEGIN
            EXECUTE p_statement;
            index_oid := (SELECT indexrelid FROM pg_catalog.pg_index
                          WHERE indrelid = p_rel AND indexrelid <> ALL (before) LIMIT 1);
        EXCEPTION
            WHEN lock_not_available THEN  -- an open writer holds the table: the job builds it
                index_oid := NULL;
            WHEN unique_violation THEN  -- as DSQL: the job fails, with PostgreSQL's reason
                GET STACKED DIAGNOSTICS message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
                failure := message || CASE WHEN detail <> '' THEN ': ' || detail ELSE '' END;
        END;
    END IF;
    RETURN QUERY SELECT sys.dsqlkit_record_job(
        p_type, p_rel, p_object, p_statement, p_search_path, index_oid, failure);
END $$;

-- What CALL sys.wait_for_job(...) runs on the backend once the endpoint has waited for the job
-- (or, when the endpoint could not wait because the job id was a bind parameter, at once).
CREATE OR REPLACE PROCEDURE sys.dsqlkit_wait_for_job(
    p_job_id text, INOUT succeeded boolean DEFAULT NULL
) LANGUAGE plpgsql AS $$
DECLARE
    job_status text;
BEGIN
    SELECT status INTO job_status FROM sys.jobs WHERE job_id = p_job_id;
    IF NOT FOUND THEN
        PERFORM sys.dsqlkit_raise('42704', format('job %s does not exist', p_job_id),
            NULL, 'Use the job_id that CREATE INDEX ASYNC returned; sys.jobs lists the jobs.');
    ELSIF job_status NOT IN ('completed', 'failed') THEN
        PERFORM sys.dsqlkit_raise('55000', format('job %s is still %s', p_job_id, job_status),
            NULL, 'The local endpoint waits for a job given as a literal: '
                  'CALL sys.wait_for_job(''<job_id>''), not as a bind parameter.');
    END IF;
    succeeded := job_status = 'completed';
END $$;
