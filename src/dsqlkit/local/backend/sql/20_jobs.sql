-- Asynchronous jobs (DSQL section 6): CREATE [UNIQUE] INDEX ASYNC, ALTER TABLE ASYNC ... VALIDATE
-- CONSTRAINT. The endpoint (dsqlkit.local.jobs) rewrites such a statement into a call of
-- sys.dsqlkit_submit_job, which records the job and notifies channel dsqlkit_jobs; the
-- notification is delivered when the submitting transaction commits, and the endpoint's job
-- runner then carries the job out on its own connection.

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

-- What the runner executes, kept apart so that sys.jobs has exactly DSQL's columns.
CREATE TABLE IF NOT EXISTS sys.dsqlkit_job_work (
    job_id text PRIMARY KEY REFERENCES sys.jobs ON DELETE CASCADE,
    statement text NOT NULL,
    search_path text NOT NULL
);
REVOKE ALL ON sys.dsqlkit_job_work FROM PUBLIC;

-- Record a job; returns its id (26 lowercase base32 characters, like DSQL's).
-- rel is resolved by the caller's cast to regclass, with the caller's search_path.
CREATE OR REPLACE FUNCTION sys.dsqlkit_submit_job(
    p_type text, p_rel regclass, p_object text, p_statement text, p_search_path text
) RETURNS TABLE (job_id text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    id text;
BEGIN
    -- The runner acts as superuser: only the table's owner may submit (as CREATE INDEX requires).
    IF NOT pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = p_rel), 'USAGE') THEN
        PERFORM sys.dsqlkit_raise('42501', format('must be owner of table %s', p_rel));
    END IF;
    SELECT string_agg(substr('abcdefghijklmnopqrstuvwxyz234567', 1 + floor(random() * 32)::int, 1), '')
        INTO id FROM generate_series(1, 26);
    INSERT INTO sys.jobs (job_id, job_type, class_id, object_id, object_name)
        VALUES (id, p_type, 'pg_class'::regclass, p_rel, p_object);
    INSERT INTO sys.dsqlkit_job_work VALUES (id, p_statement, p_search_path);
    PERFORM pg_notify('dsqlkit_jobs', id);
    RETURN QUERY SELECT id;
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
