-- IAM role mappings (DSQL section 2): AWS IAM GRANT <role> TO '<arn>' / AWS IAM REVOKE <role> FROM
-- '<arn>'. The endpoint (dsqlkit.local.iam) rewrites those statements into calls of the
-- procedures below; the view sys.iam_pg_role_mappings lists the mappings as DSQL does. Mappings are
-- keyed by role OID: a role dropped and re-created under the same name has none. The endpoint reads
-- them afresh at each connection (dsqlkit.local.rules.iam). DSQL has no superuser: no identity can
-- be mapped to a superuser (the endpoint's bootstrap role among them), nor to a role with
-- REPLICATION or BYPASSRLS, and a mapping made before such a privilege was given no longer counts.

CREATE TABLE IF NOT EXISTS sys.dsqlkit_iam_mappings (
    iam_oid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    arn text NOT NULL,
    pg_role_oid oid NOT NULL,
    grantor_pg_role_oid oid NOT NULL,
    UNIQUE (arn, pg_role_oid)
);
REVOKE ALL ON sys.dsqlkit_iam_mappings FROM PUBLIC;

-- Names come from pg_roles, so a dropped role's mappings disappear with it.
CREATE OR REPLACE VIEW sys.iam_pg_role_mappings AS
    SELECT m.iam_oid, m.arn, m.pg_role_oid, r.rolname AS pg_role_name,
           m.grantor_pg_role_oid, g.rolname AS grantor_pg_role_name
    FROM sys.dsqlkit_iam_mappings m
    JOIN pg_catalog.pg_roles r ON r.oid = m.pg_role_oid
        AND NOT (r.rolsuper OR r.rolreplication OR r.rolbypassrls)
    LEFT JOIN pg_catalog.pg_roles g ON g.oid = m.grantor_pg_role_oid;
REVOKE ALL ON sys.iam_pg_role_mappings FROM PUBLIC;
GRANT SELECT ON sys.iam_pg_role_mappings TO PUBLIC;

-- Only the owner of database postgres (DSQL's admin, 00_core.sql) or a superuser may map roles.
-- Returns the role's oid; raises DSQL-style errors for a non-admin or a missing role.
CREATE OR REPLACE FUNCTION sys.dsqlkit_iam_role(p_role text, p_statement text) RETURNS oid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    role_oid oid;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_roles r
        WHERE r.rolname = session_user AND (r.rolsuper OR r.oid = (
            SELECT datdba FROM pg_database WHERE datname = current_database())))
    THEN
        PERFORM sys.dsqlkit_raise('42501', format('permission denied to %s', p_statement),
            NULL, 'Only the admin role may map IAM identities to roles.');
    END IF;
    SELECT oid INTO role_oid FROM pg_roles WHERE rolname = p_role;
    IF role_oid IS NULL THEN
        PERFORM sys.dsqlkit_raise('42704', format('role "%s" does not exist', p_role),
            NULL, format('Create it first: CREATE ROLE %I WITH LOGIN', p_role));
    END IF;
    IF p_statement = 'AWS IAM GRANT' AND EXISTS (
            SELECT 1 FROM pg_roles WHERE oid = role_oid
            AND (rolsuper OR rolreplication OR rolbypassrls OR oid = 10 OR rolname LIKE 'pg\_%'))
    THEN
        PERFORM sys.dsqlkit_fail('iam_privileged_role', p_role);
    END IF;
    RETURN role_oid;
END $$;

CREATE OR REPLACE PROCEDURE sys.dsqlkit_iam_grant(p_role text, p_arn text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO sys.dsqlkit_iam_mappings (arn, pg_role_oid, grantor_pg_role_oid)
        VALUES (p_arn, sys.dsqlkit_iam_role(p_role, 'AWS IAM GRANT'),
                (SELECT oid FROM pg_roles WHERE rolname = session_user))
        ON CONFLICT (arn, pg_role_oid) DO NOTHING;
END $$;

CREATE OR REPLACE PROCEDURE sys.dsqlkit_iam_revoke(p_role text, p_arn text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    role_oid oid := sys.dsqlkit_iam_role(p_role, 'AWS IAM REVOKE');
BEGIN
    DELETE FROM sys.dsqlkit_iam_mappings WHERE arn = p_arn AND pg_role_oid = role_oid;
    IF NOT FOUND THEN
        PERFORM sys.dsqlkit_raise('42704',
            format('IAM identity %s is not granted to role "%s"', p_arn, p_role),
            NULL, 'sys.iam_pg_role_mappings lists the mappings.');
    END IF;
END $$;
