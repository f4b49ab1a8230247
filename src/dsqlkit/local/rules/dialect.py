"""DSQL's SQL dialect: what each statement is, and whether a real DSQL cluster would refuse it.

:func:`classify` parses a query string with PostgreSQL's own parser (pglast, libpg_query) and
returns a :class:`Verdict`: per statement its :class:`Kind` and the refusal (a
:class:`~dsqlkit.dsql.DsqlError` with DSQL's SQLSTATE and text) if any. Results are cached by
statement text, so a statement the session has seen before costs one dictionary lookup.

Every message of ``dsql-behavior.md`` section 6 (and section 4's SET and isolation rules) is in
:data:`dsqlkit.dsql.DIALECT_REFUSALS` (here :data:`REFUSALS`): one table, so a change in DSQL's
wording is one edit.

Emulator decisions (DSQL's answer is unknown; easy to change here):

- ``BEGIN ISOLATION LEVEL READ COMMITTED`` / ``READ UNCOMMITTED`` are refused like SERIALIZABLE: DSQL
  only runs REPEATABLE READ, and accepting a weaker level silently would mislead.
- ``CREATE FUNCTION`` in any language other than ``sql`` is refused naming the language; ``DO``
  blocks (plpgsql) are refused with ``unsupported statement: Do``.
- ``set_config('<name>', ...)`` with a literal name follows the SET rules; ``role`` only with
  ``is_local`` true.
- ``RESET ALL`` is accepted.
- Statements that ask for the server's version (``version()``, ``SHOW server_version[_num]``,
  ``current_setting('server_version[_num]')``) get a :attr:`Verdict.rewrite` that answers with
  DSQL's version (``spec.SERVER_VERSION``) instead of the backend's; see :func:`version_rewrite`.
- Cost: :func:`classify` is linear in the text. Texts up to :data:`INLINE_LENGTH` characters (and
  any text already cached) are classified where asked, on the event loop (at most a few
  milliseconds); :func:`classify_now` returns None for longer ones, which the session sends to a
  worker process (:mod:`~dsqlkit.local.rules.offload`) so that no client stalls the others.
- DSQL-only syntax PostgreSQL cannot parse (``CREATE INDEX ASYNC``, ``ALTER TABLE ASYNC``,
  ``AWS IAM GRANT/REVOKE``) is recognised from its first tokens when it is the only statement of
  the string (:attr:`Statement.extension`); anything else that does not parse is left to the backend,
  which answers with PostgreSQL's own syntax error.

Example::

    >>> classify("TRUNCATE t").refusal.message
    'unsupported statement: Truncate'
    >>> classify("SELECT 1; INSERT INTO t VALUES (1)").kinds
    (<Kind.READ: 'read'>, <Kind.DML: 'dml'>)
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pglast import parser as pg

from dsqlkit import dsql as spec
from dsqlkit.dsql import DsqlError

Node = dict[str, Any]


# --- The messages (section 6 of dsql-behavior.md): in dsqlkit.dsql, the one table ------------------

REFUSALS = spec.DIALECT_REFUSALS

#: Statements refused whatever they say, by parse-tree node type.
_REFUSED_NODES = {
    "TruncateStmt": "truncate",
    "CreateExtensionStmt": "create_extension",
    "CreateTrigStmt": "create_trigger",
    "CreatedbStmt": "create_database",
    "CreateTableAsStmt": "create_table_as",
    "CreateEnumStmt": "enum",
    "CompositeTypeStmt": "composite",
    "CreateRangeStmt": "range",
    "CreateTableSpaceStmt": "tablespace",
    "CreateForeignTableStmt": "foreign_table",
    "ListenStmt": "listen",
    "NotifyStmt": "notify",
    "UnlistenStmt": "unlisten",
    "AlterSystemStmt": "alter_system",
    "DoStmt": "do",
}

#: Column types DSQL refuses (PostgreSQL's internal names), and how DSQL prints internal names.
UNSUPPORTED_TYPES = frozenset(
    [
        "money",
        "xml",
        "inet",
        "cidr",
        "macaddr",
        "macaddr8",
        "point",
        "line",
        "lseg",
        "box",
        "path",
        "polygon",
        "circle",
        "tsvector",
        "tsquery",
        "int4range",
        "int8range",
        "numrange",
        "tsrange",
        "tstzrange",
        "daterange",
        "int4multirange",
        "int8multirange",
        "nummultirange",
        "tsmultirange",
        "tstzmultirange",
        "datemultirange",
        "bit",
        "varbit",
        "pg_lsn",
    ]
)
_SERIAL_TYPES = frozenset({"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"})
_TYPE_DISPLAY = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "varchar": "character varying",
    "bpchar": "character",
    "varbit": "bit varying",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "time": "time without time zone",
    "timetz": "time with time zone",
}
_ALLOWED_ISOLATION = "repeatable read"
_SAVEPOINT_KINDS = {
    "TRANS_STMT_SAVEPOINT": "SAVEPOINT",
    "TRANS_STMT_RELEASE": "RELEASE",
    "TRANS_STMT_ROLLBACK_TO": "ROLLBACK TO",
}
_REFUSED_LOCKS = frozenset({"LCS_FORSHARE", "LCS_FORNOKEYUPDATE"})
_ADVISORY_PREFIXES = ("pg_advisory_", "pg_try_advisory_")


class Kind(enum.Enum):
    """What a statement does, for the one-DDL-per-transaction and no-DDL-with-DML rules."""

    DDL = "ddl"
    DML = "dml"
    READ = "read"
    TRANSACTION = "transaction"
    SET = "set"
    CALL = "call"
    OTHER = "other"


@dataclass(frozen=True)
class Statement:
    """One statement of a query string.

    ``command``: for transaction control ``BEGIN``, ``COMMIT``, ``ROLLBACK`` (or the savepoint
    statement's name), else the parse-tree node type (``"SelectStmt"``). ``extension``: DSQL-only
    syntax PostgreSQL cannot parse, handled by the jobs and IAM modules. ``start``: offset of the
    statement in the string (characters). SQL-level prepared statements: ``target`` is the name
    of ``PREPARE``/``EXECUTE``/``DEALLOCATE`` (None: ``DEALLOCATE ALL``), ``inner`` the statement a
    ``PREPARE`` holds (what a later ``EXECUTE`` runs).
    """

    kind: Kind
    command: str
    refusal: DsqlError | None = None
    extension: bool = False
    start: int = 0
    target: str | None = None
    inner: Statement | None = None


@dataclass(frozen=True)
class Verdict:
    """The statements of one query string. ``syntax_error``: it does not parse (the backend will say
    why). Example: ``classify("VACUUM").refusal.message == 'unsupported VACUUM statement'``."""

    statements: tuple[Statement, ...]
    syntax_error: bool = False
    #: The SQL to run instead (rare: only statements asking for the server version), and the
    #: command tag the client should see for it (None: the backend's).
    rewrite: str | None = None
    command_tag: str | None = None
    #: The relation names the statements refer to, unqualified (for OC001: ``rules/occ.py``).
    relations: frozenset[str] = frozenset()

    @functools.cached_property  # read per statement on the relay's hot path
    def refusal(self) -> DsqlError | None:
        """The first refusal among the statements, or None."""
        return next((s.refusal for s in self.statements if s.refusal is not None), None)

    @functools.cached_property  # read per statement on the relay's hot path
    def executes(self) -> tuple[str, ...]:
        """The SQL-level prepared statements its ``EXECUTE name`` statements run."""
        return tuple(
            s.target for s in self.statements if s.command == "ExecuteStmt" and s.target is not None
        )

    @functools.cached_property  # read per statement on the relay's hot path
    def deallocates(self) -> tuple[str, ...]:
        """The prepared statements its ``DEALLOCATE name`` statements drop (not ``ALL``)."""
        return tuple(
            s.target
            for s in self.statements
            if s.command == "DeallocateStmt" and s.target is not None
        )

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return tuple(s.kind for s in self.statements)


SYNTAX_ERROR = Verdict((), syntax_error=True)
CACHE_SIZE = 4096
#: Longer texts are classified every time instead of cached: client-side bound parameters
#: (psycopg2) make every bulk INSERT a new text, and caching those would hold up to
#: CACHE_SIZE times their size. With this bound the cache holds at most 32 MiB of text.
CACHEABLE_LENGTH = 8192
#: Longer texts not in the cache are not classified on the event loop (:func:`classify_now`).
#: The worst text of this length (``SELECT 1,1,...,version()``: a whole-tree walk) costs ~5 ms
#: (benchmarks/bench_hostile.py); ordinary statements of this length well under 1 ms.
INLINE_LENGTH = 1024


class _Cache:
    """Verdicts by statement text, least recently used dropped first (CACHE_SIZE of them).

    Shared by every endpoint of the process (each may run its loop in its own thread): locked.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._verdicts: OrderedDict[str, Verdict] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._verdicts)

    def get(self, sql: str) -> Verdict | None:
        with self._lock:
            verdict = self._verdicts.get(sql)
            if verdict is not None:
                self._verdicts.move_to_end(sql)
            return verdict

    def put(self, sql: str, verdict: Verdict) -> None:
        if len(sql) > CACHEABLE_LENGTH:
            return
        with self._lock:
            self._verdicts[sql] = verdict
            self._verdicts.move_to_end(sql)
            if len(self._verdicts) > self._size:
                self._verdicts.popitem(last=False)


_cache = _Cache(CACHE_SIZE)


def classify(sql: str) -> Verdict:
    """Classify every statement of ``sql`` and find DSQL's refusal, if any (cached by text).

    Example::

        verdict = classify("BEGIN ISOLATION LEVEL SERIALIZABLE")
        assert verdict.refusal.message == "Unsupported isolation level: SERIALIZABLE"
    """
    verdict = _cache.get(sql)
    if verdict is None:
        verdict = classify_uncached(sql)
        _cache.put(sql, verdict)
    return verdict


def classify_now(sql: str) -> Verdict | None:
    """:func:`classify` if it is cheap here: cached, or at most :data:`INLINE_LENGTH` long.

    None: classify it elsewhere (:func:`dsqlkit.local.rules.offload.classify_off_loop`), then
    :func:`remember` the verdict. Example: ``classify_now("SELECT 1").kinds == (Kind.READ,)``.
    """
    if len(sql) <= INLINE_LENGTH:
        return classify(sql)
    return _cache.get(sql)


def remember(sql: str, verdict: Verdict) -> None:
    """Cache a verdict computed elsewhere (texts over CACHEABLE_LENGTH are not kept)."""
    _cache.put(sql, verdict)


def classify_uncached(sql: str) -> Verdict:
    """:func:`classify` without the cache (linear in the length of ``sql``)."""
    try:
        text = pg.parse_sql_json(sql)
    except pg.ParseError:
        return _classify_extension(sql)
    if '"idxname":"async"' in text:
        # `CREATE INDEX ASYNC ON t (a)` parses as a synchronous index named "async": DSQL reads
        # it as an unnamed asynchronous index. A quoted "async" name stays an ordinary index.
        verdict = _classify_extension(sql)
        if verdict is not SYNTAX_ERROR:
            return verdict
    tree = json.loads(text)
    # The JSON holds string constants too, so these are only cheap pre-filters: the tree decides.
    search = _TreeSearch(
        advisory="advisory" in text,
        tablesample="RangeTableSample" in text,
        locking="LCS_FORSHARE" in text or "LCS_FORNOKEYUPDATE" in text,
        set_config="set_config" in text,
    )
    statements = []
    offsets = _CharOffsets(sql)
    for raw in tree["stmts"]:
        statement = _classify_node(raw["stmt"], search)
        statements.append(_at(statement, offsets.at(raw.get("stmt_location", 0))))
    relations = _relations(text)
    # Pre-filter: a call of version() or a setting name like server_version, in any case. (A bare
    # "version" would match every statement: the JSON starts with the parser's {"version": ...}.)
    lowered = text.lower()
    if '"sval":"version"' in lowered or "server_version" in lowered:
        rewrite = _version_rewrite(sql, tree)
        if rewrite is not None:
            return Verdict(
                tuple(statements), rewrite=rewrite[0], command_tag=rewrite[1], relations=relations
            )
    return Verdict(tuple(statements), relations=relations)


#: A RangeVar's name in the parser's JSON. String constants are escaped there (``\"relname\"``),
#: so only real keys match.
_RELNAME = re.compile(r'"relname":"((?:[^"\\]|\\.)*)"')


def _relations(text: str) -> frozenset[str]:
    if '"relname"' not in text:
        return frozenset()
    return frozenset(json.loads(f'"{name}"') for name in _RELNAME.findall(text))


class _CharOffsets:
    """The parser counts bytes of UTF-8; callers index ``sql`` by characters.

    Offsets are asked in increasing order, so each conversion decodes only the bytes since the
    last one: linear in the text for all statements together (one decode per statement of the
    whole prefix was quadratic in a long non-ASCII text of many statements).
    """

    def __init__(self, sql: str) -> None:
        self._data = None if sql.isascii() else sql.encode()
        self._byte = self._char = 0

    def at(self, byte_offset: int) -> int:
        if self._data is None or byte_offset == 0:
            return byte_offset
        if byte_offset < self._byte:  # not in order (never from the parser): from the start
            self._byte = self._char = 0
        self._char += len(self._data[self._byte : byte_offset].decode(errors="ignore"))
        self._byte = byte_offset
        return self._char


def _at(statement: Statement, start: int) -> Statement:
    return statement if start == 0 else dataclasses.replace(statement, start=start)


def _refusal(key: str, /, **fields: object) -> DsqlError:
    error = REFUSALS[key]
    return error.format(**fields) if fields else error


# --- Kinds -----------------------------------------------------------------------------------------

_DML_NODES = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
_READ_NODES = frozenset({"VariableShowStmt", "DeclareCursorStmt"})
_OTHER_NODES = frozenset(
    {
        "VacuumStmt",
        "PrepareStmt",
        "ExecuteStmt",
        "DeallocateStmt",
        "FetchStmt",
        "ClosePortalStmt",
        "DiscardStmt",
        "ListenStmt",
        "NotifyStmt",
        "UnlistenStmt",
        "LoadStmt",
        "CheckPointStmt",
        "LockStmt",
        "DoStmt",
        "ConstraintsSetStmt",
    }
)
_TRANSACTION_COMMANDS = {
    "TRANS_STMT_BEGIN": "BEGIN",
    "TRANS_STMT_START": "BEGIN",
    "TRANS_STMT_COMMIT": "COMMIT",
    "TRANS_STMT_ROLLBACK": "ROLLBACK",
}


def _kind(node_type: str, node: Node) -> Kind:
    if node_type == "SelectStmt":
        return Kind.DML if _writes_in_cte(node) else Kind.READ
    if node_type in _DML_NODES:
        return Kind.DML
    if node_type == "ExplainStmt":
        analyze = any(_defname(o) == "analyze" for o in node.get("options", ()))
        (inner_type, inner), *_ = node["query"].items()
        return _kind(inner_type, inner) if analyze else Kind.READ
    if node_type == "CopyStmt":
        return Kind.DML if node.get("is_from") else Kind.READ
    if node_type in _READ_NODES:
        return Kind.READ
    if node_type == "VariableSetStmt":
        return Kind.SET
    if node_type == "TransactionStmt":
        return Kind.TRANSACTION
    if node_type == "CallStmt":
        return Kind.CALL
    if node_type in _OTHER_NODES:
        return Kind.OTHER
    return Kind.DDL  # CREATE / ALTER / DROP / GRANT / REVOKE / COMMENT ...: catalog changes


def _writes_in_cte(select: Node) -> bool:
    ctes = select.get("withClause", {}).get("ctes", ())
    return any(next(iter(c["CommonTableExpr"]["ctequery"])) in _DML_NODES for c in ctes)


# --- Refusals --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TreeSearch:
    """Which whole-tree walks a statement string needs (most need none)."""

    advisory: bool
    tablesample: bool
    locking: bool
    set_config: bool

    def __bool__(self) -> bool:
        return self.advisory or self.tablesample or self.locking or self.set_config


def _classify_node(stmt: Node, search: _TreeSearch) -> Statement:
    (node_type, node), *_ = stmt.items()
    kind = _kind(node_type, node)
    command = node_type
    if node_type == "TransactionStmt":
        command = _TRANSACTION_COMMANDS.get(node["kind"]) or _SAVEPOINT_KINDS.get(
            node["kind"], node["kind"]
        )
    if node_type in _PREPARED_NODES:
        return _prepared_statement(node_type, node, search)
    refusal = _node_refusal(node_type, node)
    if refusal is None and search:
        refusal = _tree_refusal(stmt, search)
    return Statement(kind, command, refusal)


_PREPARED_NODES = frozenset({"PrepareStmt", "ExecuteStmt", "DeallocateStmt"})


def _prepared_statement(node_type: str, node: Node, search: _TreeSearch) -> Statement:
    """PREPARE (classified by the statement it holds), EXECUTE, DEALLOCATE: named by ``target``."""
    name = node.get("name")
    if node_type != "PrepareStmt":
        return Statement(Kind.OTHER, node_type, target=name)
    inner = _classify_node(node["query"], search)
    return Statement(Kind.OTHER, node_type, inner.refusal, target=name, inner=inner)


def _node_refusal(node_type: str, node: Node) -> DsqlError | None:
    if node_type in _REFUSED_NODES:
        return _refusal(_REFUSED_NODES[node_type])
    check = _CHECKS.get(node_type)
    return check(node) if check else None


def _tree_refusal(stmt: Node, search: _TreeSearch) -> DsqlError | None:
    for node_type, node in _walk(stmt):
        if node_type == "FuncCall" and (search.advisory or search.set_config):
            refusal = _function_refusal(node)
        elif node_type == "RangeTableSample" and search.tablesample:
            refusal = _refusal("tablesample")
        elif node_type == "LockingClause" and node["strength"] in _REFUSED_LOCKS:
            refusal = _refusal("locking")
        else:
            continue
        if refusal is not None:
            return refusal
    return None


def _walk(value: Any) -> Iterator[tuple[str, Node]]:
    """Every (node type, node) pair in a JSON parse tree, depth first."""
    if isinstance(value, dict):
        for key, child in value.items():
            if isinstance(child, dict):
                if key[:1].isupper():
                    yield key, child
                yield from _walk(child)
            elif isinstance(child, list):
                for item in child:
                    yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _function_refusal(call: Node) -> DsqlError | None:
    name = _string(call["funcname"][-1])
    if name.startswith(_ADVISORY_PREFIXES):
        return _refusal("function", name=name)
    if name == "set_config":
        args = call.get("args", ())
        parameter = _const_string(args[0]) if args else None
        is_local = len(args) > 2 and _const_bool(args[2])
        if parameter is not None:
            return _parameter_refusal(parameter.lower(), is_local=bool(is_local))
    return None


def _check_create_table(node: Node) -> DsqlError | None:
    persistence = node["relation"].get("relpersistence")
    if persistence == "t":
        return _refusal("temp_table")
    if persistence == "u":
        return _refusal("unlogged_table")
    for element in node.get("tableElts", ()):
        column = element.get("ColumnDef")
        if column is not None:
            refusal = _column_refusal(column)
            if refusal is not None:
                return refusal
    return None


def _column_refusal(column: Node) -> DsqlError | None:
    type_name = column["typeName"]
    name = _string(type_name["names"][-1])
    if name in _SERIAL_TYPES:
        return _refusal("serial", name=name)
    if type_name.get("arrayBounds"):
        return _refusal("datatype", type=_display(name) + "[]")
    if name in UNSUPPORTED_TYPES:
        return _refusal("datatype", type=_display(name))
    for constraint in column.get("constraints", ()):
        c = constraint["Constraint"]
        if c["contype"] == "CONSTR_IDENTITY":
            if name != "int8":
                return _refusal("identity_type", type=_display(name))
            return _cache_refusal(c.get("options", ()), missing="identity_cache")
    return None


def _check_alter_table(node: Node) -> DsqlError | None:
    for cmd in node.get("cmds", ()):
        command = cmd["AlterTableCmd"]
        subtype = command["subtype"]
        if subtype == "AT_AddColumn":
            column = command["def"]["ColumnDef"]
            refusal = _column_refusal(column)
            if refusal is not None:
                return refusal
            constraints = column.get("constraints", ())
            if any(c["Constraint"]["contype"] != "CONSTR_NULL" for c in constraints):
                return _refusal("add_column_constraint")
        elif subtype == "AT_AddConstraint":
            constraint = command["def"]["Constraint"]
            if constraint["contype"] not in ("CONSTR_CHECK", "CONSTR_FOREIGN") or not (
                constraint.get("skip_validation")
            ):
                return _refusal("add_constraint")
        elif subtype == "AT_AlterColumnType":
            return _refusal("alter_column_type")
    return None


def _check_index(node: Node, *, asynchronous: bool = False) -> DsqlError | None:
    if node.get("concurrent"):
        return _refusal("concurrently")
    for param in node.get("indexParams", ()):
        element = param["IndexElem"]
        if element.get("ordering", "SORTBY_DEFAULT") != "SORTBY_DEFAULT" or element.get(
            "nulls_ordering", "SORTBY_NULLS_DEFAULT"
        ) != ("SORTBY_NULLS_DEFAULT"):
            return _refusal("index_sort")
        if element.get("opclass"):
            return _refusal("index_opclass")
    return None if asynchronous else _refusal("sync_index")


def _check_sequence(node: Node) -> DsqlError | None:
    return _sequence_refusal(node.get("options", ()), missing="sequence_cache")


def _check_alter_sequence(node: Node) -> DsqlError | None:
    return _sequence_refusal(node.get("options", ()), missing=None)  # keeps its CACHE


def _sequence_refusal(options: Any, *, missing: str | None) -> DsqlError | None:
    """A sequence must be bigint and have a valid CACHE (``missing``: the refusal if none)."""
    as_type = _option(options, "as")
    if as_type is not None and _string(as_type["TypeName"]["names"][-1]) != "int8":
        return _refusal("sequence_type")
    return _cache_refusal(options, missing=missing)


def _check_function(node: Node) -> DsqlError | None:
    if node.get("is_procedure"):
        return _refusal("procedure")
    language = next(
        (
            _string(o["DefElem"]["arg"])
            for o in node.get("options", ())
            if _defname(o) == "language"
        ),
        "sql",
    )
    return None if language.lower() == "sql" else _refusal("function_language", language=language)


def _check_vacuum(node: Node) -> DsqlError | None:
    # ANALYZE is a VacuumStmt too, and it is supported.
    return _refusal("vacuum") if node.get("is_vacuumcmd") else None


def _check_select(node: Node) -> DsqlError | None:
    return _refusal("create_table_as") if "intoClause" in node else None  # SELECT INTO


def _check_transaction(node: Node) -> DsqlError | None:
    savepoint = _SAVEPOINT_KINDS.get(node["kind"])
    if savepoint is not None:
        return _refusal("savepoint", statement=savepoint)
    return _isolation_refusal(node.get("options", ()))


def _isolation_refusal(options: Any) -> DsqlError | None:
    for option in options:
        if _defname(option) == "transaction_isolation":
            level = _const_string(option["DefElem"]["arg"]) or ""
            if level != _ALLOWED_ISOLATION:
                return _refusal("isolation", level=level.upper())
    return None


def _check_set(node: Node) -> DsqlError | None:
    if node["kind"] == "VAR_RESET_ALL":
        return None
    name = node["name"]
    if node["kind"] == "VAR_SET_MULTI":  # SET TRANSACTION / SET SESSION CHARACTERISTICS ...
        return _refusal("parameter", name=name)
    return _parameter_refusal(name.lower(), is_local=bool(node.get("is_local")))


def _parameter_refusal(name: str, *, is_local: bool) -> DsqlError | None:
    if name in spec.SETTABLE_PARAMETERS or (is_local and name in spec.SET_LOCAL_ONLY_PARAMETERS):
        return None
    return _refusal("parameter", name=name)


def parameter_refusal(name: str) -> DsqlError | None:
    """DSQL's refusal of setting ``name`` at session level (SET or startup options), or None."""
    return _parameter_refusal(name.lower(), is_local=False)


_CHECKS: dict[str, Callable[[Node], DsqlError | None]] = {
    "CreateStmt": _check_create_table,
    "AlterTableStmt": _check_alter_table,
    "IndexStmt": _check_index,
    "CreateSeqStmt": _check_sequence,
    "AlterSeqStmt": _check_alter_sequence,
    "CreateFunctionStmt": _check_function,
    "VacuumStmt": _check_vacuum,
    "SelectStmt": _check_select,
    "TransactionStmt": _check_transaction,
    "VariableSetStmt": _check_set,
}


# --- The server version: DSQL's, not the backend's -----------------------------------------------

#: The backend settings the rewritten SQL relies on: ``sys.version()`` and
#: ``sys.current_setting()`` (``sql/40_compat.sql``) read DSQL's version from them.
BACKEND_PARAMETERS = {
    "dsqlkit.server_version": spec.SERVER_VERSION,
    "dsqlkit.server_version_num": spec.SERVER_VERSION_NUM,
}
_VERSION_SETTINGS = {
    "server_version": spec.SERVER_VERSION,
    "server_version_num": spec.SERVER_VERSION_NUM,
}
_OPEN_PAREN = "ASCII_40"  # the scanner's name for '('
#: Where a call's ``(`` is looked for after the start of its name (characters, tries).
_NAME_WINDOW = 512
_NAME_TRIES = 8


def version_rewrite(sql: str) -> tuple[str, str | None] | None:
    """``(sql, command_tag)`` that answers with DSQL's server version, or None if nothing asks.

    ``SHOW server_version[_num]`` alone in the string becomes a SELECT of one column of the same
    name, with command tag ``SHOW``. Otherwise the calls are renamed in the text, at the places
    the parse tree gives, and nothing else changes: ``version()`` / ``pg_catalog.version()``
    become ``sys.version()``, and ``current_setting('server_version[_num]'[, missing_ok])``
    becomes ``sys.current_setting(...)`` with the same arguments. Column names stay the same
    (PostgreSQL names a column after the function's last name), and so do parameters (``$1``).
    Linear in the text: the rewrite of a megabyte costs what its parse does. Example::

        sql, tag = version_rewrite("SHOW server_version")
        assert (sql, tag) == ("SELECT CAST('16.15' AS pg_catalog.text) AS server_version", "SHOW")
    """
    try:
        tree = json.loads(pg.parse_sql_json(sql))
    except pg.ParseError:
        return None
    return _version_rewrite(sql, tree)


def _version_rewrite(sql: str, tree: Node) -> tuple[str, str | None] | None:
    stmts = tree.get("stmts", ())
    show = stmts[0]["stmt"].get("VariableShowStmt") if len(stmts) == 1 else None
    if show is not None and show.get("name") in _VERSION_SETTINGS:
        name = show["name"]
        value = _VERSION_SETTINGS[name]
        return f"SELECT CAST('{value}' AS pg_catalog.text) AS {name}", "SHOW"
    calls = sorted(_version_calls(tree))
    if not calls:
        return None
    data = sql.encode()
    pieces, done = [], 0
    for start, name in calls:
        end = _name_end(data, start)
        if end is None:  # the call's name could not be found where the parser says: leave it
            return None
        pieces += [data[done:start], name]
        done = end
    pieces.append(data[done:])
    return b"".join(pieces).decode(), None


def _version_calls(tree: Node) -> Iterator[tuple[int, bytes]]:
    """(byte offset of the call's name, the name to call instead) for each version question."""
    todo: list[Any] = [tree]
    while todo:  # iterative: deep trees need no recursion, and each node is seen once
        node = todo.pop()
        if type(node) is list:
            todo.extend(node)
            continue
        call = node.get("FuncCall")
        if call is not None:
            name = _version_function(call)
            if name is not None:
                yield call["location"], name
        todo.extend(v for v in node.values() if type(v) is dict or type(v) is list)


def _version_function(call: Node) -> bytes | None:
    names = [n.get("String", {}).get("sval") for n in call.get("funcname", ())]
    if len(names) == 2 and names[0] == "pg_catalog":
        names = names[1:]
    args = call.get("args", ())
    if names == ["version"] and not args:
        return b"sys.version"
    if names == ["current_setting"] and 1 <= len(args) <= 2:
        # Only a constant name: current_setting($1) is left as it is (its value is unknown here).
        setting = _const_string(args[0])
        if setting is not None and setting.lower() in _VERSION_SETTINGS:
            return b"sys.current_setting"
    return None


def _name_end(data: bytes, start: int) -> int | None:
    """The byte offset of the ``(`` after the function name that begins at ``start``.

    A name is short (``pg_catalog . version``), but a comment may sit inside it and hold a
    ``(``: each ``(`` of a short window is tried until the scanner sees it as a token. Bounded:
    a name not found so is left as it is (the backend's version answers).
    """
    window = data[start : start + _NAME_WINDOW].decode(errors="ignore")
    at = window.find("(")
    for _ in range(_NAME_TRIES):
        if at < 0:
            return None
        try:
            last = pg.scan(window[: at + 1])[-1]
        except (pg.ParseError, IndexError):  # the ( is in a comment or a quoted name
            last = None
        if last is not None and last.name == _OPEN_PAREN and last.start == at:
            return start + len(window[:at].encode())
        at = window.find("(", at + 1)
    return None


# --- DSQL-only syntax ------------------------------------------------------------------------------

_SEMICOLON = "ASCII_59"  # the scanner's name for ';'
_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})

#: First keywords of DSQL statements PostgreSQL's parser rejects; the jobs and IAM modules run them.
_EXTENSIONS = (
    ("CREATE", "INDEX", "ASYNC"),
    ("CREATE", "UNIQUE", "INDEX", "ASYNC"),
    ("ALTER", "TABLE", "ASYNC"),
    ("AWS", "IAM"),
)


def _classify_extension(sql: str) -> Verdict:
    try:
        tokens = [t for t in pg.scan(sql) if t.name not in _COMMENTS]
    except pg.ParseError:  # unterminated quote and such
        return SYNTAX_ERROR
    # The scanner's offsets are characters, end inclusive.
    words = [sql[t.start : t.end + 1].upper() for t in tokens[:4]]
    prefix = next((p for p in _EXTENSIONS if tuple(words[: len(p)]) == p), None)
    if prefix is None or any(t.name == _SEMICOLON for t in tokens[:-1]):
        return SYNTAX_ERROR
    refusal = None
    if prefix[-1] == "ASYNC" and prefix[1] != "TABLE":
        # The keys of an asynchronous index follow CREATE INDEX's rules: parse it without ASYNC.
        word = tokens[len(prefix) - 1]
        synchronous = sql[: word.start] + sql[word.end + 1 :]
        try:
            (raw,) = json.loads(pg.parse_sql_json(synchronous))["stmts"]
            refusal = _check_index(raw["stmt"]["IndexStmt"], asynchronous=True)
        except (pg.ParseError, KeyError, ValueError):
            pass  # the jobs module reports what is wrong with it
    return Verdict((Statement(Kind.DDL, " ".join(prefix), refusal, extension=True),))


def split_statements(sql: str) -> list[slice]:
    """Where each statement of ``sql`` is (character slices, without the ``;``).

    PostgreSQL's parser splits when the whole string parses (it knows ``BEGIN ATOMIC`` bodies);
    otherwise the scanner does, so that DSQL-only syntax and syntax errors still split.
    Example: ``[sql[s] for s in split_statements(sql)]``.
    """
    try:
        return list(pg.split(sql, only_slices=True))
    except pg.ParseError:
        pass
    try:
        tokens = pg.scan(sql)
    except pg.ParseError:  # an unterminated quote or comment: one statement
        return [slice(0, len(sql))]
    slices: list[slice] = []
    first = last = None
    for token in [*tokens, None]:
        if token is None or token.name == _SEMICOLON:
            if first is not None and last is not None:
                slices.append(slice(first, last + 1))  # the scanner's end is inclusive
            first = last = None
        elif token.name not in _COMMENTS:
            first = token.start if first is None else first
            last = token.end
    return slices


# --- Small parse-tree helpers ----------------------------------------------------------------------


def _string(node: Node) -> str:
    return str(node["String"]["sval"])


def _defname(option: Node) -> str:
    return str(option["DefElem"]["defname"])


def _display(type_name: str) -> str:
    return _TYPE_DISPLAY.get(type_name, type_name)


def _const_string(node: Node) -> str | None:
    value = node.get("A_Const", {}).get("sval")
    return None if value is None else str(value.get("sval", ""))


def _const_bool(node: Node) -> bool | None:
    value = node.get("A_Const", {}).get("boolval")
    return None if value is None else bool(value.get("boolval", False))


def _option(options: Any, name: str) -> Node | None:
    """The argument of the first option ``name`` (PostgreSQL refuses repeated options)."""
    return next(
        (o["DefElem"].get("arg", {}) for o in options if _defname(o) == name),
        None,
    )


def _cache_refusal(options: Any, *, missing: str | None) -> DsqlError | None:
    """DSQL's refusal of a sequence's CACHE: ``missing`` if there is none (None: allowed), or a
    class-22 error for a value that is neither 1 nor at least ``spec.MIN_LARGE_CACHE``."""
    arg = _option(options, "cache")
    if arg is None:
        return None if missing is None else _refusal(missing)
    # Integer (the parser leaves out a zero ival), or Float: values beyond 32 bits stay text.
    if "Integer" in arg:
        text = str(arg["Integer"].get("ival", 0))
    else:
        text = str(arg.get("Float", {}).get("fval", "0"))
    cache = float(text)
    if cache == 1 or cache >= spec.MIN_LARGE_CACHE:
        return None
    return _refusal("cache_value", cache=text)
