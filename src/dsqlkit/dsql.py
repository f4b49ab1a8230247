"""Aurora DSQL's numbers and messages: the one table the endpoint, the connector and the tests read.

Everything a real DSQL cluster says or enforces that dsqlkit reproduces lives here, so that a change
in DSQL's behaviour is a change in one place. Tests import these names instead of repeating literals.
Entries marked *emulator decision* are our choice where the real service's answer is unknown
(``shared/dsql-behavior.md`` names them); they are kept here so they are easy to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# --- Endpoint and connection start (section 1) -------------------------------------------------

DEFAULT_PORT = 5432
DATABASE = "postgres"
#: What ``server_version`` reports and what ``SELECT version()`` starts with.
SERVER_VERSION = "16.15"
SERVER_VERSION_NUM = "160015"
#: Region from a DSQL host name (the regex every official connector uses).
REGION_FROM_HOST = re.compile(r"\.dsql[^.]*\.([^.]+)\.on\.aws$")
CLUSTER_ID = re.compile(r"^[a-z0-9]{26}$")
#: ALPN protocol name for direct TLS (PostgreSQL 17).
ALPN_PROTOCOL = "postgresql"
#: Emulator decision: caps on what a client may send before and after authentication.
MAX_STARTUP_PACKET = 10_000
MAX_MESSAGE_SIZE = 10 * 1024 * 1024


@dataclass(frozen=True)
class DsqlError:
    """One error as DSQL reports it: severity, SQLSTATE, message and optional detail/hint.

    ``message``, ``detail`` and ``hint`` may hold ``str.format`` fields, filled by :meth:`format`.
    """

    sqlstate: str
    message: str
    severity: str = "ERROR"
    detail: str | None = None
    hint: str | None = None

    def format(self, **fields: object) -> DsqlError:
        """Return a copy with the ``{name}`` fields of message, detail and hint filled in."""

        def fill(text: str | None) -> str | None:
            return None if text is None else text.format(**fields)

        return DsqlError(
            self.sqlstate,
            fill(self.message) or "",
            self.severity,
            fill(self.detail),
            fill(self.hint),
        )


def fatal(sqlstate: str, message: str, hint: str | None = None) -> DsqlError:
    return DsqlError(sqlstate, message, "FATAL", None, hint)


# Connection start
#: A plaintext StartupMessage. DSQL's text contains "SSL is mandatory" (asserted by the official
#: connector's suite against real clusters); the rest of the text and the SQLSTATE: emulator decision.
SSL_MANDATORY = fatal("08P01", "unable to accept connection, SSL is mandatory")
#: A second GSSENCRequest on one connection (PostgreSQL refuses it too, with its own text): emulator.
GSSENC_REPEATED = fatal("08P01", "unable to accept connection, GSSENCRequest sent twice")
SNI_MISSING = fatal("08P01", "unable to accept connection, sni was not received")
UNKNOWN_HOST = fatal("08P01", "unable to accept connection, unknown host name {host}")  # emulator
ALPN_MISSING = fatal(
    "08P01", "unable to accept connection, direct TLS requires ALPN protocol postgresql"
)  # emulator decision
DATABASE_MISSING = fatal("3D000", 'database "{database}" does not exist')
USER_MISSING = fatal("28000", "no PostgreSQL user name specified in startup packet")
INVALID_MESSAGE_LENGTH = fatal("08P01", "invalid message length")
INVALID_STARTUP_PACKET = fatal("08P01", "invalid startup packet layout")
UNSUPPORTED_PROTOCOL = fatal(
    "0A000", "unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0"
)
# Emulator decisions for the endpoint's own session handling:
STARTUP_TIMEOUT = fatal("08P01", "unable to accept connection, startup phase timed out")
#: Emulator decision: how long a client may take from TCP accept to authenticated (slowloris).
STARTUP_TIMEOUT_SECONDS = 10.0
INVALID_PASSWORD_PACKET = fatal("08P01", "invalid password packet size")
PROTOCOL_VIOLATION = fatal("08P01", "protocol violation: unexpected message type {kind!r}")
ADMIN_SHUTDOWN = fatal("57P01", "terminating connection due to administrator command")
BACKEND_LOST = fatal("08006", "server closed the connection unexpectedly")
BACKEND_UNAVAILABLE = fatal("08006", "unable to accept connection, the database is not running")

# --- Authentication (section 2) ------------------------------------------------------------------

ACTION_ADMIN = "DbConnectAdmin"
ACTION_USER = "DbConnect"
ADMIN_USER = "admin"
SERVICE = "dsql"
TOKEN_DEFAULT_EXPIRES = 900
TOKEN_MAX_EXPIRES = 604_800
#: Emulator decision: how far in the future X-Amz-Date may be.
TOKEN_MAX_CLOCK_SKEW = 300

ACCESS_DENIED = fatal("08006", "unable to accept connection, access denied", "{reason}")
# Reasons given in the hint of ACCESS_DENIED
HINT_WRONG_ACTION = "Wrong user to action mapping. user: {user}, action: {action}"
HINT_EXPIRED = "Signature expired: {signed_at} is now earlier than {now} ({signed_at} + {expires})"
HINT_NOT_AUTHORIZED = "User: {arn} is not authorized to access this resource"
HINT_BAD_SIGNATURE = "The request signature we calculated does not match the signature you provided"
HINT_UNKNOWN_KEY = "The security token included in the request is invalid"
HINT_CREDENTIALS_EXPIRED = "The security token included in the request is expired"
HINT_MALFORMED = "Malformed auth token: {what}"
HINT_FUTURE = "Signature not yet current: {signed_at} is still later than {now} plus clock skew"
#: X-Amz-Expires over TOKEN_MAX_EXPIRES (DSQL's text, asserted by the official connector's suite).
HINT_EXPIRES_TOO_LONG = "X-Amz-Expires must be less than a week (in seconds)"


def action_for_user(user: str) -> str:
    """The IAM action a token for ``user`` must carry: DbConnectAdmin for admin, else DbConnect."""
    return ACTION_ADMIN if user == ADMIN_USER else ACTION_USER


# --- Connection quotas (section 3) -----------------------------------------------------------------

MAX_CONNECTIONS = 10_000
CONNECTION_RATE_PER_SECOND = 100.0
CONNECTION_BURST = 1_000
CONNECTION_LIFETIME_SECONDS = 3_600
TOO_MANY_CONNECTIONS = fatal("53300", "Unable to accept connection, too many open connections.")
RATE_EXCEEDED = fatal("53400", "Unable to accept connection, rate exceeded.")
LIFETIME_EXCEEDED = fatal(
    "57P01", "terminating connection, connection lifetime of {seconds}s exceeded"
)  # emulator decision

# --- Transaction quotas (section 3) ----------------------------------------------------------------

TRANSACTION_MAX_AGE_SECONDS = 300
TRANSACTION_MAX_ROWS = 3_000
TRANSACTION_MAX_BYTES = 10 * 1024 * 1024
TRANSACTION_AGE_EXCEEDED = DsqlError(
    "54000",
    "transaction age limit of {limit}s exceeded",
    detail="Current transaction age {age}s exceeds {limit}s",
)
TRANSACTION_ROWS_EXCEEDED = DsqlError("54000", "transaction row limit exceeded")
TRANSACTION_SIZE_EXCEEDED = DsqlError("54000", "transaction size limit 10mb exceeded")
QUERY_MEMORY_EXCEEDED = DsqlError(
    "54000", "query requires more than allowed temp space of 131072 KB to execute"
)

# --- Sessions and transactions (section 4) --------------------------------------------------------

SETTABLE_PARAMETERS = frozenset(
    {
        "application_name",
        "client_encoding",
        "datestyle",
        "extra_float_digits",
        "intervalstyle",
        "timezone",
        "search_path",
        "enable_bitmapscan",
        "enable_hashjoin",
        "enable_indexonlyscan",
        "enable_indexscan",
        "enable_material",
        "enable_mergejoin",
        "enable_nestloop",
        "dsql.enable_batched_nestloop",
        "enable_seqscan",
        "disable_sync_create_index",
    }
)
#: Parameters that may only be set with SET LOCAL.
SET_LOCAL_ONLY_PARAMETERS = frozenset({"role"})
PARAMETER_NOT_SUPPORTED = DsqlError(
    "0A000", 'setting configuration parameter "{name}" not supported'
)
UNSUPPORTED_ISOLATION = DsqlError("0A000", "Unsupported isolation level: {level}")
TRANSACTION_ABORTED = DsqlError(
    "25P02", "current transaction is aborted, commands ignored until end of transaction block"
)
MULTIPLE_DDL = DsqlError("0A000", "multiple ddl statements not supported in a transaction")
DDL_AND_DML = DsqlError("0A000", "ddl and dml are not supported in the same transaction")
SERVER_UNAVAILABLE = DsqlError("XX000", "server unavailable")
#: Emulator decision: the FunctionCall protocol message ('F') is refused (DSQL documents none).
FUNCTION_CALL_UNSUPPORTED = DsqlError(
    "0A000",
    "the FunctionCall protocol message is not supported",
    hint="Call the function in a query instead: SELECT f(...).",
)
#: PostgreSQL's text for SQL that does not decode in the session's client_encoding.
INVALID_BYTE_SEQUENCE = DsqlError(
    "22021", 'invalid byte sequence for encoding "{encoding}": {bytes}'
)
#: PostgreSQL's answer to a statement nested deeper than its stack.
STACK_DEPTH_EXCEEDED = DsqlError(
    "54001",
    "stack depth limit exceeded",
    hint="The statement is nested too deeply: flatten it (fewer nested expressions or subqueries).",
)
#: Emulator decision: what one session may keep of its prepared statements' classifications
#: (checked again at each Bind): a count and a size in bytes.
MAX_KEPT_STATEMENTS = 1000
MAX_KEPT_STATEMENT_BYTES = 1024 * 1024
TOO_MANY_PREPARED = DsqlError(
    "54000",
    "too many prepared statements in this session (at most {count}, {size} KiB)",
    hint="Close prepared statements you no longer use (Close message or DEALLOCATE).",
)
#: PostgreSQL's refusal of startup options its getopt rules reject.
INVALID_STARTUP_OPTIONS = fatal(
    "42601",
    "invalid command-line arguments for server process: {reason}",
    "Set parameters in options as -c name=value or --name=value.",
)
#: Emulator decision: replication connections (startup parameter replication) are refused.
REPLICATION_UNSUPPORTED = fatal("0A000", "replication connections are not supported")

# --- Optimistic concurrency (section 5) ------------------------------------------------------------

OCC_SQLSTATE = "40001"
OCC_DATA_CONFLICT = DsqlError(OCC_SQLSTATE, "change conflicts with another transaction (OC000)")
OCC_SCHEMA_CONFLICT = DsqlError(
    OCC_SQLSTATE, "schema has been updated by another transaction (OC001)"
)
#: Message fragments by which clients recognise OCC errors (current and older texts).
OCC_CODES = ("OC000", "OC001")

# --- Dialect (section 6) -----------------------------------------------------------------------------
UNSUPPORTED_SQLSTATE = "0A000"
#: A statement text the local endpoint cannot classify within its budgets (``rules/offload.py``):
#: emulator decision (DSQL documents no limit on a statement's length).
STATEMENT_TOO_COMPLEX = DsqlError(
    "54001",
    "statement too complex to check: it needs more than {seconds} s or {mib} MiB to parse;"
    " split it into smaller statements",
)
#: Emulator decision for DSQL's class-22 refusals (bad CACHE, sequence type).
INVALID_PARAMETER_SQLSTATE = "22023"
#: Valid CACHE values for identity columns and sequences: exactly 1, or at least this.
MIN_LARGE_CACHE = 65_536


def _unsupported(message: str) -> DsqlError:
    return DsqlError(UNSUPPORTED_SQLSTATE, message)


#: DSQL's refusals of statements, by rule name (``dsqlkit.local.rules.dialect`` decides which
#: applies). ``{name}`` fields are filled by :meth:`DsqlError.format`.
DIALECT_REFUSALS: dict[str, DsqlError] = {
    "truncate": _unsupported("unsupported statement: Truncate"),
    "create_extension": _unsupported("unsupported statement: CreateExtension"),
    "create_trigger": _unsupported("CREATE TRIGGER not supported"),
    "create_database": _unsupported("unsupported statement: Createdb"),
    "temp_table": _unsupported("TEMPORARY or TEMP table not supported for CREATE TABLE"),
    "unlogged_table": _unsupported("UNLOGGED table not supported for CREATE TABLE"),
    "serial": DsqlError("42704", 'type "{name}" does not exist'),
    "create_table_as": _unsupported("unsupported statement: CreateTableAs"),
    "enum": _unsupported("CREATE TYPE not supported"),
    "composite": _unsupported("unsupported statement: CompositeType"),
    "range": _unsupported("unsupported statement: CreateRange"),
    "tablespace": _unsupported("unsupported statement: CreateTableSpace"),
    "foreign_table": _unsupported("unsupported statement: CreateForeignTable"),
    "vacuum": _unsupported("unsupported VACUUM statement"),
    "listen": _unsupported("unsupported statement: Listen"),
    "notify": _unsupported("unsupported statement: Notify"),
    "unlisten": _unsupported("unsupported statement: Unlisten"),
    "alter_system": _unsupported("unsupported statement: AlterSystem"),
    "do": _unsupported("unsupported statement: Do"),  # emulator decision
    "function_language": _unsupported("CREATE FUNCTION with language {language} not supported"),
    "procedure": _unsupported("PROCEDURE is not supported"),
    "savepoint": _unsupported("unsupported transaction statement: {statement}"),
    "locking": _unsupported(
        "locking clauses other than FOR UPDATE/FOR KEY SHARE are not supported"
    ),
    "tablesample": _unsupported("TABLESAMPLE clause not supported"),
    "function": _unsupported("function {name} not supported"),
    "sync_index": _unsupported("unsupported mode. please use CREATE INDEX ASYNC."),
    "concurrently": _unsupported("CONCURRENTLY not supported for CREATE INDEX"),
    "index_sort": _unsupported("specifying sort order not supported for index keys"),
    "index_opclass": _unsupported("opclass not supported for index keys"),
    "datatype": _unsupported("datatype {type} not supported"),
    "identity_cache": _unsupported(
        "identity column is not supported without an explicit cache size. please define CACHE"
        " greater than or equal to 65536 or equal to 1"
    ),
    "sequence_cache": _unsupported(
        "CREATE SEQUENCE is not supported without an explicit cache size. please define CACHE"
        " greater than or equal to 65536 or equal to 1"
    ),
    # An explicit CACHE that is neither 1 nor >= MIN_LARGE_CACHE, and a sequence type other than
    # bigint: class 22, not 0A000 (the official SQLAlchemy adapter's suite matches the CACHE text
    # against real clusters); 22023 and the texts around DSQL's words are emulator decisions.
    "cache_value": DsqlError(
        INVALID_PARAMETER_SQLSTATE,
        "CACHE {cache} is not supported: CACHE must be greater than or equal to 65536"
        " or equal to 1",
    ),
    "sequence_type": DsqlError(INVALID_PARAMETER_SQLSTATE, "sequence type must be bigint"),
    "identity_type": _unsupported(
        "datatype {type} not supported, identity column type must be bigint"
    ),
    "add_column_constraint": _unsupported("ALTER TABLE ADD COLUMN with constraint not supported"),
    "add_constraint": _unsupported("unsupported ALTER TABLE ADD CONSTRAINT statement"),
    "alter_column_type": _unsupported(
        "unsupported ALTER TABLE ALTER COLUMN ... SET DATA TYPE statement"
    ),
    "isolation": UNSUPPORTED_ISOLATION,
    "parameter": PARAMETER_NOT_SUPPORTED,
}


# --- Asynchronous jobs (section 6) and IAM role mappings (section 2) -----------------------------

#: A job id: 26 lowercase base32 characters.
JOB_ID = re.compile(r"^[a-z2-7]{26}$")
JOB_STATUSES = ("submitted", "processing", "completed", "failed")
WAIT_FOR_JOB_IS_PROCEDURE = DsqlError(
    "42809", "sys.wait_for_job(text) is a procedure", hint="To call a procedure, use CALL."
)
#: What ``sys.current_session_id()`` returns: emulator decision (DSQL's format is not documented).
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
#: Emulator decision: the command tags of AWS IAM GRANT / REVOKE (the real ones are unknown).
IAM_GRANT_TAG = "AWS IAM GRANT"
IAM_REVOKE_TAG = "AWS IAM REVOKE"
INVALID_ARN = DsqlError(
    "22023",
    "invalid IAM ARN: {arn}",
    hint="Give the ARN of an IAM role or user, e.g. 'arn:aws:iam::123456789012:role/app'.",
)  # emulator decision
#: AWS IAM GRANT to a superuser or a role with REPLICATION/BYPASSRLS (DSQL has no such roles).
IAM_PRIVILEGED_ROLE = DsqlError(
    "42501",
    'permission denied to map IAM identities to role "{role}"',
    hint="DSQL has no superuser: map IAM identities to roles without SUPERUSER, REPLICATION or "
    "BYPASSRLS (CREATE ROLE app WITH LOGIN).",
)  # emulator decision
#: DROP TRIGGER / ALTER TRIGGER / DISABLE TRIGGER of the local endpoint's own quota triggers.
QUOTA_TRIGGER_PROTECTED = DsqlError(
    "42501",
    "permission denied: the local endpoint's quota triggers cannot be dropped, altered or disabled",
    hint="They count the rows and bytes of each transaction as DSQL does; DSQL has no triggers.",
)  # emulator decision (dsqlkit local only)
