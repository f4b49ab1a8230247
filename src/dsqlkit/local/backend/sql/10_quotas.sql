-- Per-transaction quotas (DSQL: rows changed and bytes changed per transaction) and the one-DDL /
-- no-DDL-with-DML rule, enforced by the backend itself, under the endpoint's parser: whatever route a
-- statement takes (PREPARE/EXECUTE, a LANGUAGE sql function body, FunctionCall), these triggers
-- see what actually runs (docs/emulator.md, "Defence in depth").
--
-- Every user table gets three statement-level AFTER triggers (INSERT, UPDATE, DELETE) whose
-- transition table holds the changed rows (one count(*) per statement, no per-row call), and a
-- BEFORE TRUNCATE trigger that refuses TRUNCATE as DSQL does.
--
-- Nothing here can be set or cleared by a client:
-- - the limits, the on/off switch and the error texts are rows of sys.dsqlkit_settings and
--   sys.dsqlkit_errors, written by the endpoint at start (dsqlkit.local.rules.guards.install,
--   from its config and dsqlkit/dsql.py, so no DSQL text is written twice);
-- - the running totals of a transaction are in sys.dsqlkit_transactions (one row per backend
--   process, reset when its transaction id changes), written only by SECURITY DEFINER functions;
--   they roll back with the transaction, as the changes they count;
-- - the triggers cannot be dropped, renamed or disabled (15_guards.sql).
-- Sessions of a superuser (the endpoint's own connections, psql on the backend) are not counted:
-- no client role is a superuser (30_iam.sql refuses to map one).

CREATE TABLE IF NOT EXISTS sys.dsqlkit_settings (name text PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE IF NOT EXISTS sys.dsqlkit_errors (
    name text PRIMARY KEY, sqlstate text NOT NULL, message text NOT NULL, hint text
);
CREATE UNLOGGED TABLE IF NOT EXISTS sys.dsqlkit_transactions (
    pid integer PRIMARY KEY,
    xid xid8 NOT NULL,
    rows bigint NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    ddl integer NOT NULL DEFAULT 0,
    dml boolean NOT NULL DEFAULT false
);
REVOKE ALL ON sys.dsqlkit_settings, sys.dsqlkit_errors, sys.dsqlkit_transactions FROM PUBLIC;
-- Settings of an older data directory (limits in client-settable GUCs) are gone for good.
DROP FUNCTION IF EXISTS sys.dsqlkit_raise_quota(text);
DROP FUNCTION IF EXISTS sys.dsqlkit_guard_size();
DROP FUNCTION IF EXISTS sys.dsqlkit_fail(text);

-- Raise the error the endpoint stored under name (its SQLSTATE and text come from dsql.py), with
-- {role} in its texts replaced by p_role.
CREATE OR REPLACE FUNCTION sys.dsqlkit_fail(p_name text, p_role text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    e record;
BEGIN
    SELECT sqlstate, message, hint INTO e FROM sys.dsqlkit_errors WHERE name = p_name;
    IF NOT FOUND THEN  -- a backend the endpoint never configured: still refuse
        PERFORM sys.dsqlkit_raise('0A000', format('dsqlkit: %s refused', p_name), NULL, NULL);
    END IF;
    PERFORM sys.dsqlkit_raise(e.sqlstate, replace(e.message, '{role}', coalesce(p_role, '')),
        NULL, replace(e.hint, '{role}', coalesce(p_role, '')));
END $$;

-- Whether the rules apply to the running statement: not for superusers (the endpoint itself, and
-- the commands our own SECURITY DEFINER functions run), not when the endpoint runs with dialect
-- checks off.
CREATE OR REPLACE FUNCTION sys.dsqlkit_enforced(p_role name) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT coalesce((SELECT NOT rolsuper FROM pg_roles WHERE rolname = p_role), true)
       AND coalesce((SELECT value = 1 FROM sys.dsqlkit_settings WHERE name = 'enforce'), false)
$$;

-- The size limit is checked at COMMIT: once a transaction is over it, one row goes into this
-- table, whose deferred constraint trigger raises at COMMIT (so the row is never committed).
CREATE UNLOGGED TABLE IF NOT EXISTS sys.dsqlkit_size_guard (xid xid8 DEFAULT pg_current_xact_id());
REVOKE ALL ON sys.dsqlkit_size_guard FROM PUBLIC;

CREATE OR REPLACE FUNCTION sys.dsqlkit_size_exceeded() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM sys.dsqlkit_fail('size');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS dsqlkit_size_exceeded ON sys.dsqlkit_size_guard;
CREATE CONSTRAINT TRIGGER dsqlkit_size_exceeded AFTER INSERT ON sys.dsqlkit_size_guard
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION sys.dsqlkit_size_exceeded();

-- Record one DML statement (n rows, nbytes bytes) or one DDL command in this transaction's row and
-- return it. Totals only grow: a caller cannot lower them (negative counts are refused).
CREATE OR REPLACE FUNCTION sys.dsqlkit_note(p_rows bigint, p_bytes bigint, p_ddl integer)
RETURNS sys.dsqlkit_transactions
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    t sys.dsqlkit_transactions;
BEGIN
    IF p_rows IS NULL OR p_bytes IS NULL OR p_ddl IS NULL OR p_rows < 0 OR p_bytes < 0
            OR p_ddl < 0 THEN
        PERFORM sys.dsqlkit_raise('22023', 'sys.dsqlkit_note: counts must be >= 0', NULL, NULL);
    END IF;
    INSERT INTO sys.dsqlkit_transactions AS s (pid, xid, rows, bytes, ddl, dml)
        VALUES (pg_backend_pid(), pg_current_xact_id(), p_rows, p_bytes, p_ddl, p_ddl = 0)
        ON CONFLICT (pid) DO UPDATE SET
            rows = CASE WHEN s.xid = excluded.xid THEN s.rows + excluded.rows ELSE excluded.rows END,
            bytes = CASE WHEN s.xid = excluded.xid THEN s.bytes + excluded.bytes
                         ELSE excluded.bytes END,
            ddl = CASE WHEN s.xid = excluded.xid THEN s.ddl + excluded.ddl ELSE excluded.ddl END,
            dml = (s.xid = excluded.xid AND s.dml) OR excluded.dml,
            xid = excluded.xid
        RETURNING * INTO t;
    RETURN t;
END $$;

-- The statement trigger: add this statement's rows and bytes to the transaction's totals.
-- Bytes are pg_column_size of each new row (INSERT, UPDATE) or old row (DELETE). On every DML
-- statement, so kept to three queries: the settings, the count, the totals' upsert (the same as
-- sys.dsqlkit_note, inlined). is_superuser is the session's role, not this function's owner.
CREATE OR REPLACE FUNCTION sys.dsqlkit_count_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    n bigint;
    nbytes bigint;
    t record;
    enforce bigint;
    max_rows bigint;
    max_bytes bigint;
BEGIN
    IF current_setting('is_superuser') = 'on' THEN
        RETURN NULL;
    END IF;
    SELECT max(value) FILTER (WHERE name = 'enforce'), max(value) FILTER (WHERE name = 'max_rows'),
           max(value) FILTER (WHERE name = 'max_bytes')
        INTO enforce, max_rows, max_bytes FROM sys.dsqlkit_settings;
    IF enforce IS DISTINCT FROM 1 THEN
        RETURN NULL;
    END IF;
    SELECT count(*), coalesce(sum(pg_column_size(c.*)), 0) INTO n, nbytes FROM dsqlkit_rows c;
    INSERT INTO sys.dsqlkit_transactions AS s (pid, xid, rows, bytes, dml)
        VALUES (pg_backend_pid(), pg_current_xact_id(), n, nbytes, true)
        ON CONFLICT (pid) DO UPDATE SET
            rows = CASE WHEN s.xid = excluded.xid THEN s.rows + excluded.rows ELSE excluded.rows END,
            bytes = CASE WHEN s.xid = excluded.xid THEN s.bytes + excluded.bytes
                         ELSE excluded.bytes END,
            ddl = CASE WHEN s.xid = excluded.xid THEN s.ddl ELSE 0 END,
            dml = true,
            xid = excluded.xid
        RETURNING s.rows, s.bytes, s.ddl INTO t;
    IF t.ddl > 0 THEN
        PERFORM sys.dsqlkit_fail('ddl_and_dml');
    END IF;
    IF t.rows > max_rows THEN
        PERFORM sys.dsqlkit_fail('rows');
    END IF;
    IF t.bytes > max_bytes AND t.bytes - nbytes <= max_bytes THEN
        INSERT INTO sys.dsqlkit_size_guard DEFAULT VALUES;  -- the first statement over arms it
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION sys.dsqlkit_refuse_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF sys.dsqlkit_enforced(session_user) THEN
        PERFORM sys.dsqlkit_fail('truncate');
    END IF;
    RETURN NULL;
END $$;

-- The names of the triggers every user table carries (15_guards.sql keeps them in place).
CREATE OR REPLACE FUNCTION sys.dsqlkit_quota_trigger_names() RETURNS name[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['dsqlkit_quota_insert', 'dsqlkit_quota_update', 'dsqlkit_quota_delete',
                 'dsqlkit_quota_truncate']::name[]
$$;

-- Give one table its triggers (idempotent). Only for the endpoint's own functions.
CREATE OR REPLACE FUNCTION sys.dsqlkit_add_quota_triggers(rel regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    op text;
    transition text;
BEGIN
    IF rel IS NULL THEN
        RETURN;
    END IF;
    FOREACH op IN ARRAY ARRAY['INSERT', 'UPDATE', 'DELETE'] LOOP
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM pg_trigger
            WHERE tgrelid = rel AND tgname = 'dsqlkit_quota_' || lower(op));
        transition := CASE op WHEN 'DELETE' THEN 'OLD' ELSE 'NEW' END;
        EXECUTE format(
            'CREATE TRIGGER %I AFTER %s ON %s REFERENCING %s TABLE AS dsqlkit_rows'
            ' FOR EACH STATEMENT EXECUTE FUNCTION sys.dsqlkit_count_changes()',
            'dsqlkit_quota_' || lower(op), op, rel, transition);
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = rel AND tgname = 'dsqlkit_quota_truncate') THEN
        EXECUTE format('CREATE TRIGGER dsqlkit_quota_truncate BEFORE TRUNCATE ON %s'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION sys.dsqlkit_refuse_truncate()', rel);
    END IF;
END $$;

-- User tables: ordinary and partitioned tables outside the system schemas. Partitions get their
-- own triggers too: a statement on the parent fires only the parent's, one on a partition only
-- the partition's, so every changed row is counted once.
CREATE OR REPLACE FUNCTION sys.dsqlkit_is_user_table(rel oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
        AND n.nspname NOT IN ('sys', 'pg_catalog', 'information_schema')
        AND n.nspname NOT LIKE 'pg\_%'
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = rel
$$;

CREATE OR REPLACE FUNCTION sys.dsqlkit_on_create_table() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    rel oid;
BEGIN
    FOR rel IN
        SELECT objid FROM pg_event_trigger_ddl_commands()
        WHERE classid = 'pg_class'::regclass AND object_type IN ('table', 'partitioned table')
    LOOP
        IF sys.dsqlkit_is_user_table(rel) THEN
            PERFORM sys.dsqlkit_add_quota_triggers(rel);
        END IF;
    END LOOP;
END $$;

DROP EVENT TRIGGER IF EXISTS dsqlkit_quota_tables;
CREATE EVENT TRIGGER dsqlkit_quota_tables ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
    EXECUTE FUNCTION sys.dsqlkit_on_create_table();

-- Tables created before these triggers existed (an older data directory, an external backend).
DO $$
DECLARE
    rel oid;
BEGIN
    FOR rel IN SELECT oid FROM pg_class WHERE relkind IN ('r', 'p') LOOP
        IF sys.dsqlkit_is_user_table(rel) THEN
            PERFORM sys.dsqlkit_add_quota_triggers(rel);
        END IF;
    END LOOP;
END $$;
