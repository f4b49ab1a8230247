-- DSQL's transaction and dialect rules, enforced by the backend under the endpoint's parser
-- (DESIGN.md, "Defence in depth"): one DDL per transaction and no DDL with DML, quota triggers
-- that a table's owner cannot drop, rename or disable, advisory locks and pg_notify not executable
-- by client roles, and role/database-level settings of parameters DSQL does not let a client set
-- removed at login. Errors come from sys.dsqlkit_errors (10_quotas.sql): DSQL's texts, written by
-- the endpoint from dsqlkit/dsql.py. What cannot be caught here is listed in docs/emulator.md.

-- Count one DDL command in the transaction (see sys.dsqlkit_note); refuse the second, and DDL
-- after DML. Executable by clients through the event trigger below; it can only make the count
-- stricter.
CREATE OR REPLACE FUNCTION sys.dsqlkit_note_ddl() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    t sys.dsqlkit_transactions := sys.dsqlkit_note(0, 0, 1);
BEGIN
    IF t.dml THEN
        PERFORM sys.dsqlkit_fail('ddl_and_dml');
    ELSIF t.ddl > 1 THEN
        PERFORM sys.dsqlkit_fail('multiple_ddl');
    END IF;
END $$;
GRANT EXECUTE ON FUNCTION sys.dsqlkit_note_ddl() TO PUBLIC;

-- Not SECURITY DEFINER: current_user tells a client's command from one that the endpoint's own
-- SECURITY DEFINER functions run (the quota triggers of a new table).
CREATE OR REPLACE FUNCTION sys.dsqlkit_on_ddl_start() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF sys.dsqlkit_enforced(current_user) THEN
        PERFORM sys.dsqlkit_note_ddl();
    END IF;
END $$;

DROP EVENT TRIGGER IF EXISTS dsqlkit_one_ddl;
CREATE EVENT TRIGGER dsqlkit_one_ddl ON ddl_command_start EXECUTE FUNCTION sys.dsqlkit_on_ddl_start();

-- The quota triggers stay: DROP TRIGGER of one is refused (dropping its table drops it, fine).
CREATE OR REPLACE FUNCTION sys.dsqlkit_on_drop() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF sys.dsqlkit_enforced(current_user) AND EXISTS (
        SELECT 1 FROM pg_event_trigger_dropped_objects() d
        WHERE d.object_type = 'trigger'
          AND d.address_names[3] = ANY (sys.dsqlkit_quota_trigger_names())
          AND NOT EXISTS (
              SELECT 1 FROM pg_event_trigger_dropped_objects() t
              WHERE t.object_type = 'table' AND t.address_names = d.address_names[1:2]))
    THEN
        PERFORM sys.dsqlkit_fail('quota_trigger');
    END IF;
END $$;

DROP EVENT TRIGGER IF EXISTS dsqlkit_keep_triggers_on_drop;
CREATE EVENT TRIGGER dsqlkit_keep_triggers_on_drop ON sql_drop
    EXECUTE FUNCTION sys.dsqlkit_on_drop();

-- ALTER TABLE ... DISABLE TRIGGER (USER, ALL or by name) of a quota trigger, and ALTER TRIGGER of
-- one (a rename would let DROP TRIGGER through), are refused.
CREATE OR REPLACE FUNCTION sys.dsqlkit_on_alter() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    rel oid;
    ours oid[] := ARRAY['sys.dsqlkit_count_changes()'::regprocedure,
                        'sys.dsqlkit_refuse_truncate()'::regprocedure]::oid[];
BEGIN
    IF NOT sys.dsqlkit_enforced(current_user) THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() c JOIN pg_trigger g ON g.oid = c.objid
               WHERE c.classid = 'pg_trigger'::regclass AND g.tgfoid = ANY (ours)) THEN
        PERFORM sys.dsqlkit_fail('quota_trigger');
    END IF;
    FOR rel IN SELECT DISTINCT objid FROM pg_event_trigger_ddl_commands()
               WHERE classid = 'pg_class'::regclass LOOP
        CONTINUE WHEN NOT coalesce(sys.dsqlkit_is_user_table(rel), false);
        IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = rel AND tgfoid = ANY (ours)
                   AND tgenabled NOT IN ('O', 'A')) THEN
            PERFORM sys.dsqlkit_fail('quota_trigger');
        END IF;
    END LOOP;
END $$;

DROP EVENT TRIGGER IF EXISTS dsqlkit_keep_triggers_on_alter;
CREATE EVENT TRIGGER dsqlkit_keep_triggers_on_alter ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'ALTER TRIGGER')
    EXECUTE FUNCTION sys.dsqlkit_on_alter();

-- Advisory locks and pg_notify: DSQL has neither. Revoked from PUBLIC, so any route to them
-- (a function body, FunctionCall) gets "permission denied", which the endpoint turns into DSQL's
-- error (dsqlkit.local.rules.guards.rewrite_error). NOTIFY and LISTEN themselves need no
-- privilege: only the parser refuses them.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
             WHERE p.pronamespace = 'pg_catalog'::regnamespace
               AND (p.proname LIKE 'pg\_advisory\_%' OR p.proname LIKE 'pg\_try\_advisory\_%'
                    OR p.proname = 'pg_notify')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END $$;

-- ALTER ROLE/DATABASE ... SET of a parameter DSQL does not let a client set (statement_timeout,
-- work_mem...) would apply at every later login. At login (PostgreSQL 17+), such settings of a
-- client role, or of database postgres, are removed, and the session gets the server's value.
-- The parameters a client may set are in sys.dsqlkit_settable (the endpoint writes them from
-- dsql.py); nothing is removed while it is empty.
CREATE TABLE IF NOT EXISTS sys.dsqlkit_settable (name text PRIMARY KEY);
REVOKE ALL ON sys.dsqlkit_settable FROM PUBLIC;

CREATE OR REPLACE FUNCTION sys.dsqlkit_on_login() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    s record;
    kept text[];
    entry text;
    parameter text;
BEGIN
    IF NOT sys.dsqlkit_enforced(session_user) OR NOT EXISTS (SELECT 1 FROM sys.dsqlkit_settable)
    THEN
        RETURN;
    END IF;
    FOR s IN SELECT r.setdatabase, r.setrole, r.setconfig FROM pg_db_role_setting r
             WHERE (r.setrole = (SELECT oid FROM pg_roles WHERE rolname = session_user)
                    AND r.setdatabase IN (0, (SELECT oid FROM pg_database
                                              WHERE datname = current_database())))
                OR (r.setrole = 0 AND r.setdatabase = (SELECT oid FROM pg_database
                                                       WHERE datname = current_database()))
    LOOP
        kept := ARRAY[]::text[];
        FOREACH entry IN ARRAY s.setconfig LOOP
            parameter := lower(split_part(entry, '=', 1));
            IF EXISTS (SELECT 1 FROM sys.dsqlkit_settable WHERE name = parameter) THEN
                kept := kept || entry;
            ELSIF (SELECT source FROM pg_settings WHERE name = parameter)
                    IN ('database', 'user', 'database user') THEN
                PERFORM set_config(parameter,
                                   (SELECT boot_val FROM pg_settings WHERE name = parameter), false);
            END IF;
        END LOOP;
        CONTINUE WHEN cardinality(kept) = cardinality(s.setconfig);
        IF cardinality(kept) = 0 THEN
            DELETE FROM pg_db_role_setting
                WHERE setdatabase = s.setdatabase AND setrole = s.setrole;
        ELSE
            UPDATE pg_db_role_setting SET setconfig = kept
                WHERE setdatabase = s.setdatabase AND setrole = s.setrole;
        END IF;
    END LOOP;
END $$;

DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 170000 THEN
        DROP EVENT TRIGGER IF EXISTS dsqlkit_login;
        CREATE EVENT TRIGGER dsqlkit_login ON login EXECUTE FUNCTION sys.dsqlkit_on_login();
    END IF;
END $$;
