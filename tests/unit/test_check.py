"""``dsqlkit check``: per-statement verdicts with line numbers, transaction rules, output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dsqlkit import dsql as spec
from dsqlkit.cli import main
from dsqlkit.local.rules.check import check_sql
from dsqlkit.local.rules.dialect import REFUSALS

SCHEMA = """\
-- a schema DSQL accepts, then one it refuses
CREATE TABLE t (id uuid PRIMARY KEY, n text);

CREATE INDEX i ON t (n);
CREATE INDEX ASYNC i2 ON t (n);
BEGIN;
CREATE TABLE u (a int);
INSERT INTO u VALUES (1);
COMMIT;
SELECT 'é';
"""


def test_findings_lines_and_transaction_rules() -> None:
    findings = check_sql(SCHEMA, "s.sql")
    assert [(f.line, f.status) for f in findings] == [
        (2, "ok"),
        (4, "error"),
        (5, "ok"),
        (6, "ok"),
        (7, "ok"),
        (8, "error"),
        (9, "ok"),
        (10, "ok"),
    ]
    assert findings[1].message == REFUSALS["sync_index"].message
    assert (findings[5].sqlstate, findings[5].message) == (
        spec.DDL_AND_DML.sqlstate,
        spec.DDL_AND_DML.message,
    )
    assert findings[1].text() == f"s.sql:4: ERROR 0A000 {REFUSALS['sync_index'].message}"


def test_outside_begin_each_statement_is_its_own_transaction() -> None:
    findings = check_sql(
        "CREATE TABLE a (x int); INSERT INTO a VALUES (1); CREATE TABLE b (x int);"
    )
    assert [f.status for f in findings] == ["ok", "ok", "ok"]
    findings = check_sql("BEGIN; CREATE TABLE a (x int); CREATE TABLE b (x int); COMMIT;")
    assert findings[2].message == spec.MULTIPLE_DDL.message


def test_syntax_error_reports_its_line() -> None:
    findings = check_sql("SELECT 1;\nSELECT\n  FROM FROM;\n")
    assert [(f.line, f.status) for f in findings] == [(1, "ok"), (3, "syntax")]
    assert "FROM" in (findings[1].message or "")


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_exit_codes_and_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(
        tmp_path, "good.sql", "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1));"
    )
    bad = write(tmp_path, "bad.sql", "SELECT 1;\nTRUNCATE t;\n")
    broken = write(tmp_path, "broken.sql", "SELEC 1;")
    assert main(["check", good]) == 0
    capsys.readouterr()
    assert main(["check", good, bad]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{good}:1: OK",
        f"{bad}:1: OK",
        f"{bad}:2: ERROR 0A000 {REFUSALS['truncate'].message}",
    ]
    assert main(["check", bad, broken]) == 2
    assert main(["check", str(tmp_path / "missing.sql")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "bad.sql", "VACUUM;")
    assert main(["check", "--format", "json", bad]) == 1
    (finding,) = json.loads(capsys.readouterr().out)
    assert finding == {
        "file": bad,
        "line": 1,
        "status": "error",
        "statement": "VACUUM",
        "sqlstate": "0A000",
        "message": REFUSALS["vacuum"].message,
    }


def test_stdin() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dsqlkit", "check", "-"],
        input="LISTEN ch;",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == f"<stdin>:1: ERROR 0A000 {REFUSALS['listen'].message}\n"
