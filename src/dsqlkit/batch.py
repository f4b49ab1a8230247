"""Batched writes within DSQL's transaction quotas: chunked, OCC-retried, exactly accounted.

DSQL caps a transaction at 3,000 changed rows and 5 minutes. :func:`insert_many` and
:func:`copy_rows` stream rows from any iterable (a generator is never materialised beyond one
chunk), write each chunk in its own transaction with multi-row ``INSERT ... VALUES`` statements
or ``COPY``, commit it with OCC retry and report progress::

    import dsqlkit.psycopg
    from dsqlkit.batch import insert_many

    with dsqlkit.psycopg.connect(host="...", region="us-east-1") as conn:
        rows = ((i, f"name {i}") for i in range(100_000))
        result = insert_many(conn, "users", ["id", "name"], rows,
                             on_conflict="ON CONFLICT (id) DO NOTHING")
        print(result.rows, "rows in", len(result.chunks), "transactions")

The account is exact: :class:`BatchResult` lists every committed chunk with its row range; a
chunk that fails for good raises :class:`BatchError` with the committed chunks, the failed one
(nothing of which was committed, unless ``outcome_unknown``) and the cause. Re-running from
``err.resume_from`` never loses a row; with a natural primary key and
``on_conflict="ON CONFLICT DO NOTHING"`` re-running never duplicates one either.

Targets: a psycopg or psycopg2 connection or pool (:func:`insert_many`, :func:`copy_rows`), an
asyncpg or psycopg async connection or pool (:func:`ainsert_many`, :func:`acopy_rows`). A
connection must have no transaction open: each chunk is its own transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dsqlkit import drivers
from dsqlkit import dsql as spec
from dsqlkit.retry import OCCRetryConfig, RetrySetting, causes, resolve_retry_config, sqlstate

if TYPE_CHECKING:
    from dsqlkit._driver import DriverOps

__all__ = [
    "BatchError",
    "BatchResult",
    "Chunk",
    "acopy_rows",
    "ainsert_many",
    "copy_rows",
    "driver_of",
    "insert_many",
]

#: Under DSQL's 3,000-row limit, with room for a few rows the caller's triggers-free schema adds.
DEFAULT_CHUNK_ROWS = 2500
#: A fifth of DSQL's 5-minute transaction age: a slow chunk commits early instead of failing.
DEFAULT_CHUNK_SECONDS = spec.TRANSACTION_MAX_AGE_SECONDS / 5
#: PostgreSQL's protocol allows 65,535 parameters per statement.
_MAX_PARAMETERS = 65535
#: Rows per statement (and per time check): large enough to amortise round trips.
_STATEMENT_ROWS = 1000
#: Marks the end of the input (a ``None`` row is not the end: it is refused).
_END = object()

Progress = Callable[["Chunk"], object]


@dataclass(frozen=True)
class Chunk:
    """One transaction of a batch: rows ``start`` to ``stop - 1`` (0-based positions in the input).

    ``written`` is what the database reported (fewer than ``rows`` when ON CONFLICT skipped
    some); ``attempts`` counts OCC re-runs plus one.
    """

    index: int
    start: int
    stop: int
    attempts: int = 1
    written: int = 0
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        """Number of input rows in the chunk."""
        return self.stop - self.start

    def __str__(self) -> str:
        return f"chunk {self.index} (rows {self.start}-{self.stop - 1})"


@dataclass(frozen=True)
class BatchResult:
    """What a batch committed: every chunk in order, and totals.

    Example::

        result = insert_many(conn, "t", ["id"], rows)
        result.rows, result.written, result.retries, [c.start for c in result.chunks]
    """

    chunks: tuple[Chunk, ...]
    seconds: float

    @property
    def rows(self) -> int:
        """Input rows committed."""
        return sum(chunk.rows for chunk in self.chunks)

    @property
    def written(self) -> int:
        """Rows the database reported written (ON CONFLICT DO NOTHING skips are not counted)."""
        return sum(chunk.written for chunk in self.chunks)

    @property
    def retries(self) -> int:
        """OCC re-runs across all chunks."""
        return sum(chunk.attempts - 1 for chunk in self.chunks)


class BatchError(Exception):
    """A chunk failed for good: what committed before it, the chunk, and why.

    ``committed``: the chunks committed (in order; rows ``0`` to ``resume_from - 1``).
    ``failed``: the chunk that failed; nothing of it was committed unless ``outcome_unknown``
    (the connection was lost during COMMIT: it may or may not have committed; re-run it with
    ON CONFLICT DO NOTHING and a natural key). ``cause``: the error (also ``__cause__``).

    Example::

        try:
            insert_many(conn, "t", ["id"], rows)
        except BatchError as err:
            print(err.resume_from, err.failed, err.cause)
    """

    def __init__(
        self,
        committed: tuple[Chunk, ...],
        failed: Chunk,
        cause: BaseException,
        *,
        outcome_unknown: bool = False,
    ) -> None:
        self.committed = committed
        self.failed = failed
        self.cause = cause
        self.outcome_unknown = outcome_unknown
        super().__init__(self._describe())

    @property
    def resume_from(self) -> int:
        """Position of the first input row not known to be committed."""
        return self.committed[-1].stop if self.committed else 0

    def _describe(self) -> str:
        reason = str(self.cause).strip().splitlines()
        why = f"{type(self.cause).__name__}: {reason[0] if reason else ''}"
        done = (
            f"chunks 1-{len(self.committed)} (rows 0-{self.resume_from - 1}) committed"
            if self.committed
            else "no chunk committed"
        )
        fate = (
            "its COMMIT outcome is unknown (connection lost): re-run it idempotently"
            if self.outcome_unknown
            else "nothing of it was committed"
        )
        return (
            f"{self.failed} failed after {self.failed.attempts} attempt(s) ({why}); "
            f"{done}; {fate}; resume from row {self.resume_from}"
        )


def driver_of(target: object) -> str:
    """The registry name (:mod:`dsqlkit.drivers`) of a connection's or pool's driver.

    Example::

        >>> driver_of(object())
        Traceback (most recent call last):
        TypeError: expected a psycopg, psycopg2 or asyncpg connection or pool, got object
    """
    return drivers.of(target).name


# --- SQL -----------------------------------------------------------------------------------


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_name(table: str | tuple[str, ...]) -> str:
    """``"schema"."table"`` from ``"schema.table"``, ``"table"`` or a tuple of parts."""
    parts = tuple(table.split(".")) if isinstance(table, str) else tuple(table)
    if not parts or not all(isinstance(p, str) and p for p in parts) or len(parts) > 2:
        raise ValueError(f"table must be 'name' or 'schema.name', got {table!r}")
    return ".".join(_identifier(p) for p in parts)


def _check_columns(columns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(columns, str) or not columns:
        raise ValueError(f"columns must be a non-empty list of column names, got {columns!r}")
    names = tuple(columns)
    if len(set(names)) != len(names) or not all(isinstance(c, str) and c for c in names):
        raise ValueError(f"columns must be distinct non-empty names, got {columns!r}")
    return names


def _check_on_conflict(on_conflict: str | None) -> str:
    if on_conflict is None:
        return ""
    if not on_conflict.strip().upper().startswith("ON CONFLICT"):
        raise ValueError(
            f"on_conflict must be an ON CONFLICT clause, e.g. 'ON CONFLICT (id) DO NOTHING', "
            f"got {on_conflict!r}"
        )
    return " " + on_conflict.strip()


class _Statements:
    """The INSERT (or COPY) text for one target, table and column list, cached per row count."""

    def __init__(
        self, ops: DriverOps, table: str | tuple[str, ...], columns: Sequence[str], suffix: str
    ) -> None:
        self.columns = _check_columns(columns)
        self.dollar = ops.paramstyle == "numeric"
        self.table_parts = tuple(table.split(".")) if isinstance(table, str) else tuple(table)
        name = _table_name(table)
        cols = ", ".join(_identifier(c) for c in self.columns)
        if not self.dollar:  # pyformat drivers: a literal % must be doubled
            name, cols = name.replace("%", "%%"), cols.replace("%", "%%")
        self.head = f"INSERT INTO {name} ({cols}) VALUES "
        self.suffix = suffix
        self.copy = (
            f"COPY {_table_name(table)} ({', '.join(map(_identifier, self.columns))}) FROM STDIN"
        )
        self.statement_rows = max(1, min(_STATEMENT_ROWS, _MAX_PARAMETERS // len(self.columns)))
        self._cache: dict[int, str] = {}

    def insert(self, rows: int) -> str:
        sql = self._cache.get(rows)
        if sql is None:
            n = len(self.columns)
            if self.dollar:
                groups = [
                    "(" + ", ".join(f"${r * n + c + 1}" for c in range(n)) + ")"
                    for r in range(rows)
                ]
            else:
                groups = ["(" + ", ".join(["%s"] * n) + ")"] * rows
            sql = self._cache[rows] = self.head + ", ".join(groups) + self.suffix
        return sql


def _parts(rows: list[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def _values(part: list[Sequence[Any]]) -> list[Any]:
    """The parameters of one multi-row INSERT: the part's rows, flattened."""
    return [value for row in part for value in row]


# --- The batch's bookkeeping (shared by the sync and async loops) ----------------------------


class _Run:
    """Reads the input a chunk at a time and keeps the exact account of what committed."""

    def __init__(
        self,
        rows: Iterable[Sequence[Any]],
        width: int,
        chunk_rows: int,
        max_chunk_seconds: float,
        progress: Progress | None,
    ) -> None:
        if not isinstance(chunk_rows, int) or not 1 <= chunk_rows <= spec.TRANSACTION_MAX_ROWS:
            raise ValueError(
                f"chunk_rows must be an integer from 1 to {spec.TRANSACTION_MAX_ROWS} "
                f"(DSQL's per-transaction row limit), got {chunk_rows!r}"
            )
        if not 0 < max_chunk_seconds < spec.TRANSACTION_MAX_AGE_SECONDS:
            raise ValueError(
                f"max_chunk_seconds must be between 0 and {spec.TRANSACTION_MAX_AGE_SECONDS} "
                f"(DSQL's transaction age limit), got {max_chunk_seconds!r}"
            )
        self._rows = iter(rows)
        self.width = width
        self.chunk_rows = chunk_rows
        self.max_seconds = max_chunk_seconds
        self.progress = progress
        self.pending: list[Sequence[Any]] = []
        self.offset = 0
        self.chunks: list[Chunk] = []
        self.started = time.monotonic()
        self.attempts = 0
        self.body_done = False

    def next_rows(self) -> list[Sequence[Any]]:
        """The rows of the next chunk (empty at the end); a malformed row is a BatchError."""
        try:
            while len(self.pending) < self.chunk_rows:
                row = next(self._rows, _END)
                if row is _END:
                    break
                self.pending.append(self._checked(row, self.offset + len(self.pending)))
        except Exception as exc:  # the generator failed, or a bad row: account for it
            raise self.failure(exc, len(self.pending) + 1) from exc
        self.attempts = 0
        return self.pending

    def _checked(self, row: Any, position: int) -> Sequence[Any]:
        """``row`` if it holds one value per column, else a ValueError naming its position."""
        if row is None or isinstance(row, (str, bytes)) or not hasattr(row, "__len__"):
            raise ValueError(
                f"row {position} is {type(row).__name__ if row is not None else 'None'}, not a "
                f"sequence of {self.width} value(s) (one per column): fix or drop it; a row of "
                "NULLs is (None,) * len(columns)"
            )
        if len(row) != self.width:
            raise ValueError(
                f"row {position} has {len(row)} values, expected {self.width} (one per column)"
            )
        return row

    def begin_attempt(self) -> float:
        self.attempts += 1
        self.body_done = False
        return time.monotonic()

    def over_time(self, started: float) -> bool:
        return time.monotonic() - started >= self.max_seconds

    def parts(
        self, rows: list[Sequence[Any]], size: int, started: float
    ) -> Iterator[list[Sequence[Any]]]:
        """The chunk's statements' rows; stops after the part that ran past the time bound."""
        for part in _parts(rows, size):
            yield part
            if self.over_time(started):
                return

    def committed(self, done: int, written: int, started: float) -> None:
        chunk = Chunk(
            len(self.chunks) + 1,
            self.offset,
            self.offset + done,
            self.attempts,
            written,
            time.monotonic() - started,
        )
        self.chunks.append(chunk)
        self.offset += done
        # A chunk cut short by the time bound leaves its other rows for the next one.
        self.pending = self.pending[done:]
        if self.progress is not None:
            self.progress(chunk)

    def failure(self, exc: BaseException, rows: int | None = None) -> BatchError:
        count = len(self.pending) if rows is None else rows
        failed = Chunk(
            len(self.chunks) + 1, self.offset, self.offset + count, max(self.attempts, 1)
        )
        # Lost during COMMIT with no answer from the server: it may have committed.
        unknown = self.body_done and not any(sqlstate(c) for c in causes(exc))
        return BatchError(tuple(self.chunks), failed, exc, outcome_unknown=unknown)

    def result(self) -> BatchResult:
        return BatchResult(tuple(self.chunks), time.monotonic() - self.started)


def _retry_config(target: Any, retry: RetrySetting) -> OCCRetryConfig | None:
    """The OCC policy of each chunk: ``retry``, else the pool's own setting (dsqlkit's pools
    keep it as ``_retry``), else the defaults; as everywhere, ``False`` turns it off."""
    return resolve_retry_config(retry, getattr(target, "_retry", None))


def _rowcount(tag_or_count: Any) -> int:
    """Rows written, from a DB-API rowcount or an asyncpg command tag (``INSERT 0 5``)."""
    if isinstance(tag_or_count, int):
        return max(tag_or_count, 0)
    last = str(tag_or_count).rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


# --- Checks and planning (shared by the sync and async entry points) -------------------------


def _driver(target: object, *, is_async: bool) -> DriverOps:
    """The registry row that runs ``target``; a target of the wrong kind is a TypeError naming
    the right functions."""
    ops = drivers.of(target)
    if ops.is_async != is_async:
        kind, use = (
            ("synchronous", "insert_many / copy_rows")
            if is_async
            else ("asynchronous", "ainsert_many / acopy_rows")
        )
        raise TypeError(f"{type(target).__name__} is {kind}: use {use}")
    return ops


def _check_idle(ops: DriverOps, conn: Any) -> None:
    if ops.state(conn) != "idle":
        raise ValueError(
            "the connection has a transaction open (or is closed): the batch helpers commit "
            "each chunk in its own transaction; commit or roll back first"
        )


def _plan(
    target: Any,
    table: str | tuple[str, ...],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    on_conflict: str | None,
    chunk_rows: int,
    max_chunk_seconds: float,
    progress: Progress | None,
    *,
    is_async: bool,
) -> tuple[DriverOps, _Statements, _Run]:
    """Every check made before the first chunk: target, SQL, bounds, no transaction open."""
    ops = _driver(target, is_async=is_async)
    statements = _Statements(ops, table, columns, _check_on_conflict(on_conflict))
    run = _Run(rows, len(statements.columns), chunk_rows, max_chunk_seconds, progress)
    if ops.is_connection(target):
        _check_idle(ops, target)
    return ops, statements, run


# --- Sync -----------------------------------------------------------------------------------


def _copy_text(value: Any) -> str:
    """One value in COPY's text format (psycopg2 has no row writer)."""
    if value is None:
        return "\\N"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\\\x" + bytes(value).hex()
    text = value if isinstance(value, str) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class _LinesReader:
    """A file-like object over COPY text lines, for psycopg2's ``copy_expert``."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines

    def read(self, size: int = -1) -> str:
        return next(self._lines, "")

    readline = read


def _write_sync(
    driver: str, statements: _Statements, run: _Run, rows: list[Sequence[Any]], copy: bool
) -> Callable[[Any], tuple[int, int]]:
    """The body of one chunk's transaction: (rows done, rows written)."""

    def body(conn: Any) -> tuple[int, int]:
        started = run.begin_attempt()
        done = written = 0
        with conn.cursor() as cur:
            if copy:
                done, written = _copy_sync(driver, cur, statements, run, rows, started)
            else:
                for part in run.parts(rows, statements.statement_rows, started):
                    cur.execute(statements.insert(len(part)), _values(part))
                    done += len(part)
                    written += _rowcount(cur.rowcount)
        run.body_done = True
        return done, written

    return body


def _copy_sync(
    driver: str, cur: Any, statements: _Statements, run: _Run, rows: list[Any], started: float
) -> tuple[int, int]:
    done = 0
    parts = run.parts(rows, statements.statement_rows, started)
    if driver == "psycopg":
        with cur.copy(statements.copy) as copy:
            for part in parts:
                for row in part:
                    copy.write_row(row)
                done += len(part)
        return done, _rowcount(cur.rowcount)
    taken: list[int] = []

    def lines() -> Iterator[str]:
        for part in parts:
            yield "".join("\t".join(map(_copy_text, row)) + "\n" for row in part)
            taken.append(len(part))

    cur.copy_expert(statements.copy, _LinesReader(lines()))
    return sum(taken), _rowcount(cur.rowcount)


def _run_sync(
    ops: DriverOps,
    target: Any,
    statements: _Statements,
    run: _Run,
    *,
    copy: bool,
    retry: RetrySetting,
) -> BatchResult:
    """Each chunk in its own transaction, OCC-retried, into the run's account."""
    config = _retry_config(target, retry)
    while chunk := run.next_rows():
        body = _write_sync(ops.name, statements, run, chunk, copy)
        try:
            with ops.borrow(target) as conn:
                started = time.monotonic()
                done, written = ops.transaction(conn, body, retry=config or False)
        except Exception as exc:
            raise run.failure(exc) from exc
        run.committed(done, written, started)
    return run.result()


def insert_many(
    target: Any,
    table: str | tuple[str, ...],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    max_chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    on_conflict: str | None = None,
    retry: RetrySetting = None,
    progress: Progress | None = None,
) -> BatchResult:
    """Insert ``rows`` into ``table`` in transactions of at most ``chunk_rows`` rows.

    ``target``: a psycopg/psycopg2 connection (no transaction open) or pool (a connection is
    taken per chunk). ``rows``: any iterable of sequences, one value per column, read one chunk
    at a time; a row that is ``None`` or has the wrong number of values is refused (a
    :class:`BatchError` naming its position; nothing of its chunk is written). A chunk is also
    committed early once it has run ``max_chunk_seconds`` (the rest of its rows go to the next
    chunk). Each chunk is re-run on an OCC conflict (``retry``: an :class:`OCCRetryConfig`,
    True, False for none, None to inherit the pool's setting, else the defaults). ``on_conflict``:
    an ``ON CONFLICT ...`` clause appended to every statement. ``progress(chunk)`` is called
    after each commit. Raises :class:`BatchError` when a chunk fails for good.

    Example::

        insert_many(conn, "events", ["id", "kind"], ((i, "click") for i in range(10_000)),
                    on_conflict="ON CONFLICT (id) DO NOTHING", progress=print)
    """
    ops, statements, run = _plan(
        target, table, columns, rows, on_conflict, chunk_rows, max_chunk_seconds, progress,
        is_async=False,
    )  # fmt: skip
    return _run_sync(ops, target, statements, run, copy=False, retry=retry)


def copy_rows(
    target: Any,
    table: str | tuple[str, ...],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    max_chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    retry: RetrySetting = None,
    progress: Progress | None = None,
) -> BatchResult:
    """Like :func:`insert_many`, with ``COPY ... FROM STDIN`` per chunk (no ON CONFLICT).

    psycopg writes rows with its own adapters; psycopg2 gets COPY text built from ``str()`` of
    each value (None is NULL, bytes are hex).

    Example::

        copy_rows(conn, "events", ["id", "kind"], ((i, "click") for i in range(10_000)))
    """
    ops, statements, run = _plan(
        target, table, columns, rows, None, chunk_rows, max_chunk_seconds, progress, is_async=False
    )
    return _run_sync(ops, target, statements, run, copy=True, retry=retry)


# --- Async ----------------------------------------------------------------------------------


def _write_async(
    driver: str, statements: _Statements, run: _Run, rows: list[Sequence[Any]], copy: bool
) -> Callable[[Any], Any]:
    """Async twin of :func:`_write_sync`."""

    async def body(conn: Any) -> tuple[int, int]:
        started = run.begin_attempt()
        if driver == "asyncpg":
            done, written = await _asyncpg_chunk(conn, statements, run, rows, copy, started)
        else:
            done, written = await _apsycopg_chunk(conn, statements, run, rows, copy, started)
        run.body_done = True
        return done, written

    return body


async def _asyncpg_chunk(
    conn: Any, statements: _Statements, run: _Run, rows: list[Any], copy: bool, started: float
) -> tuple[int, int]:
    done = written = 0
    for part in run.parts(rows, statements.statement_rows, started):
        if copy:
            *schema, name = statements.table_parts
            tag = await conn.copy_records_to_table(
                name,
                schema_name=schema[0] if schema else None,
                columns=list(statements.columns),
                records=part,
            )
        else:
            tag = await conn.execute(statements.insert(len(part)), *_values(part))
        done += len(part)
        written += _rowcount(tag)
    return done, written


async def _apsycopg_chunk(
    conn: Any, statements: _Statements, run: _Run, rows: list[Any], copy: bool, started: float
) -> tuple[int, int]:
    done = written = 0
    parts = run.parts(rows, statements.statement_rows, started)
    async with conn.cursor() as cur:
        if copy:
            async with cur.copy(statements.copy) as writer:
                for part in parts:
                    for row in part:
                        await writer.write_row(row)
                    done += len(part)
            return done, _rowcount(cur.rowcount)
        for part in parts:
            await cur.execute(statements.insert(len(part)), _values(part))
            done += len(part)
            written += _rowcount(cur.rowcount)
    return done, written


async def _run_async(
    ops: DriverOps,
    target: Any,
    statements: _Statements,
    run: _Run,
    *,
    copy: bool,
    retry: RetrySetting,
) -> BatchResult:
    """Async twin of :func:`_run_sync`."""
    config = _retry_config(target, retry)
    while chunk := run.next_rows():
        body = _write_async(ops.name, statements, run, chunk, copy)
        try:
            async with ops.borrow(target) as conn:
                started = time.monotonic()
                done, written = await ops.transaction(conn, body, retry=config or False)
        except Exception as exc:
            raise run.failure(exc) from exc
        run.committed(done, written, started)
    return run.result()


async def ainsert_many(
    target: Any,
    table: str | tuple[str, ...],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    max_chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    on_conflict: str | None = None,
    retry: RetrySetting = None,
    progress: Progress | None = None,
) -> BatchResult:
    """Async twin of :func:`insert_many`, for asyncpg and psycopg async connections and pools.

    Example::

        await ainsert_many(pool, "events", ["id", "kind"], ((i, "click") for i in range(10_000)))
    """
    ops, statements, run = _plan(
        target, table, columns, rows, on_conflict, chunk_rows, max_chunk_seconds, progress,
        is_async=True,
    )  # fmt: skip
    return await _run_async(ops, target, statements, run, copy=False, retry=retry)


async def acopy_rows(
    target: Any,
    table: str | tuple[str, ...],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    max_chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    retry: RetrySetting = None,
    progress: Progress | None = None,
) -> BatchResult:
    """Async twin of :func:`copy_rows`: asyncpg's ``copy_records_to_table`` (binary COPY) or
    psycopg's async COPY.

    Example::

        await acopy_rows(conn, "events", ["id", "kind"], rows)
    """
    ops, statements, run = _plan(
        target, table, columns, rows, None, chunk_rows, max_chunk_seconds, progress, is_async=True
    )
    return await _run_async(ops, target, statements, run, copy=True, retry=retry)
