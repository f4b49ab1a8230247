"""``dsqlkit check FILE.sql ...``: would Aurora DSQL run these statements? Checked without running them.

Each file is split into statements (PostgreSQL's scanner, so DSQL-only syntax such as
``CREATE INDEX ASYNC`` splits too), and each statement goes through the local endpoint's own rules:
the dialect (:func:`dsqlkit.local.rules.dialect.classify`) and the transaction rules across ``BEGIN`` /
``COMMIT`` in the file (one DDL per transaction, no DDL with DML). A statement outside ``BEGIN`` is
a transaction of its own, as when a client runs the file statement by statement.

Exit status: 0 when DSQL would accept everything, 1 when some statement would be refused, 2 when a
file cannot be read or does not parse. Example::

    $ dsqlkit check schema.sql
    schema.sql:1: OK
    schema.sql:3: ERROR 0A000 unsupported mode. please use CREATE INDEX ASYNC.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

from pglast import parser as pg

from dsqlkit.local.rules.dialect import classify, split_statements
from dsqlkit.local.rules.session import TransactionRules

EXIT_OK, EXIT_REFUSED, EXIT_UNREADABLE = 0, 1, 2


@dataclass(frozen=True)
class Finding:
    """The verdict on one statement: ``status`` is ``ok``, ``error`` (DSQL refuses it) or
    ``syntax`` (it does not parse; ``message`` says where)."""

    file: str
    line: int
    status: str
    statement: str
    sqlstate: str | None = None
    message: str | None = None

    def text(self) -> str:
        if self.status == "ok":
            return f"{self.file}:{self.line}: OK"
        label = "ERROR" if self.status == "error" else "SYNTAX ERROR"
        return f"{self.file}:{self.line}: {label} {self.sqlstate} {self.message}"


def check_sql(sql: str, file: str = "<string>") -> list[Finding]:
    """Check every statement of ``sql``. Example::

    [f.status for f in check_sql("BEGIN; CREATE TABLE t (a int); INSERT INTO t VALUES (1);")]
    # ['ok', 'ok', 'error']
    """
    rules = TransactionRules()
    return [_check_one(rules, sql, file, where) for where in split_statements(sql)]


def _check_one(rules: TransactionRules, sql: str, file: str, where: slice) -> Finding:
    text = sql[where]
    line = sql.count("\n", 0, where.start) + 1
    verdict = classify(text)
    if verdict.syntax_error:
        return _syntax_finding(text, file, line)
    error = verdict.refusal or rules.admit(verdict.statements)
    if not rules.in_block:
        rules.end()  # outside BEGIN, each statement is its own transaction
    if error is None:
        return Finding(file, line, "ok", text)
    return Finding(file, line, "error", text, error.sqlstate, error.message)


def _syntax_finding(text: str, file: str, line: int) -> Finding:
    try:
        pg.parse_sql_json(text)
        message = "syntax error"
    except pg.ParseError as error:
        message, position = error.args  # position: 0-based, within the statement
        line += text.count("\n", 0, position)
    return Finding(file, line, "syntax", text, "42601", message)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE.sql", help="SQL files; - for stdin")
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default text)"
    )


def run(args: argparse.Namespace) -> int:
    findings: list[Finding] = []
    status = EXIT_OK
    for name in args.files:
        try:
            sql = sys.stdin.read() if name == "-" else _read(name)
        except (OSError, UnicodeDecodeError) as error:
            print(f"dsqlkit check: cannot read {name}: {error}", file=sys.stderr)
            status = EXIT_UNREADABLE
            continue
        findings.extend(check_sql(sql, "<stdin>" if name == "-" else name))
    if args.format == "json":
        print(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        for finding in findings:
            print(finding.text())
    if any(f.status == "syntax" for f in findings):
        return EXIT_UNREADABLE
    if status == EXIT_OK and any(f.status == "error" for f in findings):
        return EXIT_REFUSED
    return status


def _read(name: str) -> str:
    with open(name, encoding="utf-8") as file:
        return file.read()
