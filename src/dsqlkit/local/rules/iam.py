"""IAM role mappings (DSQL section 2): AWS IAM GRANT / REVOKE and who may connect as which role.

``AWS IAM GRANT app TO '<arn>'`` is not PostgreSQL syntax: :meth:`IamRoles.decide` recognises it
with PostgreSQL's scanner (pglast) and rewrites it into a call of ``sys.dsqlkit_iam_grant``
(``sql/30_iam.sql``), which checks that the caller is admin, that the role exists and that it is
not a superuser (nor REPLICATION, nor BYPASSRLS: DSQL has no such roles), and records the mapping
(listed in ``sys.iam_pg_role_mappings``) by role OID. :meth:`IamRoles.role_allows` asks the backend
at each connection (one query on a kept connection, no cache): a role dropped and re-created under
the same name, renamed, or made superuser since its mapping was made is never let in by it.

Example::

    roles = IamRoles(backend)
    await roles.start()
    decision = roles.decide("AWS IAM GRANT app TO 'arn:aws:iam::123456789012:role/app'")
    assert await roles.role_allows("admin", "arn:aws:iam::123456789012:user/anyone")
    await roles.stop()
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
from pglast import parse_sql, parser

from dsqlkit import dsql as spec
from dsqlkit.local.rules.policy import Decision

_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
#: IAM role or user ARNs (any partition), and STS assumed-role session ARNs.
ARN = re.compile(r"^arn:aws[a-z-]*:(iam::\d{12}:(role|user)/.+|sts::\d{12}:assumed-role/.+/.+)$")
_ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/.+$")
# (keyword after GRANT/REVOKE's role, procedure, command tag)
_FORMS = {
    "GRANT": ("TO", "sys.dsqlkit_iam_grant", spec.IAM_GRANT_TAG),
    "REVOKE": ("FROM", "sys.dsqlkit_iam_revoke", spec.IAM_REVOKE_TAG),
}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _role_name(text: str) -> str:
    """An identifier token's name: quoted as written, unquoted folded to lower case."""
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


def _string_value(text: str) -> str | None:
    """The value of a string constant token ('...', E'...', $$...$$), by PostgreSQL's parser."""
    try:
        (raw,) = parse_sql(f"SELECT {text}")
        stmt: Any = raw.stmt
        return str(stmt.targetList[0].val.val.sval)
    except (parser.ParseError, AttributeError, ValueError):
        return None


def parse_iam(sql: str) -> tuple[str, str, str] | None:
    """Recognise ``AWS IAM GRANT|REVOKE <role> TO|FROM '<arn>'``: (verb, role, arn), else None.

    Raises ``ValueError`` for a malformed statement that starts with AWS IAM.
    """
    try:
        tokens = [t for t in parser.scan(sql) if t.name not in _COMMENTS]
    except parser.ParseError:
        return None
    words = [sql[t.start : t.end + 1] for t in tokens]
    if [w.upper() for w in words[:2]] != ["AWS", "IAM"]:
        return None
    verb = words[2].upper() if len(words) > 2 else ""
    if verb not in _FORMS:
        raise ValueError(
            "expected AWS IAM GRANT <role> TO '<arn>' or AWS IAM REVOKE <role> FROM '<arn>'"
        )
    preposition = _FORMS[verb][0]
    if words[-1] == ";":
        words, tokens = words[:-1], tokens[:-1]
    if len(words) != 6 or words[4].upper() != preposition or tokens[5].name != "SCONST":
        raise ValueError(f"expected AWS IAM {verb} <role> {preposition} '<arn>'")
    arn = _string_value(words[5])
    if arn is None or tokens[3].name == "SCONST":
        raise ValueError(f"expected AWS IAM {verb} <role> {preposition} '<arn>'")
    return verb, _role_name(words[3]), arn


def role_arns(arn: str) -> tuple[str, ...]:
    """The ARNs a mapping may name for an identity: itself, and for an assumed-role session its role.

    Example: ``role_arns("arn:aws:sts::123456789012:assumed-role/app/s1")`` ends with
    ``"arn:aws:iam::123456789012:role/app"``.
    """
    match = _ASSUMED_ROLE.match(arn)
    if match is None:
        return (arn,)
    partition, account, role = match.groups()
    return (arn, f"arn:{partition}:iam::{account}:role/{role}")


class IamRoles:
    """The endpoint's IAM role mappings: statements, and the check at connection start.

    ``backend``: a :class:`dsqlkit.local.backend.postgres.Backend` (``dsn()``, ``fetch_admin()``).
    """

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        """Open the connections the checks at connection start use."""
        self._pool = await asyncpg.create_pool(
            self._backend.dsn(), min_size=1, max_size=2, max_inactive_connection_lifetime=0
        )

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def decide(self, sql: str) -> Decision | None:
        """The decision for AWS IAM GRANT / REVOKE, or None when ``sql`` is neither."""
        try:
            parsed = parse_iam(sql)
        except ValueError as exc:
            return Decision.refuse(spec.DsqlError("42601", f"syntax error: {exc}"))
        if parsed is None:
            return None
        verb, role, arn = parsed
        if not ARN.match(arn):
            return Decision.refuse(spec.INVALID_ARN.format(arn=arn))
        _, procedure, tag = _FORMS[verb]
        return Decision.rewrite(f"CALL {procedure}({_literal(role)}, {_literal(arn)})", tag)

    async def role_allows(self, role: str, arn: str) -> bool:
        """Whether IAM identity ``arn`` may connect as ``role``: admin always, others if mapped."""
        if role == spec.ADMIN_USER:
            return True
        if self._pool is None:
            raise RuntimeError("IamRoles is not started")
        return bool(await self._pool.fetchval(_ALLOWED, role, list(role_arns(arn))))


# The view joins the mappings to pg_roles by OID and leaves out privileged roles (30_iam.sql).
_ALLOWED = """
    SELECT EXISTS (SELECT 1 FROM sys.iam_pg_role_mappings
                   WHERE pg_role_name = $1 AND arn = ANY ($2::text[]))
"""
