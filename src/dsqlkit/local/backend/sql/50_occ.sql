-- OCC on the catalog (DSQL section 5, OC001): tell the endpoint which relations a DDL, GRANT or
-- REVOKE actually changed, in the session that ran it. The endpoint's relay reads this NOTICE
-- (SQLSTATE occ.CATALOG_NOTICE_SQLSTATE, DETAIL a JSON array of relation names, null = every
-- relation) and does not forward it. A DDL that changed nothing (CREATE TABLE IF NOT EXISTS on an
-- existing table, DROP ... IF EXISTS on a missing one) reports no object, so no notice is sent.
-- SET client_min_messages: the notice reaches the endpoint whatever the client's own setting.

CREATE OR REPLACE FUNCTION sys.dsqlkit_catalog_notice(names jsonb) RETURNS void
LANGUAGE plpgsql SET client_min_messages = notice AS $$
BEGIN
    IF names IS NOT NULL AND jsonb_array_length(names) > 0 THEN
        RAISE NOTICE USING ERRCODE = 'DQ001', MESSAGE = 'dsqlkit catalog change',
            DETAIL = names::text;
    END IF;
END $$;
REVOKE ALL ON FUNCTION sys.dsqlkit_catalog_notice(jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION sys.dsqlkit_on_catalog_change() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM sys.dsqlkit_catalog_notice((
        SELECT jsonb_agg(DISTINCT name) FROM (
            -- A relation (or a column, constraint ... of one): its name; an index: its table's too.
            SELECT c.relname::text AS name
            FROM pg_event_trigger_ddl_commands() d
            JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
            UNION
            SELECT t.relname::text
            FROM pg_event_trigger_ddl_commands() d
            JOIN pg_index i ON d.classid = 'pg_class'::regclass AND i.indexrelid = d.objid
            JOIN pg_class t ON t.oid = i.indrelid
            UNION
            -- GRANT / REVOKE report no object: every relation counts as touched.
            SELECT NULL FROM pg_event_trigger_ddl_commands() d WHERE d.command_tag IN ('GRANT', 'REVOKE')
        ) touched
    ));
END $$;

CREATE OR REPLACE FUNCTION sys.dsqlkit_on_catalog_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM sys.dsqlkit_catalog_notice((
        SELECT jsonb_agg(DISTINCT object_name)
        FROM pg_event_trigger_dropped_objects()
        WHERE classid = 'pg_class'::regclass AND object_name IS NOT NULL
    ));
END $$;

DROP EVENT TRIGGER IF EXISTS dsqlkit_catalog_change;
CREATE EVENT TRIGGER dsqlkit_catalog_change ON ddl_command_end
    EXECUTE FUNCTION sys.dsqlkit_on_catalog_change();
DROP EVENT TRIGGER IF EXISTS dsqlkit_catalog_drop;
CREATE EVENT TRIGGER dsqlkit_catalog_drop ON sql_drop
    EXECUTE FUNCTION sys.dsqlkit_on_catalog_drop();
