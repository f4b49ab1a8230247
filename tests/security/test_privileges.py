"""No path from a client role to PostgreSQL superuser or the OS (issue 11's first attacks).

Each attack runs over a real TLS socket against a real endpoint, as a client would: as ``admin``
(DSQL's admin, not a superuser) or as ``mallory``, a least-privileged role that logs in with a real
DbConnect token (the local admin identity's ARN granted to it with AWS IAM GRANT). Each test asserts
the refusal and that mallory is still no superuser; the module ends by checking that a good client
is served and that sessions are back to the baseline.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import psycopg
import pytest

from dsqlkit import dsql as spec
from dsqlkit.local import LocalEndpoint
from dsqlkit.local.identities import ADMIN_ARN
from dsqlkit.local.rules.dialect import REFUSALS
from dsqlkit.local.wire import protocol as pg
from tests.security import clients

ROLE = "mallory"
#: The SECURITY DEFINER sys functions a client role may execute (sql/90_privileges.sql).
CALLABLE = {
    "dsqlkit_raise",
    "dsqlkit_fail",
    "dsqlkit_enforced",
    "dsqlkit_is_user_table",
    "dsqlkit_quota_trigger_names",
    "dsqlkit_note_ddl",
    "dsqlkit_submit_job",
    "dsqlkit_record_job",
    "dsqlkit_wait_for_job",
    "wait_for_job",
    "dsqlkit_iam_grant",
    "dsqlkit_iam_revoke",
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(trust_environment=False) as ep:
        with psycopg.connect(ep.dsn(), autocommit=True) as admin:
            admin.execute(f"CREATE ROLE {ROLE} WITH LOGIN")
            admin.execute(f"GRANT CREATE ON SCHEMA public TO {ROLE}")
            admin.execute(f"AWS IAM GRANT {ROLE} TO '{ADMIN_ARN}'")
        base = clients.baseline(ep)
        yield ep
        good = clients.GoodClient(ep)
        good.check()
        good.close()
        clients.assert_back_to(ep, base)


@pytest.fixture
def admin(endpoint) -> Iterator[psycopg.Connection]:
    with psycopg.connect(endpoint.dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def mallory(endpoint) -> Iterator[psycopg.Connection]:
    with psycopg.connect(endpoint.dsn(ROLE), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ROLE,)
        yield conn
    assert not is_superuser(endpoint, ROLE)


def is_superuser(endpoint: LocalEndpoint, role: str) -> bool:
    with psycopg.connect(endpoint.backend.dsn(), autocommit=True) as su:
        row = su.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return bool(row and row[0])


def wait_for_job(conn: psycopg.Connection, job_id: str) -> tuple[str, str | None]:
    conn.execute(f"CALL sys.wait_for_job('{job_id}')")
    row = conn.execute("SELECT status, details FROM sys.jobs WHERE job_id = %s", (job_id,))
    status, details = row.fetchone()
    return status, details


def test_admin_is_dsqls_admin_not_a_superuser(admin):
    row = admin.execute(
        "SELECT rolsuper, rolreplication, rolbypassrls, rolcreaterole FROM pg_roles"
        " WHERE rolname = current_user"
    ).fetchone()
    assert row == (False, False, False, True)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        admin.execute("GRANT pg_execute_server_program TO admin")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        admin.execute("CREATE ROLE root2 SUPERUSER LOGIN")


@pytest.mark.parametrize("who", ["admin", "mallory"])
def test_copy_from_program_is_impossible(request, who):
    conn = request.getfixturevalue(who)
    for sql in ("COPY (SELECT 1) TO PROGRAM 'id'", "CREATE TABLE IF NOT EXISTS cp (a text)"):
        try:
            conn.execute(sql)
        except psycopg.errors.InsufficientPrivilege as exc:
            assert "external program" in str(exc)
    with pytest.raises(psycopg.Error) as info:
        conn.execute("COPY cp FROM PROGRAM 'id'")
    assert info.value.sqlstate in ("42501", "0A000"), info.value


def test_no_privileged_function_is_executable_by_clients(mallory):
    """SECURITY DEFINER functions only from the list; no trigger or event trigger function."""
    rows = mallory.execute(
        "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'sys'::regnamespace"
        " AND has_function_privilege(p.oid, 'EXECUTE')"
        " AND (p.prosecdef OR p.prorettype IN ('trigger'::regtype, 'event_trigger'::regtype))"
    ).fetchall()
    assert {name for (name,) in rows} <= CALLABLE
    for call in (
        "sys.dsqlkit_add_quota_triggers('pg_class'::regclass)",
        "sys.dsqlkit_note(-1000000, 0, 0)",
        "sys.dsqlkit_iam_role('postgres', 'x')",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            mallory.execute(f"SELECT {call}")


def test_submit_job_has_no_null_hole_and_runs_nothing_as_superuser(endpoint, mallory):
    # An OID that names no table: refused (the old ownership check was NULL, so it passed).
    with pytest.raises(psycopg.Error) as info:
        mallory.execute(
            "SELECT sys.dsqlkit_submit_job('VALIDATE_CONSTRAINT', 4242424::oid::regclass, NULL,"
            f" 'ALTER ROLE {ROLE} SUPERUSER', 'public')"
        )
    assert info.value.sqlstate == "22023"
    # A table of its own, a statement that is no job: the runner refuses it.
    mallory.execute("CREATE TABLE IF NOT EXISTS own (a int)")
    (job_id,) = mallory.execute(
        "SELECT * FROM sys.dsqlkit_submit_job('VALIDATE_CONSTRAINT', 'own'::regclass, NULL,"
        f" 'ALTER ROLE {ROLE} SUPERUSER', 'public')"
    ).fetchone()
    status, details = wait_for_job(mallory, job_id)
    assert status == "failed" and "not a VALIDATE_CONSTRAINT statement" in details
    # Not even another role's table can be named.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        mallory.execute(
            "SELECT sys.dsqlkit_submit_job('VALIDATE_CONSTRAINT', 'sys.jobs'::regclass, NULL,"
            " 'ALTER TABLE sys.jobs VALIDATE CONSTRAINT x', 'public')"
        )
    assert not is_superuser(endpoint, ROLE)


def test_validate_constraint_runs_the_check_as_the_client(endpoint, mallory):
    mallory.execute("CREATE TABLE IF NOT EXISTS checked (n int)")
    mallory.execute("INSERT INTO checked VALUES (1)")
    # A LANGUAGE sql function that tries to make its caller superuser, then one that says who runs.
    mallory.execute(
        "CREATE OR REPLACE FUNCTION escalate(int) RETURNS boolean LANGUAGE sql AS"
        f" $$ ALTER ROLE {ROLE} SUPERUSER; SELECT true $$"
    )
    mallory.execute(
        "CREATE OR REPLACE FUNCTION runs_as_me(int) RETURNS boolean LANGUAGE sql AS"
        f" $$ SELECT current_user = '{ROLE}' AND NOT current_setting('is_superuser')::boolean $$"
    )
    for name, function in (("c_escalate", "escalate"), ("c_me", "runs_as_me")):
        mallory.execute(
            f"ALTER TABLE checked ADD CONSTRAINT {name} CHECK ({function}(n)) NOT VALID"
        )
    (job_id,) = mallory.execute(
        "ALTER TABLE ASYNC checked VALIDATE CONSTRAINT c_escalate"
    ).fetchone()
    status, details = wait_for_job(mallory, job_id)
    assert status == "failed" and "permission denied" in details
    assert not is_superuser(endpoint, ROLE)
    (job_id,) = mallory.execute("ALTER TABLE ASYNC checked VALIDATE CONSTRAINT c_me").fetchone()
    assert wait_for_job(mallory, job_id) == ("completed", None)


def test_index_expression_runs_as_the_client(endpoint, mallory):
    mallory.execute("CREATE TABLE IF NOT EXISTS indexed (n int)")
    mallory.execute("INSERT INTO indexed VALUES (1)")
    # Fails (not a number) unless the build runs as mallory, without superuser.
    mallory.execute(
        "CREATE OR REPLACE FUNCTION only_me(int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT"
        f" CASE WHEN current_user = '{ROLE}' AND NOT current_setting('is_superuser')::boolean"
        " THEN $1 ELSE current_user::text::int END $$"
    )
    (job_id,) = mallory.execute("CREATE INDEX ASYNC indexed_me ON indexed (only_me(n))").fetchone()
    assert wait_for_job(mallory, job_id) == ("completed", None)
    assert not is_superuser(endpoint, ROLE)


@pytest.mark.parametrize("role", ["postgres", "privileged"])
def test_iam_grant_to_a_privileged_role_is_refused(endpoint, admin, role):
    if role == "privileged":
        with psycopg.connect(endpoint.backend.dsn(), autocommit=True) as su:
            su.execute("DROP ROLE IF EXISTS privileged")
            su.execute("CREATE ROLE privileged LOGIN BYPASSRLS")
    with pytest.raises(psycopg.Error) as info:
        admin.execute(f"AWS IAM GRANT {role} TO '{ADMIN_ARN}'")
    error = spec.IAM_PRIVILEGED_ROLE.format(role=role)
    assert (info.value.sqlstate, info.value.diag.message_primary) == (error.sqlstate, error.message)
    assert info.value.diag.message_hint == error.hint
    with pytest.raises(psycopg.OperationalError, match=spec.ACCESS_DENIED.message.split(":")[0]):
        psycopg.connect(endpoint.dsn(role)).close()


def test_a_mapping_made_before_the_role_became_superuser_no_longer_counts(endpoint, admin):
    admin.execute("CREATE ROLE later LOGIN")
    admin.execute(f"AWS IAM GRANT later TO '{ADMIN_ARN}'")
    psycopg.connect(endpoint.dsn("later")).close()
    with psycopg.connect(endpoint.backend.dsn(), autocommit=True) as su:
        su.execute("ALTER ROLE later SUPERUSER")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(endpoint.dsn("later")).close()


def test_a_role_dropped_and_recreated_keeps_no_mapping(endpoint, admin):
    admin.execute("CREATE ROLE again LOGIN")
    admin.execute(f"AWS IAM GRANT again TO '{ADMIN_ARN}'")
    psycopg.connect(endpoint.dsn("again")).close()  # mapped: in (and cached, before the fix)
    admin.execute("DROP ROLE again")
    admin.execute("CREATE ROLE again LOGIN")
    assert admin.execute(
        "SELECT count(*) FROM sys.iam_pg_role_mappings WHERE pg_role_name = 'again'"
    ).fetchone() == (0,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(endpoint.dsn("again")).close()


# --- Backend-enforced DSQL rules (issue 10, item 3): routes around the parser ------------------


def assert_dsql_error(info: pytest.ExceptionInfo[psycopg.Error], error: spec.DsqlError) -> None:
    assert (info.value.sqlstate, info.value.diag.message_primary) == (error.sqlstate, error.message)


@pytest.fixture
def table(mallory) -> str:
    mallory.execute("DROP TABLE IF EXISTS q")
    mallory.execute("CREATE TABLE q (id int PRIMARY KEY)")
    return "q"


def test_prepare_execute_cannot_mix_ddl_and_dml(mallory, table):
    mallory.execute(f"PREPARE ins AS INSERT INTO {table} VALUES (1)")
    mallory.execute("BEGIN")
    mallory.execute("CREATE TABLE mixed (a int)")
    with pytest.raises(psycopg.Error) as info:
        mallory.execute("EXECUTE ins")
    assert_dsql_error(info, spec.DDL_AND_DML)
    mallory.execute("ROLLBACK")
    assert mallory.execute("SELECT to_regclass('mixed')").fetchone() == (None,)
    assert mallory.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("TRUNCATE q", REFUSALS["truncate"]),
        ("INSERT INTO q VALUES (7); CREATE TABLE f_mixed (a int)", spec.DDL_AND_DML),
        ("CREATE TABLE f_one (a int); CREATE TABLE f_two (a int)", spec.MULTIPLE_DDL),
        ("SELECT pg_advisory_lock(1)", REFUSALS["function"].format(name="pg_advisory_lock")),
        ("SELECT pg_notify('dsqlkit_jobs', 'x')", REFUSALS["notify"]),
        ("ALTER TABLE q DISABLE TRIGGER USER", spec.QUOTA_TRIGGER_PROTECTED),
        ("DROP TRIGGER dsqlkit_quota_insert ON q", spec.QUOTA_TRIGGER_PROTECTED),
        ("ALTER TRIGGER dsqlkit_quota_insert ON q RENAME TO x", spec.QUOTA_TRIGGER_PROTECTED),
    ],
)
def test_sql_function_bodies_get_dsqls_errors(mallory, table, body, error):
    mallory.execute(f"CREATE OR REPLACE FUNCTION route() RETURNS void LANGUAGE sql AS $$ {body} $$")
    with pytest.raises(psycopg.Error) as info:
        mallory.execute("SELECT route()")
    assert_dsql_error(info, error)
    assert info.value.diag.context is None  # only the fields DSQL sends
    assert info.value.diag.source_file is None
    assert mallory.execute("SELECT 1").fetchone() == (1,)  # the session is usable


def test_the_row_quota_cannot_be_lifted(endpoint, mallory, table):
    limit = endpoint.config.quotas.max_rows_per_transaction
    mallory.execute(
        "CREATE OR REPLACE FUNCTION lift() RETURNS void LANGUAGE sql AS $$"
        " SELECT set_config('dsqlkit.max_' || 'rows', '', false);"
        " SELECT set_config('dsqlkit.rows', '-1000000', true) $$"
    )
    mallory.execute("BEGIN")
    mallory.execute(f"INSERT INTO {table} SELECT g FROM generate_series(1, {limit}) g")
    mallory.execute("SELECT lift()")
    with pytest.raises(psycopg.Error) as info:
        mallory.execute(f"INSERT INTO {table} VALUES (-1)")
    assert_dsql_error(info, spec.TRANSACTION_ROWS_EXCEEDED)
    mallory.execute("ROLLBACK")


def test_role_settings_dsql_does_not_allow_are_removed_at_login(endpoint, mallory):
    mallory.execute(
        "CREATE OR REPLACE FUNCTION persist() RETURNS void LANGUAGE sql AS"
        f" $$ ALTER ROLE {ROLE} SET statement_timeout = 1; ALTER ROLE {ROLE} SET datestyle = 'ISO' $$"
    )
    mallory.execute("SELECT persist()")
    with psycopg.connect(endpoint.dsn(ROLE), autocommit=True) as later:
        assert later.execute("SHOW statement_timeout").fetchone() == ("0",)
        row = later.execute(
            "SELECT setconfig FROM pg_db_role_setting WHERE setrole = current_user::regrole"
        ).fetchone()
        assert row == (["DateStyle=ISO"],) or row == (["datestyle=ISO"],)


def test_function_call_message_cannot_take_an_advisory_lock(endpoint):
    sock = clients.authenticated(endpoint, ROLE)
    try:
        sock.sendall(pg.query("SELECT 'pg_try_advisory_lock(bigint)'::regprocedure::oid"))
        rows = [body for kind, body in clients.read_messages(sock) if kind == "D"]
        oid = int(rows[0][6:])
        # Function OID; one binary argument format; one argument (int8 1); binary result.
        body = struct.pack("!Ihhhiqh", oid, 1, 1, 1, 8, 1, 1)
        sock.sendall(pg.message(b"F", body))
        answer = clients.read_messages(sock)
        (error,) = clients.errors(answer)
        # The endpoint refuses FunctionCall itself; under it, the backend refuses the function.
        refusals = (
            spec.FUNCTION_CALL_UNSUPPORTED,
            REFUSALS["function"].format(name="pg_try_advisory_lock"),
        )
        assert (error["C"], error["M"]) in {(e.sqlstate, e.message) for e in refusals}
        assert answer[-1] == ("Z", b"I")
        with psycopg.connect(endpoint.backend.dsn(), autocommit=True) as su:
            held = su.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            assert held.fetchone() == (0,)
    finally:
        sock.close()
