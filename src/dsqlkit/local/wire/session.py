"""One client session's relay phase as a sans-I/O state machine: frames in, bytes and actions out.

:class:`Relay` sits between a client and its backend session once the client is authenticated.
It owns no socket, loop or timer (the h11 style): the asyncio shell (:mod:`dsqlkit.local.relay`)
feeds it the frames :class:`~dsqlkit.local.wire.protocol.MessageReader` splits, writes out
``to_client`` and ``to_backend`` after each call, and carries out the rare :data:`Event` s it
queues in ``events`` (await a deferred decision, close). Example::

    relay = Relay(SessionPolicy())
    relay.client([(ord("Q"), memoryview(protocol.query("SELECT 1")))])
    assert relay.to_backend                       # the Query, forwarded as it is
    relay.backend(ord("Z"), memoryview(protocol.ready_for_query("I")))
    assert relay.to_client and relay.idle

The hot path is header-only: only the types in :data:`CLIENT_INSPECT` / :data:`SERVER_INSPECT`
are decoded; every other message (rows, Bind parameters, CopyData) is forwarded as the slice it
came in. The backend is the source of truth for the transaction: its status comes from
ReadyForQuery, BEGIN/COMMIT/ROLLBACK count when the backend answers them, and every prepared
statement the backend holds (unnamed included) keeps the policy's classification, checked again
at each Bind that runs it later.

Emulator decisions: the FunctionCall message ('F') is refused (``spec.FUNCTION_CALL_UNSUPPORTED``);
SQL text is decoded with the session's ``client_encoding`` (``protocol.python_codec``), and text
that does not decode is refused with ``22021`` before the backend sees it; a statement nested too
deep for the classifier gets ``54001``. Both leave the session usable.
"""

from __future__ import annotations

import collections
import enum
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from dsqlkit import dsql as spec
from dsqlkit.local.rules.policy import Action, Decision, SessionPolicy
from dsqlkit.local.wire import protocol as pg

__all__ = ["CLIENT_INSPECT", "SERVER_INSPECT", "Close", "Event", "Relay", "Wait"]

log = logging.getLogger("dsqlkit.local")

_Q, _P, _S, _X, _C, _E, _F, _B = (ord(c) for c in "QPSXCEFB")
_Z, _I, _SUSPENDED, _CLOSE_COMPLETE, _N = ord("Z"), ord("I"), ord("s"), ord("3"), ord("N")
_PARSE_COMPLETE = ord("1")
_COPY_DONE, _COPY_FAIL, _COPY_IN, _STATUS = ord("c"), ord("f"), ord("G"), ord("S")
_PASSWORD = ord("p")
#: Client messages the relay decodes (CopyDone/CopyFail: rare, they end a COPY FROM STDIN).
CLIENT_INSPECT = frozenset({_Q, _P, _S, _X, _C, _E, _F, _B, _COPY_DONE, _COPY_FAIL})
#: Backend messages the relay decodes. NoticeResponse: the catalog-change notices are for the
#: rules; CopyInResponse: the backend ignores Sync until the COPY ends; ParameterStatus: the
#: client_encoding. All three are rare.
#: ParseComplete: a kept statement exists in the backend only once its Parse succeeded.
SERVER_INSPECT = frozenset(
    {_C, _Z, _E, _I, _SUSPENDED, _CLOSE_COMPLETE, _N, _COPY_IN, _STATUS, _PARSE_COMPLETE}
)
#: A statement name no client uses: closing it is a no-op whose CloseComplete marks a position.
BARRIER_STATEMENT = "dsqlkit.barrier"
#: Command tags after which the backend holds no prepared statement of the session.
_ALL_STATEMENTS_DROPPED = frozenset({"DISCARD ALL", "DEALLOCATE ALL"})
#: Error and notice fields PostgreSQL adds that DSQL never sends (its source file, line, routine).
_SOURCE_FIELDS = ("F", "L", "R")


@dataclass(frozen=True)
class Wait:
    """Await ``decision`` (a rule's deferred answer); hand its result to :meth:`Relay.resolved`.

    ``data``, ``parsed``: the Query or Parse it decides (kept here, so the relay holds nothing).
    """

    decision: Awaitable[Decision]
    data: memoryview
    parsed: str | pg.Parse


@dataclass(frozen=True)
class Close:
    """End the session: ``error`` (None: already queued) to the client, then close.

    ``reason``: for the endpoint's refusal counts; ``park``: the client said goodbye (Terminate):
    its backend session may be reset and reused.
    """

    error: spec.DsqlError | None
    reason: str
    park: bool = False


Event = Wait | Close


class _Expect(enum.IntEnum):
    """What the backend owes the client, in order (so pipelined answers stay matched).

    An IntEnum: hashed in C (a plain Enum hashes in Python), and set lookups are on the hot path.
    """

    QUERY = 1  # simple Query: CommandComplete(s) then ReadyForQuery
    REFUSED_QUERY = 2  # a refusal the backend raises: forward only its error and ReadyForQuery
    EXECUTE = 3  # one CommandComplete / EmptyQuery / PortalSuspended (or an error)
    CLOSE = 4  # a client Close: CloseComplete
    BARRIER = 5  # our Close of BARRIER_STATEMENT: its CloseComplete becomes the refusal error
    SYNC = 6  # ReadyForQuery
    SYNC_REFUSED = 7  # ReadyForQuery of a batch we refused part of
    RAISE = 8  # our raise after a refused batch in a transaction: forward only ReadyForQuery
    COPY_END = 9  # the client ended a COPY FROM STDIN here (no answer of its own)
    PARSE = 10  # a Parse whose statement we keep: ParseComplete, or an error (then undone)


@dataclass(frozen=True)
class _Pending:
    kind: _Expect
    tag: str | None = None
    error: spec.DsqlError | None = None
    forget: tuple[str, ...] = ()  # prepared statements it drops (DEALLOCATE) once it ran
    name: str = ""  # PARSE: the statement, and what we kept for that name before (to undo)
    previous: _Kept | None = None


#: One shared instance per kind for the common, tagless case: no allocation per message.
_PENDING = {kind: _Pending(kind) for kind in _Expect}
_ENDS_AT_READY = frozenset(
    {_Expect.QUERY, _Expect.REFUSED_QUERY, _Expect.SYNC, _Expect.SYNC_REFUSED, _Expect.RAISE}
)
#: Expectations whose backend rows and tags the client must not see (our own raises).
_SILENCED = frozenset({_Expect.REFUSED_QUERY, _Expect.RAISE})


def _pending(kind: _Expect, tag: str | None = None, forget: tuple[str, ...] = ()) -> _Pending:
    return _PENDING[kind] if tag is None and not forget else _Pending(kind, tag, forget=forget)


@dataclass
class _Kept:
    """A prepared statement the backend holds: the policy's classification and its rewrite tag."""

    kept: object | None
    size: int
    tag: str | None
    forget: tuple[str, ...]  # the prepared statements it DEALLOCATEs
    #: The transaction its Parse was checked in (Relay._transactions): its first Bind there is
    #: not checked again (already counted); -1 once that Bind came.
    fresh: int


class Relay:
    """The relay phase of one session (see the module docstring).

    ``policy``: DSQL's rules for the session; ``encoding``: the backend's client_encoding at
    startup; ``max_kept_statements`` / ``max_kept_bytes``: what a session may keep of prepared
    statements (a Parse beyond them is refused with ``spec.TOO_MANY_PREPARED``).
    """

    def __init__(
        self,
        policy: SessionPolicy,
        *,
        encoding: str = "UTF8",
        max_kept_statements: int = spec.MAX_KEPT_STATEMENTS,
        max_kept_bytes: int = spec.MAX_KEPT_STATEMENT_BYTES,
    ) -> None:
        self.policy = policy
        #: Bytes for the client / the backend, in order; the shell writes and clears them.
        self.to_client: list[bytes | memoryview] = []
        self.to_backend: list[bytes | memoryview] = []
        #: Actions for the shell (rare): awaiting a deferred decision, closing.
        self.events: list[Event] = []
        #: The backend's transaction status from its last ReadyForQuery.
        self.status = "I"
        self.closed = False
        self._inbox: collections.deque[pg.Frame] = collections.deque()
        self._held = False  # client input waits: a deferred decision, or a refused batch's fix-up
        self._expect: collections.deque[_Pending] = collections.deque()
        self._discarding = False  # extended protocol: skipping to Sync after a refusal
        self._refusal_sent = False
        self._refusal_rollback = False  # the refused batch held a COMMIT: end the transaction
        self._copy_in = False  # the backend is in COPY FROM STDIN: it ignores Sync and Flush
        self._portals: dict[str, _Kept] = {}  # portals bound to a statement with a tag or forget
        self._statements: dict[str, _Kept] = {}
        self._kept_bytes = 0
        self._transactions = 0  # transactions ended so far (ReadyForQuery 'I')
        self._max_kept = max_kept_statements
        self._max_kept_bytes = max_kept_bytes
        self._keeps = type(policy).on_bind is not SessionPolicy.on_bind
        self._lifetime_error: spec.DsqlError | None = None
        self.encoding = encoding
        self._codec = pg.python_codec(encoding)

    # --- state for the shell ------------------------------------------------------------------

    @property
    def held(self) -> bool:
        """Whether client input must wait (the shell stops reading the client meanwhile)."""
        return self._held

    @property
    def idle(self) -> bool:
        """Between transactions with nothing in flight (a backend session safe to reset)."""
        return self.status == "I" and not self._expect and not self._inbox and not self._held

    @property
    def reusable(self) -> bool:
        """Idle and clean: a DISCARD ALL can make the backend session fit for another client."""
        return self.idle and not self._discarding and not self._refusal_sent and not self.to_backend

    # --- inputs --------------------------------------------------------------------------------

    def client(self, frames: Iterable[pg.Frame]) -> None:
        """Client frames, in order: handled now, or queued behind a hold."""
        self._inbox.extend(frames)
        self._drain()

    def resolved(self, decision: Decision, wait: Wait) -> None:
        """The deferred decision of ``wait`` came back: carry it out, then go on."""
        if self.closed:
            return
        self._held = False
        self._carry_out(decision, wait.data, wait.parsed)
        self._drain()

    def expire(self, error: spec.DsqlError) -> None:
        """The connection reached its lifetime: ``error`` now if idle, else at the next idle point."""
        self._lifetime_error = error
        if self.idle:
            self._close(error, "lifetime")

    def backend(self, kind: int, data: memoryview) -> None:
        """One backend frame (the hot path)."""
        expect = self._expect
        head = expect[0] if expect else None
        if kind == pg.RAW:
            if head is None or head.kind not in _SILENCED:
                self.to_client.append(data)
        elif kind == _C:
            self._command_complete(head, data)
        elif kind == _Z:
            self._ready_for_query(data)
        elif kind == _E:
            self._error(head, data)
        elif kind == _CLOSE_COMPLETE:
            if head is not None and head.kind in (_Expect.CLOSE, _Expect.BARRIER):
                expect.popleft()
                if head.kind is _Expect.BARRIER:
                    assert head.error is not None
                    self._refusal_sent = True
                    self.to_client.append(pg.error_response(head.error))
                    return
            self.to_client.append(data)
        elif kind == _PARSE_COMPLETE:
            if head is not None and head.kind is _Expect.PARSE:
                expect.popleft()
            self.to_client.append(data)
        elif kind == _N:
            self._notice(head, data)
        elif kind == _COPY_IN:
            self._copy_started()
            self.to_client.append(data)
        elif kind == _STATUS:
            self._parameter_status(data)
        else:  # EmptyQueryResponse, PortalSuspended
            if head is not None and head.kind is _Expect.EXECUTE:
                expect.popleft()
            self.to_client.append(data)

    # --- client messages -----------------------------------------------------------------------

    def _drain(self) -> None:
        inbox = self._inbox
        try:
            while inbox and not self._held and not self.closed:
                kind, data = inbox.popleft()
                self._client_message(kind, data)
        except pg.ProtocolError as exc:
            self._close(exc.error, "protocol")

    def _client_message(self, kind: int, data: memoryview) -> None:
        if kind == pg.RAW:
            if not self._discarding:
                self.to_backend.append(data)
        elif kind == _Q:
            self._statement(data, extended=False)
        elif kind == _P:
            self._statement(data, extended=True)
        elif kind == _S:
            self._sync(data)
        elif kind == _X:
            self.closed = True
            self.events.append(Close(None, "terminate", park=True))
        elif kind in (_COPY_DONE, _COPY_FAIL):
            self._copy_ended(data)
        elif self._discarding:
            pass  # Bind/Execute/Close after a refused Parse: skipped up to Sync, as PostgreSQL does
        elif kind == _B:
            self._bind(data)
        elif kind == _E:
            kept = self._portals.get(pg.parse_execute_portal(data[5:])) if self._portals else None
            self._expect.append(
                _PENDING[_Expect.EXECUTE]
                if kept is None
                else _pending(_Expect.EXECUTE, kept.tag, kept.forget)
            )
            self.to_backend.append(data)
        elif kind == _C:
            if self._statements:
                what, name = pg.parse_close(data[5:])
                if what == "S":
                    self._forget(name)
            self._expect.append(_PENDING[_Expect.CLOSE])
            self.to_backend.append(data)
        elif kind == _F:
            self._refuse_query(spec.FUNCTION_CALL_UNSUPPORTED)
        else:  # a second password, queued behind the first
            raise pg.ProtocolError(spec.PROTOCOL_VIOLATION.format(kind=chr(max(kind, 0))))

    def _bind(self, data: memoryview) -> None:
        if self._statements or self._portals:
            portal, name = pg.parse_bind_names(data[5:])  # decoded only when needed
            kept = self._statements.get(name)
            if kept is not None and not self._admit_bind(kept):
                return
            if kept is not None and (kept.tag is not None or kept.forget):
                self._portals[portal] = kept
            else:
                self._portals.pop(portal, None)
        self.to_backend.append(data)

    def _admit_bind(self, kept: _Kept) -> bool:
        """Ask the policy about a prepared statement run again; False: refused (batch skipped)."""
        if kept.fresh == self._transactions:
            kept.fresh = -1
            return True
        if kept.kept is None:
            return True
        decision = self.policy.on_bind(kept.kept)
        if decision.action is Action.REFUSE:
            assert decision.error is not None
            self._refuse_batch(decision.error, rollback=decision.rollback)
            return False
        return True

    def _statement(self, data: memoryview, *, extended: bool) -> None:
        if self._discarding:
            return
        if self._lifetime_error is not None:
            self._close(self._lifetime_error, "lifetime")
            return
        try:
            parsed: str | pg.Parse
            parsed = (
                pg.parse_parse(data[5:], self._codec)
                if extended
                else pg.parse_query(data[5:], self._codec)
            )
        except UnicodeDecodeError as exc:
            self._refuse(_invalid_bytes(self.encoding, exc), extended)
            return
        sql = parsed.sql if isinstance(parsed, pg.Parse) else parsed
        try:
            decision = self.policy.on_statement(sql, extended=extended)
        except RecursionError:
            # The classifier's parse tree is deeper than Python's stack: PostgreSQL's answer to
            # a statement nested too deep for its own stack.
            decision = Decision.refuse(spec.STACK_DEPTH_EXCEEDED)
        self._carry_out(decision, data, parsed)

    def _refuse(self, error: spec.DsqlError, extended: bool) -> None:
        if extended:
            self._refuse_batch(error)
        else:
            self._refuse_query(error)

    def _carry_out(self, decision: Decision, data: memoryview, parsed: str | pg.Parse) -> None:
        """Carry out a policy decision about one Query or Parse (see dsqlkit.local.rules.policy)."""
        if decision.wait is not None:
            self._held = True
            self.events.append(Wait(decision.wait, data, parsed))
            return
        if isinstance(parsed, pg.Parse):
            self._carry_out_parse(decision, data, parsed)
            return
        if decision.action is Action.REFUSE:
            assert decision.error is not None
            self._refuse_query(decision.error, rollback=decision.rollback)
            return
        if decision.action is Action.REWRITE and decision.sql is not None:
            self.to_backend.append(pg.query(decision.sql, self._codec))
        else:
            self.to_backend.append(data)
        self._expect.append(_pending(_Expect.QUERY, decision.command_tag, decision.forget))

    def _refuse_query(self, error: spec.DsqlError, *, rollback: bool = False) -> None:
        """Refuse a simple Query (or FunctionCall): the backend raises ``error`` in its place."""
        raised = pg.raise_sql(error)
        # A refused COMMIT ends the transaction (as a failed one does): rolled back first.
        self.to_backend.append(pg.query(f"ROLLBACK; {raised}" if rollback else raised, self._codec))
        self._expect.append(_PENDING[_Expect.REFUSED_QUERY])

    def _carry_out_parse(self, decision: Decision, data: memoryview, parsed: pg.Parse) -> None:
        if decision.action is Action.REFUSE:
            assert decision.error is not None
            self._refuse_batch(decision.error, rollback=decision.rollback)
            return
        if not self._keep(parsed.name, decision):
            return
        if decision.action is Action.REWRITE and decision.sql is not None:
            self.to_backend.append(
                pg.parse(parsed.name, decision.sql, parsed.param_types, self._codec)
            )
        else:
            self.to_backend.append(data)

    def _keep(self, name: str, decision: Decision) -> bool:
        """Keep a Parse's classification while the backend holds the statement; False: refused."""
        if not self._keeps and decision.command_tag is None and not decision.forget:
            return True  # a policy that forwards all: nothing to keep, nothing to ask
        previous = self._statements.get(name)
        if name and previous is not None:
            return True  # the backend refuses a second Parse of a name: the first one stays
        if previous is not None:  # an unnamed Parse replaces the unnamed statement
            self._forget(name)
        if len(self._statements) >= self._max_kept or (
            self._kept_bytes + decision.keep_size > self._max_kept_bytes
        ):
            self._refuse_batch(
                spec.TOO_MANY_PREPARED.format(
                    count=self._max_kept, size=self._max_kept_bytes // 1024
                )
            )
            return False
        self._statements[name] = _Kept(
            decision.keep,
            decision.keep_size,
            decision.command_tag,
            decision.forget,
            self._transactions,
        )
        self._kept_bytes += decision.keep_size
        self._expect.append(_Pending(_Expect.PARSE, name=name, previous=previous))
        return True

    def _undo_parse(self, pending: _Pending) -> None:
        """A kept Parse failed or was skipped: the backend holds what it held before, if anything.

        (A failed unnamed Parse has dropped the old unnamed statement too: keeping its
        classification is then harmless, as nothing can be bound under that name.)
        """
        self._forget(pending.name)
        if pending.previous is not None:
            self._statements[pending.name] = pending.previous
            self._kept_bytes += pending.previous.size

    def _forget(self, name: str) -> None:
        kept = self._statements.pop(name, None)
        if kept is not None:
            self._kept_bytes -= kept.size

    def _forget_all(self) -> None:
        self._statements.clear()
        self._kept_bytes = 0

    def _refuse_batch(self, error: spec.DsqlError, *, rollback: bool = False) -> None:
        """Refuse a Parse or Bind: skip the rest of the batch to Sync; ``error`` in its place."""
        # Not forwarded. The error reaches the client after the backend's answers to what
        # came before it in the batch (the barrier's CloseComplete marks that point).
        self._refusal_rollback = self._refusal_rollback or rollback
        self._discarding = True
        self.to_backend.append(pg.close_statement(BARRIER_STATEMENT) + pg.flush())
        self._expect.append(_Pending(_Expect.BARRIER, error=error))

    def _sync(self, data: memoryview) -> None:
        if self._copy_in:
            self.to_backend.append(data)  # ignored by the backend during COPY: no answer
            return
        if not self._discarding:
            self._expect.append(_PENDING[_Expect.SYNC])
            self.to_backend.append(data)
            return
        self._discarding = False
        self.to_backend.append(data)
        # If the batch's ReadyForQuery says 'T' (a transaction begun before the batch, or by a
        # BEGIN earlier in it), the backend's transaction must be made to fail too; later client
        # messages wait until then.
        self._expect.append(_PENDING[_Expect.SYNC_REFUSED])
        self._held = True

    def _copy_ended(self, data: memoryview) -> None:
        if self._copy_in:
            self._copy_in = False
        else:  # sent before the backend's CopyInResponse arrived: marks where the COPY ends
            self._expect.append(_PENDING[_Expect.COPY_END])
        self.to_backend.append(data)

    def _copy_started(self) -> None:
        """CopyInResponse: Syncs the client sent after the COPY and before its end are ignored."""
        expect = self._expect
        kept: list[_Pending] = []
        ended = False
        if expect:
            kept.append(expect.popleft())  # the COPY's own Query or Execute
        while expect:
            pending = expect.popleft()
            if pending.kind is _Expect.COPY_END:
                ended = True
                break
            if pending.kind is not _Expect.SYNC:
                kept.append(pending)
        expect.extendleft(reversed(kept))
        self._copy_in = not ended

    # --- backend messages ----------------------------------------------------------------------

    def _command_complete(self, head: _Pending | None, data: memoryview) -> None:
        tag = pg.parse_command_complete(data[5:])
        override = None
        if head is not None and head.kind in (_Expect.EXECUTE, _Expect.QUERY):
            override = head.tag
            if head.forget and tag == "DEALLOCATE":
                for name in head.forget:
                    self._forget(name)
            if head.kind is _Expect.EXECUTE:
                self._expect.popleft()
        elif head is not None and head.kind in _SILENCED:
            return
        self._copy_in = False
        self.policy.on_command_complete(tag)
        if tag in _ALL_STATEMENTS_DROPPED:
            self._forget_all()
        self.to_client.append(data if override is None else pg.command_complete(override))

    def _error(self, head: _Pending | None, data: memoryview) -> None:
        if head is not None and head.kind is _Expect.RAISE:
            return  # our own raise after a refused batch: the client already has its error
        self._copy_in = False
        if head is not None and head.kind not in _ENDS_AT_READY:
            # The backend now skips to Sync: drop what it will never answer (a pending barrier
            # too: the client gets this error instead of the refusal, as PostgreSQL would).
            while self._expect and self._expect[0].kind not in _ENDS_AT_READY:
                skipped = self._expect.popleft()
                if skipped.kind is _Expect.PARSE:
                    self._undo_parse(skipped)
        original = pg.parse_error_fields(data[5:])
        fields = {k: v for k, v in original.items() if k not in _SOURCE_FIELDS}
        if head is not None and head.kind is _Expect.REFUSED_QUERY:
            fields.pop("W", None)  # the PL/pgSQL context of sys.dsqlkit_raise: not DSQL's
        rewritten = self.policy.rewrite_error(fields)
        # Re-encoded only when changed: the common case forwards the backend's bytes.
        self.to_client.append(data if rewritten == original else pg.error_response(rewritten))
        if original.get("V", original.get("S")) in ("FATAL", "PANIC"):
            # The backend ends the session (crash, terminate): its FATAL is the only one the
            # client gets, as from PostgreSQL.
            self._close(None, "backend_fatal")

    def _notice(self, head: _Pending | None, data: memoryview) -> None:
        fields = pg.parse_error_fields(data[5:])
        if self.policy.on_notice(fields) or (head is not None and head.kind in _SILENCED):
            return
        if not any(k in fields for k in _SOURCE_FIELDS):
            self.to_client.append(data)
            return
        kept = {k: v for k, v in fields.items() if k not in _SOURCE_FIELDS}
        self.to_client.append(pg.error_response(kept, notice=True))

    def _parameter_status(self, data: memoryview) -> None:
        name, value = pg.parse_parameter_status(data[5:])
        if name == "client_encoding":
            self.encoding = value
            self._codec = pg.python_codec(value)
        self.to_client.append(data)

    def _ready_for_query(self, data: memoryview) -> None:
        status = pg.parse_ready_for_query(data[5:])
        done: _Pending | None = None
        while self._expect:
            done = self._expect.popleft()
            if done.kind in _ENDS_AT_READY:
                break
        self._copy_in = False
        refused, self._refusal_sent = self._refusal_sent, False
        rollback, self._refusal_rollback = self._refusal_rollback, False
        if done is not None and done.kind is _Expect.SYNC_REFUSED and refused and status == "T":
            # Make the backend's transaction fail as the refusal would have: it raises, we swallow
            # its error, and the client sees its ReadyForQuery 'E' (a refused COMMIT: rolled
            # back, 'I').
            self._expect.append(_PENDING[_Expect.RAISE])
            ending = "ROLLBACK" if rollback else pg.raise_sql(spec.TRANSACTION_ABORTED)
            self.to_backend.append(pg.query(ending))
            return
        self.status = status
        self.policy.on_ready_for_query(status)
        if status == "I":
            # The transaction ended: every kept statement is checked at its next Bind.
            self._transactions += 1
        self.to_client.append(data)
        if done is not None and done.kind in (_Expect.SYNC_REFUSED, _Expect.RAISE):
            self._held = False
            self._drain()
        if self._lifetime_error is not None and self.idle:
            self._close(self._lifetime_error, "lifetime")

    # --- helpers -------------------------------------------------------------------------------

    def _close(self, error: spec.DsqlError | None, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.events.append(Close(error, reason))


def _invalid_bytes(encoding: str, exc: UnicodeDecodeError) -> spec.DsqlError:
    """PostgreSQL's 22021 error, naming the bytes that do not decode (as ``0xff 0xfe``)."""
    bad = exc.object[exc.start : max(exc.end, exc.start + 1)][:4]
    names = " ".join(f"0x{b:02x}" for b in bad)
    return spec.INVALID_BYTE_SEQUENCE.format(encoding=encoding, bytes=names)
