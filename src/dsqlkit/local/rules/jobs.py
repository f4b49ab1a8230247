"""Asynchronous jobs (DSQL section 6): CREATE [UNIQUE] INDEX ASYNC, ALTER TABLE ASYNC ... VALIDATE
CONSTRAINT and CALL sys.wait_for_job.

PostgreSQL cannot parse the ASYNC statements, so :meth:`JobManager.decide` recognises them with
PostgreSQL's own scanner and parser (pglast) and rewrites them into a call of
``sys.dsqlkit_submit_job`` (``sql/20_jobs.sql``), which runs as the client, inside the client's
transaction: ``CREATE INDEX ASYNC`` builds the index there, so it is in ``pg_indexes`` (not yet valid)
as soon as the transaction commits, as in DSQL; the job is recorded in ``sys.jobs`` and the client gets
its ``job_id`` with the tag ``CREATE INDEX``. Once that transaction commits (its ``pg_notify`` is
delivered then) the runner takes the job:

- an index built at submit is marked valid (a fixed catalog update: no client text); one dropped
  meanwhile ends the job as failed (``DROP INDEX`` cancels the build, as in DSQL);
- deferred work (a build that would have waited for an open writer of the table, and ``VALIDATE
  CONSTRAINT``) runs on a connection **of the submitting role**, under ``SET ROLE`` to the table's
  owner, never on the endpoint's superuser connection: the statement and the functions it calls
  (index expressions, CHECK expressions) get no privilege the client does not have. The statement is
  parsed again first and must be the one ASYNC statement the job was made for. The runner takes the
  table's lock only when no open transaction writes to it (a short ``lock_timeout``, retried). Not
  ``CONCURRENTLY``: that waits for every open snapshot in the database, so one idle-in-transaction
  client, or a client waiting for the job inside its own transaction, would hold the build back for
  ever.

``CALL sys.wait_for_job('<id>')`` waits in the endpoint, without holding up the event loop or other
sessions, then answers ``succeeded``.

Example::

    jobs = JobManager(backend)
    await jobs.start()
    decision = jobs.decide("CREATE INDEX ASYNC i ON t (a)")   # REWRITE, tag CREATE INDEX
    assert jobs.decide("SELECT 1") is None
    await jobs.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from pglast import parse_sql, parser
from pglast.stream import RawStream

from dsqlkit import dsql as spec
from dsqlkit.local.rules.policy import Decision

log = logging.getLogger(__name__)

CHANNEL = "dsqlkit_jobs"
TERMINAL = frozenset({"completed", "failed"})
INDEX_TAG = "CREATE INDEX"
ALTER_TAG = "ALTER TABLE"
_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
_WAIT_FOR_JOB = ("sys", "wait_for_job")
_INTERNAL_WAIT = "sys.dsqlkit_wait_for_job"


@dataclass(frozen=True)
class JobRequest:
    """One ASYNC statement: the job type, the PostgreSQL statement the job runs, its table."""

    job_type: str
    statement: str
    relation: str
    object_name: str | None
    tag: str


def _literal(text: str) -> str:
    """A SQL string literal (standard_conforming_strings is always on)."""
    return "'" + text.replace("'", "''") + "'"


def _tokens(sql: str) -> list[Any]:
    try:
        return [t for t in parser.scan(sql) if t.name not in _COMMENTS]
    except parser.ParseError:
        return []


def _words(sql: str, tokens: Sequence[Any], count: int) -> list[str]:
    return [sql[t.start : t.end + 1].upper() for t in tokens[:count]]


def parse_async(sql: str) -> JobRequest | None:
    """Recognise an ASYNC statement; None for anything else. Raises ``ValueError`` if malformed.

    Example: ``parse_async("CREATE INDEX ASYNC i ON t (a)").statement ==
    "CREATE INDEX  i ON t (a)"``.
    """
    tokens = _tokens(sql)
    words = _words(sql, tokens, 4)
    if words[:3] == ["CREATE", "INDEX", "ASYNC"] or words == ["CREATE", "UNIQUE", "INDEX", "ASYNC"]:
        word = tokens[len(words) - 1 if words[1] == "UNIQUE" else 2]
        statement = sql[: word.start] + sql[word.end + 1 :]
        node = _parse_one(statement, "IndexStmt")
        return JobRequest(
            "INDEX_BUILD", statement, RawStream()(node.relation), node.idxname, INDEX_TAG
        )
    if words[:3] == ["ALTER", "TABLE", "ASYNC"]:
        word = tokens[2]
        statement = sql[: word.start] + sql[word.end + 1 :]
        node = _parse_one(statement, "AlterTableStmt")
        commands: Sequence[Any] = node.cmds or ()
        if len(commands) != 1 or commands[0].subtype.name != "AT_ValidateConstraint":
            raise ValueError("ALTER TABLE ASYNC supports only VALIDATE CONSTRAINT <name>")
        name = commands[0].name
        return JobRequest(
            "VALIDATE_CONSTRAINT", statement, RawStream()(node.relation), name, ALTER_TAG
        )
    return None


def _parse_one(statement: str, node_type: str) -> Any:
    try:
        stmts = parse_sql(statement)
    except parser.ParseError as exc:
        raise ValueError(f"syntax error: {exc}") from None
    if len(stmts) != 1 or type(stmts[0].stmt).__name__ != node_type:
        raise ValueError("send one ASYNC statement at a time")
    return stmts[0].stmt


def parse_wait(sql: str) -> tuple[str, str | None] | None:
    """Recognise ``CALL sys.wait_for_job(...)``: (the backend's statement, the literal job id).

    The job id is None when it is not a literal (a bind parameter): the endpoint cannot wait then.
    """
    tokens = _tokens(sql)
    if _words(sql, tokens, 1) != ["CALL"]:
        return None
    try:
        (raw,) = parse_sql(sql)
    except (parser.ParseError, ValueError):
        return None
    call: Any = getattr(raw.stmt, "funccall", None)
    if call is None:
        return None
    names = tuple(n.sval for n in call.funcname)
    if names != _WAIT_FOR_JOB:
        return None
    # Same arguments, internal procedure: sys.wait_for_job itself is a function that raises
    # 42809, so that SELECT sys.wait_for_job('...') gives DSQL's error.
    start, end = tokens[1].start, tokens[3].end + 1  # sys . wait_for_job
    statement = sql[:start] + _INTERNAL_WAIT + sql[end:]
    args: Sequence[Any] = call.args or ()
    value = getattr(getattr(args[0], "val", None), "sval", None) if len(args) == 1 else None
    return statement, value


class JobManager:
    """Runs the endpoint's asynchronous jobs on the backend and answers the job statements.

    ``backend``: a :class:`dsqlkit.local.backend.postgres.Backend` (``dsn()``, ``admin_connection()``).
    """

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._listener: asyncpg.Connection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._finished: dict[str, asyncio.Event] = {}

    async def start(self) -> None:
        """Install ``sys.wait_for_job``, start listening for submitted jobs and run them."""
        async with self._backend.admin_connection() as conn:
            await conn.execute(_wait_for_job_function())
            # A job left half done by a stopped endpoint runs again (its build rolled back).
            await conn.execute(
                "UPDATE sys.jobs SET status = 'submitted' WHERE status = 'processing'"
            )
        self._listener = await asyncpg.connect(self._backend.dsn())
        await self._listener.add_listener(CHANNEL, self._on_notify)
        self._wakeup.set()  # jobs submitted while no endpoint ran
        self._runner = asyncio.create_task(self._run(), name="dsqlkit-jobs")

    async def stop(self) -> None:
        """Stop running jobs (a job in progress is interrupted and runs again at next start)."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        for event in self._finished.values():
            event.set()  # waiters answer from sys.jobs

    def decide(self, sql: str) -> Decision | None:
        """The decision for a job statement, or None when ``sql`` is not one."""
        try:
            request = parse_async(sql)
        except ValueError as exc:
            return Decision.refuse(spec.DsqlError("42601", str(exc)))
        if request is not None:
            return Decision.rewrite(_submit_sql(request), command_tag=request.tag)
        wait = parse_wait(sql)
        if wait is None:
            return None
        statement, job_id = wait
        if job_id is None or self._runner is None:
            return Decision.rewrite(statement)
        return Decision.later(self._wait(job_id, statement))

    async def wait(self, job_id: str) -> str | None:
        """Wait until job ``job_id`` ends; its final status, or None if there is no such job."""
        event = self._finished.setdefault(job_id, asyncio.Event())
        try:
            while True:
                # Registered before reading, so that an end in between is not missed.
                status = await self._status(job_id)
                if status is None or status in TERMINAL or self._runner is None:
                    return status
                await event.wait()
                event.clear()
        finally:
            self._finished.pop(job_id, None)

    async def _wait(self, job_id: str, statement: str) -> Decision:
        status = await self.wait(job_id)
        if status not in TERMINAL:
            return Decision.rewrite(statement)  # the backend says what is wrong
        # Answered from the runner's view: the client's snapshot may predate the job's end.
        succeeded = "true" if status == "completed" else "false"
        return Decision.rewrite(f"SELECT {succeeded} AS succeeded", command_tag="CALL")

    async def _status(self, job_id: str) -> str | None:
        rows = await self._backend.fetch_admin(
            "SELECT status FROM sys.jobs WHERE job_id = $1", job_id
        )
        return str(rows[0]["status"]) if rows else None

    def _on_notify(self, *_: object) -> None:
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            try:
                async with self._backend.admin_connection() as conn:
                    await self._run_jobs(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("job runner: %s; retrying", exc)
                await asyncio.sleep(1.0)  # the backend restarts: try again

    async def _run_jobs(self, conn: asyncpg.Connection) -> None:
        while True:
            self._wakeup.clear()
            job = await conn.fetchrow(_CLAIM)
            if job is None:
                await self._wakeup.wait()
                continue
            await self._execute(conn, job)
            event = self._finished.get(job["job_id"])
            if event is not None:
                event.set()

    async def _execute(self, conn: asyncpg.Connection, job: asyncpg.Record) -> None:
        status, details = "completed", None
        try:
            if job["index_oid"] is not None:
                if not await conn.fetchval(_MARK_VALID, job["index_oid"]):
                    status, details = "failed", _CANCELLED
            else:
                await self._run_as_submitter(job)
        except (asyncpg.PostgresError, _Refused) as exc:
            status, details = "failed", _details(exc)
        await conn.execute(_FINISH, job["job_id"], status, details)
        log.info("job %s %s: %s", job["job_id"], job["job_type"], status)

    async def _run_as_submitter(self, job: asyncpg.Record) -> None:
        """Deferred work, on a connection of the role that submitted it (never as superuser)."""
        if job["run_as"] is None or job["owner"] is None:
            raise _Refused("the role that submitted the job, or its table, no longer exists")
        _check_statement(job["job_type"], job["statement"])
        try:
            conn = await asyncpg.connect(self._backend.dsn(job["run_as"]), timeout=30)
        except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
            raise _Refused(f"cannot connect as {job['run_as']}: {exc}") from None
        try:
            await conn.execute("SELECT set_config('search_path', $1, false)", job["search_path"])
            if job["owner"] != job["run_as"]:
                await conn.execute(f"SET ROLE {quote_ident(job['owner'])}")
            await _run_when_unlocked(conn, job["statement"])
        finally:
            await conn.close()


class _Refused(Exception):
    """A job that cannot run; the message goes to sys.jobs.details."""


def _check_statement(job_type: str, statement: str) -> None:
    """The deferred statement must be exactly one statement of the job's kind (see parse_async)."""
    node_type = {"INDEX_BUILD": "IndexStmt", "VALIDATE_CONSTRAINT": "AlterTableStmt"}.get(job_type)
    try:
        if node_type is None:
            raise ValueError(f"unknown job type {job_type}")
        node = _parse_one(statement, node_type)
    except ValueError as exc:
        raise _Refused(f"not a {job_type} statement: {exc}") from None
    commands: Sequence[Any] = getattr(node, "cmds", None) or ()
    if node_type == "AlterTableStmt" and (
        len(commands) != 1 or commands[0].subtype.name != "AT_ValidateConstraint"
    ):
        raise _Refused("not a VALIDATE CONSTRAINT statement")


def quote_ident(name: str) -> str:
    """Quote an SQL identifier: ``quote_ident('a"b') == '"a""b"'``."""
    return '"' + name.replace('"', '""') + '"'


async def _run_when_unlocked(conn: asyncpg.Connection, statement: str) -> None:
    """Run ``statement``, retrying while it would wait for a lock (an open writer of the table).

    Clients never wait on the job (their own 1 ms lock_timeout); the job never queues for long in
    front of them either, so a writer meets the build only while the index is being built.
    """
    delay = _RETRY_FIRST
    while True:
        try:
            await conn.execute(f"SET lock_timeout = {_LOCK_TIMEOUT_MS}")
            await conn.execute(statement)
            return
        except asyncpg.LockNotAvailableError:
            await asyncio.sleep(delay)  # until the open writers commit or roll back
            delay = min(delay * 2, _RETRY_MAX)


def _details(exc: asyncpg.PostgresError | _Refused) -> str:
    """One line for sys.jobs.details: PostgreSQL's message and its detail (the duplicate key)."""
    message = str(getattr(exc, "message", None) or exc).splitlines()[0]
    detail = getattr(exc, "detail", None)
    return f"{message}: {detail}" if detail else message


def _submit_sql(request: JobRequest) -> str:
    name = "NULL" if request.object_name is None else _literal(request.object_name)
    return (
        "SELECT job_id FROM sys.dsqlkit_submit_job("
        f"{_literal(request.job_type)}, {_literal(request.relation)}::regclass, {name}, "
        f"{_literal(request.statement)}, current_setting('search_path'))"
    )


def _wait_for_job_function() -> str:
    # A function, not a procedure, named like DSQL's procedure: SELECT of it gives DSQL's 42809
    # (a real procedure would say "sys.wait_for_job(unknown)" for a string literal).
    error = spec.WAIT_FOR_JOB_IS_PROCEDURE
    return f"""
        CREATE OR REPLACE FUNCTION sys.wait_for_job(job_id text) RETURNS boolean
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM sys.dsqlkit_raise({_literal(error.sqlstate)}, {_literal(error.message)},
                NULL, {_literal(error.hint or "")});
            RETURN NULL;
        END $$;
        GRANT EXECUTE ON FUNCTION sys.wait_for_job(text) TO PUBLIC;
    """


# Take the oldest submitted job; the row lock keeps two runners (two endpoints on one external
# server) from taking the same job. run_as and owner are role names (NULL once dropped).
_CLAIM = """
    UPDATE sys.jobs j SET status = 'processing', update_time = now()
    FROM sys.dsqlkit_job_work w
    WHERE j.job_id = (
        SELECT job_id FROM sys.jobs WHERE status = 'submitted'
        ORDER BY start_time, job_id LIMIT 1 FOR UPDATE SKIP LOCKED)
      AND w.job_id = j.job_id
    RETURNING j.job_id, j.job_type, j.object_id, w.statement, w.search_path, w.index_oid,
        (SELECT rolname FROM pg_roles WHERE oid = w.run_as) AS run_as,
        (SELECT r.rolname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
         WHERE c.oid = j.object_id) AS owner
"""
# An index built at submit: mark it valid, if it still exists (DROP INDEX cancels the build).
_MARK_VALID = """
    UPDATE pg_index SET indisvalid = true WHERE indexrelid = $1 RETURNING true
"""
_CANCELLED = "cancelled: the index was dropped before its build completed"
_FINISH = """
    UPDATE sys.jobs SET status = $2, details = $3, update_time = now() WHERE job_id = $1
"""
_LOCK_TIMEOUT_MS = 20
_RETRY_FIRST = 0.01
_RETRY_MAX = 0.2
