"""IAM role mappings: AWS IAM GRANT / REVOKE, and who may connect as a custom role.

The endpoint trusts two extra identities from its credentials file (written here before start):
one whose ARN gets granted to role ``app``, one that never does. Tokens are real SigV4 tokens
signed with those identities' keys.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from dsqlkit import dsql as spec
from dsqlkit.auth.sigv4 import presign_token
from dsqlkit.local.endpoint import LocalEndpoint
from dsqlkit.local.identities import FILE_NAME
from dsqlkit.local.rules.iam import parse_iam, role_arns

APP_ARN = "arn:aws:iam::123456789012:role/app"
OTHER_ARN = "arn:aws:iam::123456789012:role/other"
# Local test keys, made up for this file (not AWS credentials).
APP = {"access_key": "AKIAAPPTESTKEY000001", "secret_key": "app-secret-for-tests", "arn": APP_ARN}
OTHER = {"access_key": "AKIAOTHERTESTKEY0002", "secret_key": "other-secret", "arn": OTHER_ARN}
ADMIN = {
    "access_key": "AKIAADMINTESTKEY0003",
    "secret_key": "admin-secret-for-tests",
    "arn": "arn:aws:iam::123456789012:user/admin",
}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> Iterator[LocalEndpoint]:
    data_dir: Path = tmp_path_factory.mktemp("iam")
    (data_dir / FILE_NAME).write_text(json.dumps({"admin": ADMIN, "identities": [APP, OTHER]}))
    (data_dir / FILE_NAME).chmod(0o600)
    with LocalEndpoint(data_dir=data_dir, trust_environment=False) as ep:
        with psycopg.connect(ep.dsn(), autocommit=True) as admin:
            admin.execute("CREATE ROLE app WITH LOGIN")
        yield ep


@pytest.fixture
def admin(endpoint) -> Iterator[psycopg.Connection]:
    with psycopg.connect(endpoint.dsn(), autocommit=True) as conn:
        yield conn
        conn.execute("SELECT 1")  # the session is still usable


def app_kwargs(endpoint: LocalEndpoint, identity: dict[str, str]) -> dict[str, Any]:
    token = presign_token(
        host=endpoint.host,
        region=endpoint.region,
        action=spec.ACTION_USER,
        access_key=identity["access_key"],
        secret_key=identity["secret_key"],
    )
    return {
        "host": endpoint.host,
        "port": endpoint.port,
        "user": "app",
        "database": spec.DATABASE,
        "password": token,
        "ssl": ssl.create_default_context(cafile=str(endpoint.ca_file)),
    }


async def connect_as_app(endpoint: LocalEndpoint, identity: dict[str, str]) -> str:
    conn = await asyncpg.connect(**app_kwargs(endpoint, identity))
    try:
        return str(await conn.fetchval("SELECT current_user"))
    finally:
        await conn.close()


async def assert_refused(endpoint: LocalEndpoint, identity: dict[str, str]) -> None:
    with pytest.raises(asyncpg.PostgresError) as info:
        await connect_as_app(endpoint, identity)
    error = spec.ACCESS_DENIED.format(reason=spec.HINT_NOT_AUTHORIZED.format(arn=identity["arn"]))
    assert info.value.sqlstate == error.sqlstate
    assert info.value.args[0] == error.message
    assert info.value.hint == error.hint


def test_parsing():
    assert parse_iam("SELECT 1") is None
    assert parse_iam("aws iam grant \"App\" to E'arn:x';") == ("GRANT", "App", "arn:x")
    assert parse_iam("AWS IAM REVOKE app FROM 'arn:y'") == ("REVOKE", "app", "arn:y")
    for bad in ("AWS IAM GRANT app 'arn:x'", "AWS IAM DENY app TO 'x'", "AWS IAM GRANT app TO x"):
        with pytest.raises(ValueError, match="AWS IAM"):
            parse_iam(bad)
    assert role_arns("arn:aws:sts::123456789012:assumed-role/app/session-1") == (
        "arn:aws:sts::123456789012:assumed-role/app/session-1",
        APP_ARN,
    )


async def test_grant_lets_the_identity_in_and_revoke_shuts_it_out(endpoint, admin):
    await assert_refused(endpoint, APP)
    cur = admin.execute(f"AWS IAM GRANT app TO '{APP_ARN}'")
    assert cur.statusmessage == spec.IAM_GRANT_TAG
    rows = admin.execute(
        "SELECT arn, pg_role_name, grantor_pg_role_name, iam_oid IS NOT NULL,"
        " pg_role_oid = 'app'::regrole, grantor_pg_role_oid = 'admin'::regrole"
        " FROM sys.iam_pg_role_mappings"
    ).fetchall()
    assert rows == [(APP_ARN, "app", "admin", True, True, True)]

    assert await connect_as_app(endpoint, APP) == "app"
    await assert_refused(endpoint, OTHER)  # an identity that was never granted

    cur = admin.execute(f"AWS IAM REVOKE app FROM '{APP_ARN}'")
    assert cur.statusmessage == spec.IAM_REVOKE_TAG
    await assert_refused(endpoint, APP)
    assert admin.execute("SELECT count(*) FROM sys.iam_pg_role_mappings").fetchone() == (0,)


async def test_a_rolled_back_grant_grants_nothing(endpoint, admin):
    admin.execute("BEGIN")
    admin.execute(f"AWS IAM GRANT app TO '{OTHER_ARN}'")
    admin.execute("ROLLBACK")
    await assert_refused(endpoint, OTHER)


def test_errors(endpoint, admin):
    with pytest.raises(psycopg.errors.UndefinedObject, match='role "nobody_here" does not exist'):
        admin.execute(f"AWS IAM GRANT nobody_here TO '{APP_ARN}'")
    with pytest.raises(psycopg.errors.UndefinedObject, match="not granted"):
        admin.execute(f"AWS IAM REVOKE app FROM '{OTHER_ARN}'")
    with pytest.raises(psycopg.Error) as info:
        admin.execute("AWS IAM GRANT app TO 'not-an-arn'")
    assert info.value.sqlstate == spec.INVALID_ARN.sqlstate
    assert info.value.diag.message_primary == spec.INVALID_ARN.format(arn="not-an-arn").message
    with pytest.raises(psycopg.errors.SyntaxError):
        admin.execute(f"AWS IAM GRANT app '{APP_ARN}'")


async def test_only_admin_maps_roles(endpoint, admin):
    admin.execute(f"AWS IAM GRANT app TO '{APP_ARN}'")
    try:
        conn = await asyncpg.connect(**app_kwargs(endpoint, APP))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"AWS IAM GRANT app TO '{OTHER_ARN}'")
        finally:
            await conn.close()
    finally:
        admin.execute(f"AWS IAM REVOKE app FROM '{APP_ARN}'")
