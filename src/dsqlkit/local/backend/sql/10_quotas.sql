-- Per-transaction quotas (DSQL: rows changed and bytes changed per transaction), counted by the
-- backend itself so that the transaction state stays PostgreSQL's (docs/emulator.md).
--
-- Every user table gets three statement-level AFTER triggers (INSERT, UPDATE, DELETE) whose
-- transition table holds the changed rows: one count(*) per statement, no per-row function call.
-- The totals live in transaction-local settings (set_config(..., true)), so they vanish at COMMIT
-- or ROLLBACK. The limits and the error texts come from the endpoint in each backend
-- StartupMessage (dsqlkit.local.txn_quotas.backend_parameters):
--   dsqlkit.max_rows, dsqlkit.max_bytes, dsqlkit.rows_error, dsqlkit.size_error
-- (errors as '<sqlstate> <message>'). Sessions without dsqlkit.max_rows (the endpoint's own
-- connections, psql on the backend) are not counted.

-- Raise the error held in a setting ('<sqlstate> <message>').
CREATE OR REPLACE FUNCTION sys.dsqlkit_raise_quota(setting text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    error text := current_setting(setting);
BEGIN
    PERFORM sys.dsqlkit_raise(left(error, 5), substr(error, 7), NULL, NULL);
END $$;

-- The size limit is checked at COMMIT: once a transaction is over it, one row goes into this
-- table, whose deferred constraint trigger raises at COMMIT (so the row is never committed).
CREATE UNLOGGED TABLE IF NOT EXISTS sys.dsqlkit_size_guard (xid xid8 DEFAULT pg_current_xact_id());
REVOKE ALL ON sys.dsqlkit_size_guard FROM PUBLIC;

CREATE OR REPLACE FUNCTION sys.dsqlkit_size_exceeded() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sys.dsqlkit_raise_quota('dsqlkit.size_error');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS dsqlkit_size_exceeded ON sys.dsqlkit_size_guard;
CREATE CONSTRAINT TRIGGER dsqlkit_size_exceeded AFTER INSERT ON sys.dsqlkit_size_guard
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION sys.dsqlkit_size_exceeded();

CREATE OR REPLACE FUNCTION sys.dsqlkit_guard_size() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
AS $$ INSERT INTO sys.dsqlkit_size_guard DEFAULT VALUES $$;

-- The statement trigger: add this statement's rows and bytes to the transaction's totals.
-- Bytes are pg_column_size of each new row (INSERT, UPDATE) or old row (DELETE).
CREATE OR REPLACE FUNCTION sys.dsqlkit_count_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    max_rows bigint := nullif(current_setting('dsqlkit.max_rows', true), '')::bigint;
    max_bytes bigint;
    n bigint;
    nbytes bigint;
    total_rows bigint;
    total_bytes bigint;
BEGIN
    IF max_rows IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT count(*), coalesce(sum(pg_column_size(c.*)), 0) INTO n, nbytes FROM dsqlkit_rows c;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    total_rows := coalesce(nullif(current_setting('dsqlkit.rows', true), ''), '0')::bigint + n;
    IF total_rows > max_rows THEN
        PERFORM sys.dsqlkit_raise_quota('dsqlkit.rows_error');
    END IF;
    PERFORM set_config('dsqlkit.rows', total_rows::text, true);

    max_bytes := nullif(current_setting('dsqlkit.max_bytes', true), '')::bigint;
    total_bytes := coalesce(nullif(current_setting('dsqlkit.bytes', true), ''), '0')::bigint + nbytes;
    PERFORM set_config('dsqlkit.bytes', total_bytes::text, true);
    IF total_bytes > max_bytes AND total_bytes - nbytes <= max_bytes THEN
        PERFORM sys.dsqlkit_guard_size();  -- the first statement over the limit arms the guard
    END IF;
    RETURN NULL;
END $$;

-- Give one table the three counting triggers (idempotent).
CREATE OR REPLACE FUNCTION sys.dsqlkit_add_quota_triggers(rel regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    op text;
    transition text;
BEGIN
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
END $$;

-- User tables: ordinary and partitioned tables outside the system schemas. Partitions get their
-- own triggers too: a statement on the parent fires only the parent's, one on a partition only
-- the partition's, so every changed row is counted once.
CREATE OR REPLACE FUNCTION sys.dsqlkit_is_user_table(rel oid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT c.relkind IN ('r', 'p') AND n.nspname NOT IN ('sys', 'pg_catalog', 'information_schema')
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
