"""DSQL's per-session rules: dialect refusals, one DDL per transaction, no DDL with DML, transaction
age, the startup parameters a client may set, and OC001 after another session's catalog change.

The server calls :class:`DsqlSession` (a :class:`~dsqlkit.local.rules.policy.SessionPolicy`) for every
statement before it runs and tells it what the backend answered; the backend stays the source of
truth for the transaction state (``ReadyForQuery`` status ``I``/``T``/``E``).

Emulator decisions:

- A multi-statement simple query is one implicit transaction: if any of its statements would be
  refused (by the dialect or by the DDL/DML rules across its statements), the whole string is refused
  before anything runs, as a syntax error would be.
- The transaction age counts from the first answer in the transaction (``BEGIN``'s); ``ROLLBACK`` is always let through so a session can
  leave an old transaction.
- OC001 (DSQL section 5): a statement gets it when its transaction began before another session's
  catalog change committed and it names a relation that change touched (by unqualified name: a
  view over a changed table is not followed). The backend says what a DDL changed (its event
  triggers' NOTICE, ``sql/50_occ.sql``), so a DDL that changed nothing is no change; GRANT and
  REVOKE count as touching every relation. ``ROLLBACK`` and aborted transactions never get it.
- A refused COMMIT ends the transaction (rolled back, the session idle), as a failed COMMIT does.
- A non-whitelisted parameter in the StartupMessage (directly or as ``options=-c name=value``) is
  refused with a FATAL error carrying ``spec.PARAMETER_NOT_SUPPORTED``'s SQLSTATE and text.

The server asks about each simple Query and Parse, and again at the Bind of a named statement
run without a new Parse (statement caches), except the first Bind after its Parse in the same
transaction (see ``dsqlkit.local.server``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from dsqlkit import dsql as spec
from dsqlkit.dsql import DsqlError
from dsqlkit.local.config import Quotas
from dsqlkit.local.rules import occ, options
from dsqlkit.local.rules.dialect import (
    Kind,
    Statement,
    Verdict,
    classify_now,
    parameter_refusal,
)
from dsqlkit.local.rules.offload import classify_off_loop
from dsqlkit.local.rules.policy import FORWARD, Action, Decision, SessionPolicy

#: Decides a DSQL-only statement (jobs, IAM), or None when the statement is not its own.
ExtensionDecider = Callable[[str], "Decision | None"]
ErrorRewriter = Callable[[dict[str, str]], dict[str, str]]

_TRANSACTION_TAGS = frozenset({"BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK"})
#: Command tags after which the backend holds no prepared statement of the session.
_ALL_PREPARED_DROPPED = frozenset({"DISCARD ALL", "DEALLOCATE ALL"})
#: What one kept classification costs beyond its relation names (bytes, a round estimate).
_KEPT_OVERHEAD = 200
#: How a StartupMessage says "not a replication connection" (PostgreSQL's boolean words).
_FALSE_WORDS = frozenset({"false", "off", "no", "0", "f", "n"})
#: StartupMessage keys that are not configuration parameters.
_STARTUP_KEYS = frozenset({"user", "database", "options", "replication"})


class CatalogLog(Protocol):
    """The endpoint-wide log of committed catalog changes (``occ.OccState``)."""

    @property
    def version(self) -> int: ...

    def commit(self, touched: occ.Touched) -> None: ...

    def conflicts(self, began: int, relations: frozenset[str]) -> bool: ...


@dataclasses.dataclass
class TransactionRules:
    """One DDL per transaction, and never DDL with DML: the state of the current transaction.

    Shared by the endpoint's sessions and ``dsqlkit check``. ``admit`` applies the statements'
    own BEGIN/COMMIT/ROLLBACK when they run as one string (a simple Query, a file); with
    ``executed=False`` (a Parse, which runs later or never) they change nothing here: the backend's
    answers do (:meth:`executed`, :meth:`end`). ``prepared``: the statements that SQL-level
    ``PREPARE`` holds, by name, so that ``EXECUTE`` counts as what it runs. Example::

        rules = TransactionRules()
        rules.admit(classify("BEGIN; CREATE TABLE t (a int)").statements)  # None: admitted
        rules.admit(classify("INSERT INTO t VALUES (1)").statements)  # DDL_AND_DML
    """

    in_block: bool = False
    has_ddl: bool = False
    has_dml: bool = False
    prepared: dict[str, Statement] = dataclasses.field(default_factory=dict)
    #: The relations each SQL-level prepared statement names (for OC001 at its EXECUTE).
    prepared_relations: dict[str, frozenset[str]] = dataclasses.field(default_factory=dict)

    def admit(
        self,
        statements: Sequence[Statement],
        *,
        executed: bool = True,
        relations: frozenset[str] = frozenset(),
    ) -> DsqlError | None:
        """The refusal for running ``statements`` now; if none, record them in the transaction."""
        saved = (self.in_block, self.has_ddl, self.has_dml)  # a tuple: cheaper than a copy
        for statement in statements:
            error = self._step(self._runs(statement), executed)
            if error is not None:
                self.in_block, self.has_ddl, self.has_dml = saved
                return error
        for statement in statements:
            self._track_prepared(statement, relations)
        return None

    def relations_of(self, names: Sequence[str]) -> frozenset[str]:
        """The relations the SQL-level prepared statements ``names`` name."""
        found: frozenset[str] = frozenset()
        for name in names:
            found |= self.prepared_relations.get(name, frozenset())
        return found

    def executed(self, tag: str) -> None:
        """The backend ran a transaction-control statement (its command tag)."""
        if tag in ("BEGIN", "START TRANSACTION"):
            self.in_block = True
        elif tag in ("COMMIT", "ROLLBACK"):
            self.end()

    def end(self) -> None:
        """The transaction ended (committed, rolled back, or an autocommit statement finished)."""
        self.in_block = self.has_ddl = self.has_dml = False

    def forget_prepared(self) -> None:
        """The backend dropped every prepared statement (DISCARD ALL, DEALLOCATE ALL)."""
        self.prepared.clear()
        self.prepared_relations.clear()

    def _runs(self, statement: Statement) -> Statement:
        if statement.command == "ExecuteStmt" and statement.target is not None:
            return self.prepared.get(statement.target, statement)
        return statement

    def _track_prepared(self, statement: Statement, relations: frozenset[str]) -> None:
        if statement.command == "PrepareStmt" and statement.inner is not None:
            # An existing name makes the backend refuse the PREPARE: the old statement stays.
            assert statement.target is not None
            if statement.target not in self.prepared:
                self.prepared[statement.target] = statement.inner
                self.prepared_relations[statement.target] = relations
        elif statement.command == "DeallocateStmt":
            if statement.target is None:
                self.forget_prepared()
            else:
                self.prepared.pop(statement.target, None)
                self.prepared_relations.pop(statement.target, None)

    def _step(self, statement: Statement, executed: bool) -> DsqlError | None:
        if statement.kind is Kind.TRANSACTION:
            if not executed:
                pass
            elif statement.command == "BEGIN":
                self.in_block = True
            elif statement.command in ("COMMIT", "ROLLBACK"):
                self.end()
        elif statement.kind is Kind.DDL:
            if self.has_ddl:
                return spec.MULTIPLE_DDL
            if self.has_dml:
                return spec.DDL_AND_DML
            self.has_ddl = True
        elif statement.kind is Kind.DML:
            if self.has_ddl:
                return spec.DDL_AND_DML
            self.has_dml = True
        return None


def startup_refusal(parameters: Mapping[str, str]) -> DsqlError | None:
    """FATAL refusal for a StartupMessage that sets a parameter DSQL does not allow, or None.

    ``options`` are read with PostgreSQL's getopt rules (``rules/options.py``): ``-ec x=1`` sets
    DateStyle and ``x``. A replication connection is refused. Example:
    ``startup_refusal({"user": "admin", "options": "-c statement_timeout=5s"})``.
    """
    if parameters.get("replication", "false").lower() not in _FALSE_WORDS:
        return spec.REPLICATION_UNSUPPORTED
    try:
        names = list(_startup_parameter_names(parameters))
    except options.InvalidOptions as exc:
        return spec.INVALID_STARTUP_OPTIONS.format(reason=str(exc))
    for name in names:
        error = parameter_refusal(name)
        if error is not None:
            return dataclasses.replace(error, severity="FATAL")
    return None


def _startup_parameter_names(parameters: Mapping[str, str]) -> Iterator[str]:
    """The parameters a StartupMessage sets (its own keys, and its options' switches)."""
    for key in parameters:
        if key not in _STARTUP_KEYS and not key.startswith("_pq_."):
            yield key
    yield from options.settings(parameters.get("options", ""))


class DsqlSession(SessionPolicy):
    """One client session under DSQL's rules.

    ``catalog``: the endpoint's catalog version (OC001); ``extensions``: deciders for DSQL-only
    statements (CREATE INDEX ASYNC, AWS IAM ...); ``rewrite``: maps backend errors to DSQL's (OCC);
    ``clock``: monotonic seconds (tests pass their own). Example::

        session = DsqlSession(Quotas())
        assert session.on_statement("VACUUM", extended=False).error.message == (
            "unsupported VACUUM statement"
        )
    """

    def __init__(
        self,
        quotas: Quotas,
        *,
        catalog: CatalogLog | None = None,
        extensions: Sequence[ExtensionDecider] = (),
        rewrite: ErrorRewriter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = quotas.max_transaction_age_seconds
        self._catalog = catalog
        # The catalog version when the current transaction began (None: between transactions),
        # and what this transaction changed in the catalog (committed at its end).
        self._began: int | None = None
        self._touched: list[occ.Touched] = []
        self._extensions = tuple(extensions)
        self._rewrite = rewrite
        self._clock = clock
        self._status = "I"
        self._transaction = TransactionRules()
        self._started: float | None = None

    def check_startup(self, parameters: Mapping[str, str]) -> DsqlError | None:
        return startup_refusal(parameters)

    def on_statement(self, sql: str, *, extended: bool) -> Decision:
        verdict = classify_now(sql)
        if verdict is None:  # long: classified in a worker process while other sessions run
            return Decision.later(self._on_verdict_later(sql, extended))
        return self._on_verdict(sql, verdict, extended)

    async def _on_verdict_later(self, sql: str, extended: bool) -> Decision:
        return self._on_verdict(sql, await classify_off_loop(sql), extended)

    def _on_verdict(self, sql: str, verdict: Verdict, extended: bool) -> Decision:
        if verdict.syntax_error:
            return FORWARD  # PostgreSQL's own syntax error
        decision = self._decide(verdict, executed=not extended)
        if decision.action is Action.REFUSE:
            return decision
        statements = verdict.statements
        if verdict.rewrite is not None:  # rare: asks for the server version (DSQL's, not ours)
            decision = Decision.rewrite(verdict.rewrite, verdict.command_tag)
        elif len(statements) == 1 and (statements[0].extension or statements[0].kind is Kind.CALL):
            decision = self._extension_decision(sql)
        if verdict.deallocates:
            decision = dataclasses.replace(decision, forget=verdict.deallocates)
        if extended and decision.wait is None:
            # Kept by the relay while the backend holds the statement: checked again at each Bind.
            decision = dataclasses.replace(decision, keep=verdict, keep_size=_kept_size(verdict))
        return decision

    def on_bind(self, kept: object) -> Decision:
        assert isinstance(kept, Verdict)
        return self._decide(kept, executed=False)

    def _decide(self, verdict: Verdict, *, executed: bool) -> Decision:
        statements = verdict.statements
        if self._began is None and self._catalog is not None:
            self._began = self._catalog.version
        relations = verdict.relations
        if verdict.executes:  # EXECUTE name: what it runs names these
            relations = relations | self._transaction.relations_of(verdict.executes)
        error = verdict.refusal or self._age_refusal(statements)
        error = error or self._schema_refusal(statements, relations)
        error = error or self._transaction.admit(
            statements, executed=executed, relations=verdict.relations
        )
        if error is None:
            return FORWARD
        ends = self._status == "T" and any(s.command == "COMMIT" for s in statements)
        return Decision.refuse(error, rollback=ends)

    def _age_refusal(self, statements: Sequence[Statement]) -> DsqlError | None:
        if self._started is None or self._status != "T" or _only_rollback(statements):
            return None
        age = self._clock() - self._started
        if age <= self._max_age:
            return None
        return spec.TRANSACTION_AGE_EXCEEDED.format(limit=int(self._max_age), age=int(age))

    def _schema_refusal(
        self, statements: Sequence[Statement], relations: frozenset[str]
    ) -> DsqlError | None:
        if self._catalog is None or self._began is None or self._status == "E":
            return None
        if not self._catalog.conflicts(self._began, relations) or _only_rollback(statements):
            return None
        return spec.OCC_SCHEMA_CONFLICT

    def _extension_decision(self, sql: str) -> Decision:
        for decide in self._extensions:
            decision = decide(sql)
            if decision is not None:
                return decision
        return FORWARD

    def on_command_complete(self, tag: str) -> None:
        if tag == "ROLLBACK":
            self._touched.clear()
        if tag in _TRANSACTION_TAGS:
            self._transaction.executed(tag)
        elif tag in _ALL_PREPARED_DROPPED:
            self._transaction.forget_prepared()

    def on_notice(self, fields: Mapping[str, str]) -> bool:
        if fields.get("C") != occ.CATALOG_NOTICE_SQLSTATE:
            return False
        self._touched.append(occ.touched_relations(fields))
        return True

    def on_ready_for_query(self, status: str) -> None:
        self._status = status
        if status != "I":
            # The transaction's age counts from its first statement's answer (e.g. BEGIN's): a
            # Parse answered on its own (status 'I') has not started it yet.
            if self._started is None:
                self._started = self._clock()
            return
        if self._touched and self._catalog is not None:
            self._catalog.commit(_merged(self._touched))
        self._touched.clear()
        self._began = None
        self._transaction.end()
        self._started = None

    def rewrite_error(self, fields: dict[str, str]) -> dict[str, str]:
        # An error ends (implicit) or aborts (explicit) the transaction: its DDL never commits.
        self._touched.clear()
        return self._rewrite(fields) if self._rewrite is not None else fields


def _only_rollback(statements: Sequence[Statement]) -> bool:
    return all(s.command == "ROLLBACK" for s in statements)


def _merged(changes: Sequence[occ.Touched]) -> occ.Touched:
    names: set[str] = set()
    for touched in changes:
        if touched is None:
            return None
        names |= touched
    return frozenset(names)


def _kept_size(verdict: Verdict) -> int:
    """What keeping ``verdict`` for a prepared statement costs, roughly, in bytes."""
    return _KEPT_OVERHEAD * (1 + len(verdict.statements)) + sum(map(len, verdict.relations))
